//! NFS version 3 (RFC 1813): types named after the RFC, argument codecs, result encoders.
//!
//! Arguments decode and encode (encoding serves clients, tests and fuzz round trips); results
//! only encode, except that READ results put their payload beside the header rather than in it,
//! so a transport can send it without copying ([`Nfs3Reply::encode`]).

use bytes::Bytes;

use crate::limits::{FH3_LEN_MAX, IO_SIZE_MAX, NAME_DECODE_LEN_MAX, PATH_DECODE_LEN_MAX};
use crate::xdr::{Decode, Encode, Reader, Result, Writer, XdrError};

pub const PROGRAM: u32 = 100003;
pub const VERSION: u32 = 3;

/// Procedure numbers (RFC 1813 §3.3).
pub mod proc3 {
    pub const NULL: u32 = 0;
    pub const GETATTR: u32 = 1;
    pub const SETATTR: u32 = 2;
    pub const LOOKUP: u32 = 3;
    pub const ACCESS: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const READ: u32 = 6;
    pub const WRITE: u32 = 7;
    pub const CREATE: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const SYMLINK: u32 = 10;
    pub const MKNOD: u32 = 11;
    pub const REMOVE: u32 = 12;
    pub const RMDIR: u32 = 13;
    pub const RENAME: u32 = 14;
    pub const LINK: u32 = 15;
    pub const READDIR: u32 = 16;
    pub const READDIRPLUS: u32 = 17;
    pub const FSSTAT: u32 = 18;
    pub const FSINFO: u32 = 19;
    pub const PATHCONF: u32 = 20;
    pub const COMMIT: u32 = 21;
    pub const COUNT: u32 = 22;

    /// The RFC's name of a procedure ("UNKNOWN" past the table), for logs and metrics.
    pub fn name(proc_: u32) -> &'static str {
        const NAMES: [&str; COUNT as usize] = [
            "NULL",
            "GETATTR",
            "SETATTR",
            "LOOKUP",
            "ACCESS",
            "READLINK",
            "READ",
            "WRITE",
            "CREATE",
            "MKDIR",
            "SYMLINK",
            "MKNOD",
            "REMOVE",
            "RMDIR",
            "RENAME",
            "LINK",
            "READDIR",
            "READDIRPLUS",
            "FSSTAT",
            "FSINFO",
            "PATHCONF",
            "COMMIT",
        ];
        NAMES.get(proc_ as usize).copied().unwrap_or("UNKNOWN")
    }
}

/// nfsstat3 (RFC 1813 §2.6), in the RFC's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nfsstat3 {
    Ok = 0,
    Perm = 1,
    NoEnt = 2,
    Io = 5,
    Nxio = 6,
    Acces = 13,
    Exist = 17,
    Xdev = 18,
    NoDev = 19,
    NotDir = 20,
    IsDir = 21,
    Inval = 22,
    Fbig = 27,
    NoSpc = 28,
    Rofs = 30,
    Mlink = 31,
    NameTooLong = 63,
    NotEmpty = 66,
    Dquot = 69,
    Stale = 70,
    Remote = 71,
    BadHandle = 10001,
    NotSync = 10002,
    BadCookie = 10003,
    NotSupp = 10004,
    TooSmall = 10005,
    ServerFault = 10006,
    BadType = 10007,
    Jukebox = 10008,
}

impl Nfsstat3 {
    /// The RFC's name without the NFS3ERR_ prefix ("OK", "NOENT", "JUKEBOX", ...).
    pub fn name(self) -> &'static str {
        match self {
            Nfsstat3::Ok => "OK",
            Nfsstat3::Perm => "PERM",
            Nfsstat3::NoEnt => "NOENT",
            Nfsstat3::Io => "IO",
            Nfsstat3::Nxio => "NXIO",
            Nfsstat3::Acces => "ACCES",
            Nfsstat3::Exist => "EXIST",
            Nfsstat3::Xdev => "XDEV",
            Nfsstat3::NoDev => "NODEV",
            Nfsstat3::NotDir => "NOTDIR",
            Nfsstat3::IsDir => "ISDIR",
            Nfsstat3::Inval => "INVAL",
            Nfsstat3::Fbig => "FBIG",
            Nfsstat3::NoSpc => "NOSPC",
            Nfsstat3::Rofs => "ROFS",
            Nfsstat3::Mlink => "MLINK",
            Nfsstat3::NameTooLong => "NAMETOOLONG",
            Nfsstat3::NotEmpty => "NOTEMPTY",
            Nfsstat3::Dquot => "DQUOT",
            Nfsstat3::Stale => "STALE",
            Nfsstat3::Remote => "REMOTE",
            Nfsstat3::BadHandle => "BADHANDLE",
            Nfsstat3::NotSync => "NOT_SYNC",
            Nfsstat3::BadCookie => "BAD_COOKIE",
            Nfsstat3::NotSupp => "NOTSUPP",
            Nfsstat3::TooSmall => "TOOSMALL",
            Nfsstat3::ServerFault => "SERVERFAULT",
            Nfsstat3::BadType => "BADTYPE",
            Nfsstat3::Jukebox => "JUKEBOX",
        }
    }
}

