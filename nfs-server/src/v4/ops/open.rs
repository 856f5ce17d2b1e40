//! Open state (RFC 8881 §18.16, §18.2, §18.18, §18.48, §18.38, §18.6): OPEN, CLOSE,
//! OPEN_DOWNGRADE, TEST_STATEID, FREE_STATEID, DELEGRETURN. Delegations are never granted.

use backend::{AccessMask, CreateMode, FileType, NodeKind, SetAttr, Store};
use nfs_proto::v4::*;

use super::{check_name, cinfo, set_cur, store_err, OpFlags};
use crate::v4::attrs;
use crate::v4::compound::{Ctx, CurFh};

/// OPEN sets the current filehandle to the file and the current stateid to the open's.
pub const OPEN_FLAGS: OpFlags = OpFlags {
    sets_fh: true,
    ..OpFlags::FH_MODIFY
};
pub const CLOSE_FLAGS: OpFlags = OpFlags::FH_MODIFY;
pub const OPEN_DOWNGRADE_FLAGS: OpFlags = OpFlags::FH_MODIFY;
pub const TEST_STATEID_FLAGS: OpFlags = OpFlags {
    reply_max: 8 + 4 * nfs_proto::limits::TEST_STATEIDS_MAX as usize,
    ..OpFlags::PLAIN
};
pub const FREE_STATEID_FLAGS: OpFlags = OpFlags {
    modifies: true,
    ..OpFlags::PLAIN
};
pub const DELEGRETURN_FLAGS: OpFlags = OpFlags::FH;
pub const DELEGPURGE_FLAGS: OpFlags = OpFlags::PLAIN;

/// OPEN (§18.16). Claims: CLAIM_NULL (by name, with or without create), CLAIM_FH, and
/// CLAIM_PREVIOUS in the grace period after a restart. No delegation is ever granted, so the
/// delegation claims name a stateid this server never issued.
pub async fn open<S: Store>(cx: &mut Ctx<'_, S>, a: &Open4Args) -> Res<Open4ResOk> {
    let clientid = cx.clientid()?;
    let access = a.share_access
        & !open4::SHARE_ACCESS_WANT_DELEG_MASK
        & !(open4::SHARE_ACCESS_WANT_SIGNAL_DELEG_WHEN_RESRC_AVAIL
            | open4::SHARE_ACCESS_WANT_PUSH_DELEG_WHEN_UNCONTENDED);
    if access == 0 || access > open4::SHARE_ACCESS_BOTH || a.share_deny > open4::SHARE_DENY_BOTH {
        return Err(Nfsstat4::Inval);
    }
    {
        let mut st = cx.nfs4.lock();
        if let OpenClaim4::Previous(_) = a.claim {
            st.may_reclaim(&mut cx.server.state.grace(), clientid, cx.now)?;
        } else {
            // §18.51.3: no new state before the client says it has reclaimed what it had,
            // nor while other clients may still reclaim (§8.4.2).
            let reclaimed = st.client(clientid).is_some_and(|c| c.reclaim_complete);
            if !reclaimed || cx.server.state.in_grace(cx.now) {
                return Err(Nfsstat4::Grace);
            }
        }
    }
    let dir = cx.cur()?.clone();
    let (file, created_cinfo, attrset) = match &a.claim {
        OpenClaim4::Null(name) => open_by_name(cx, &dir, name, a, access).await?,
        // A reclaim after a restart: the current filehandle is the file. This server never
        // granted a delegation, so none can be reclaimed.
        OpenClaim4::Previous(t) if *t != OpenDelegationType4::None => {
            return Err(Nfsstat4::ReclaimBad)
        }
        OpenClaim4::Fh | OpenClaim4::Previous(_) => {
            if a.openhow.0.is_some() {
                return Err(Nfsstat4::Inval);
            }
            let attr = cx.server.store.getattr(dir.id).await.map_err(store_err)?;
            check_type(attr.file_type)?;
            check_access(cx, &dir, access).await?;
            (dir.clone(), None, Bitmap4::new())
        }
        OpenClaim4::DelegateCur { .. } | OpenClaim4::DelegCurFh(_) => {
            return Err(Nfsstat4::BadStateid)
        }
        OpenClaim4::DelegatePrev(_) | OpenClaim4::DelegPrevFh => return Err(Nfsstat4::NotSupp),
    };
    if access & open4::SHARE_ACCESS_WRITE != 0 && file.read_only {
        return Err(Nfsstat4::Rofs);
    }
    let (stateid, purged) = {
        let mut st = cx.nfs4.lock();
        let r = st.open(
            clientid,
            &a.owner.owner.0,
            file.id,
            access,
            a.share_deny,
            cx.now,
        );
        (r, st.take_purged())
    };
    super::lock::release_clients(cx.server, &purged);
    let stateid = stateid?;
    cx.cur = Some(file);
    cx.cur_stateid = Some(stateid);
    let want = a.share_access & open4::SHARE_ACCESS_WANT_DELEG_MASK;
    let delegation = match want {
        open4::SHARE_ACCESS_WANT_NO_PREFERENCE => OpenDelegation4::None,
        open4::SHARE_ACCESS_WANT_NO_DELEG => {
            OpenDelegation4::NoneExt(OpenNoneDelegation4::Other(wnd4::NOT_WANTED))
        }
        open4::SHARE_ACCESS_WANT_CANCEL => {
            OpenDelegation4::NoneExt(OpenNoneDelegation4::Other(wnd4::CANCELLED))
        }
        _ => OpenDelegation4::NoneExt(OpenNoneDelegation4::Resource(false)),
    };
    Ok(Open4ResOk {
        stateid,
        cinfo: created_cinfo.unwrap_or_default(),
        rflags: open4::RESULT_LOCKTYPE_POSIX,
        attrset,
        delegation,
    })
}

