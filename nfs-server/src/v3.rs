//! NFSv3 procedures (RFC 1813 §3.3): each a function of (server, request, decoded arguments)
//! that calls the store and builds typed results. No sockets, no encoding here.
//!
//! Every handle goes through [`Server::resolve`], which checks its MAC, finds its export,
//! applies the client's rule and squashes the credentials. Handlers return `Err(Failure)` for
//! any error whose reply carries no attributes; [`failure_reply`] shapes it per procedure.

use backend::{
    AccessMask, Attr, CreateMode, FileId, NodeKind, PreAttr, SetAttr, SetTime, Stability, Store,
    Timestamp, Wcc,
};
use bytes::Bytes;
use nfs_proto::limits::{IO_SIZE_MAX, READDIR_REPLY_LEN_MAX};
use nfs_proto::rpc::AuthStat;
use nfs_proto::v3::*;

use crate::error::to_nfsstat3;
use crate::server::{Request, Resolved, Server};

/// A procedure failed before it had anything to report but a status, or the client is not
/// allowed at all (an RPC-level auth error).
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    Status(Nfsstat3),
    Auth(AuthStat),
}

impl From<backend::Error> for Failure {
    fn from(e: backend::Error) -> Failure {
        if let backend::Error::Io(msg) = &e {
            tracing::warn!("store I/O error: {msg}");
        }
        Failure::Status(to_nfsstat3(&e))
    }
}

impl From<Nfsstat3> for Failure {
    fn from(s: Nfsstat3) -> Failure {
        Failure::Status(s)
    }
}

type HResult = Result<Nfs3Reply, Failure>;

/// Cookie verifier for READDIR: constant, because our cookies never go stale (the store
/// guarantees stable cookies across changes and restarts).
pub const COOKIE_VERIFIER: [u8; 8] = *b"sluice01";
/// Wire cookies 1 and 2 are "." and ".."; store cookie c is wire cookie c + 2.
const DOT_COOKIES: u64 = 2;

/// The error reply of procedure `proc_` for a status alone.
pub fn failure_reply(proc_: u32, s: Nfsstat3) -> Nfs3Reply {
    use proc3::*;
    match proc_ {
        GETATTR => Nfs3Reply::Getattr(Err(s)),
        SETATTR | REMOVE | RMDIR => Nfs3Reply::Wcc(s, WccData::default()),
        LOOKUP => Nfs3Reply::Lookup(Err((s, None))),
        ACCESS => Nfs3Reply::Access(Err((s, None))),
        READLINK => Nfs3Reply::Readlink(Err((s, None))),
        READ => Nfs3Reply::Read(Err((s, None))),
        WRITE => Nfs3Reply::Write(Err((s, WccData::default()))),
        CREATE | MKDIR | SYMLINK | MKNOD => Nfs3Reply::Create(Err((s, WccData::default()))),
        RENAME => Nfs3Reply::Rename(s, WccData::default(), WccData::default()),
        LINK => Nfs3Reply::Link(s, None, WccData::default()),
        READDIR => Nfs3Reply::Readdir(Err((s, None))),
        READDIRPLUS => Nfs3Reply::Readdirplus(Err((s, None))),
        FSSTAT => Nfs3Reply::Fsstat(Err((s, None))),
        FSINFO => Nfs3Reply::Fsinfo(Err((s, None))),
        PATHCONF => Nfs3Reply::Pathconf(Err((s, None))),
        COMMIT => Nfs3Reply::Commit(Err((s, WccData::default()))),
        _ => Nfs3Reply::Null,
    }
}

fn time3(t: Timestamp) -> Nfstime3 {
    Nfstime3 {
        seconds: t.seconds.clamp(0, u32::MAX as i64) as u32,
        nseconds: t.nanoseconds,
    }
}