/// ftype3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ftype3 {
    Reg = 1,
    Dir = 2,
    Blk = 3,
    Chr = 4,
    Lnk = 5,
    Sock = 6,
    Fifo = 7,
}

impl Ftype3 {
    pub fn from_u32(v: u32) -> Result<Ftype3> {
        Ok(match v {
            1 => Ftype3::Reg,
            2 => Ftype3::Dir,
            3 => Ftype3::Blk,
            4 => Ftype3::Chr,
            5 => Ftype3::Lnk,
            6 => Ftype3::Sock,
            7 => Ftype3::Fifo,
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

/// nfs_fh3: opaque<64>, kept as a slice of the request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NfsFh3(pub Bytes);

impl Decode for NfsFh3 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(NfsFh3(r.opaque(FH3_LEN_MAX)?))
    }
}

impl Encode for NfsFh3 {
    fn encode(&self, w: &mut Writer) {
        w.opaque(&self.0);
    }
}

/// nfstime3.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nfstime3 {
    pub seconds: u32,
    pub nseconds: u32,
}

impl Decode for Nfstime3 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(Nfstime3 {
            seconds: r.u32()?,
            nseconds: r.u32()?,
        })
    }
}

impl Encode for Nfstime3 {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.seconds);
        w.u32(self.nseconds);
    }
}

/// specdata3: device numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Specdata3 {
    pub major: u32,
    pub minor: u32,
}

/// fattr3 (RFC 1813 §2.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fattr3 {
    pub ftype: Ftype3,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub used: u64,
    pub rdev: Specdata3,
    pub fsid: u64,
    pub fileid: u64,
    pub atime: Nfstime3,
    pub mtime: Nfstime3,
    pub ctime: Nfstime3,
}

/// Encoded size of fattr3.
pub const FATTR3_SIZE: usize = 84;

impl Encode for Fattr3 {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.ftype as u32);
        w.u32(self.mode);
        w.u32(self.nlink);
        w.u32(self.uid);
        w.u32(self.gid);
        w.u64(self.size);
        w.u64(self.used);
        w.u32(self.rdev.major);
        w.u32(self.rdev.minor);
        w.u64(self.fsid);
        w.u64(self.fileid);
        self.atime.encode(w);
        self.mtime.encode(w);
        self.ctime.encode(w);
    }
}

/// wcc_attr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WccAttr {
    pub size: u64,
    pub mtime: Nfstime3,
    pub ctime: Nfstime3,
}

/// post_op_attr.
pub type PostOpAttr = Option<Fattr3>;

fn encode_post_op_attr(w: &mut Writer, a: &PostOpAttr) {
    w.optional(a.as_ref(), |w, a| a.encode(w));
}

/// wcc_data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WccData {
    pub before: Option<WccAttr>,
    pub after: PostOpAttr,
}

impl Encode for WccData {
    fn encode(&self, w: &mut Writer) {
        w.optional(self.before.as_ref(), |w, b| {
            w.u64(b.size);
            b.mtime.encode(w);
            b.ctime.encode(w);
        });
        encode_post_op_attr(w, &self.after);
    }
}

/// set_atime / set_mtime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetTime3 {
    #[default]
    DontChange,
    ServerTime,
    ClientTime(Nfstime3),
}

impl Decode for SetTime3 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            0 => SetTime3::DontChange,
            1 => SetTime3::ServerTime,
            2 => SetTime3::ClientTime(Nfstime3::decode(r)?),
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for SetTime3 {
    fn encode(&self, w: &mut Writer) {
        match self {
            SetTime3::DontChange => w.u32(0),
            SetTime3::ServerTime => w.u32(1),
            SetTime3::ClientTime(t) => {
                w.u32(2);
                t.encode(w);
            }
        }
    }
}

/// sattr3.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sattr3 {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: SetTime3,
    pub mtime: SetTime3,
}

impl Decode for Sattr3 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(Sattr3 {
            mode: r.optional(|r| r.u32())?,
            uid: r.optional(|r| r.u32())?,
            gid: r.optional(|r| r.u32())?,
            size: r.optional(|r| r.u64())?,
            atime: SetTime3::decode(r)?,
            mtime: SetTime3::decode(r)?,
        })
    }
}

impl Encode for Sattr3 {
    fn encode(&self, w: &mut Writer) {
        w.optional(self.mode.as_ref(), |w, v| w.u32(*v));
        w.optional(self.uid.as_ref(), |w, v| w.u32(*v));
        w.optional(self.gid.as_ref(), |w, v| w.u32(*v));
        w.optional(self.size.as_ref(), |w, v| w.u64(*v));
        self.atime.encode(w);
        self.mtime.encode(w);
    }
}

/// diropargs3: a directory handle and a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirOpArgs3 {
    pub dir: NfsFh3,
    pub name: Bytes,
}

impl Decode for DirOpArgs3 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(DirOpArgs3 {
            dir: NfsFh3::decode(r)?,
            name: r.opaque(NAME_DECODE_LEN_MAX)?,
        })
    }
}

