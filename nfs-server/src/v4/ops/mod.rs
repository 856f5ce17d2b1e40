//! NFSv4.1 operations: what each one does, and its [`OpFlags`] declared beside it. The rules
//! between operations are in `compound.rs`, which reads the flags through [`flags`].

pub mod attr;
pub mod dir;
pub mod fh;
pub mod io;
pub mod lock;
pub mod open;
pub mod pseudo;
pub mod session;

use backend::Store;
use nfs_proto::v4::*;

use crate::v4::compound::{Ctx, CurFh};

/// Whether an op may run outside a session, i.e. in a COMPOUND that does not start with
/// SEQUENCE (RFC 8881 §2.10.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sessionless {
    /// Only after SEQUENCE.
    No,
    /// Also alone, as the only op of a COMPOUND (EXCHANGE_ID, CREATE_SESSION,
    /// DESTROY_SESSION, DESTROY_CLIENTID, BIND_CONN_TO_SESSION); with other ops and no
    /// SEQUENCE, NFS4ERR_NOT_ONLY_OP.
    Solo,
}

/// What the COMPOUND loop needs to know about an op (knfsd's `nfsd4_operation` flags).
#[derive(Clone, Copy, Debug)]
pub struct OpFlags {
    pub is_sequence: bool,
    pub sessionless: Sessionless,
    /// NFS4ERR_NOFILEHANDLE without a current filehandle.
    pub needs_fh: bool,
    /// It sets the current filehandle, which clears the current stateid.
    pub sets_fh: bool,
    /// It changes the file system or protocol state: it runs only if its largest reply
    /// (`reply_max` bytes) fits the reply budget.
    pub modifies: bool,
    pub reply_max: usize,
    /// It works on a pseudo-fs directory too; otherwise it gets NFS4ERR_ROFS (if it modifies
    /// something) or NFS4ERR_ISDIR there.
    pub pseudo_ok: bool,
    /// What the mount target's pacer charges a COMPOUND for this op (`crate::call`).
    pub pacing: OpPacing,
}

/// How an op weighs in a COMPOUND's pacing charge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpPacing {
    /// Nothing beyond the COMPOUND's one operation.
    None,
    /// Its READ count (charged up front, so no reply waits in memory for tokens).
    ReadCount,
    /// It carries data: the COMPOUND is charged its size, as a write.
    WritesRecord,
}

impl OpFlags {
    /// Needs a session, no filehandle, modifies nothing.
    pub const PLAIN: OpFlags = OpFlags {
        is_sequence: false,
        sessionless: Sessionless::No,
        needs_fh: false,
        sets_fh: false,
        modifies: false,
        reply_max: 64,
        pseudo_ok: false,
        pacing: OpPacing::None,
    };
    /// Works on the current filehandle.
    pub const FH: OpFlags = OpFlags {
        needs_fh: true,
        ..OpFlags::PLAIN
    };
    /// Works on the current filehandle and changes something.
    pub const FH_MODIFY: OpFlags = OpFlags {
        needs_fh: true,
        modifies: true,
        reply_max: 512,
        ..OpFlags::PLAIN
    };
}

/// Operations this server does not offer, with the error RFC 8881 prescribes for each.
pub const NOT_OFFERED_FLAGS: OpFlags = OpFlags::PLAIN;

/// The flags of `op`, as each op declares them.
pub fn flags(op: &NfsArgOp4) -> OpFlags {
    use NfsArgOp4 as A;
    match op {
        A::Sequence(_) => session::SEQUENCE_FLAGS,
        A::ExchangeId(_) => session::EXCHANGE_ID_FLAGS,
        A::CreateSession(_) => session::CREATE_SESSION_FLAGS,
        A::DestroySession(_) => session::DESTROY_SESSION_FLAGS,
        A::DestroyClientid(_) => session::DESTROY_CLIENTID_FLAGS,
        A::BindConnToSession(_) => session::BIND_CONN_TO_SESSION_FLAGS,
        A::BackchannelCtl(_) => session::BACKCHANNEL_CTL_FLAGS,
        A::ReclaimComplete(_) => session::RECLAIM_COMPLETE_FLAGS,
        A::SecinfoNoName(_) => session::SECINFO_NO_NAME_FLAGS,
        A::Secinfo(_) => session::SECINFO_FLAGS,
        A::Putfh(_) => fh::PUTFH_FLAGS,
        A::Putrootfh | A::Putpubfh => fh::PUTROOTFH_FLAGS,
        A::Getfh => fh::GETFH_FLAGS,
        A::Savefh => fh::SAVEFH_FLAGS,
        A::Restorefh => fh::RESTOREFH_FLAGS,
        A::Lookup(_) => fh::LOOKUP_FLAGS,
        A::Lookupp => fh::LOOKUPP_FLAGS,
        A::Getattr(_) => attr::GETATTR_FLAGS,
        A::Setattr(_) => attr::SETATTR_FLAGS,
        A::Verify(_) | A::Nverify(_) => attr::VERIFY_FLAGS,
        A::Access(_) => attr::ACCESS_FLAGS,
        A::Readdir(_) => dir::READDIR_FLAGS,
        A::Readlink => dir::READLINK_FLAGS,
        A::Create(_) => dir::CREATE_FLAGS,
        A::Remove(_) => dir::REMOVE_FLAGS,
        A::Rename(_) => dir::RENAME_FLAGS,
        A::Link(_) => dir::LINK_FLAGS,
        A::Read(_) => io::READ_FLAGS,
        A::Write(_) => io::WRITE_FLAGS,
        A::Commit(_) => io::COMMIT_FLAGS,
        A::Open(_) => open::OPEN_FLAGS,
        A::Close(_) => open::CLOSE_FLAGS,
        A::OpenDowngrade(_) => open::OPEN_DOWNGRADE_FLAGS,
        A::TestStateid(_) => open::TEST_STATEID_FLAGS,
        A::FreeStateid(_) => open::FREE_STATEID_FLAGS,
        A::Delegreturn(_) => open::DELEGRETURN_FLAGS,
        A::Delegpurge(_) => open::DELEGPURGE_FLAGS,
        A::Lock(_) => lock::LOCK_FLAGS,
        A::Lockt(_) => lock::LOCKT_FLAGS,
        A::Locku(_) => lock::LOCKU_FLAGS,
        A::Openattr(_)
        | A::GetDirDelegation(_)
        | A::Getdeviceinfo(_)
        | A::Getdevicelist(_)
        | A::Layoutcommit(_)
        | A::Layoutget(_)
        | A::Layoutreturn(_)
        | A::SetSsv(_)
        | A::WantDelegation(_) => NOT_OFFERED_FLAGS,
    }
}

