//! The NFSv4.1 callback program (RFC 8881 §20): here the server is the RPC client. CB_COMPOUND
//! arguments encode (and decode, for tests and fuzzing); results decode from the client's
//! bytes with every length bounded (and encode, for tests).

use crate::limits::{CB_COMPOUND_OPS_MAX, SMALL_ARRAY4_MAX};
use crate::v4::consts::{cb_op4, Nfsstat4};
use crate::v4::res::{OpStatus, Res};
use crate::v4::types::*;
use crate::xdr::{Decode, Encode, Reader, Result, Writer, XdrError};

xdr_struct! {
    /// CB_GETATTR4args.
    pub struct CbGetattr4Args {
        pub fh: NfsFh4,
        pub attr_request: Bitmap4,
    }
}

xdr_struct! {
    /// CB_RECALL4args.
    pub struct CbRecall4Args {
        pub stateid: Stateid4,
        pub truncate: bool,
        pub fh: NfsFh4,
    }
}

xdr_struct! {
    /// layoutrecall_file4.
    pub struct LayoutrecallFile4 {
        pub fh: NfsFh4,
        pub offset: u64,
        pub length: u64,
        pub stateid: Stateid4,
    }
}

/// layoutrecall4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layoutrecall4 {
    File(LayoutrecallFile4),
    Fsid(Fsid4),
    All,
}

impl Decode for Layoutrecall4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            1 => Layoutrecall4::File(LayoutrecallFile4::decode(r)?),
            2 => Layoutrecall4::Fsid(Fsid4::decode(r)?),
            3 => Layoutrecall4::All,
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for Layoutrecall4 {
    fn encode(&self, w: &mut Writer) {
        match self {
            Layoutrecall4::File(f) => {
                w.u32(1);
                f.encode(w);
            }
            Layoutrecall4::Fsid(f) => {
                w.u32(2);
                f.encode(w);
            }
            Layoutrecall4::All => w.u32(3),
        }
    }
}

xdr_struct! {
    /// CB_LAYOUTRECALL4args.
    pub struct CbLayoutrecall4Args {
        pub layout_type: u32,
        pub iomode: u32,
        pub changed: bool,
        pub recall: Layoutrecall4,
    }
}

xdr_struct! {
    /// notify4: a notification mask and its values (notifylist4), left encoded.
    pub struct Notify4 {
        pub notify_mask: Bitmap4,
        pub notify_vals: Body4,
    }
}

/// notify4<> (CB_NOTIFY, CB_NOTIFY_DEVICEID).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyList4(pub Vec<Notify4>);

impl Decode for NotifyList4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(NotifyList4(decode_array(r, SMALL_ARRAY4_MAX)?))
    }
}

impl Encode for NotifyList4 {
    fn encode(&self, w: &mut Writer) {
        encode_array(w, &self.0);
    }
}

xdr_struct! {
    /// CB_NOTIFY4args.
    pub struct CbNotify4Args {
        pub stateid: Stateid4,
        pub fh: NfsFh4,
        pub changes: NotifyList4,
    }
}

xdr_struct! {
    /// CB_PUSH_DELEG4args.
    pub struct CbPushDeleg4Args {
        pub fh: NfsFh4,
        pub delegation: OpenDelegation4,
    }
}

xdr_struct! {
    /// CB_RECALL_ANY4args (also CB_RECALLABLE_OBJ_AVAIL4args).
    pub struct CbRecallAny4Args {
        pub objects_to_keep: u32,
        pub type_mask: Bitmap4,
    }
}

xdr_struct! {
    /// referring_call4.
    #[derive(Copy)]
    pub struct ReferringCall4 {
        pub sequenceid: u32,
        pub slotid: u32,
    }
}

/// referring_call_list4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferringCallList4 {
    pub sessionid: SessionId4,
    pub referring_calls: Vec<ReferringCall4>,
}

impl Decode for ReferringCallList4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(ReferringCallList4 {
            sessionid: SessionId4::decode(r)?,
            referring_calls: decode_array(r, SMALL_ARRAY4_MAX)?,
        })
    }
}

impl Encode for ReferringCallList4 {
    fn encode(&self, w: &mut Writer) {
        self.sessionid.encode(w);
        encode_array(w, &self.referring_calls);
    }
}