impl Encode for DirOpArgs3 {
    fn encode(&self, w: &mut Writer) {
        self.dir.encode(w);
        w.opaque(&self.name);
    }
}

/// stable_how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StableHow {
    Unstable = 0,
    DataSync = 1,
    FileSync = 2,
}

impl StableHow {
    fn from_u32(v: u32) -> Result<StableHow> {
        Ok(match v {
            0 => StableHow::Unstable,
            1 => StableHow::DataSync,
            2 => StableHow::FileSync,
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

/// createhow3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateHow3 {
    Unchecked(Sattr3),
    Guarded(Sattr3),
    Exclusive([u8; 8]),
}

/// mknoddata3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MknodData3 {
    Chr(Sattr3, Specdata3),
    Blk(Sattr3, Specdata3),
    Sock(Sattr3),
    Fifo(Sattr3),
    /// REG, DIR, LNK: MKNOD must fail with NFS3ERR_BADTYPE.
    Other(Ftype3),
}

/// Decoded arguments of every NFSv3 procedure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Nfs3Call {
    Null,
    Getattr(NfsFh3),
    Setattr {
        object: NfsFh3,
        attr: Sattr3,
        guard: Option<Nfstime3>,
    },
    Lookup(DirOpArgs3),
    Access {
        object: NfsFh3,
        access: u32,
    },
    Readlink(NfsFh3),
    Read {
        file: NfsFh3,
        offset: u64,
        count: u32,
    },
    Write {
        file: NfsFh3,
        offset: u64,
        count: u32,
        stable: StableHow,
        /// A slice of the received record: never copied.
        data: Bytes,
    },
    Create {
        place: DirOpArgs3,
        how: CreateHow3,
    },
    Mkdir {
        place: DirOpArgs3,
        attr: Sattr3,
    },
    Symlink {
        place: DirOpArgs3,
        attr: Sattr3,
        target: Bytes,
    },
    Mknod {
        place: DirOpArgs3,
        what: MknodData3,
    },
    Remove(DirOpArgs3),
    Rmdir(DirOpArgs3),
    Rename {
        from: DirOpArgs3,
        to: DirOpArgs3,
    },
    Link {
        file: NfsFh3,
        link: DirOpArgs3,
    },
    Readdir {
        dir: NfsFh3,
        cookie: u64,
        cookieverf: [u8; 8],
        count: u32,
    },
    Readdirplus {
        dir: NfsFh3,
        cookie: u64,
        cookieverf: [u8; 8],
        dircount: u32,
        maxcount: u32,
    },
    Fsstat(NfsFh3),
    Fsinfo(NfsFh3),
    Pathconf(NfsFh3),
    Commit {
        file: NfsFh3,
        offset: u64,
        count: u32,
    },
}

impl Nfs3Call {
    /// Decodes the arguments of procedure `proc_`. `Ok(None)` means no such procedure
    /// (PROC_UNAVAIL); an error means GARBAGE_ARGS. Trailing bytes are an error.
    pub fn decode(proc_: u32, r: &mut Reader) -> Result<Option<Nfs3Call>> {
        use proc3::*;
        let call = match proc_ {
            NULL => Nfs3Call::Null,
            GETATTR => Nfs3Call::Getattr(NfsFh3::decode(r)?),
            SETATTR => Nfs3Call::Setattr {
                object: NfsFh3::decode(r)?,
                attr: Sattr3::decode(r)?,
                guard: r.optional(Nfstime3::decode)?,
            },
            LOOKUP => Nfs3Call::Lookup(DirOpArgs3::decode(r)?),
            ACCESS => Nfs3Call::Access {
                object: NfsFh3::decode(r)?,
                access: r.u32()?,
            },
            READLINK => Nfs3Call::Readlink(NfsFh3::decode(r)?),
            READ => Nfs3Call::Read {
                file: NfsFh3::decode(r)?,
                offset: r.u64()?,
                count: r.u32()?,
            },
            WRITE => {
                let file = NfsFh3::decode(r)?;
                let offset = r.u64()?;
                let count = r.u32()?;
                let stable = StableHow::from_u32(r.u32()?)?;
                let data = r.opaque(IO_SIZE_MAX)?;
                Nfs3Call::Write {
                    file,
                    offset,
                    count,
                    stable,
                    data,
                }
            }
            CREATE => {
                let place = DirOpArgs3::decode(r)?;
                let how = match r.u32()? {
                    0 => CreateHow3::Unchecked(Sattr3::decode(r)?),
                    1 => CreateHow3::Guarded(Sattr3::decode(r)?),
                    2 => CreateHow3::Exclusive(r.opaque_fixed::<8>()?),
                    d => return Err(XdrError::BadDiscriminant(d)),
                };
                Nfs3Call::Create { place, how }
            }
            MKDIR => Nfs3Call::Mkdir {
                place: DirOpArgs3::decode(r)?,
                attr: Sattr3::decode(r)?,
            },
            SYMLINK => Nfs3Call::Symlink {
                place: DirOpArgs3::decode(r)?,
                attr: Sattr3::decode(r)?,
                target: r.opaque(PATH_DECODE_LEN_MAX)?,
            },
            MKNOD => {
                let place = DirOpArgs3::decode(r)?;
                let what = match Ftype3::from_u32(r.u32()?)? {
                    Ftype3::Chr => MknodData3::Chr(Sattr3::decode(r)?, decode_spec(r)?),
                    Ftype3::Blk => MknodData3::Blk(Sattr3::decode(r)?, decode_spec(r)?),
                    Ftype3::Sock => MknodData3::Sock(Sattr3::decode(r)?),
                    Ftype3::Fifo => MknodData3::Fifo(Sattr3::decode(r)?),
                    other => MknodData3::Other(other),
                };
                Nfs3Call::Mknod { place, what }
            }
            REMOVE => Nfs3Call::Remove(DirOpArgs3::decode(r)?),
            RMDIR => Nfs3Call::Rmdir(DirOpArgs3::decode(r)?),
            RENAME => Nfs3Call::Rename {
                from: DirOpArgs3::decode(r)?,
                to: DirOpArgs3::decode(r)?,
            },
            LINK => Nfs3Call::Link {
                file: NfsFh3::decode(r)?,
                link: DirOpArgs3::decode(r)?,
            },
            READDIR => Nfs3Call::Readdir {
                dir: NfsFh3::decode(r)?,
                cookie: r.u64()?,
                cookieverf: r.opaque_fixed::<8>()?,
                count: r.u32()?,
            },
            READDIRPLUS => Nfs3Call::Readdirplus {
                dir: NfsFh3::decode(r)?,
                cookie: r.u64()?,
                cookieverf: r.opaque_fixed::<8>()?,
                dircount: r.u32()?,
                maxcount: r.u32()?,
            },
            FSSTAT => Nfs3Call::Fsstat(NfsFh3::decode(r)?),
            FSINFO => Nfs3Call::Fsinfo(NfsFh3::decode(r)?),
            PATHCONF => Nfs3Call::Pathconf(NfsFh3::decode(r)?),
            COMMIT => Nfs3Call::Commit {
                file: NfsFh3::decode(r)?,
                offset: r.u64()?,
                count: r.u32()?,
            },
            _ => return Ok(None),
        };
        r.finish()?;
        Ok(Some(call))
    }

