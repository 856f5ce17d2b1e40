//! The pseudo file system (RFC 8881 §7.3): read-only directories that join the exports into
//! one tree under PUTROOTFH when no export sits at "/". A pseudo directory's handle is a
//! regular MAC'd handle with export id 0 and the hash of its path as inode number, so it
//! survives restarts as long as the exports do. Its fsid is (0, 0), different from every
//! export's, so a client sees each export as a file system of its own.

use std::collections::BTreeSet;
use std::sync::Arc;

use backend::{Attr, Cred, FileId, FileType, Store, Timestamp};
use nfs_proto::v4::*;

use super::store_err;
use crate::export::{Export, ExportTable};
use crate::fh::FileHandle;
use crate::v4::compound::{Ctx, CurFh};

/// The export id of pseudo directories' handles.
pub const PSEUDO_EXPORT_ID: u32 = 0;

/// "/a/b" for any spelling of an export path ("a//b/", "/a/b").
pub fn canonical(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

fn parent(path: &str) -> Option<String> {
    if path == "/" {
        return None;
    }
    let cut = path.rfind('/').unwrap_or(0);
    Some(if cut == 0 {
        "/".to_string()
    } else {
        path[..cut].to_string()
    })
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// The pseudo directories: every proper ancestor of an export path that is not itself
/// exported. Empty when "/" is exported.
pub fn nodes(exports: &ExportTable) -> BTreeSet<String> {
    let paths: BTreeSet<String> = exports.iter().map(|e| canonical(&e.path)).collect();
    if paths.contains("/") {
        return BTreeSet::new();
    }
    let mut out = BTreeSet::new();
    for p in &paths {
        let mut cur = parent(p);
        while let Some(c) = cur {
            if !paths.contains(&c) {
                out.insert(c.clone());
            }
            cur = parent(&c);
        }
    }
    out
}

fn ino(path: &str) -> u64 {
    let h = path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    h | 1
}

/// The current filehandle for pseudo directory `path`.
fn cur_for<S: Store>(cx: &Ctx<'_, S>, path: &str) -> CurFh {
    let id = FileId {
        ino: ino(path),
        generation: 0,
    };
    let fh = cx.server.fh_key.encode(&FileHandle {
        export_id: PSEUDO_EXPORT_ID,
        id,
    });
    CurFh {
        fh: NfsFh4(bytes::Bytes::copy_from_slice(&fh)),
        export: Arc::new(Export {
            id: PSEUDO_EXPORT_ID,
            path: path.to_string(),
            root: FileId {
                ino: ino("/"),
                generation: 0,
            },
            rules: Vec::new(),
            replication: None,
        }),
        id,
        cred: Cred {
            uid: 65534,
            gid: 65534,
            groups: Vec::new(),
        },
        read_only: true,
        pseudo: Some(path.to_string()),
    }
}

/// A pseudo directory's handle, if `fh` is one: `Some(Err(STALE))` when it names a pseudo
/// directory that no longer exists.
pub fn decode<S: Store>(cx: &Ctx<'_, S>, fh: &NfsFh4) -> Option<Result<CurFh, Nfsstat4>> {
    let h = cx.server.fh_key.decode(&fh.0).ok()?;
    if h.export_id != PSEUDO_EXPORT_ID {
        return None;
    }
    let nodes = nodes(&cx.server.exports_for(cx.req));
    Some(
        nodes
            .iter()
            .find(|p| ino(p) == h.id.ino)
            .map(|p| cur_for(cx, p))
            .ok_or(Nfsstat4::Stale),
    )
}

/// PUTROOTFH: the export at "/", or the pseudo root above the exports.
pub fn root<S: Store>(cx: &Ctx<'_, S>) -> Result<CurFh, Nfsstat4> {
    let exports = cx.server.exports_for(cx.req);
    if let Some(e) = exports.by_path("/") {
        let fh = cx.server.fh(e.id, e.root);
        return super::fh::resolve(cx, &NfsFh4(fh.0));
    }
    if exports.iter().next().is_none() {
        return Err(Nfsstat4::NoEnt);
    }
    Ok(cur_for(cx, "/"))
}

/// An export's root as the current filehandle (its client rules apply).
fn export_root<S: Store>(cx: &Ctx<'_, S>, e: &Export) -> Result<CurFh, Nfsstat4> {
    let fh = cx.server.fh(e.id, e.root);
    super::fh::resolve(cx, &NfsFh4(fh.0))
}

/// LOOKUP in pseudo directory `dir`.
pub fn lookup<S: Store>(cx: &Ctx<'_, S>, dir: &str, name: &str) -> Result<CurFh, Nfsstat4> {
    let path = join(dir, name);
    let exports = cx.server.exports_for(cx.req);
    if let Some(e) = exports.iter().find(|e| canonical(&e.path) == path) {
        return export_root(cx, e);
    }
    if nodes(&exports).contains(&path) {
        return Ok(cur_for(cx, &path));
    }
    Err(Nfsstat4::NoEnt)
}

/// LOOKUPP from pseudo directory `dir`, or from the root of an export at `path`.
pub fn lookupp<S: Store>(cx: &Ctx<'_, S>, path: &str) -> Result<CurFh, Nfsstat4> {
    let p = parent(&canonical(path)).ok_or(Nfsstat4::NoEnt)?;
    if nodes(&cx.server.exports_for(cx.req)).contains(&p) {
        Ok(cur_for(cx, &p))
    } else {
        Err(Nfsstat4::NoEnt)
    }
}

/// The attributes of a pseudo directory: read-only, owned by root.
pub fn attr(c: &CurFh) -> Attr {
    let t = Timestamp {
        seconds: 0,
        nanoseconds: 0,
    };
    Attr {
        id: c.id,
        file_type: FileType::Directory,
        mode: 0o555,
        nlink: 2,
        uid: 0,
        gid: 0,
        size: 4096,
        used: 4096,
        rdev: (0, 0),
        atime: t,
        mtime: t,
        ctime: t,
        change: 1,
    }
}

/// One entry of a pseudo directory: a deeper pseudo directory or an export's root.
pub enum Child {
    Pseudo(CurFh),
    Export(CurFh),
}

/// The entries of pseudo directory `dir`, in name order, with their handles. Exports this
/// client may not use are left out.
pub fn children<S: Store>(cx: &Ctx<'_, S>, dir: &str) -> Vec<(String, Child)> {
    let exports = cx.server.exports_for(cx.req);
    let mut names: BTreeSet<String> = BTreeSet::new();
    let below = |p: &str| parent(p).as_deref() == Some(dir);
    for p in nodes(&exports).iter().filter(|p| below(p)) {
        names.insert(p.clone());
    }
    for e in exports.iter() {
        let p = canonical(&e.path);
        if below(&p) {
            names.insert(p);
        }
    }
    let mut out = Vec::new();
    for p in names {
        let name = p.rsplit('/').next().unwrap_or_default().to_string();
        if let Some(e) = exports.iter().find(|e| canonical(&e.path) == p) {
            if let Ok(c) = export_root(cx, e) {
                out.push((name, Child::Export(c)));
            }
        } else {
            out.push((name, Child::Pseudo(cur_for(cx, &p))));
        }
    }
    out
}

/// READDIR of a pseudo directory: all its entries in one reply when they fit.
pub async fn readdir<S: Store>(
    cx: &Ctx<'_, S>,
    dir: &CurFh,
    a: &Readdir4Args,
) -> Res<Readdir4ResOk> {
    let path = dir.pseudo.clone().unwrap_or_default();
    let lease_secs = cx.nfs4.lease.as_secs() as u32;
    let mut entries = Vec::new();
    let mut used = 4 + 8 + 4 + 4;
    let maxcount = (a.maxcount as usize).min(cx.reply_room);
    let all = children(cx, &path);
    for (i, (name, child)) in all.into_iter().enumerate() {
        let cookie = i as u64 + 3;
        if cookie <= a.cookie {
            continue;
        }
        let (c, at) = match child {
            Child::Pseudo(c) => {
                let at = attr(&c);
                (c, at)
            }
            Child::Export(c) => {
                let at = cx.server.store.getattr(c.id).await.map_err(store_err)?;
                (c, at)
            }
        };
        let attrs = crate::v4::attrs::encode(
            &at,
            &a.attr_request,
            &crate::v4::attrs::Context {
                export_id: c.export.id,
                fh: &c.fh.0,
                lease_secs,
                fsstat: None,
                rdattr_error: Nfsstat4::Ok,
                idmap: &cx.server.state.idmap,
            },
        );
        let e = Entry4 {
            cookie,
            name: Component4(bytes::Bytes::from(name)),
            attrs,
        };
        if used + e.encoded_len() > maxcount {
            if entries.is_empty() {
                return Err(Nfsstat4::TooSmall);
            }
            return Ok(Readdir4ResOk {
                cookieverf: crate::v3::COOKIE_VERIFIER,
                entries,
                eof: false,
            });
        }
        used += e.encoded_len();
        entries.push(e);
    }
    Ok(Readdir4ResOk {
        cookieverf: crate::v3::COOKIE_VERIFIER,
        entries,
        eof: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_directories_are_the_unexported_ancestors_of_exports() {
        let e = |path: &str, id| Export {
            id,
            path: path.into(),
            root: FileId {
                ino: 1,
                generation: 1,
            },
            rules: Vec::new(),
            replication: None,
        };
        let t = ExportTable::new(vec![e("/data/a", 1), e("/data/b/", 2), e("/scratch", 3)]);
        let n: Vec<String> = nodes(&t).into_iter().collect();
        assert_eq!(n, vec!["/", "/data"]);
        let t = ExportTable::new(vec![e("/", 1), e("/data", 2)]);
        assert!(nodes(&t).is_empty());
    }
}
