//! MOUNT version 3 (RFC 1813 Appendix I).

use bytes::Bytes;

use crate::limits::MOUNT_PATH_LEN_MAX;
use crate::xdr::{Encode, Reader, Result, Writer};

pub const PROGRAM: u32 = 100005;
pub const VERSION: u32 = 3;

pub const MOUNTPROC3_NULL: u32 = 0;
pub const MOUNTPROC3_MNT: u32 = 1;
pub const MOUNTPROC3_DUMP: u32 = 2;
pub const MOUNTPROC3_UMNT: u32 = 3;
pub const MOUNTPROC3_UMNTALL: u32 = 4;
pub const MOUNTPROC3_EXPORT: u32 = 5;

/// mountstat3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountStat3 {
    Ok = 0,
    Perm = 1,
    NoEnt = 2,
    Io = 5,
    Acces = 13,
    NotDir = 20,
    Inval = 22,
    NameTooLong = 63,
    NotSupp = 10004,
    ServerFault = 10006,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountCall {
    Null,
    Mnt(Bytes),
    Dump,
    Umnt(Bytes),
    Umntall,
    Export,
}

impl MountCall {
    /// `Ok(None)`: no such procedure. An error: GARBAGE_ARGS.
    pub fn decode(proc_: u32, r: &mut Reader) -> Result<Option<MountCall>> {
        let call = match proc_ {
            MOUNTPROC3_NULL => MountCall::Null,
            MOUNTPROC3_MNT => MountCall::Mnt(r.opaque(MOUNT_PATH_LEN_MAX)?),
            MOUNTPROC3_DUMP => MountCall::Dump,
            MOUNTPROC3_UMNT => MountCall::Umnt(r.opaque(MOUNT_PATH_LEN_MAX)?),
            MOUNTPROC3_UMNTALL => MountCall::Umntall,
            MOUNTPROC3_EXPORT => MountCall::Export,
            _ => return Ok(None),
        };
        r.finish()?;
        Ok(Some(call))
    }

    pub fn proc_(&self) -> u32 {
        match self {
            MountCall::Null => MOUNTPROC3_NULL,
            MountCall::Mnt(_) => MOUNTPROC3_MNT,
            MountCall::Dump => MOUNTPROC3_DUMP,
            MountCall::Umnt(_) => MOUNTPROC3_UMNT,
            MountCall::Umntall => MOUNTPROC3_UMNTALL,
            MountCall::Export => MOUNTPROC3_EXPORT,
        }
    }
}

impl Encode for MountCall {
    fn encode(&self, w: &mut Writer) {
        match self {
            MountCall::Mnt(p) | MountCall::Umnt(p) => w.opaque(p),
            MountCall::Null | MountCall::Dump | MountCall::Umntall | MountCall::Export => {}
        }
    }
}

/// An export as EXPORT lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportNode {
    pub dir: Bytes,
    pub groups: Vec<Bytes>,
}

/// A mount as DUMP lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountBody {
    pub hostname: Bytes,
    pub directory: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountReply {
    Null,
    /// fhs_status, and on success the handle and the accepted auth flavors.
    Mnt(std::result::Result<(Bytes, Vec<u32>), MountStat3>),
    Dump(Vec<MountBody>),
    Umnt,
    Umntall,
    Export(Vec<ExportNode>),
}

impl Encode for MountReply {
    fn encode(&self, w: &mut Writer) {
        match self {
            MountReply::Null | MountReply::Umnt | MountReply::Umntall => {}
            MountReply::Mnt(Ok((fh, flavors))) => {
                w.u32(MountStat3::Ok as u32);
                w.opaque(fh);
                w.u32(flavors.len() as u32);
                for f in flavors {
                    w.u32(*f);
                }
            }
            MountReply::Mnt(Err(s)) => w.u32(*s as u32),
            MountReply::Dump(list) => {
                for m in list {
                    w.bool(true);
                    w.opaque(&m.hostname);
                    w.opaque(&m.directory);
                }
                w.bool(false);
            }
            MountReply::Export(list) => {
                for e in list {
                    w.bool(true);
                    w.opaque(&e.dir);
                    for g in &e.groups {
                        w.bool(true);
                        w.opaque(g);
                    }
                    w.bool(false);
                }
                w.bool(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mnt_call_round_trips() {
        let c = MountCall::Mnt(Bytes::from_static(b"/data"));
        let mut w = Writer::new();
        c.encode(&mut w);
        let back = MountCall::decode(MOUNTPROC3_MNT, &mut Reader::new(w.into_bytes()));
        assert_eq!(back, Ok(Some(c)));
    }

    #[test]
    fn mount_path_over_1024_bytes_is_garbage() {
        let mut w = Writer::new();
        w.opaque(&[b'a'; 1025]);
        assert!(MountCall::decode(MOUNTPROC3_MNT, &mut Reader::new(w.into_bytes())).is_err());
    }
}