    /// The procedure number of this call.
    pub fn proc_(&self) -> u32 {
        use proc3::*;
        match self {
            Nfs3Call::Null => NULL,
            Nfs3Call::Getattr(_) => GETATTR,
            Nfs3Call::Setattr { .. } => SETATTR,
            Nfs3Call::Lookup(_) => LOOKUP,
            Nfs3Call::Access { .. } => ACCESS,
            Nfs3Call::Readlink(_) => READLINK,
            Nfs3Call::Read { .. } => READ,
            Nfs3Call::Write { .. } => WRITE,
            Nfs3Call::Create { .. } => CREATE,
            Nfs3Call::Mkdir { .. } => MKDIR,
            Nfs3Call::Symlink { .. } => SYMLINK,
            Nfs3Call::Mknod { .. } => MKNOD,
            Nfs3Call::Remove(_) => REMOVE,
            Nfs3Call::Rmdir(_) => RMDIR,
            Nfs3Call::Rename { .. } => RENAME,
            Nfs3Call::Link { .. } => LINK,
            Nfs3Call::Readdir { .. } => READDIR,
            Nfs3Call::Readdirplus { .. } => READDIRPLUS,
            Nfs3Call::Fsstat(_) => FSSTAT,
            Nfs3Call::Fsinfo(_) => FSINFO,
            Nfs3Call::Pathconf(_) => PATHCONF,
            Nfs3Call::Commit { .. } => COMMIT,
        }
    }
}

fn decode_spec(r: &mut Reader) -> Result<Specdata3> {
    Ok(Specdata3 {
        major: r.u32()?,
        minor: r.u32()?,
    })
}

fn encode_spec(w: &mut Writer, s: &Specdata3) {
    w.u32(s.major);
    w.u32(s.minor);
}

impl Encode for Nfs3Call {
    fn encode(&self, w: &mut Writer) {
        match self {
            Nfs3Call::Null => {}
            Nfs3Call::Getattr(fh)
            | Nfs3Call::Readlink(fh)
            | Nfs3Call::Fsstat(fh)
            | Nfs3Call::Fsinfo(fh)
            | Nfs3Call::Pathconf(fh) => fh.encode(w),
            Nfs3Call::Setattr {
                object,
                attr,
                guard,
            } => {
                object.encode(w);
                attr.encode(w);
                w.optional(guard.as_ref(), |w, g| g.encode(w));
            }
            Nfs3Call::Lookup(a) | Nfs3Call::Remove(a) | Nfs3Call::Rmdir(a) => a.encode(w),
            Nfs3Call::Access { object, access } => {
                object.encode(w);
                w.u32(*access);
            }
            Nfs3Call::Read {
                file,
                offset,
                count,
            }
            | Nfs3Call::Commit {
                file,
                offset,
                count,
            } => {
                file.encode(w);
                w.u64(*offset);
                w.u32(*count);
            }
            Nfs3Call::Write {
                file,
                offset,
                count,
                stable,
                data,
            } => {
                file.encode(w);
                w.u64(*offset);
                w.u32(*count);
                w.u32(*stable as u32);
                w.opaque(data);
            }
            Nfs3Call::Create { place, how } => {
                place.encode(w);
                match how {
                    CreateHow3::Unchecked(a) => {
                        w.u32(0);
                        a.encode(w);
                    }
                    CreateHow3::Guarded(a) => {
                        w.u32(1);
                        a.encode(w);
                    }
                    CreateHow3::Exclusive(v) => {
                        w.u32(2);
                        w.opaque_fixed(v);
                    }
                }
            }
            Nfs3Call::Mkdir { place, attr } => {
                place.encode(w);
                attr.encode(w);
            }
            Nfs3Call::Symlink {
                place,
                attr,
                target,
            } => {
                place.encode(w);
                attr.encode(w);
                w.opaque(target);
            }
            Nfs3Call::Mknod { place, what } => {
                place.encode(w);
                match what {
                    MknodData3::Chr(a, s) | MknodData3::Blk(a, s) => {
                        let t = if matches!(what, MknodData3::Chr(..)) {
                            Ftype3::Chr
                        } else {
                            Ftype3::Blk
                        };
                        w.u32(t as u32);
                        a.encode(w);
                        encode_spec(w, s);
                    }
                    MknodData3::Sock(a) => {
                        w.u32(Ftype3::Sock as u32);
                        a.encode(w);
                    }
                    MknodData3::Fifo(a) => {
                        w.u32(Ftype3::Fifo as u32);
                        a.encode(w);
                    }
                    MknodData3::Other(t) => w.u32(*t as u32),
                }
            }
            Nfs3Call::Rename { from, to } => {
                from.encode(w);
                to.encode(w);
            }
            Nfs3Call::Link { file, link } => {
                file.encode(w);
                link.encode(w);
            }
            Nfs3Call::Readdir {
                dir,
                cookie,
                cookieverf,
                count,
            } => {
                dir.encode(w);
                w.u64(*cookie);
                w.opaque_fixed(cookieverf);
                w.u32(*count);
            }
            Nfs3Call::Readdirplus {
                dir,
                cookie,
                cookieverf,
                dircount,
                maxcount,
            } => {
                dir.encode(w);
                w.u64(*cookie);
                w.opaque_fixed(cookieverf);
                w.u32(*dircount);
                w.u32(*maxcount);
            }
        }
    }
}

/// entry3 / entryplus3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry3 {
    pub fileid: u64,
    pub name: Bytes,
    pub cookie: u64,
    /// READDIRPLUS only.
    pub attr: PostOpAttr,
    /// READDIRPLUS only.
    pub handle: Option<NfsFh3>,
}

