//! Filehandle ops (RFC 8881 §18.19-§18.28): PUTFH, PUTROOTFH, PUTPUBFH, GETFH, SAVEFH,
//! RESTOREFH, LOOKUP, LOOKUPP. Handles are v3's (`fh.rs`): persistent, MAC-checked, bound to
//! their export.

use backend::{FileType, Store};
use nfs_proto::rpc::AuthStat;
use nfs_proto::v3::{NfsFh3, Nfsstat3};
use nfs_proto::v4::*;

use super::{check_name, set_cur, store_err, OpFlags};
use crate::v3::Failure;
use crate::v4::compound::{Ctx, CurFh};

const SETS_FH: OpFlags = OpFlags {
    sets_fh: true,
    ..OpFlags::PLAIN
};
pub const PUTFH_FLAGS: OpFlags = SETS_FH;
pub const PUTROOTFH_FLAGS: OpFlags = SETS_FH;
pub const GETFH_FLAGS: OpFlags = OpFlags {
    reply_max: 8 + nfs_proto::limits::FH4_LEN_MAX as usize,
    pseudo_ok: true,
    ..OpFlags::FH
};
pub const SAVEFH_FLAGS: OpFlags = OpFlags {
    pseudo_ok: true,
    ..OpFlags::FH
};
/// RESTOREFH restores the saved stateid with the saved filehandle itself.
pub const RESTOREFH_FLAGS: OpFlags = OpFlags::PLAIN;
pub const LOOKUP_FLAGS: OpFlags = OpFlags {
    sets_fh: true,
    pseudo_ok: true,
    ..OpFlags::FH
};
pub const LOOKUPP_FLAGS: OpFlags = LOOKUP_FLAGS;

/// Checks a handle and the client's right to use it, as v3 does.
pub fn resolve<S: Store>(cx: &Ctx<'_, S>, fh: &NfsFh4) -> Result<CurFh, Nfsstat4> {
    if let Some(p) = super::pseudo::decode(cx, fh) {
        return p;
    }
    let r = cx
        .server
        .resolve(&NfsFh3(fh.0.clone()), cx.req)
        .map_err(|f| match f {
            Failure::Status(Nfsstat3::Stale) => Nfsstat4::Stale,
            Failure::Status(_) => Nfsstat4::BadHandle,
            // No client rule of the export matches this client.
            Failure::Auth(AuthStat::TooWeak) | Failure::Auth(_) => Nfsstat4::Access,
        })?;
    Ok(CurFh {
        fh: fh.clone(),
        read_only: r.rule().read_only,
        export: r.export,
        id: r.id,
        cred: r.cred,
        pseudo: None,
    })
}

pub fn putfh<S: Store>(cx: &mut Ctx<'_, S>, fh: &NfsFh4) -> Result<(), Nfsstat4> {
    cx.cur = Some(resolve(cx, fh)?);
    Ok(())
}

/// PUTROOTFH (and PUTPUBFH): the export at "/", or the pseudo-fs root above the exports.
pub fn putrootfh<S: Store>(cx: &mut Ctx<'_, S>) -> Result<(), Nfsstat4> {
    cx.cur = Some(super::pseudo::root(cx)?);
    Ok(())
}

pub fn savefh<S>(cx: &mut Ctx<'_, S>) -> Result<(), Nfsstat4> {
    cx.saved = Some(cx.cur()?.clone());
    cx.saved_stateid = cx.cur_stateid;
    Ok(())
}

pub fn restorefh<S>(cx: &mut Ctx<'_, S>) -> Result<(), Nfsstat4> {
    cx.cur = Some(cx.saved.clone().ok_or(Nfsstat4::RestoreFh)?);
    cx.cur_stateid = cx.saved_stateid;
    Ok(())
}

/// The error for using a non-directory as a directory (§18.15.3).
pub fn not_dir(t: FileType) -> Nfsstat4 {
    match t {
        FileType::Symlink => Nfsstat4::Symlink,
        _ => Nfsstat4::NotDir,
    }
}

pub async fn lookup<S: Store>(cx: &mut Ctx<'_, S>, name: &Component4) -> Result<(), Nfsstat4> {
    let c = cx.cur()?.clone();
    let name = check_name(name)?;
    if let Some(dir) = &c.pseudo {
        let name = std::str::from_utf8(name).map_err(|_| Nfsstat4::Inval)?;
        cx.cur = Some(super::pseudo::lookup(cx, dir, name)?);
        return Ok(());
    }
    match cx.server.store.lookup(&c.cred, c.id, name).await {
        Ok(a) => {
            set_cur(cx, &c, a.id);
            Ok(())
        }
        Err(backend::Error::NotDir) => {
            let a = cx.server.store.getattr(c.id).await.map_err(store_err)?;
            Err(not_dir(a.file_type))
        }
        Err(e) => Err(store_err(e)),
    }
}

/// LOOKUPP: from an export's root to the pseudo-fs directory above it, if there is one
/// (NFS4ERR_NOENT at the top).
pub async fn lookupp<S: Store>(cx: &mut Ctx<'_, S>) -> Result<(), Nfsstat4> {
    let c = cx.cur()?.clone();
    if let Some(dir) = &c.pseudo {
        cx.cur = Some(super::pseudo::lookupp(cx, dir)?);
        return Ok(());
    }
    let a = cx.server.store.getattr(c.id).await.map_err(store_err)?;
    if a.file_type != FileType::Directory {
        return Err(not_dir(a.file_type));
    }
    if c.id == c.export.root {
        cx.cur = Some(super::pseudo::lookupp(cx, &c.export.path)?);
        return Ok(());
    }
    let p = cx
        .server
        .store
        .parent(&c.cred, c.id)
        .await
        .map_err(store_err)?;
    set_cur(cx, &c, p.id);
    Ok(())
}
