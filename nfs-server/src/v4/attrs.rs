//! fattr4 (RFC 8881 §5): the attributes this server supports, their encoding from a store
//! `Attr`, and the decoding of the settable ones.

use backend::{Attr, FileType, FsStat, SetAttr, SetTime, Timestamp};
use nfs_proto::limits::IO_SIZE_MAX;
use nfs_proto::v4::attr4::*;
use nfs_proto::v4::{ftype4, Bitmap4, Fattr4, FattrWriter, Nfsstat4, Nfstime4, Settime4};
use nfs_proto::xdr::{Decode, Reader, Writer};

/// Every attribute GETATTR and READDIR return. FS_LAYOUT_TYPES, ACLs, quotas, named attributes
/// and the rest are not supported and are left out of the reply's mask.
pub const SUPPORTED: &[u32] = &[
    SUPPORTED_ATTRS,
    TYPE,
    FH_EXPIRE_TYPE,
    CHANGE,
    SIZE,
    LINK_SUPPORT,
    SYMLINK_SUPPORT,
    NAMED_ATTR,
    FSID,
    UNIQUE_HANDLES,
    LEASE_TIME,
    RDATTR_ERROR,
    CANSETTIME,
    CASE_INSENSITIVE,
    CASE_PRESERVING,
    CHOWN_RESTRICTED,
    FILEHANDLE,
    FILEID,
    FILES_AVAIL,
    FILES_FREE,
    FILES_TOTAL,
    HOMOGENEOUS,
    MAXFILESIZE,
    MAXLINK,
    MAXNAME,
    MAXREAD,
    MAXWRITE,
    MODE,
    NO_TRUNC,
    NUMLINKS,
    OWNER,
    OWNER_GROUP,
    RAWDEV,
    SPACE_AVAIL,
    SPACE_FREE,
    SPACE_TOTAL,
    SPACE_USED,
    TIME_ACCESS,
    TIME_ACCESS_SET,
    TIME_DELTA,
    TIME_METADATA,
    TIME_MODIFY,
    TIME_MODIFY_SET,
    MOUNTED_ON_FILEID,
    SUPPATTR_EXCLCREAT,
];

/// Attributes SETATTR (and OPEN/CREATE createattrs) can set.
pub const SETTABLE: &[u32] = &[
    SIZE,
    MODE,
    OWNER,
    OWNER_GROUP,
    TIME_ACCESS_SET,
    TIME_MODIFY_SET,
];
/// Attributes an EXCLUSIVE4_1 OPEN can set alongside the verifier (§18.16.3): not the times,
/// which may hold the verifier.
pub const EXCLCREAT: &[u32] = &[SIZE, MODE, OWNER, OWNER_GROUP];
/// Write-only attributes: GETATTR never returns them.
const WRITE_ONLY: &[u32] = &[TIME_ACCESS_SET, TIME_MODIFY_SET];

pub fn supported() -> Bitmap4 {
    Bitmap4::from_bits(SUPPORTED)
}

/// Whether the attributes in `req` need `Store::fsstat`.
pub fn needs_fsstat(req: &Bitmap4) -> bool {
    [
        FILES_AVAIL,
        FILES_FREE,
        FILES_TOTAL,
        SPACE_AVAIL,
        SPACE_FREE,
        SPACE_TOTAL,
    ]
    .iter()
    .any(|&a| req.contains(a))
}

/// What encoding an object's attributes needs besides its `Attr`.
pub struct Context<'a> {
    pub export_id: u32,
    pub fh: &'a [u8],
    pub lease_secs: u32,
    pub fsstat: Option<FsStat>,
    /// READDIR: the entry's rdattr_error.
    pub rdattr_error: Nfsstat4,
    /// How owners are written.
    pub idmap: &'a super::idmap::IdMap,
}

pub fn ftype(t: FileType) -> u32 {
    match t {
        FileType::Regular => ftype4::NF4REG,
        FileType::Directory => ftype4::NF4DIR,
        FileType::Symlink => ftype4::NF4LNK,
        FileType::BlockDevice => ftype4::NF4BLK,
        FileType::CharDevice => ftype4::NF4CHR,
        FileType::Socket => ftype4::NF4SOCK,
        FileType::Fifo => ftype4::NF4FIFO,
    }
}

fn time(t: Timestamp) -> Nfstime4 {
    Nfstime4 {
        seconds: t.seconds,
        nseconds: t.nanoseconds,
    }
}