/// Runs one op. SEQUENCE as the first op is the COMPOUND loop's; here it can only be misplaced,
/// which the loop reports before calling this.
pub async fn execute<S: Store>(cx: &mut Ctx<'_, S>, op: &NfsArgOp4) -> NfsResOp4 {
    use NfsArgOp4 as A;
    use NfsResOp4 as R;
    match op {
        A::Sequence(_) => R::Sequence(Err(Nfsstat4::SequencePos)),
        A::ExchangeId(a) => R::ExchangeId(session::exchange_id(cx, a)),
        A::CreateSession(a) => R::CreateSession(session::create_session(cx, a)),
        A::DestroySession(a) => R::DestroySession(status(session::destroy_session(cx, a))),
        A::DestroyClientid(a) => R::DestroyClientid(status(session::destroy_clientid(cx, *a))),
        A::BindConnToSession(a) => R::BindConnToSession(session::bind_conn(cx, a)),
        A::BackchannelCtl(_) => R::BackchannelCtl(Nfsstat4::Ok),
        A::ReclaimComplete(a) => R::ReclaimComplete(status(session::reclaim_complete(cx, *a))),
        A::SecinfoNoName(a) => R::SecinfoNoName(session::secinfo_no_name(cx, *a)),
        A::Secinfo(a) => R::Secinfo(session::secinfo(cx, a).await),
        A::Putfh(a) => R::Putfh(status(fh::putfh(cx, a))),
        A::Putrootfh => R::Putrootfh(status(fh::putrootfh(cx))),
        A::Putpubfh => R::Putpubfh(status(fh::putrootfh(cx))),
        A::Getfh => R::Getfh(cx.cur().map(|c| c.fh.clone())),
        A::Savefh => R::Savefh(status(fh::savefh(cx))),
        A::Restorefh => R::Restorefh(status(fh::restorefh(cx))),
        A::Lookup(a) => R::Lookup(status(fh::lookup(cx, a).await)),
        A::Lookupp => R::Lookupp(status(fh::lookupp(cx).await)),
        A::Getattr(a) => R::Getattr(attr::getattr(cx, a).await),
        A::Setattr(a) => R::Setattr(attr::setattr(cx, a).await),
        A::Verify(a) => R::Verify(status(attr::verify(cx, a, true).await)),
        A::Nverify(a) => R::Nverify(status(attr::verify(cx, a, false).await)),
        A::Access(a) => R::Access(attr::access(cx, *a).await),
        A::Readdir(a) => R::Readdir(dir::readdir(cx, a).await),
        A::Readlink => R::Readlink(dir::readlink(cx).await),
        A::Create(a) => R::Create(dir::create(cx, a).await),
        A::Remove(a) => R::Remove(dir::remove(cx, a).await),
        A::Rename(a) => R::Rename(dir::rename(cx, a).await),
        A::Link(a) => R::Link(dir::link(cx, a).await),
        A::Read(a) => R::Read(io::read(cx, a).await),
        A::Write(a) => R::Write(io::write(cx, a).await),
        A::Commit(a) => R::Commit(io::commit(cx, a).await),
        A::Open(a) => R::Open(open::open(cx, a).await),
        A::Close(a) => R::Close(open::close(cx, a)),
        A::OpenDowngrade(a) => R::OpenDowngrade(open::open_downgrade(cx, a)),
        A::TestStateid(a) => R::TestStateid(Ok(open::test_stateid(cx, a))),
        A::FreeStateid(a) => R::FreeStateid(status(open::free_stateid(cx, a))),
        A::Delegreturn(a) => R::Delegreturn(status(open::delegreturn(cx, a))),
        // §18.5.3: without CLAIM_DELEGATE_PREV support, NFS4ERR_NOTSUPP.
        A::Delegpurge(_) => R::Delegpurge(Nfsstat4::NotSupp),
        A::Lock(a) => R::Lock(lock::lock(cx, a)),
        A::Lockt(a) => R::Lockt(lock::lockt(cx, a)),
        A::Locku(a) => R::Locku(lock::locku(cx, a)),
        // Named attributes are not offered (§18.17.3).
        A::Openattr(_) => R::Openattr(Nfsstat4::NotSupp),
        // Directory delegations (§18.39.3) and delegations on demand (§18.49.3): not offered.
        A::GetDirDelegation(_) => R::GetDirDelegation(Err(Nfsstat4::NotSupp)),
        A::WantDelegation(_) => R::WantDelegation(Err(Nfsstat4::NotSupp)),
        // pNFS (§12): no layouts, so every pNFS op is NFS4ERR_NOTSUPP.
        A::Getdeviceinfo(_) => R::Getdeviceinfo(Getdeviceinfo4Res::Fail(Nfsstat4::NotSupp)),
        A::Getdevicelist(_) => R::Getdevicelist(Err(Nfsstat4::NotSupp)),
        A::Layoutcommit(_) => R::Layoutcommit(Err(Nfsstat4::NotSupp)),
        A::Layoutget(_) => R::Layoutget(Layoutget4Res::Fail(Nfsstat4::NotSupp)),
        A::Layoutreturn(_) => R::Layoutreturn(Err(Nfsstat4::NotSupp)),
        // SET_SSV only means something under SP4_SSV, which EXCHANGE_ID never grants.
        A::SetSsv(_) => R::SetSsv(Err(Nfsstat4::Inval)),
    }
}

