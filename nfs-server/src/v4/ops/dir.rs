//! Directory ops (RFC 8881 §18.4, §18.9, §18.23-§18.26): READDIR, READLINK, CREATE, REMOVE,
//! RENAME, LINK.

use backend::{CreateMode, NodeKind, Store};
use bytes::Bytes;
use nfs_proto::v4::*;

use super::{change_of, check_name, cinfo, set_cur, store_err, writable, OpFlags};
use crate::v4::attrs;
use crate::v4::compound::Ctx;

pub const READDIR_FLAGS: OpFlags = OpFlags {
    pseudo_ok: true,
    ..OpFlags::FH
};
pub const READLINK_FLAGS: OpFlags = OpFlags {
    reply_max: 8 + backend::PATH_LEN_MAX,
    ..OpFlags::FH
};
pub const CREATE_FLAGS: OpFlags = OpFlags {
    sets_fh: true,
    ..OpFlags::FH_MODIFY
};
pub const REMOVE_FLAGS: OpFlags = OpFlags::FH_MODIFY;
pub const RENAME_FLAGS: OpFlags = OpFlags::FH_MODIFY;
pub const LINK_FLAGS: OpFlags = OpFlags::FH_MODIFY;

/// Wire cookies 1 and 2 are reserved (§18.23.3); store cookie c is wire cookie c + 2, as in v3.
const RESERVED_COOKIES: u64 = 2;

pub async fn readdir<S: Store>(cx: &mut Ctx<'_, S>, a: &Readdir4Args) -> Res<Readdir4ResOk> {
    let c = cx.cur()?.clone();
    if a.cookie == 1 || a.cookie == 2 {
        return Err(Nfsstat4::BadCookie);
    }
    if c.pseudo.is_some() {
        return super::pseudo::readdir(cx, &c, a).await;
    }
    if a.cookie != 0 && a.cookieverf != crate::v3::COOKIE_VERIFIER && a.cookieverf != [0; 8] {
        return Err(Nfsstat4::NotSame);
    }
    // status, cookieverf, the final "no more entries" and eof words.
    let overhead = 4 + 8 + 4 + 4;
    let maxcount = (a.maxcount as usize).min(cx.reply_room);
    if maxcount < overhead + 32 {
        return Err(Nfsstat4::TooSmall);
    }
    let want = ((maxcount - overhead) / 32).clamp(1, 4096);
    let store_cookie = a.cookie.saturating_sub(RESERVED_COOKIES);
    let page = match cx
        .server
        .store
        .readdir(&c.cred, c.id, store_cookie, want, true)
        .await
    {
        Ok(p) => p,
        Err(backend::Error::NotDir) => {
            let attr = cx.server.store.getattr(c.id).await.map_err(store_err)?;
            return Err(super::fh::not_dir(attr.file_type));
        }
        Err(e) => return Err(store_err(e)),
    };
    let fsstat = if attrs::needs_fsstat(&a.attr_request) {
        Some(cx.server.store.fsstat(c.id).await.map_err(store_err)?)
    } else {
        None
    };
    let total = page.entries.len();
    let mut used = overhead;
    let mut entries = Vec::new();
    for e in page.entries {
        let attr = match e.attr {
            Some(a) => Ok(a),
            None => cx.server.store.getattr(e.id).await,
        };
        let fh = cx.server.fh(c.export.id, e.id);
        let attrs = match attr {
            Ok(at) => attrs::encode(
                &at,
                &a.attr_request,
                &attrs::Context {
                    export_id: c.export.id,
                    fh: &fh.0,
                    lease_secs: cx.nfs4.lease.as_secs() as u32,
                    fsstat,
                    rdattr_error: Nfsstat4::Ok,
                    idmap: &cx.server.state.idmap,
                },
            ),
            // Removed since the listing: say so in rdattr_error if the client asked for it.
            Err(err) if a.attr_request.contains(attr4::RDATTR_ERROR) => {
                let mut w = FattrWriter::new();
                w.attr(attr4::RDATTR_ERROR, |w| {
                    w.u32(crate::error::to_nfsstat4(&err) as u32)
                });
                w.finish()
            }
            Err(err) => return Err(store_err(err)),
        };
        let entry = Entry4 {
            cookie: e.cookie + RESERVED_COOKIES,
            name: Component4(Bytes::from(e.name)),
            attrs,
        };
        let len = entry.encoded_len();
        if used + len > maxcount {
            break;
        }
        used += len;
        entries.push(entry);
    }
    if entries.is_empty() && total > 0 {
        return Err(Nfsstat4::TooSmall);
    }
    let eof = page.eof && entries.len() == total;
    Ok(Readdir4ResOk {
        cookieverf: crate::v3::COOKIE_VERIFIER,
        entries,
        eof,
    })
}