/// CB_SEQUENCE4args.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CbSequence4Args {
    pub sessionid: SessionId4,
    pub sequenceid: u32,
    pub slotid: u32,
    pub highest_slotid: u32,
    pub cachethis: bool,
    pub referring_call_lists: Vec<ReferringCallList4>,
}

impl Decode for CbSequence4Args {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(CbSequence4Args {
            sessionid: SessionId4::decode(r)?,
            sequenceid: r.u32()?,
            slotid: r.u32()?,
            highest_slotid: r.u32()?,
            cachethis: r.bool()?,
            referring_call_lists: decode_array(r, SMALL_ARRAY4_MAX)?,
        })
    }
}

impl Encode for CbSequence4Args {
    fn encode(&self, w: &mut Writer) {
        self.sessionid.encode(w);
        w.u32(self.sequenceid);
        w.u32(self.slotid);
        w.u32(self.highest_slotid);
        w.bool(self.cachethis);
        encode_array(w, &self.referring_call_lists);
    }
}

xdr_struct! {
    /// CB_WANTS_CANCELLED4args.
    #[derive(Copy)]
    pub struct CbWantsCancelled4Args {
        pub contended_wants_cancelled: bool,
        pub resourced_wants_cancelled: bool,
    }
}

xdr_struct! {
    /// CB_NOTIFY_LOCK4args.
    pub struct CbNotifyLock4Args {
        pub fh: NfsFh4,
        pub lock_owner: StateOwner4,
    }
}

xdr_struct! {
    /// CB_SEQUENCE4resok.
    #[derive(Copy)]
    pub struct CbSequence4ResOk {
        pub sessionid: SessionId4,
        pub sequenceid: u32,
        pub slotid: u32,
        pub highest_slotid: u32,
        pub target_highest_slotid: u32,
    }
}