fn check_type(t: FileType) -> Result<(), Nfsstat4> {
    match t {
        FileType::Regular => Ok(()),
        FileType::Directory => Err(Nfsstat4::IsDir),
        FileType::Symlink => Err(Nfsstat4::Symlink),
        _ => Err(Nfsstat4::WrongType),
    }
}

/// The open's access needs the matching rights on an existing file (§18.16.3).
async fn check_access<S: Store>(cx: &Ctx<'_, S>, f: &CurFh, access: u32) -> Result<(), Nfsstat4> {
    let mut mask = 0;
    if access & open4::SHARE_ACCESS_READ != 0 {
        mask |= AccessMask::READ;
    }
    if access & open4::SHARE_ACCESS_WRITE != 0 {
        mask |= AccessMask::MODIFY;
    }
    let (got, _) = cx
        .server
        .store
        .access(&f.cred, f.id, AccessMask(mask))
        .await
        .map_err(store_err)?;
    if got.0 & mask != mask {
        return Err(Nfsstat4::Access);
    }
    Ok(())
}

/// CLAIM_NULL: looks `name` up in the current directory, creating it as OPEN4_CREATE asks.
/// Returns the file, the directory's change_info4 and the attributes set.
async fn open_by_name<S: Store>(
    cx: &mut Ctx<'_, S>,
    dir: &CurFh,
    name: &Component4,
    a: &Open4Args,
    access: u32,
) -> Result<(CurFh, Option<ChangeInfo4>, Bitmap4), Nfsstat4> {
    let name = check_name(name)?;
    let store = &cx.server.store;
    let dattr = store.getattr(dir.id).await.map_err(store_err)?;
    if dattr.file_type != FileType::Directory {
        return Err(super::fh::not_dir(dattr.file_type));
    }
    let existing = match store.lookup(&dir.cred, dir.id, name).await {
        Ok(a) => Some(a),
        Err(backend::Error::NotFound) => None,
        Err(e) => return Err(store_err(e)),
    };
    let Some(how) = &a.openhow.0 else {
        let attr = existing.ok_or(Nfsstat4::NoEnt)?;
        check_type(attr.file_type)?;
        set_cur(cx, dir, attr.id);
        let f = cx.cur.clone().expect("just set");
        check_access(cx, &f, access).await?;
        return Ok((f, Some(cinfo(dattr.change, dattr.change)), Bitmap4::new()));
    };
    if dir.read_only {
        return Err(Nfsstat4::Rofs);
    }
    let (mode, sa, attrset) = match how {
        CreateHow4::Unchecked(f) => {
            let (sa, set) = attrs::decode_settable(f, &cx.server.state.idmap)?;
            (CreateMode::Unchecked, sa, set)
        }
        CreateHow4::Guarded(f) => {
            let (sa, set) = attrs::decode_settable(f, &cx.server.state.idmap)?;
            (CreateMode::Guarded, sa, set)
        }
        CreateHow4::Exclusive(v) => (
            CreateMode::Exclusive(*v),
            SetAttr::default(),
            Bitmap4::new(),
        ),
        CreateHow4::Exclusive41 { verifier, attrs: f } => {
            let (sa, set) = attrs::decode_settable(f, &cx.server.state.idmap)?;
            if set.iter().any(|b| !attrs::EXCLCREAT.contains(&b)) {
                return Err(Nfsstat4::Inval);
            }
            (CreateMode::Exclusive(*verifier), sa, set)
        }
    };
    if let Some(e) = &existing {
        check_type(e.file_type)?;
        if mode == CreateMode::Guarded {
            return Err(Nfsstat4::Exist);
        }
    }
    // EXCLUSIVE4_1's attributes go in with the create: a SETATTR afterwards would clear the
    // stored verifier, and a retried OPEN would then fail with NFS4ERR_EXIST.
    let (attr, wcc) = store
        .create(&dir.cred, dir.id, name, NodeKind::Regular, sa, mode)
        .await
        .map_err(store_err)?;
    check_type(attr.file_type)?;
    set_cur(cx, dir, attr.id);
    let f = cx.cur.clone().expect("just set");
    if existing.is_some() {
        check_access(cx, &f, access).await?;
    }
    let before = dattr.change;
    let after = if existing.is_some() {
        before
    } else {
        wcc.after.change
    };
    Ok((f, Some(cinfo(before, after)), attrset))
}