pub fn fattr3(export_id: u32, a: &Attr) -> Fattr3 {
    use backend::FileType as T;
    Fattr3 {
        ftype: match a.file_type {
            T::Regular => Ftype3::Reg,
            T::Directory => Ftype3::Dir,
            T::Symlink => Ftype3::Lnk,
            T::BlockDevice => Ftype3::Blk,
            T::CharDevice => Ftype3::Chr,
            T::Socket => Ftype3::Sock,
            T::Fifo => Ftype3::Fifo,
        },
        mode: a.mode & 0o7777,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        used: a.used,
        rdev: Specdata3 {
            major: a.rdev.0,
            minor: a.rdev.1,
        },
        fsid: export_id as u64,
        fileid: a.id.ino,
        atime: time3(a.atime),
        mtime: time3(a.mtime),
        ctime: time3(a.ctime),
    }
}

fn pre3(p: &PreAttr) -> WccAttr {
    WccAttr {
        size: p.size,
        mtime: time3(p.mtime),
        ctime: time3(p.ctime),
    }
}

fn wcc3(export_id: u32, w: &Wcc) -> WccData {
    WccData {
        before: Some(pre3(&w.before)),
        after: Some(fattr3(export_id, &w.after)),
    }
}

fn set_time(t: SetTime3) -> SetTime {
    match t {
        SetTime3::DontChange => SetTime::DontChange,
        SetTime3::ServerTime => SetTime::ServerNow,
        SetTime3::ClientTime(t) => SetTime::Client(Timestamp {
            seconds: t.seconds as i64,
            nanoseconds: t.nseconds,
        }),
    }
}

fn sattr(a: &Sattr3) -> SetAttr {
    SetAttr {
        mode: a.mode.map(|m| m & 0o7777),
        uid: a.uid,
        gid: a.gid,
        size: a.size,
        atime: set_time(a.atime),
        mtime: set_time(a.mtime),
    }
}

impl<S: Store> Server<S> {
    /// Runs one NFSv3 call.
    pub async fn nfs3(&self, req: &Request, call: Nfs3Call) -> Result<Nfs3Reply, AuthStat> {
        let proc_ = call.proc_();
        match self.nfs3_inner(req, call).await {
            Ok(r) => Ok(r),
            Err(Failure::Status(s)) => Ok(failure_reply(proc_, s)),
            Err(Failure::Auth(a)) => Err(a),
        }
    }

