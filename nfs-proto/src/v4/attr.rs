//! Settable attributes: the values a client sends in a fattr4 (SETATTR, CREATE, OPEN's
//! createattrs, EXCLUSIVE4_1), decoded by walking the mask in ascending order (RFC 8881 §5).

use crate::limits::ACL4_ACES_MAX;
use crate::v4::consts::{attr4, Nfsstat4};
use crate::v4::types::{
    xdr_struct, Bitmap4, Fattr4, FattrWriter, Nfsace4, Nfstime4, Settime4, Utf8Str4,
};
use crate::xdr::{Decode, Reader, Result, Writer};

xdr_struct! {
    /// mode_masked4: set only the mode bits in `mask` to their value in `set`.
    #[derive(Copy, Default)]
    pub struct ModeMasked4 {
        pub set: u32,
        pub mask: u32,
    }
}

/// The values of the attributes a client may set. `None` means the attribute was not in the
/// mask.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sattr4 {
    pub size: Option<u64>,
    pub acl: Option<Vec<Nfsace4>>,
    pub archive: Option<bool>,
    pub hidden: Option<bool>,
    pub mimetype: Option<Utf8Str4>,
    pub mode: Option<u32>,
    pub owner: Option<Utf8Str4>,
    pub owner_group: Option<Utf8Str4>,
    pub system: Option<bool>,
    pub time_access_set: Option<Settime4>,
    pub time_backup: Option<Nfstime4>,
    pub time_create: Option<Nfstime4>,
    pub time_modify_set: Option<Settime4>,
    pub mode_set_masked: Option<ModeMasked4>,
}

/// Settable attributes this codec cannot decode (DACL, SACL, LAYOUT_HINT, RETENTION_SET,
/// RETENTEVT_SET, RETENTION_HOLD): a client that sets them gets NFS4ERR_ATTRNOTSUPP.
const SETTABLE_UNSUPPORTED: [u32; 6] = [
    attr4::DACL,
    attr4::SACL,
    attr4::LAYOUT_HINT,
    attr4::RETENTION_SET,
    attr4::RETENTEVT_SET,
    attr4::RETENTION_HOLD,
];

impl Sattr4 {
    /// Decodes the values of `f`. Errors are the statuses RFC 8881 §18.30 gives SETATTR:
    /// NFS4ERR_INVAL for a read-only attribute, NFS4ERR_ATTRNOTSUPP for one this codec does not
    /// decode or the protocol does not define, NFS4ERR_BADXDR for values that do not decode or
    /// bytes left over after the last one. The first offending attribute, in bit order, decides.
    /// The server may still refuse decoded attributes it does not support.
    pub fn decode(f: &Fattr4) -> std::result::Result<Sattr4, Nfsstat4> {
        let mut r = f.vals_reader();
        let mut s = Sattr4::default();
        for attr in f.attrmask.iter() {
            match s.decode_one(attr, &mut r) {
                Ok(true) => {}
                Ok(false) if SETTABLE_UNSUPPORTED.contains(&attr) => {
                    return Err(Nfsstat4::AttrNotSupp)
                }
                Ok(false) if attr <= attr4::FS_CHARSET_CAP => return Err(Nfsstat4::Inval),
                Ok(false) => return Err(Nfsstat4::AttrNotSupp),
                Err(_) => return Err(Nfsstat4::BadXdr),
            }
        }
        r.finish().map_err(|_| Nfsstat4::BadXdr)?;
        Ok(s)
    }