pub fn close<S>(cx: &mut Ctx<'_, S>, a: &Close4Args) -> Res<Stateid4> {
    let clientid = cx.clientid()?;
    let file = cx.cur()?.id;
    let sid = cx.stateid(&a.open_stateid)?;
    let locks = cx.nfs4.lock().close(clientid, &sid, file)?;
    super::lock::release(cx.server, &locks);
    // §18.2.4: the stateid returned is meaningless; knfsd returns this invalid one too.
    Ok(Stateid4::INVALID)
}

pub fn open_downgrade<S>(cx: &mut Ctx<'_, S>, a: &OpenDowngrade4Args) -> Res<Stateid4> {
    let clientid = cx.clientid()?;
    let file = cx.cur()?.id;
    let sid = cx.stateid(&a.open_stateid)?;
    let access = a.share_access & !open4::SHARE_ACCESS_WANT_DELEG_MASK;
    if access == 0 || access > open4::SHARE_ACCESS_BOTH || a.share_deny > open4::SHARE_DENY_BOTH {
        return Err(Nfsstat4::Inval);
    }
    let s = cx
        .nfs4
        .lock()
        .downgrade(clientid, &sid, file, access, a.share_deny)?;
    cx.cur_stateid = Some(s);
    Ok(s)
}

/// TEST_STATEID (§18.48): one status per stateid, for this client's stateids.
pub fn test_stateid<S>(cx: &mut Ctx<'_, S>, a: &TestStateid4Args) -> StatusList4 {
    let clientid = cx.clientid().unwrap_or(0);
    let st = cx.nfs4.lock();
    StatusList4(
        a.stateids
            .iter()
            .map(|sid| match st.lookup_stateid(sid) {
                Ok(e) if e.clientid == clientid => Nfsstat4::Ok,
                Ok(_) => Nfsstat4::BadStateid,
                Err(s) => s,
            })
            .collect(),
    )
}

/// FREE_STATEID (§18.38). A lock stateid whose owner still holds locks is NFS4ERR_LOCKS_HELD.
pub fn free_stateid<S>(cx: &mut Ctx<'_, S>, sid: &Stateid4) -> Result<(), Nfsstat4> {
    let clientid = cx.clientid()?;
    let sid = cx.stateid(sid)?;
    let mut st = cx.nfs4.lock();
    if let Ok(e) = st.lookup_stateid(&sid) {
        if super::lock::holds_locks(cx.server, e) {
            return Err(Nfsstat4::LocksHeld);
        }
    }
    st.free_stateid(clientid, &sid).map(|_| ())
}

/// DELEGRETURN (§18.6): no delegation is ever granted, so no stateid names one.
pub fn delegreturn<S>(cx: &mut Ctx<'_, S>, sid: &Stateid4) -> Result<(), Nfsstat4> {
    let sid = cx.stateid(sid)?;
    let st = cx.nfs4.lock();
    st.lookup_stateid(&sid)?;
    Err(Nfsstat4::BadStateid)
}