pub async fn readlink<S: Store>(cx: &mut Ctx<'_, S>) -> Res<LinkText4> {
    let c = cx.cur()?.clone();
    match cx.server.store.readlink(&c.cred, c.id).await {
        Ok((target, _)) => Ok(LinkText4(Bytes::from(target))),
        Err(e) => Err(store_err(e)),
    }
}

/// CREATE (§18.4): directories, symlinks and special files; regular files are OPEN's.
pub async fn create<S: Store>(cx: &mut Ctx<'_, S>, a: &Create4Args) -> Res<Create4ResOk> {
    let c = writable(cx)?.clone();
    let kind = match &a.objtype {
        CreateType4::Lnk(t) => {
            if t.0.is_empty() {
                return Err(Nfsstat4::Inval);
            }
            NodeKind::Symlink {
                target: t.0.to_vec(),
            }
        }
        CreateType4::Dir => NodeKind::Directory,
        CreateType4::Blk(d) => NodeKind::BlockDevice {
            rdev: (d.specdata1, d.specdata2),
        },
        CreateType4::Chr(d) => NodeKind::CharDevice {
            rdev: (d.specdata1, d.specdata2),
        },
        CreateType4::Sock => NodeKind::Socket,
        CreateType4::Fifo => NodeKind::Fifo,
        CreateType4::Other(_) => return Err(Nfsstat4::BadType),
    };
    let name = check_name(&a.objname)?;
    let (sa, attrset) = attrs::decode_settable(&a.createattrs, &cx.server.state.idmap)?;
    let before = change_of(cx, c.id).await?;
    let (attr, wcc) = cx
        .server
        .store
        .create(&c.cred, c.id, name, kind, sa, CreateMode::Guarded)
        .await
        .map_err(store_err)?;
    set_cur(cx, &c, attr.id);
    Ok(Create4ResOk {
        cinfo: cinfo(before, wcc.after.change),
        attrset,
    })
}

pub async fn remove<S: Store>(cx: &mut Ctx<'_, S>, name: &Component4) -> Res<ChangeInfo4> {
    let c = writable(cx)?.clone();
    let name = check_name(name)?;
    let before = change_of(cx, c.id).await?;
    let store = &cx.server.store;
    let wcc = match store.remove(&c.cred, c.id, name).await {
        Err(backend::Error::IsDir) => store.rmdir(&c.cred, c.id, name).await,
        r => r,
    }
    .map_err(store_err)?;
    Ok(cinfo(before, wcc.after.change))
}

/// RENAME: the saved filehandle is the source directory, the current one the target.
pub async fn rename<S: Store>(cx: &mut Ctx<'_, S>, a: &Rename4Args) -> Res<Rename4ResOk> {
    let to = writable(cx)?.clone();
    let from = cx.saved.clone().ok_or(Nfsstat4::NoFileHandle)?;
    let old = check_name(&a.oldname)?;
    let new = check_name(&a.newname)?;
    if from.export.id != to.export.id {
        return Err(Nfsstat4::Xdev);
    }
    let fb = change_of(cx, from.id).await?;
    let tb = change_of(cx, to.id).await?;
    let (fw, tw) = cx
        .server
        .store
        .rename(&from.cred, from.id, old, to.id, new)
        .await
        .map_err(store_err)?;
    // Within one directory both wcc describe it; report its final change value for both.
    let (fa, ta) = if from.id == to.id {
        let last = fw.after.change.max(tw.after.change);
        (last, last)
    } else {
        (fw.after.change, tw.after.change)
    };
    Ok(Rename4ResOk {
        source_cinfo: cinfo(fb, fa),
        target_cinfo: cinfo(tb, ta),
    })
}

/// LINK: the saved filehandle is the file, the current one the directory.
pub async fn link<S: Store>(cx: &mut Ctx<'_, S>, name: &Component4) -> Res<ChangeInfo4> {
    let dir = writable(cx)?.clone();
    let file = cx.saved.clone().ok_or(Nfsstat4::NoFileHandle)?;
    let name = check_name(name)?;
    if file.export.id != dir.export.id {
        return Err(Nfsstat4::Xdev);
    }
    let before = change_of(cx, dir.id).await?;
    let (_, wcc) = cx
        .server
        .store
        .link(&dir.cred, file.id, dir.id, name)
        .await
        .map_err(|e| match e {
            backend::Error::IsDir => Nfsstat4::IsDir,
            e => store_err(e),
        })?;
    Ok(cinfo(before, wcc.after.change))
}
