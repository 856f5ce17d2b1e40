//! Byte-range locks (RFC 8881 §18.10-§18.12): LOCK, LOCKT, LOCKU, in the lock manager NFSv3's
//! NLM uses (`crate::locks`), so a v4 lock and an NLM lock on the same file conflict. Locks
//! never block: a conflict is NFS4ERR_DENIED and the client polls, as §9.6 allows.

use backend::{FileId, Store};
use bytes::Bytes;
use nfs_proto::v4::*;

use super::OpFlags;
use crate::locks::{Lock, LockKind, LockOutcome, LockOwner, LockRange};
use crate::server::Server;
use crate::state::nfs4::{StateEntry, StateKind};
use crate::v4::compound::Ctx;

pub const LOCK_FLAGS: OpFlags = OpFlags {
    reply_max: 64 + nfs_proto::limits::OPAQUE4_LEN_MAX as usize,
    ..OpFlags::FH_MODIFY
};
pub const LOCKT_FLAGS: OpFlags = OpFlags {
    reply_max: 64 + nfs_proto::limits::OPAQUE4_LEN_MAX as usize,
    ..OpFlags::FH
};
pub const LOCKU_FLAGS: OpFlags = OpFlags::FH_MODIFY;

/// The lock manager's owner for an NFSv4.1 lock-owner.
pub fn owner(clientid: Clientid4, owner: &Bytes) -> LockOwner {
    LockOwner {
        client: format!("nfs4:{clientid:016x}"),
        svid: 0,
        // Copied: held locks must not pin the received record.
        oh: Bytes::copy_from_slice(owner),
    }
}

/// offset and length as §18.10.3 defines them: length u64::MAX is "to the end"; a length of
/// zero, or a range past 2^64 - 1, is NFS4ERR_INVAL.
fn range(offset: u64, length: u64) -> Result<LockRange, Nfsstat4> {
    if length == 0 {
        return Err(Nfsstat4::Inval);
    }
    if length == u64::MAX {
        return Ok(LockRange {
            start: offset,
            end: u64::MAX,
        });
    }
    let end = offset.checked_add(length).ok_or(Nfsstat4::Inval)?;
    Ok(LockRange { start: offset, end })
}

fn kind(t: NfsLockType4) -> LockKind {
    if t.is_write() {
        LockKind::Write
    } else {
        LockKind::Read
    }
}

/// The NFSv4.1 client holding a lock, if it is one (not an NLM client).
fn holder_client(holder: &Lock) -> Option<Clientid4> {
    holder
        .owner
        .client
        .strip_prefix("nfs4:")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
}

fn denied(holder: &Lock) -> Lock4Denied {
    let length = match holder.range.end {
        u64::MAX => u64::MAX,
        end => end - holder.range.start,
    };
    let clientid = holder_client(holder).unwrap_or(0);
    Lock4Denied {
        offset: holder.range.start,
        length,
        locktype: if holder.kind == LockKind::Write {
            NfsLockType4::Write
        } else {
            NfsLockType4::Read
        },
        owner: StateOwner4 {
            clientid,
            owner: Opaque4(holder.owner.oh.clone()),
        },
    }
}

/// Whether the lock-owner behind a lock stateid still holds a lock.
pub fn holds_locks<S>(server: &Server<S>, e: &StateEntry) -> bool {
    let StateKind::Lock { owner: o, .. } = &e.kind else {
        return false;
    };
    let who = owner(e.clientid, o);
    let locks = server
        .state
        .nlm
        .locks
        .lock()
        .expect("lock manager poisoned");
    locks.locks(e.file).iter().any(|l| l.owner == who)
}

/// Releases every lock of the lock stateids in `entries` (CLOSE).
pub fn release<S>(server: &Server<S>, entries: &[StateEntry]) {
    let mut locks = server
        .state
        .nlm
        .locks
        .lock()
        .expect("lock manager poisoned");
    for e in entries {
        if let StateKind::Lock { owner: o, .. } = &e.kind {
            locks.release_owner(e.file, &owner(e.clientid, o));
        }
    }
}

/// Releases every lock of a client the state table dropped.
pub fn release_clients<S>(server: &Server<S>, clients: &[Clientid4]) {
    if clients.is_empty() {
        return;
    }
    let mut locks = server
        .state
        .nlm
        .locks
        .lock()
        .expect("lock manager poisoned");
    for c in clients {
        locks.release_client(&format!("nfs4:{c:016x}"));
    }
}

pub fn lock<S: Store>(cx: &mut Ctx<'_, S>, a: &Lock4Args) -> Lock4Res {
    match lock_inner(cx, a) {
        Ok(r) => r,
        Err(s) => Lock4Res::Fail(s),
    }
}