impl DirEntry3 {
    /// Encoded size in a READDIR reply (with the preceding value_follows word).
    pub fn readdir_size(name_len: usize) -> usize {
        4 + 8 + crate::xdr::opaque_size(name_len) + 8
    }

    /// Encoded size in a READDIRPLUS reply (worst case: attributes and a handle present).
    pub fn readdirplus_size(name_len: usize, fh_len: usize) -> usize {
        Self::readdir_size(name_len) + 4 + FATTR3_SIZE + 4 + crate::xdr::opaque_size(fh_len)
    }
}

/// FSINFO resok.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsInfo3 {
    pub attr: PostOpAttr,
    pub rtmax: u32,
    pub rtpref: u32,
    pub rtmult: u32,
    pub wtmax: u32,
    pub wtpref: u32,
    pub wtmult: u32,
    pub dtpref: u32,
    pub maxfilesize: u64,
    pub time_delta: Nfstime3,
    pub properties: u32,
}

pub const FSF3_LINK: u32 = 0x0001;
pub const FSF3_SYMLINK: u32 = 0x0002;
pub const FSF3_HOMOGENEOUS: u32 = 0x0008;
pub const FSF3_CANSETTIME: u32 = 0x0010;

/// FSSTAT resok.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsStat3 {
    pub attr: PostOpAttr,
    pub tbytes: u64,
    pub fbytes: u64,
    pub abytes: u64,
    pub tfiles: u64,
    pub ffiles: u64,
    pub afiles: u64,
    pub invarsec: u32,
}

/// PATHCONF resok.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathConf3 {
    pub attr: PostOpAttr,
    pub linkmax: u32,
    pub name_max: u32,
    pub no_trunc: bool,
    pub chown_restricted: bool,
    pub case_insensitive: bool,
    pub case_preserving: bool,
}