/// Declares the callback argument and result enums from one table of
/// (operation, variant, argument type, result type).
macro_rules! cb_ops {
    ($($(#[$m:meta])* $op:ident => $variant:ident($a:ty, $res:ty),)*) => {
        /// nfs_cb_argop4: one operation of a CB_COMPOUND.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum NfsCbArgOp4 {
            $($(#[$m])* $variant($a),)*
            /// OP_CB_ILLEGAL (no arguments).
            Illegal,
        }

        /// nfs_cb_resop4: one callback operation's result.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum NfsCbResOp4 {
            $($(#[$m])* $variant($res),)*
            Illegal(Nfsstat4),
        }

        impl NfsCbArgOp4 {
            pub fn opnum(&self) -> u32 {
                match self {
                    $(NfsCbArgOp4::$variant(_) => cb_op4::$op,)*
                    NfsCbArgOp4::Illegal => cb_op4::CB_ILLEGAL,
                }
            }
        }

        impl Encode for NfsCbArgOp4 {
            fn encode(&self, w: &mut Writer) {
                w.u32(self.opnum());
                match self {
                    $(NfsCbArgOp4::$variant(a) => a.encode(w),)*
                    NfsCbArgOp4::Illegal => {}
                }
            }
        }

        impl Decode for NfsCbArgOp4 {
            fn decode(r: &mut Reader) -> Result<Self> {
                Ok(match r.u32()? {
                    $(cb_op4::$op => NfsCbArgOp4::$variant(<$a as Decode>::decode(r)?),)*
                    cb_op4::CB_ILLEGAL => NfsCbArgOp4::Illegal,
                    d => return Err(XdrError::BadDiscriminant(d)),
                })
            }
        }

        impl NfsCbResOp4 {
            pub fn opnum(&self) -> u32 {
                match self {
                    $(NfsCbResOp4::$variant(_) => cb_op4::$op,)*
                    NfsCbResOp4::Illegal(_) => cb_op4::CB_ILLEGAL,
                }
            }

            pub fn status(&self) -> Nfsstat4 {
                match self {
                    $(NfsCbResOp4::$variant(r) => r.status(),)*
                    NfsCbResOp4::Illegal(s) => *s,
                }
            }
        }

        impl Encode for NfsCbResOp4 {
            fn encode(&self, w: &mut Writer) {
                w.u32(self.opnum());
                match self {
                    $(NfsCbResOp4::$variant(r) => r.encode(w),)*
                    NfsCbResOp4::Illegal(s) => s.encode(w),
                }
            }
        }

        impl Decode for NfsCbResOp4 {
            fn decode(r: &mut Reader) -> Result<Self> {
                Ok(match r.u32()? {
                    $(cb_op4::$op => NfsCbResOp4::$variant(<$res as Decode>::decode(r)?),)*
                    cb_op4::CB_ILLEGAL => NfsCbResOp4::Illegal(Nfsstat4::decode(r)?),
                    d => return Err(XdrError::BadDiscriminant(d)),
                })
            }
        }
    };
}

cb_ops! {
    /// CB_GETATTR4resok: obj_attributes.
    CB_GETATTR => Getattr(CbGetattr4Args, Res<Fattr4>),
    CB_RECALL => Recall(CbRecall4Args, Nfsstat4),
    CB_LAYOUTRECALL => Layoutrecall(CbLayoutrecall4Args, Nfsstat4),
    CB_NOTIFY => Notify(CbNotify4Args, Nfsstat4),
    CB_PUSH_DELEG => PushDeleg(CbPushDeleg4Args, Nfsstat4),
    CB_RECALL_ANY => RecallAny(CbRecallAny4Args, Nfsstat4),
    CB_RECALLABLE_OBJ_AVAIL => RecallableObjAvail(CbRecallAny4Args, Nfsstat4),
    /// CB_RECALL_SLOT4args: rsa_target_highest_slotid.
    CB_RECALL_SLOT => RecallSlot(u32, Nfsstat4),
    CB_SEQUENCE => Sequence(CbSequence4Args, Res<CbSequence4ResOk>),
    CB_WANTS_CANCELLED => WantsCancelled(CbWantsCancelled4Args, Nfsstat4),
    CB_NOTIFY_LOCK => NotifyLock(CbNotifyLock4Args, Nfsstat4),
    /// CB_NOTIFY_DEVICEID4args: cnda_changes.
    CB_NOTIFY_DEVICEID => NotifyDeviceid(NotifyList4, Nfsstat4),
}

/// CB_COMPOUND4args. In NFSv4.1 `minorversion` is 1 and `callback_ident` is ignored by the
/// client (RFC 8881 §20.2.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CbCompound4Args {
    pub tag: Tag4,
    pub minorversion: u32,
    pub callback_ident: u32,
    pub argarray: Vec<NfsCbArgOp4>,
}

impl Encode for CbCompound4Args {
    fn encode(&self, w: &mut Writer) {
        self.tag.encode(w);
        w.u32(self.minorversion);
        w.u32(self.callback_ident);
        encode_array(w, &self.argarray);
    }
}

impl Decode for CbCompound4Args {
    /// For tests and fuzzing: the server never receives callbacks.
    fn decode(r: &mut Reader) -> Result<Self> {
        let args = CbCompound4Args {
            tag: Tag4::decode(r)?,
            minorversion: r.u32()?,
            callback_ident: r.u32()?,
            argarray: decode_array(r, CB_COMPOUND_OPS_MAX)?,
        };
        r.finish()?;
        Ok(args)
    }
}

/// CB_COMPOUND4res, as the client answers a callback.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CbCompound4Res {
    pub status: Nfsstat4,
    pub tag: Tag4,
    pub resarray: Vec<NfsCbResOp4>,
}

impl Decode for CbCompound4Res {
    /// Decodes a client's CB_COMPOUND reply: at most `limits::CB_COMPOUND_OPS_MAX` results,
    /// every length bounded, nothing after the last result.
    fn decode(r: &mut Reader) -> Result<Self> {
        let res = CbCompound4Res {
            status: Nfsstat4::decode(r)?,
            tag: Tag4::decode(r)?,
            resarray: decode_array(r, CB_COMPOUND_OPS_MAX)?,
        };
        r.finish()?;
        Ok(res)
    }
}

impl Encode for CbCompound4Res {
    fn encode(&self, w: &mut Writer) {
        self.status.encode(w);
        self.tag.encode(w);
        encode_array(w, &self.resarray);
    }
}