fn status(r: Result<(), Nfsstat4>) -> Nfsstat4 {
    match r {
        Ok(()) => Nfsstat4::Ok,
        Err(s) => s,
    }
}

/// The caller's principal as RFC 8881 §18.35.4 compares it: the flavor and, for AUTH_SYS,
/// the uid.
pub fn principal(req: &crate::server::Request) -> String {
    match &req.credential {
        nfs_proto::rpc::Credential::Sys(s) => format!("sys:{}", s.uid),
        nfs_proto::rpc::Credential::None => "none".to_string(),
    }
}

/// A store error as a status, logging media errors.
pub fn store_err(e: backend::Error) -> Nfsstat4 {
    if let backend::Error::Io(msg) = &e {
        tracing::warn!("store I/O error: {msg}");
    }
    crate::error::to_nfsstat4(&e)
}

/// Checks a component4 (§14.2): not empty, UTF-8, not "." or "..", no '/' or NUL, and within
/// the store's name length.
pub fn check_name(name: &Component4) -> Result<&[u8], Nfsstat4> {
    let b: &[u8] = &name.0;
    if b.is_empty() {
        return Err(Nfsstat4::Inval);
    }
    if b.len() > backend::NAME_LEN_MAX {
        return Err(Nfsstat4::NameTooLong);
    }
    if std::str::from_utf8(b).is_err() {
        return Err(Nfsstat4::Inval);
    }
    if b == b"." || b == b".." {
        return Err(Nfsstat4::BadName);
    }
    if b.iter().any(|&c| c == b'/' || c == 0) {
        return Err(Nfsstat4::BadChar);
    }
    Ok(b)
}

/// The current filehandle, which the op will change: refused on a read-only export.
pub fn writable<'a, S>(cx: &'a Ctx<'_, S>) -> Result<&'a CurFh, Nfsstat4> {
    let c = cx.cur()?;
    if c.read_only {
        return Err(Nfsstat4::Rofs);
    }
    Ok(c)
}

/// change_info4 from the change attribute before and after (not atomic: another client could
/// have changed the directory between the two reads).
pub fn cinfo(before: u64, after: u64) -> ChangeInfo4 {
    ChangeInfo4 {
        atomic: false,
        before,
        after,
    }
}

/// The directory's change attribute now (for change_info4's "before").
pub async fn change_of<S: Store>(cx: &Ctx<'_, S>, id: backend::FileId) -> Result<u64, Nfsstat4> {
    cx.server
        .store
        .getattr(id)
        .await
        .map(|a| a.change)
        .map_err(store_err)
}

/// Makes `id` in the export of `like` the current filehandle.
pub fn set_cur<S: Store>(cx: &mut Ctx<'_, S>, like: &CurFh, id: backend::FileId) {
    let fh = cx.server.fh(like.export.id, id);
    cx.cur = Some(CurFh {
        fh: NfsFh4(fh.0),
        export: like.export.clone(),
        id,
        cred: like.cred.clone(),
        read_only: like.read_only,
        pseudo: None,
    });
}