    /// Decodes attribute `attr` into `self`; `Ok(false)` if it is not one this type holds.
    fn decode_one(&mut self, attr: u32, r: &mut Reader) -> Result<bool> {
        match attr {
            attr4::SIZE => self.size = Some(r.u64()?),
            attr4::ACL => {
                let n = r.array_len(ACL4_ACES_MAX, 16)?;
                let mut aces = Vec::with_capacity(n);
                for _ in 0..n {
                    aces.push(Nfsace4::decode(r)?);
                }
                self.acl = Some(aces);
            }
            attr4::ARCHIVE => self.archive = Some(r.bool()?),
            attr4::HIDDEN => self.hidden = Some(r.bool()?),
            attr4::MIMETYPE => self.mimetype = Some(Utf8Str4::decode(r)?),
            attr4::MODE => self.mode = Some(r.u32()?),
            attr4::OWNER => self.owner = Some(Utf8Str4::decode(r)?),
            attr4::OWNER_GROUP => self.owner_group = Some(Utf8Str4::decode(r)?),
            attr4::SYSTEM => self.system = Some(r.bool()?),
            attr4::TIME_ACCESS_SET => self.time_access_set = Some(Settime4::decode(r)?),
            attr4::TIME_BACKUP => self.time_backup = Some(Nfstime4::decode(r)?),
            attr4::TIME_CREATE => self.time_create = Some(Nfstime4::decode(r)?),
            attr4::TIME_MODIFY_SET => self.time_modify_set = Some(Settime4::decode(r)?),
            attr4::MODE_SET_MASKED => self.mode_set_masked = Some(ModeMasked4::decode(r)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The attributes present, as a bitmap4 (for SETATTR's attrsset or OPEN's attrset).
    pub fn mask(&self) -> Bitmap4 {
        let mut b = Bitmap4::new();
        let present = [
            (attr4::SIZE, self.size.is_some()),
            (attr4::ACL, self.acl.is_some()),
            (attr4::ARCHIVE, self.archive.is_some()),
            (attr4::HIDDEN, self.hidden.is_some()),
            (attr4::MIMETYPE, self.mimetype.is_some()),
            (attr4::MODE, self.mode.is_some()),
            (attr4::OWNER, self.owner.is_some()),
            (attr4::OWNER_GROUP, self.owner_group.is_some()),
            (attr4::SYSTEM, self.system.is_some()),
            (attr4::TIME_ACCESS_SET, self.time_access_set.is_some()),
            (attr4::TIME_BACKUP, self.time_backup.is_some()),
            (attr4::TIME_CREATE, self.time_create.is_some()),
            (attr4::TIME_MODIFY_SET, self.time_modify_set.is_some()),
            (attr4::MODE_SET_MASKED, self.mode_set_masked.is_some()),
        ];
        for (attr, set) in present {
            if set {
                b.set(attr);
            }
        }
        b
    }

    /// Encodes these values as a fattr4 (for a client building SETATTR, CREATE or OPEN).
    pub fn to_fattr(&self) -> Fattr4 {
        fn put<T>(
            f: &mut FattrWriter,
            attr: u32,
            v: &Option<T>,
            enc: impl FnOnce(&mut Writer, &T),
        ) {
            if let Some(v) = v {
                f.attr(attr, |w| enc(w, v));
            }
        }
        use crate::xdr::Encode;
        let mut f = FattrWriter::new();
        put(&mut f, attr4::SIZE, &self.size, |w, v| w.u64(*v));
        put(&mut f, attr4::ACL, &self.acl, |w, v| {
            crate::v4::types::encode_array(w, v)
        });
        put(&mut f, attr4::ARCHIVE, &self.archive, |w, v| w.bool(*v));
        put(&mut f, attr4::HIDDEN, &self.hidden, |w, v| w.bool(*v));
        put(&mut f, attr4::MIMETYPE, &self.mimetype, |w, v| v.encode(w));
        put(&mut f, attr4::MODE, &self.mode, |w, v| w.u32(*v));
        put(&mut f, attr4::OWNER, &self.owner, |w, v| v.encode(w));
        put(&mut f, attr4::OWNER_GROUP, &self.owner_group, |w, v| {
            v.encode(w)
        });
        put(&mut f, attr4::SYSTEM, &self.system, |w, v| w.bool(*v));
        put(
            &mut f,
            attr4::TIME_ACCESS_SET,
            &self.time_access_set,
            |w, v| v.encode(w),
        );
        put(&mut f, attr4::TIME_BACKUP, &self.time_backup, |w, v| {
            v.encode(w)
        });
        put(&mut f, attr4::TIME_CREATE, &self.time_create, |w, v| {
            v.encode(w)
        });
        put(
            &mut f,
            attr4::TIME_MODIFY_SET,
            &self.time_modify_set,
            |w, v| v.encode(w),
        );
        put(
            &mut f,
            attr4::MODE_SET_MASKED,
            &self.mode_set_masked,
            |w, v| v.encode(w),
        );
        f.finish()
    }
}