/// Encodes the attributes of `req` this server supports, in ascending order (§5.6).
pub fn encode(a: &Attr, req: &Bitmap4, cx: &Context) -> Fattr4 {
    let mut w = FattrWriter::new();
    let fs = cx.fsstat.unwrap_or_default();
    for bit in req.iter() {
        if !SUPPORTED.contains(&bit) || WRITE_ONLY.contains(&bit) {
            continue;
        }
        if matches!(
            bit,
            FILES_AVAIL | FILES_FREE | FILES_TOTAL | SPACE_AVAIL | SPACE_FREE | SPACE_TOTAL
        ) && cx.fsstat.is_none()
        {
            continue;
        }
        w.attr(bit, |w: &mut Writer| match bit {
            SUPPORTED_ATTRS => supported().encode_to(w),
            TYPE => w.u32(ftype(a.file_type)),
            FH_EXPIRE_TYPE => w.u32(nfs_proto::v4::fh4::PERSISTENT),
            CHANGE => w.u64(a.change),
            SIZE => w.u64(a.size),
            LINK_SUPPORT | SYMLINK_SUPPORT | UNIQUE_HANDLES | CANSETTIME | CASE_PRESERVING
            | CHOWN_RESTRICTED | HOMOGENEOUS | NO_TRUNC => w.bool(true),
            NAMED_ATTR | CASE_INSENSITIVE => w.bool(false),
            FSID => {
                w.u64(u64::from(cx.export_id));
                w.u64(0);
            }
            LEASE_TIME => w.u32(cx.lease_secs),
            RDATTR_ERROR => w.u32(cx.rdattr_error as u32),
            FILEHANDLE => w.opaque(cx.fh),
            FILEID | MOUNTED_ON_FILEID => w.u64(a.id.ino),
            FILES_AVAIL => w.u64(fs.avail_files),
            FILES_FREE => w.u64(fs.free_files),
            FILES_TOTAL => w.u64(fs.total_files),
            MAXFILESIZE => w.u64(backend::FILE_SIZE_MAX),
            MAXLINK => w.u32(65000),
            MAXNAME => w.u32(backend::NAME_LEN_MAX as u32),
            MAXREAD | MAXWRITE => w.u64(u64::from(IO_SIZE_MAX)),
            MODE => w.u32(a.mode & 0o7777),
            NUMLINKS => w.u32(a.nlink),
            OWNER => w.opaque(cx.idmap.owner(a.uid).as_bytes()),
            OWNER_GROUP => w.opaque(cx.idmap.owner_group(a.gid).as_bytes()),
            RAWDEV => {
                w.u32(a.rdev.0);
                w.u32(a.rdev.1);
            }
            SPACE_AVAIL => w.u64(fs.avail_bytes),
            SPACE_FREE => w.u64(fs.free_bytes),
            SPACE_TOTAL => w.u64(fs.total_bytes),
            SPACE_USED => w.u64(a.used),
            TIME_ACCESS => encode_time(w, time(a.atime)),
            TIME_DELTA => encode_time(
                w,
                Nfstime4 {
                    seconds: 0,
                    nseconds: 1,
                },
            ),
            TIME_METADATA => encode_time(w, time(a.ctime)),
            TIME_MODIFY => encode_time(w, time(a.mtime)),
            SUPPATTR_EXCLCREAT => Bitmap4::from_bits(EXCLCREAT).encode_to(w),
            _ => unreachable!("attribute {bit} is in SUPPORTED but has no encoder"),
        });
    }
    w.finish()
}

fn encode_time(w: &mut Writer, t: Nfstime4) {
    w.u64(t.seconds as u64);
    w.u32(t.nseconds);
}

trait EncodeTo {
    fn encode_to(&self, w: &mut Writer);
}

impl EncodeTo for Bitmap4 {
    fn encode_to(&self, w: &mut Writer) {
        nfs_proto::xdr::Encode::encode(self, w);
    }
}

/// Decodes settable attributes (SETATTR, OPEN's and CREATE's createattrs). Returns what to
/// set and the mask of what was given. Unsupported attributes are NFS4ERR_ATTRNOTSUPP,
/// supported read-only ones NFS4ERR_INVAL (§18.30.3).
pub fn decode_settable(
    f: &Fattr4,
    idmap: &super::idmap::IdMap,
) -> Result<(SetAttr, Bitmap4), Nfsstat4> {
    let mut sa = SetAttr::default();
    let mut r: Reader = f.vals_reader();
    let bad = |_| Nfsstat4::BadXdr;
    for bit in f.attrmask.iter() {
        if !SUPPORTED.contains(&bit) {
            return Err(Nfsstat4::AttrNotSupp);
        }
        match bit {
            SIZE => sa.size = Some(r.u64().map_err(bad)?),
            MODE => sa.mode = Some(r.u32().map_err(bad)? & 0o7777),
            OWNER => sa.uid = Some(idmap.parse_owner(&r.opaque(1024).map_err(bad)?)?),
            OWNER_GROUP => {
                let s = r.opaque(1024).map_err(bad)?;
                sa.gid = Some(idmap.parse_owner_group(&s)?)
            }
            TIME_ACCESS_SET | TIME_MODIFY_SET => {
                let t = match Settime4::decode(&mut r).map_err(bad)? {
                    Settime4::ServerTime => SetTime::ServerNow,
                    Settime4::ClientTime(t) => {
                        if t.nseconds >= 1_000_000_000 {
                            return Err(Nfsstat4::Inval);
                        }
                        SetTime::Client(Timestamp {
                            seconds: t.seconds,
                            nanoseconds: t.nseconds,
                        })
                    }
                };
                if bit == TIME_ACCESS_SET {
                    sa.atime = t;
                } else {
                    sa.mtime = t;
                }
            }
            _ => return Err(Nfsstat4::Inval),
        }
    }
    if r.remaining() != 0 {
        return Err(Nfsstat4::BadXdr);
    }
    let mut set = f.attrmask.clone();
    while set.0.last() == Some(&0) {
        set.0.pop();
    }
    Ok((sa, set))
}
