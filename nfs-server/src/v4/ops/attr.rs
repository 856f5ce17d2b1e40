//! Attribute ops (RFC 8881 §18.1, §18.7, §18.15, §18.30, §18.31): ACCESS, GETATTR, SETATTR,
//! VERIFY, NVERIFY.

use backend::{AccessMask, Attr, FileType, Store};
use nfs_proto::v4::*;

use super::{store_err, writable, OpFlags};
use crate::v4::attrs;
use crate::v4::compound::{Ctx, CurFh};

pub const ACCESS_FLAGS: OpFlags = OpFlags {
    pseudo_ok: true,
    ..OpFlags::FH
};
pub const GETATTR_FLAGS: OpFlags = OpFlags {
    reply_max: 4096,
    pseudo_ok: true,
    ..OpFlags::FH
};
pub const SETATTR_FLAGS: OpFlags = OpFlags {
    reply_max: 64,
    ..OpFlags::FH_MODIFY
};
pub const VERIFY_FLAGS: OpFlags = OpFlags {
    pseudo_ok: true,
    ..OpFlags::FH
};

/// Encodes the attributes in `req` of the object `id` (under the export of `c`).
pub async fn fattr<S: Store>(
    cx: &Ctx<'_, S>,
    c: &CurFh,
    a: &Attr,
    fh: &[u8],
    req: &Bitmap4,
) -> Result<Fattr4, Nfsstat4> {
    let fsstat = if attrs::needs_fsstat(req) && c.pseudo.is_none() {
        Some(cx.server.store.fsstat(a.id).await.map_err(store_err)?)
    } else {
        None
    };
    let lease_secs = cx.nfs4.lease.as_secs() as u32;
    Ok(attrs::encode(
        a,
        req,
        &attrs::Context {
            export_id: c.export.id,
            fh,
            lease_secs,
            fsstat,
            rdattr_error: Nfsstat4::Ok,
            idmap: &cx.server.state.idmap,
        },
    ))
}

pub async fn getattr<S: Store>(cx: &mut Ctx<'_, S>, req: &Bitmap4) -> Res<Fattr4> {
    let c = cx.cur()?.clone();
    let a = if c.pseudo.is_some() {
        super::pseudo::attr(&c)
    } else {
        cx.server.store.getattr(c.id).await.map_err(store_err)?
    };
    fattr(cx, &c, &a, &c.fh.0, req).await
}

/// SETATTR (§18.30). Setting the size needs a stateid that allows writing (or a special one
/// when no other open denies writing); the other attributes ignore the stateid.
pub async fn setattr<S: Store>(cx: &mut Ctx<'_, S>, a: &Setattr4Args) -> Setattr4Res {
    match setattr_inner(cx, a).await {
        Ok(attrsset) => Setattr4Res {
            status: Nfsstat4::Ok,
            attrsset,
        },
        Err(status) => Setattr4Res {
            status,
            attrsset: Bitmap4::new(),
        },
    }
}

async fn setattr_inner<S: Store>(
    cx: &mut Ctx<'_, S>,
    a: &Setattr4Args,
) -> Result<Bitmap4, Nfsstat4> {
    let c = writable(cx)?.clone();
    let (sa, set) = attrs::decode_settable(&a.obj_attributes, &cx.server.state.idmap)?;
    if sa.size.is_some() {
        let attr = cx.server.store.getattr(c.id).await.map_err(store_err)?;
        match attr.file_type {
            FileType::Regular => {}
            FileType::Directory => return Err(Nfsstat4::IsDir),
            _ => return Err(Nfsstat4::Inval),
        }
        let sid = cx.stateid(&a.stateid)?;
        super::io::check_io_stateid(cx, &sid, c.id, open4::SHARE_ACCESS_WRITE)?;
    }
    if set.is_empty() {
        return Ok(set);
    }
    cx.server
        .store
        .setattr(&c.cred, c.id, sa, None)
        .await
        .map_err(store_err)?;
    Ok(set)
}

/// VERIFY (`same` true) and NVERIFY (§18.31, §18.15): compare the client's attribute values
/// with the encoding of ours.
pub async fn verify<S: Store>(cx: &mut Ctx<'_, S>, f: &Fattr4, same: bool) -> Result<(), Nfsstat4> {
    for bit in f.attrmask.iter() {
        if bit == attr4::RDATTR_ERROR {
            return Err(Nfsstat4::Inval);
        }
        if !attrs::SUPPORTED.contains(&bit) {
            return Err(Nfsstat4::AttrNotSupp);
        }
    }
    let ours = getattr(cx, &f.attrmask).await?;
    let equal = ours.attr_vals == f.attr_vals;
    match (equal, same) {
        (true, true) | (false, false) => Ok(()),
        (false, true) => Err(Nfsstat4::NotSame),
        (true, false) => Err(Nfsstat4::Same),
    }
}

/// ACCESS (§18.1): the rights of the squashed credentials; no write rights on a read-only
/// export.
pub async fn access<S: Store>(cx: &mut Ctx<'_, S>, asked: u32) -> Res<Access4ResOk> {
    let c = cx.cur()?.clone();
    if c.pseudo.is_some() {
        return Ok(Access4ResOk {
            supported: asked & 0x3f,
            access: asked & (AccessMask::READ | AccessMask::LOOKUP | AccessMask::EXECUTE),
        });
    }
    let mut mask = asked & 0x3f;
    if c.read_only {
        mask &= !(AccessMask::MODIFY | AccessMask::EXTEND | AccessMask::DELETE);
    }
    let (got, _) = cx
        .server
        .store
        .access(&c.cred, c.id, AccessMask(mask))
        .await
        .map_err(store_err)?;
    Ok(Access4ResOk {
        supported: asked & 0x3f,
        access: got.0 & mask,
    })
}