fn lock_inner<S: Store>(cx: &mut Ctx<'_, S>, a: &Lock4Args) -> Result<Lock4Res, Nfsstat4> {
    let clientid = cx.clientid()?;
    let file: FileId = cx.cur()?.id;
    let r = range(a.offset, a.length)?;
    let mut st = cx.nfs4.lock();
    if a.reclaim {
        st.may_reclaim(&mut cx.server.state.grace(), clientid, cx.now)?;
    } else if cx.server.state.locks_in_grace(cx.now) {
        return Err(Nfsstat4::Grace);
    }
    let (other, owner_bytes) = match &a.locker {
        Locker4::NewLockOwner(n) => {
            let open = cx.stateid(&n.open_stateid)?;
            let e = st.check_stateid(clientid, &open, file)?;
            if !matches!(e.kind, StateKind::Open { .. }) {
                return Err(Nfsstat4::BadStateid);
            }
            let ob = n.lock_owner.owner.0.clone();
            (st.lock_state(clientid, &open.other, &ob, file), ob)
        }
        Locker4::ExistingLockOwner(x) => {
            let sid = cx.stateid(&x.lock_stateid)?;
            let e = st.check_stateid(clientid, &sid, file)?;
            let StateKind::Lock { owner: o, .. } = &e.kind else {
                return Err(Nfsstat4::BadStateid);
            };
            (sid.other, o.clone())
        }
    };
    let e = st.entry(&other).expect("lock state exists").clone();
    if a.locktype.is_write() && st.access_of(&e) & open4::SHARE_ACCESS_WRITE == 0 {
        return Err(Nfsstat4::OpenMode);
    }
    let l = Lock {
        owner: owner(clientid, &owner_bytes),
        kind: kind(a.locktype),
        range: r,
    };
    let mut outcome = cx
        .server
        .state
        .nlm
        .locks
        .lock()
        .expect("lock manager poisoned")
        .lock(file, l.clone(), false);
    // A conflicting lock of a client whose lease ran out is revoked, and the lock retried
    // (courteous server, RFC 8881 §8.3). Bounded: each round revokes one client.
    for _ in 0..8 {
        let LockOutcome::Denied { holder } = &outcome else {
            break;
        };
        let Some(c) = holder_client(holder) else {
            break;
        };
        if c == clientid || !st.revoke_expired(c, cx.now) {
            break;
        }
        let purged = st.take_purged();
        release_clients(cx.server, &purged);
        outcome = cx
            .server
            .state
            .nlm
            .locks
            .lock()
            .expect("lock manager poisoned")
            .lock(file, l.clone(), false);
    }
    match outcome {
        LockOutcome::Granted => {
            let sid = st.bump(&other).expect("lock state exists");
            cx.cur_stateid = Some(sid);
            Ok(Lock4Res::Ok(sid))
        }
        LockOutcome::Denied { holder } => Ok(Lock4Res::Denied(denied(&holder))),
        LockOutcome::Deadlock => Err(Nfsstat4::Deadlock),
        // Never: the request did not ask to block.
        LockOutcome::Blocked => Err(Nfsstat4::Delay),
    }
}

pub fn lockt<S: Store>(cx: &mut Ctx<'_, S>, a: &Lockt4Args) -> Lockt4Res {
    let r = (|| {
        let clientid = cx.clientid()?;
        let file = cx.cur()?.id;
        let l = Lock {
            owner: owner(clientid, &a.owner.owner.0),
            kind: kind(a.locktype),
            range: range(a.offset, a.length)?,
        };
        let locks = cx
            .server
            .state
            .nlm
            .locks
            .lock()
            .expect("lock manager poisoned");
        Ok(match locks.test(file, &l) {
            None => Lockt4Res::Ok,
            Some(holder) => Lockt4Res::Denied(denied(&holder)),
        })
    })();
    r.unwrap_or_else(Lockt4Res::Fail)
}

pub fn locku<S: Store>(cx: &mut Ctx<'_, S>, a: &Locku4Args) -> Res<Stateid4> {
    let clientid = cx.clientid()?;
    let file = cx.cur()?.id;
    let r = range(a.offset, a.length)?;
    let sid = cx.stateid(&a.lock_stateid)?;
    let mut st = cx.nfs4.lock();
    let e = st.check_stateid(clientid, &sid, file)?;
    let StateKind::Lock { owner: o, .. } = &e.kind else {
        return Err(Nfsstat4::BadStateid);
    };
    let who = owner(clientid, o);
    // NLM waiters this unlock wakes are granted in the manager; NLM tells them on its next
    // release or poll of the file.
    let _granted = cx
        .server
        .state
        .nlm
        .locks
        .lock()
        .expect("lock manager poisoned")
        .unlock(file, &who, r);
    let sid = st.bump(&sid.other).expect("checked above");
    cx.cur_stateid = Some(sid);
    Ok(sid)
}
