//! READ, WRITE and COMMIT (RFC 8881 §18.22, §18.32, §18.3), with the stateid checks of §8.2.

use std::sync::atomic::Ordering;

use backend::{FileId, FileType, Stability, Store};
use nfs_proto::limits::IO_SIZE_MAX;
use nfs_proto::v4::*;

use super::{store_err, writable, OpFlags};
use crate::v4::compound::Ctx;

/// READ's reply may carry up to a full I/O size.
pub const READ_FLAGS: OpFlags = OpFlags {
    reply_max: 16 + IO_SIZE_MAX as usize,
    pacing: super::OpPacing::ReadCount,
    ..OpFlags::FH
};
pub const WRITE_FLAGS: OpFlags = OpFlags {
    reply_max: 32,
    pacing: super::OpPacing::WritesRecord,
    ..OpFlags::FH_MODIFY
};
pub const COMMIT_FLAGS: OpFlags = OpFlags {
    reply_max: 16,
    ..OpFlags::FH_MODIFY
};

/// Checks the stateid of an I/O on `file` that needs `access` (OPEN4_SHARE_ACCESS_*):
/// * the anonymous stateid, and for reads the READ_BYPASS one, stand for "no open"; they are
///   refused with NFS4ERR_LOCKED when another open denies that access (§9.1.4.4);
/// * any other stateid must be this client's open or lock stateid for this file, current or
///   with seqid 0; writing needs an open for writing (NFS4ERR_OPENMODE). Reading through a
///   write-only open is allowed, as clients fill their page cache that way.
pub fn check_io_stateid<S>(
    cx: &Ctx<'_, S>,
    sid: &Stateid4,
    file: FileId,
    access: u32,
) -> Result<(), Nfsstat4> {
    let st = cx.nfs4.lock();
    if *sid == Stateid4::READ_BYPASS {
        return if access == open4::SHARE_ACCESS_READ {
            Ok(())
        } else {
            Err(Nfsstat4::BadStateid)
        };
    }
    if *sid == Stateid4::ANONYMOUS {
        return if st.denied(file, access) {
            Err(Nfsstat4::Locked)
        } else {
            Ok(())
        };
    }
    let clientid = cx.clientid()?;
    let e = st.check_stateid(clientid, sid, file)?;
    if access == open4::SHARE_ACCESS_WRITE && st.access_of(e) & open4::SHARE_ACCESS_WRITE == 0 {
        return Err(Nfsstat4::OpenMode);
    }
    Ok(())
}

/// The error for I/O on a non-regular file.
fn not_regular(t: FileType) -> Nfsstat4 {
    match t {
        FileType::Directory => Nfsstat4::IsDir,
        FileType::Symlink => Nfsstat4::Symlink,
        _ => Nfsstat4::Inval,
    }
}

pub async fn read<S: Store>(cx: &mut Ctx<'_, S>, a: &Read4Args) -> Res<Read4ResOk> {
    let c = cx.cur()?.clone();
    let sid = cx.stateid(&a.stateid)?;
    check_io_stateid(cx, &sid, c.id, open4::SHARE_ACCESS_READ)?;
    // Leave room in the reply for the READ result's own words.
    let count = a
        .count
        .min(IO_SIZE_MAX)
        .min(cx.reply_room.saturating_sub(16) as u32);
    let r = match cx.server.store.read(&c.cred, c.id, a.offset, count).await {
        Ok(r) => r,
        Err(e) => return Err(store_err(e)),
    };
    if r.attr.file_type != FileType::Regular {
        return Err(not_regular(r.attr.file_type));
    }
    cx.server
        .bytes_read
        .fetch_add(r.data.len() as u64, Ordering::Relaxed);
    Ok(Read4ResOk {
        eof: r.eof,
        data: r.data,
    })
}

pub async fn write<S: Store>(cx: &mut Ctx<'_, S>, a: &Write4Args) -> Res<Write4ResOk> {
    let c = writable(cx)?.clone();
    let sid = cx.stateid(&a.stateid)?;
    check_io_stateid(cx, &sid, c.id, open4::SHARE_ACCESS_WRITE)?;
    let stability = match a.stable {
        StableHow4::Unstable => Stability::Unstable,
        StableHow4::DataSync => Stability::DataSync,
        StableHow4::FileSync => Stability::FileSync,
    };
    let w = match cx
        .server
        .store
        .write(&c.cred, c.id, a.offset, a.data.clone(), stability)
        .await
    {
        Ok(w) => w,
        Err(e) => return Err(store_err(e)),
    };
    cx.server
        .bytes_written
        .fetch_add(u64::from(w.count), Ordering::Relaxed);
    Ok(Write4ResOk {
        count: w.count,
        committed: match w.committed {
            Stability::Unstable => StableHow4::Unstable,
            Stability::DataSync => StableHow4::DataSync,
            Stability::FileSync => StableHow4::FileSync,
        },
        writeverf: cx.server.store.write_verifier(),
    })
}

pub async fn commit<S: Store>(cx: &mut Ctx<'_, S>, a: &Commit4Args) -> Res<Verifier4> {
    let c = cx.cur()?.clone();
    let attr = cx.server.store.getattr(c.id).await.map_err(store_err)?;
    if attr.file_type != FileType::Regular {
        return Err(not_regular(attr.file_type));
    }
    cx.server
        .store
        .commit(c.id, a.offset, u64::from(a.count))
        .await
        .map_err(store_err)?;
    Ok(cx.server.store.write_verifier())
}