/// Results of every procedure. Where the RFC's resfail carries attributes, the `Err` side
/// carries them too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Nfs3Reply {
    Null,
    Getattr(std::result::Result<Fattr3, Nfsstat3>),
    /// SETATTR, REMOVE, RMDIR: a status and the wcc of the object or directory.
    Wcc(Nfsstat3, WccData),
    Lookup(std::result::Result<(NfsFh3, PostOpAttr, PostOpAttr), (Nfsstat3, PostOpAttr)>),
    Access(std::result::Result<(PostOpAttr, u32), (Nfsstat3, PostOpAttr)>),
    Readlink(std::result::Result<(PostOpAttr, Bytes), (Nfsstat3, PostOpAttr)>),
    Read(std::result::Result<ReadOk, (Nfsstat3, PostOpAttr)>),
    Write(std::result::Result<WriteOk, (Nfsstat3, WccData)>),
    /// CREATE, MKDIR, SYMLINK, MKNOD.
    Create(std::result::Result<(Option<NfsFh3>, PostOpAttr, WccData), (Nfsstat3, WccData)>),
    Rename(Nfsstat3, WccData, WccData),
    Link(Nfsstat3, PostOpAttr, WccData),
    Readdir(std::result::Result<ReaddirOk, (Nfsstat3, PostOpAttr)>),
    Readdirplus(std::result::Result<ReaddirOk, (Nfsstat3, PostOpAttr)>),
    Fsstat(std::result::Result<FsStat3, (Nfsstat3, PostOpAttr)>),
    Fsinfo(std::result::Result<FsInfo3, (Nfsstat3, PostOpAttr)>),
    Pathconf(std::result::Result<PathConf3, (Nfsstat3, PostOpAttr)>),
    Commit(std::result::Result<(WccData, [u8; 8]), (Nfsstat3, WccData)>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOk {
    pub attr: PostOpAttr,
    pub count: u32,
    pub eof: bool,
    pub data: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteOk {
    pub wcc: WccData,
    pub count: u32,
    pub committed: StableHow,
    pub verf: [u8; 8],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaddirOk {
    pub dir_attr: PostOpAttr,
    pub cookieverf: [u8; 8],
    pub entries: Vec<DirEntry3>,
    pub eof: bool,
}

impl Nfs3Reply {
    /// Encodes the results after the RPC header. A READ payload is not copied into `w`: it is
    /// returned, and the caller sends it right after `w`'s bytes, followed by
    /// `xdr::pad_len(payload.len())` zero bytes.
    pub fn encode(&self, w: &mut Writer) -> Option<Bytes> {
        match self {
            Nfs3Reply::Null => {}
            Nfs3Reply::Getattr(r) => match r {
                Ok(a) => {
                    w.u32(Nfsstat3::Ok as u32);
                    a.encode(w);
                }
                Err(s) => w.u32(*s as u32),
            },
            Nfs3Reply::Wcc(s, wcc) => {
                w.u32(*s as u32);
                wcc.encode(w);
            }
            Nfs3Reply::Lookup(r) => match r {
                Ok((fh, obj, dir)) => {
                    w.u32(0);
                    fh.encode(w);
                    encode_post_op_attr(w, obj);
                    encode_post_op_attr(w, dir);
                }
                Err((s, dir)) => status_attr(w, *s, dir),
            },
            Nfs3Reply::Access(r) => match r {
                Ok((a, access)) => {
                    w.u32(0);
                    encode_post_op_attr(w, a);
                    w.u32(*access);
                }
                Err((s, a)) => status_attr(w, *s, a),
            },
            Nfs3Reply::Readlink(r) => match r {
                Ok((a, path)) => {
                    w.u32(0);
                    encode_post_op_attr(w, a);
                    w.opaque(path);
                }
                Err((s, a)) => status_attr(w, *s, a),
            },
            Nfs3Reply::Read(r) => match r {
                Ok(ok) => {
                    w.u32(0);
                    encode_post_op_attr(w, &ok.attr);
                    w.u32(ok.count);
                    w.bool(ok.eof);
                    w.u32(ok.data.len() as u32);
                    return Some(ok.data.clone());
                }
                Err((s, a)) => status_attr(w, *s, a),
            },
            Nfs3Reply::Write(r) => match r {
                Ok(ok) => {
                    w.u32(0);
                    ok.wcc.encode(w);
                    w.u32(ok.count);
                    w.u32(ok.committed as u32);
                    w.opaque_fixed(&ok.verf);
                }
                Err((s, wcc)) => {
                    w.u32(*s as u32);
                    wcc.encode(w);
                }
            },
            Nfs3Reply::Create(r) => match r {
                Ok((fh, a, wcc)) => {
                    w.u32(0);
                    w.optional(fh.as_ref(), |w, fh| fh.encode(w));
                    encode_post_op_attr(w, a);
                    wcc.encode(w);
                }
                Err((s, wcc)) => {
                    w.u32(*s as u32);
                    wcc.encode(w);
                }
            },
            Nfs3Reply::Rename(s, from, to) => {
                w.u32(*s as u32);
                from.encode(w);
                to.encode(w);
            }
            Nfs3Reply::Link(s, a, wcc) => {
                w.u32(*s as u32);
                encode_post_op_attr(w, a);
                wcc.encode(w);
            }
            Nfs3Reply::Readdir(r) => encode_readdir(w, r, false),
            Nfs3Reply::Readdirplus(r) => encode_readdir(w, r, true),
            Nfs3Reply::Fsstat(r) => match r {
                Ok(s) => {
                    w.u32(0);
                    encode_post_op_attr(w, &s.attr);
                    for v in [s.tbytes, s.fbytes, s.abytes, s.tfiles, s.ffiles, s.afiles] {
                        w.u64(v);
                    }
                    w.u32(s.invarsec);
                }
                Err((s, a)) => status_attr(w, *s, a),
            },
            Nfs3Reply::Fsinfo(r) => match r {
                Ok(i) => {
                    w.u32(0);
                    encode_post_op_attr(w, &i.attr);
                    for v in [
                        i.rtmax, i.rtpref, i.rtmult, i.wtmax, i.wtpref, i.wtmult, i.dtpref,
                    ] {
                        w.u32(v);
                    }
                    w.u64(i.maxfilesize);
                    i.time_delta.encode(w);
                    w.u32(i.properties);
                }
                Err((s, a)) => status_attr(w, *s, a),
            },
            Nfs3Reply::Pathconf(r) => match r {
                Ok(p) => {
                    w.u32(0);
                    encode_post_op_attr(w, &p.attr);
                    w.u32(p.linkmax);
                    w.u32(p.name_max);
                    w.bool(p.no_trunc);
                    w.bool(p.chown_restricted);
                    w.bool(p.case_insensitive);
                    w.bool(p.case_preserving);
                }
                Err((s, a)) => status_attr(w, *s, a),
            },
            Nfs3Reply::Commit(r) => match r {
                Ok((wcc, verf)) => {
                    w.u32(0);
                    wcc.encode(w);
                    w.opaque_fixed(verf);
                }
                Err((s, wcc)) => {
                    w.u32(*s as u32);
                    wcc.encode(w);
                }
            },
        }
        None
    }

    /// The status of this reply (NULL counts as OK).
    pub fn status(&self) -> Nfsstat3 {
        fn st<T, E: StatusOf>(r: &std::result::Result<T, E>) -> Nfsstat3 {
            match r {
                Ok(_) => Nfsstat3::Ok,
                Err(e) => e.status(),
            }
        }
        match self {
            Nfs3Reply::Null => Nfsstat3::Ok,
            Nfs3Reply::Getattr(r) => st(r),
            Nfs3Reply::Wcc(s, _) | Nfs3Reply::Rename(s, ..) | Nfs3Reply::Link(s, ..) => *s,
            Nfs3Reply::Lookup(r) => st(r),
            Nfs3Reply::Access(r) => st(r),
            Nfs3Reply::Readlink(r) => st(r),
            Nfs3Reply::Read(r) => st(r),
            Nfs3Reply::Write(r) => st(r),
            Nfs3Reply::Create(r) => st(r),
            Nfs3Reply::Readdir(r) | Nfs3Reply::Readdirplus(r) => st(r),
            Nfs3Reply::Fsstat(r) => st(r),
            Nfs3Reply::Fsinfo(r) => st(r),
            Nfs3Reply::Pathconf(r) => st(r),
            Nfs3Reply::Commit(r) => st(r),
        }
    }
}

trait StatusOf {
    fn status(&self) -> Nfsstat3;
}

impl StatusOf for Nfsstat3 {
    fn status(&self) -> Nfsstat3 {
        *self
    }
}

impl<T> StatusOf for (Nfsstat3, T) {
    fn status(&self) -> Nfsstat3 {
        self.0
    }
}

fn status_attr(w: &mut Writer, s: Nfsstat3, a: &PostOpAttr) {
    w.u32(s as u32);
    encode_post_op_attr(w, a);
}

fn encode_readdir(
    w: &mut Writer,
    r: &std::result::Result<ReaddirOk, (Nfsstat3, PostOpAttr)>,
    plus: bool,
) {
    match r {
        Ok(ok) => {
            w.u32(0);
            encode_post_op_attr(w, &ok.dir_attr);
            w.opaque_fixed(&ok.cookieverf);
            for e in &ok.entries {
                w.bool(true);
                w.u64(e.fileid);
                w.opaque(&e.name);
                w.u64(e.cookie);
                if plus {
                    encode_post_op_attr(w, &e.attr);
                    w.optional(e.handle.as_ref(), |w, fh| fh.encode(w));
                }
            }
            w.bool(false);
            w.bool(ok.eof);
        }
        Err((s, a)) => status_attr(w, *s, a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fh() -> NfsFh3 {
        NfsFh3(Bytes::from_static(&[7u8; 40]))
    }

    fn round_trip(call: Nfs3Call) {
        let mut w = Writer::new();
        call.encode(&mut w);
        let mut r = Reader::new(w.into_bytes());
        let back = Nfs3Call::decode(call.proc_(), &mut r).unwrap().unwrap();
        assert_eq!(back, call);
    }

    #[test]
    fn every_procedure_round_trips_through_encode_and_decode() {
        let place = DirOpArgs3 {
            dir: fh(),
            name: Bytes::from_static(b"file.bin"),
        };
        let attr = Sattr3 {
            mode: Some(0o640),
            uid: None,
            gid: Some(100),
            size: Some(5),
            atime: SetTime3::ServerTime,
            mtime: SetTime3::ClientTime(Nfstime3 {
                seconds: 1,
                nseconds: 2,
            }),
        };
        let calls = vec![
            Nfs3Call::Null,
            Nfs3Call::Getattr(fh()),
            Nfs3Call::Setattr {
                object: fh(),
                attr: attr.clone(),
                guard: Some(Nfstime3::default()),
            },
            Nfs3Call::Lookup(place.clone()),
            Nfs3Call::Access {
                object: fh(),
                access: 0x3f,
            },
            Nfs3Call::Readlink(fh()),
            Nfs3Call::Read {
                file: fh(),
                offset: 1 << 40,
                count: 4096,
            },
            Nfs3Call::Write {
                file: fh(),
                offset: 3,
                count: 3,
                stable: StableHow::FileSync,
                data: Bytes::from_static(b"abc"),
            },
            Nfs3Call::Create {
                place: place.clone(),
                how: CreateHow3::Guarded(attr.clone()),
            },
            Nfs3Call::Create {
                place: place.clone(),
                how: CreateHow3::Exclusive([1; 8]),
            },
            Nfs3Call::Mkdir {
                place: place.clone(),
                attr: attr.clone(),
            },
            Nfs3Call::Symlink {
                place: place.clone(),
                attr: Sattr3::default(),
                target: Bytes::from_static(b"../x"),
            },
            Nfs3Call::Mknod {
                place: place.clone(),
                what: MknodData3::Chr(attr.clone(), Specdata3 { major: 1, minor: 3 }),
            },
            Nfs3Call::Mknod {
                place: place.clone(),
                what: MknodData3::Fifo(attr.clone()),
            },
            Nfs3Call::Mknod {
                place: place.clone(),
                what: MknodData3::Other(Ftype3::Dir),
            },
            Nfs3Call::Remove(place.clone()),
            Nfs3Call::Rmdir(place.clone()),
            Nfs3Call::Rename {
                from: place.clone(),
                to: place.clone(),
            },
            Nfs3Call::Link {
                file: fh(),
                link: place,
            },
            Nfs3Call::Readdir {
                dir: fh(),
                cookie: 9,
                cookieverf: [2; 8],
                count: 4096,
            },
            Nfs3Call::Readdirplus {
                dir: fh(),
                cookie: 9,
                cookieverf: [2; 8],
                dircount: 512,
                maxcount: 8192,
            },
            Nfs3Call::Fsstat(fh()),
            Nfs3Call::Fsinfo(fh()),
            Nfs3Call::Pathconf(fh()),
            Nfs3Call::Commit {
                file: fh(),
                offset: 0,
                count: 0,
            },
        ];
        for c in calls {
            round_trip(c);
        }
    }

    #[test]
    fn unknown_procedure_decodes_as_none() {
        let mut r = Reader::new(Bytes::new());
        assert_eq!(Nfs3Call::decode(22, &mut r), Ok(None));
    }

    #[test]
    fn file_handle_longer_than_64_bytes_is_garbage() {
        let mut w = Writer::new();
        w.opaque(&[0u8; 65]);
        let mut r = Reader::new(w.into_bytes());
        assert!(Nfs3Call::decode(proc3::GETATTR, &mut r).is_err());
    }

    #[test]
    fn write_payload_is_a_slice_of_the_record() {
        let call = Nfs3Call::Write {
            file: fh(),
            offset: 0,
            count: 8,
            stable: StableHow::Unstable,
            data: Bytes::from_static(&[5u8; 8]),
        };
        let mut w = Writer::new();
        call.encode(&mut w);
        let rec = w.into_bytes();
        let base = rec.as_ptr() as usize;
        let mut r = Reader::new(rec.clone());
        match Nfs3Call::decode(proc3::WRITE, &mut r).unwrap().unwrap() {
            Nfs3Call::Write { data, .. } => {
                assert_eq!(data.as_ptr() as usize, base + rec.len() - 8)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn trailing_bytes_after_arguments_are_garbage() {
        let mut w = Writer::new();
        fh().encode(&mut w);
        w.u32(0);
        let mut r = Reader::new(w.into_bytes());
        assert!(Nfs3Call::decode(proc3::GETATTR, &mut r).is_err());
    }

    #[test]
    fn read_reply_returns_its_payload_beside_the_header() {
        let reply = Nfs3Reply::Read(Ok(ReadOk {
            attr: None,
            count: 3,
            eof: true,
            data: Bytes::from_static(b"xyz"),
        }));
        let mut w = Writer::new();
        let payload = reply.encode(&mut w).unwrap();
        assert_eq!(&payload[..], b"xyz");
        // status, attr_follows, count, eof, data length
        assert_eq!(w.len(), 20);
    }
}