    async fn nfs3_inner(&self, req: &Request, call: Nfs3Call) -> HResult {
        match call {
            Nfs3Call::Null => Ok(Nfs3Reply::Null),
            Nfs3Call::Getattr(fh) => {
                let r = self.resolve(&fh, req)?;
                let a = self.store.getattr(r.id).await?;
                Ok(Nfs3Reply::Getattr(Ok(fattr3(r.export.id, &a))))
            }
            Nfs3Call::Setattr {
                object,
                attr,
                guard,
            } => self.setattr(req, &object, &attr, guard).await,
            Nfs3Call::Lookup(args) => self.lookup(req, &args).await,
            Nfs3Call::Access { object, access } => {
                let r = self.resolve(&object, req)?;
                let mut mask = access & 0x3f;
                if r.rule().read_only {
                    mask &= !(AccessMask::MODIFY | AccessMask::EXTEND | AccessMask::DELETE);
                }
                let (got, a) = self.store.access(&r.cred, r.id, AccessMask(mask)).await?;
                Ok(Nfs3Reply::Access(Ok((
                    Some(fattr3(r.export.id, &a)),
                    got.0 & mask,
                ))))
            }
            Nfs3Call::Readlink(fh) => {
                let r = self.resolve(&fh, req)?;
                let (target, a) = self.store.readlink(&r.cred, r.id).await?;
                Ok(Nfs3Reply::Readlink(Ok((
                    Some(fattr3(r.export.id, &a)),
                    Bytes::from(target),
                ))))
            }
            Nfs3Call::Read {
                file,
                offset,
                count,
            } => {
                let r = self.resolve(&file, req)?;
                let count = count.min(IO_SIZE_MAX);
                let res = self.store.read(&r.cred, r.id, offset, count).await?;
                self.bytes_read
                    .fetch_add(res.data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                Ok(Nfs3Reply::Read(Ok(ReadOk {
                    attr: Some(fattr3(r.export.id, &res.attr)),
                    count: res.data.len() as u32,
                    eof: res.eof,
                    data: res.data,
                })))
            }
            Nfs3Call::Write {
                file,
                offset,
                count,
                stable,
                data,
            } => self.write(req, &file, offset, count, stable, data).await,
            Nfs3Call::Create { place, how } => {
                let (mode, attr) = match how {
                    CreateHow3::Unchecked(a) => (CreateMode::Unchecked, sattr(&a)),
                    CreateHow3::Guarded(a) => (CreateMode::Guarded, sattr(&a)),
                    CreateHow3::Exclusive(v) => (CreateMode::Exclusive(v), SetAttr::default()),
                };
                self.create(req, &place, NodeKind::Regular, attr, mode)
                    .await
            }
            Nfs3Call::Mkdir { place, attr } => {
                self.create(
                    req,
                    &place,
                    NodeKind::Directory,
                    sattr(&attr),
                    CreateMode::Guarded,
                )
                .await
            }
            Nfs3Call::Symlink {
                place,
                attr,
                target,
            } => {
                let kind = NodeKind::Symlink {
                    target: target.to_vec(),
                };
                self.create(req, &place, kind, sattr(&attr), CreateMode::Guarded)
                    .await
            }
            Nfs3Call::Mknod { place, what } => {
                let (kind, attr) = match what {
                    MknodData3::Chr(a, s) => (
                        NodeKind::CharDevice {
                            rdev: (s.major, s.minor),
                        },
                        a,
                    ),
                    MknodData3::Blk(a, s) => (
                        NodeKind::BlockDevice {
                            rdev: (s.major, s.minor),
                        },
                        a,
                    ),
                    MknodData3::Sock(a) => (NodeKind::Socket, a),
                    MknodData3::Fifo(a) => (NodeKind::Fifo, a),
                    MknodData3::Other(_) => return Err(Nfsstat3::BadType.into()),
                };
                self.create(req, &place, kind, sattr(&attr), CreateMode::Guarded)
                    .await
            }
            Nfs3Call::Remove(args) => self.remove(req, &args, false).await,
            Nfs3Call::Rmdir(args) => self.remove(req, &args, true).await,
            Nfs3Call::Rename { from, to } => self.rename(req, &from, &to).await,
            Nfs3Call::Link { file, link } => self.link(req, &file, &link).await,
            Nfs3Call::Readdir {
                dir,
                cookie,
                cookieverf,
                count,
            } => {
                self.readdir(req, &dir, cookie, cookieverf, count, count, false)
                    .await
            }
            Nfs3Call::Readdirplus {
                dir,
                cookie,
                cookieverf,
                dircount,
                maxcount,
            } => {
                self.readdir(req, &dir, cookie, cookieverf, dircount, maxcount, true)
                    .await
            }
            Nfs3Call::Fsstat(fh) => {
                let r = self.resolve(&fh, req)?;
                let a = self.store.getattr(r.id).await?;
                let s = self.store.fsstat(r.id).await?;
                Ok(Nfs3Reply::Fsstat(Ok(FsStat3 {
                    attr: Some(fattr3(r.export.id, &a)),
                    tbytes: s.total_bytes,
                    fbytes: s.free_bytes,
                    abytes: s.avail_bytes,
                    tfiles: s.total_files,
                    ffiles: s.free_files,
                    afiles: s.avail_files,
                    invarsec: 0,
                })))
            }
            Nfs3Call::Fsinfo(fh) => {
                let r = self.resolve(&fh, req)?;
                let a = self.store.getattr(r.id).await?;
                Ok(Nfs3Reply::Fsinfo(Ok(FsInfo3 {
                    attr: Some(fattr3(r.export.id, &a)),
                    rtmax: IO_SIZE_MAX,
                    rtpref: IO_SIZE_MAX,
                    rtmult: 4096,
                    wtmax: IO_SIZE_MAX,
                    wtpref: IO_SIZE_MAX,
                    wtmult: 4096,
                    dtpref: 64 * 1024,
                    maxfilesize: backend::FILE_SIZE_MAX,
                    time_delta: Nfstime3 {
                        seconds: 0,
                        nseconds: 1,
                    },
                    properties: FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
                })))
            }
            Nfs3Call::Pathconf(fh) => {
                let r = self.resolve(&fh, req)?;
                let a = self.store.getattr(r.id).await?;
                Ok(Nfs3Reply::Pathconf(Ok(PathConf3 {
                    attr: Some(fattr3(r.export.id, &a)),
                    linkmax: 65000,
                    name_max: backend::NAME_LEN_MAX as u32,
                    no_trunc: true,
                    chown_restricted: true,
                    case_insensitive: false,
                    case_preserving: true,
                })))
            }
            Nfs3Call::Commit {
                file,
                offset,
                count,
            } => {
                let r = self.resolve(&file, req)?;
                let before = self.store.getattr(r.id).await?;
                let after = self.store.commit(r.id, offset, count as u64).await?;
                let wcc = Wcc {
                    before: PreAttr::from(&before),
                    after,
                };
                Ok(Nfs3Reply::Commit(Ok((
                    wcc3(r.export.id, &wcc),
                    self.store.write_verifier(),
                ))))
            }
        }
    }

    fn writable(&self, fh: &NfsFh3, req: &Request) -> Result<Resolved, Failure> {
        let r = self.resolve(fh, req)?;
        if r.rule().read_only {
            return Err(Nfsstat3::Rofs.into());
        }
        Ok(r)
    }

    async fn setattr(
        &self,
        req: &Request,
        object: &NfsFh3,
        attr: &Sattr3,
        guard: Option<Nfstime3>,
    ) -> HResult {
        let r = self.writable(object, req)?;
        let guard = guard.map(|t| Timestamp {
            seconds: t.seconds as i64,
            nanoseconds: t.nseconds,
        });
        match self.store.setattr(&r.cred, r.id, sattr(attr), guard).await {
            Ok(w) => Ok(Nfs3Reply::Wcc(Nfsstat3::Ok, wcc3(r.export.id, &w))),
            // RFC 1813 §3.3.2: NOT_SYNC, with the object's attributes now.
            Err(backend::Error::GuardMismatch) => {
                let a = self.store.getattr(r.id).await.ok();
                let wcc = WccData {
                    before: None,
                    after: a.map(|a| fattr3(r.export.id, &a)),
                };
                Ok(Nfs3Reply::Wcc(Nfsstat3::NotSync, wcc))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn lookup(&self, req: &Request, args: &DirOpArgs3) -> HResult {
        let r = self.resolve(&args.dir, req)?;
        // ".." at the root of an export stays there: a client cannot climb out of its export.
        let found = if args.name.as_ref() == b".." && r.id == r.export.root {
            self.store.getattr(r.id).await
        } else {
            self.store.lookup(&r.cred, r.id, &args.name).await
        };
        match found {
            Ok(a) => {
                let dir = self.store.getattr(r.id).await.ok();
                Ok(Nfs3Reply::Lookup(Ok((
                    self.fh(r.export.id, a.id),
                    Some(fattr3(r.export.id, &a)),
                    dir.map(|d| fattr3(r.export.id, &d)),
                ))))
            }
            Err(e) => {
                // The client caches negative lookups with the directory's attributes.
                let dir = self.store.getattr(r.id).await.ok();
                let s = Failure::from(e);
                match s {
                    Failure::Status(s) => Ok(Nfs3Reply::Lookup(Err((
                        s,
                        dir.map(|d| fattr3(r.export.id, &d)),
                    )))),
                    auth => Err(auth),
                }
            }
        }
    }

    async fn write(
        &self,
        req: &Request,
        file: &NfsFh3,
        offset: u64,
        count: u32,
        stable: StableHow,
        data: Bytes,
    ) -> HResult {
        let r = self.writable(file, req)?;
        if count as usize > data.len() {
            return Err(Nfsstat3::Inval.into());
        }
        let data = data.slice(..count as usize);
        let stability = match stable {
            StableHow::Unstable => Stability::Unstable,
            StableHow::DataSync => Stability::DataSync,
            StableHow::FileSync => Stability::FileSync,
        };
        let w = self
            .store
            .write(&r.cred, r.id, offset, data, stability)
            .await?;
        self.bytes_written
            .fetch_add(w.count as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(Nfs3Reply::Write(Ok(WriteOk {
            wcc: wcc3(r.export.id, &w.wcc),
            count: w.count,
            committed: match w.committed {
                Stability::Unstable => StableHow::Unstable,
                Stability::DataSync => StableHow::DataSync,
                Stability::FileSync => StableHow::FileSync,
            },
            verf: self.store.write_verifier(),
        })))
    }

    async fn create(
        &self,
        req: &Request,
        place: &DirOpArgs3,
        kind: NodeKind,
        attr: SetAttr,
        mode: CreateMode,
    ) -> HResult {
        let r = self.writable(&place.dir, req)?;
        let (a, wcc) = self
            .store
            .create(&r.cred, r.id, &place.name, kind, attr, mode)
            .await?;
        Ok(Nfs3Reply::Create(Ok((
            Some(self.fh(r.export.id, a.id)),
            Some(fattr3(r.export.id, &a)),
            wcc3(r.export.id, &wcc),
        ))))
    }

    async fn remove(&self, req: &Request, args: &DirOpArgs3, dir: bool) -> HResult {
        let r = self.writable(&args.dir, req)?;
        let wcc = if dir {
            self.store.rmdir(&r.cred, r.id, &args.name).await?
        } else {
            self.store.remove(&r.cred, r.id, &args.name).await?
        };
        Ok(Nfs3Reply::Wcc(Nfsstat3::Ok, wcc3(r.export.id, &wcc)))
    }

    async fn rename(&self, req: &Request, from: &DirOpArgs3, to: &DirOpArgs3) -> HResult {
        let f = self.writable(&from.dir, req)?;
        let t = self.writable(&to.dir, req)?;
        if f.export.id != t.export.id {
            return Err(Nfsstat3::Xdev.into());
        }
        let (fw, tw) = self
            .store
            .rename(&f.cred, f.id, &from.name, t.id, &to.name)
            .await?;
        Ok(Nfs3Reply::Rename(
            Nfsstat3::Ok,
            wcc3(f.export.id, &fw),
            wcc3(t.export.id, &tw),
        ))
    }

    async fn link(&self, req: &Request, file: &NfsFh3, link: &DirOpArgs3) -> HResult {
        let f = self.writable(file, req)?;
        let d = self.writable(&link.dir, req)?;
        if f.export.id != d.export.id {
            return Err(Nfsstat3::Xdev.into());
        }
        let (a, wcc) = self.store.link(&d.cred, f.id, d.id, &link.name).await?;
        Ok(Nfs3Reply::Link(
            Nfsstat3::Ok,
            Some(fattr3(f.export.id, &a)),
            wcc3(d.export.id, &wcc),
        ))
    }

    /// READDIR and READDIRPLUS. `dircount` bounds the names and cookies, `maxcount` the whole
    /// reply (RFC 1813 §3.3.17); for READDIR both are `count`.
    #[allow(clippy::too_many_arguments)]
    async fn readdir(
        &self,
        req: &Request,
        dir: &NfsFh3,
        cookie: u64,
        cookieverf: [u8; 8],
        dircount: u32,
        maxcount: u32,
        plus: bool,
    ) -> HResult {
        let r = self.resolve(dir, req)?;
        if cookie != 0 && cookieverf != COOKIE_VERIFIER && cookieverf != [0; 8] {
            return Err(Nfsstat3::BadCookie.into());
        }
        let maxcount = maxcount.min(READDIR_REPLY_LEN_MAX) as usize;
        let dircount = (dircount as usize).min(maxcount);
        // Status, dir attributes, verifier, the final "no more entries" and eof words.
        let overhead = 4 + 4 + FATTR3_SIZE + 8 + 4 + 4;
        if maxcount < overhead + DirEntry3::readdir_size(1) {
            return Err(Nfsstat3::TooSmall.into());
        }
        let fh_len = crate::fh::FH_LEN;
        let entry_min = if plus {
            DirEntry3::readdirplus_size(1, fh_len)
        } else {
            DirEntry3::readdir_size(1)
        };
        let want = ((maxcount - overhead) / entry_min).clamp(1, 4096);

        let mut entries: Vec<DirEntry3> = Vec::new();
        // "." and "..", as knfsd lists them.
        let parent = if r.id == r.export.root {
            r.id
        } else {
            self.store.parent(&r.cred, r.id).await?.id
        };
        for (c, name, id) in [(1u64, &b"."[..], r.id), (2, &b".."[..], parent)] {
            if cookie < c {
                entries.push(self.dir_entry(r.export.id, id, name, c, plus).await);
            }
        }
        let store_cookie = cookie.saturating_sub(DOT_COOKIES);
        let page = self
            .store
            .readdir(&r.cred, r.id, store_cookie, want, plus)
            .await?;
        for e in page.entries {
            entries.push(DirEntry3 {
                fileid: e.id.ino,
                name: Bytes::from(e.name),
                cookie: e.cookie + DOT_COOKIES,
                attr: e.attr.as_ref().map(|a| fattr3(r.export.id, a)),
                handle: plus.then(|| self.fh(r.export.id, e.id)),
            });
        }
        // Keep what fits in both budgets.
        let (mut used, mut names) = (overhead, 0usize);
        let mut keep = 0;
        for e in &entries {
            let size = if plus {
                DirEntry3::readdirplus_size(e.name.len(), fh_len)
            } else {
                DirEntry3::readdir_size(e.name.len())
            };
            let name_size = DirEntry3::readdir_size(e.name.len());
            if used + size > maxcount || (plus && keep > 0 && names + name_size > dircount) {
                break;
            }
            used += size;
            names += name_size;
            keep += 1;
        }
        if keep == 0 && !entries.is_empty() {
            return Err(Nfsstat3::TooSmall.into());
        }
        let eof = page.eof && keep == entries.len();
        entries.truncate(keep);
        let ok = ReaddirOk {
            dir_attr: Some(fattr3(r.export.id, &page.dir_attr)),
            cookieverf: COOKIE_VERIFIER,
            entries,
            eof,
        };
        Ok(if plus {
            Nfs3Reply::Readdirplus(Ok(ok))
        } else {
            Nfs3Reply::Readdir(Ok(ok))
        })
    }

    async fn dir_entry(
        &self,
        export_id: u32,
        id: FileId,
        name: &[u8],
        cookie: u64,
        plus: bool,
    ) -> DirEntry3 {
        let attr = if plus {
            self.store
                .getattr(id)
                .await
                .ok()
                .map(|a| fattr3(export_id, &a))
        } else {
            None
        };
        DirEntry3 {
            fileid: id.ino,
            name: Bytes::copy_from_slice(name),
            cookie,
            attr,
            handle: plus.then(|| self.fh(export_id, id)),
        }
    }
}
