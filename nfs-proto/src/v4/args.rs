//! COMPOUND4args (RFC 8881 §16.2): one decoder and one encoder for every NFSv4.1 operation's
//! arguments, and the COMPOUND framing with its limits.

use bytes::Bytes;

use crate::limits::{COMPOUND_OPS_MAX, IO_SIZE_MAX, SMALL_ARRAY4_MAX, TEST_STATEIDS_MAX};
use crate::v4::consts::{op4, Nfsstat4};
use crate::v4::types::*;
use crate::xdr::{Decode, Encode, Reader, Result, Writer, XdrError};

/// The NFSv4 minor version this codec decodes operations for.
pub const MINOR_VERSION: u32 = 1;

xdr_struct! {
    /// CLOSE4args.
    pub struct Close4Args {
        pub seqid: u32,
        pub open_stateid: Stateid4,
    }
}

xdr_struct! {
    /// COMMIT4args.
    pub struct Commit4Args {
        pub offset: u64,
        pub count: u32,
    }
}

/// createtype4: what CREATE makes. The union's default arm is void, so an unknown or
/// non-creatable type (NF4REG, NF4ATTRDIR, ...) decodes as `Other` and the server answers
/// NFS4ERR_BADTYPE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateType4 {
    Lnk(LinkText4),
    Blk(Specdata4),
    Chr(Specdata4),
    Sock,
    Fifo,
    Dir,
    Other(u32),
}

impl Decode for CreateType4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        use crate::v4::consts::ftype4::*;
        Ok(match r.u32()? {
            NF4LNK => CreateType4::Lnk(LinkText4::decode(r)?),
            NF4BLK => CreateType4::Blk(Specdata4::decode(r)?),
            NF4CHR => CreateType4::Chr(Specdata4::decode(r)?),
            NF4SOCK => CreateType4::Sock,
            NF4FIFO => CreateType4::Fifo,
            NF4DIR => CreateType4::Dir,
            other => CreateType4::Other(other),
        })
    }
}

impl Encode for CreateType4 {
    fn encode(&self, w: &mut Writer) {
        use crate::v4::consts::ftype4::*;
        match self {
            CreateType4::Lnk(l) => {
                w.u32(NF4LNK);
                l.encode(w);
            }
            CreateType4::Blk(d) => {
                w.u32(NF4BLK);
                d.encode(w);
            }
            CreateType4::Chr(d) => {
                w.u32(NF4CHR);
                d.encode(w);
            }
            CreateType4::Sock => w.u32(NF4SOCK),
            CreateType4::Fifo => w.u32(NF4FIFO),
            CreateType4::Dir => w.u32(NF4DIR),
            // A known type here would decode as its own variant; keep the wire canonical.
            CreateType4::Other(t) => w.u32(*t),
        }
    }
}

xdr_struct! {
    /// CREATE4args.
    pub struct Create4Args {
        pub objtype: CreateType4,
        pub objname: Component4,
        pub createattrs: Fattr4,
    }
}

xdr_struct! {
    /// LOCK4args.
    pub struct Lock4Args {
        pub locktype: NfsLockType4,
        pub reclaim: bool,
        pub offset: u64,
        pub length: u64,
        pub locker: Locker4,
    }
}

xdr_struct! {
    /// LOCKT4args.
    pub struct Lockt4Args {
        pub locktype: NfsLockType4,
        pub offset: u64,
        pub length: u64,
        pub owner: StateOwner4,
    }
}

xdr_struct! {
    /// LOCKU4args.
    pub struct Locku4Args {
        pub locktype: NfsLockType4,
        pub seqid: u32,
        pub lock_stateid: Stateid4,
        pub offset: u64,
        pub length: u64,
    }
}

xdr_struct! {
    /// OPEN4args.
    pub struct Open4Args {
        pub seqid: u32,
        pub share_access: u32,
        pub share_deny: u32,
        pub owner: StateOwner4,
        pub openhow: OpenFlag4,
        pub claim: OpenClaim4,
    }
}

xdr_struct! {
    /// OPEN_DOWNGRADE4args.
    pub struct OpenDowngrade4Args {
        pub open_stateid: Stateid4,
        pub seqid: u32,
        pub share_access: u32,
        pub share_deny: u32,
    }
}

xdr_struct! {
    /// READ4args.
    pub struct Read4Args {
        pub stateid: Stateid4,
        pub offset: u64,
        pub count: u32,
    }
}

xdr_struct! {
    /// READDIR4args.
    pub struct Readdir4Args {
        pub cookie: u64,
        pub cookieverf: Verifier4,
        pub dircount: u32,
        pub maxcount: u32,
        pub attr_request: Bitmap4,
    }
}

xdr_struct! {
    /// RENAME4args.
    pub struct Rename4Args {
        pub oldname: Component4,
        pub newname: Component4,
    }
}

xdr_struct! {
    /// SETATTR4args.
    pub struct Setattr4Args {
        pub stateid: Stateid4,
        pub obj_attributes: Fattr4,
    }
}

/// WRITE4args. `data` is a slice of the received record: never copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write4Args {
    pub stateid: Stateid4,
    pub offset: u64,
    pub stable: StableHow4,
    pub data: Bytes,
}

impl Decode for Write4Args {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(Write4Args {
            stateid: Stateid4::decode(r)?,
            offset: r.u64()?,
            stable: StableHow4::decode(r)?,
            data: r.opaque(IO_SIZE_MAX)?,
        })
    }
}

impl Encode for Write4Args {
    fn encode(&self, w: &mut Writer) {
        self.stateid.encode(w);
        w.u64(self.offset);
        self.stable.encode(w);
        w.opaque(&self.data);
    }
}

/// BACKCHANNEL_CTL4args.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackchannelCtl4Args {
    pub cb_program: u32,
    pub sec_parms: Vec<CallbackSecParms4>,
}

impl Decode for BackchannelCtl4Args {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(BackchannelCtl4Args {
            cb_program: r.u32()?,
            sec_parms: decode_array(r, SMALL_ARRAY4_MAX)?,
        })
    }
}

impl Encode for BackchannelCtl4Args {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.cb_program);
        encode_array(w, &self.sec_parms);
    }
}

xdr_struct! {
    /// BIND_CONN_TO_SESSION4args. `dir` is a channel_dir_from_client4 (CDFC4_*); the server
    /// checks its value.
    pub struct BindConnToSession4Args {
        pub sessid: SessionId4,
        pub dir: u32,
        pub use_conn_in_rdma_mode: bool,
    }
}

xdr_struct! {
    /// EXCHANGE_ID4args. `client_impl_id` is nfs_impl_id4<1>.
    pub struct ExchangeId4Args {
        pub clientowner: ClientOwner4,
        pub flags: u32,
        pub state_protect: StateProtect4A,
        pub client_impl_id: Option<NfsImplId4>,
    }
}

/// CREATE_SESSION4args.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateSession4Args {
    pub clientid: Clientid4,
    pub sequence: u32,
    pub flags: u32,
    pub fore_chan_attrs: ChannelAttrs4,
    pub back_chan_attrs: ChannelAttrs4,
    pub cb_program: u32,
    pub sec_parms: Vec<CallbackSecParms4>,
}

impl Decode for CreateSession4Args {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(CreateSession4Args {
            clientid: r.u64()?,
            sequence: r.u32()?,
            flags: r.u32()?,
            fore_chan_attrs: ChannelAttrs4::decode(r)?,
            back_chan_attrs: ChannelAttrs4::decode(r)?,
            cb_program: r.u32()?,
            sec_parms: decode_array(r, SMALL_ARRAY4_MAX)?,
        })
    }
}

impl Encode for CreateSession4Args {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.clientid);
        w.u32(self.sequence);
        w.u32(self.flags);
        self.fore_chan_attrs.encode(w);
        self.back_chan_attrs.encode(w);
        w.u32(self.cb_program);
        encode_array(w, &self.sec_parms);
    }
}

xdr_struct! {
    /// GET_DIR_DELEGATION4args.
    pub struct GetDirDelegation4Args {
        pub signal_deleg_avail: bool,
        pub notification_types: Bitmap4,
        pub child_attr_delay: Nfstime4,
        pub dir_attr_delay: Nfstime4,
        pub child_attributes: Bitmap4,
        pub dir_attributes: Bitmap4,
    }
}

xdr_struct! {
    /// GETDEVICEINFO4args.
    pub struct Getdeviceinfo4Args {
        pub device_id: Deviceid4,
        pub layout_type: u32,
        pub maxcount: u32,
        pub notify_types: Bitmap4,
    }
}

xdr_struct! {
    /// GETDEVICELIST4args.
    pub struct Getdevicelist4Args {
        pub layout_type: u32,
        pub maxdevices: u32,
        pub cookie: u64,
        pub cookieverf: Verifier4,
    }
}

xdr_struct! {
    /// LAYOUTCOMMIT4args. newoffset4 and newtime4 are unions on a bool, encoded like optional
    /// values; layoutupdate4 has the shape of layout_content4.
    pub struct Layoutcommit4Args {
        pub offset: u64,
        pub length: u64,
        pub reclaim: bool,
        pub stateid: Stateid4,
        pub last_write_offset: Option<u64>,
        pub time_modify: Option<Nfstime4>,
        pub layoutupdate: LayoutContent4,
    }
}

xdr_struct! {
    /// LAYOUTGET4args.
    pub struct Layoutget4Args {
        pub signal_layout_avail: bool,
        pub layout_type: u32,
        pub iomode: u32,
        pub offset: u64,
        pub length: u64,
        pub minlength: u64,
        pub stateid: Stateid4,
        pub maxcount: u32,
    }
}

xdr_struct! {
    /// layoutreturn_file4.
    pub struct LayoutreturnFile4 {
        pub offset: u64,
        pub length: u64,
        pub stateid: Stateid4,
        pub body: Body4,
    }
}

/// layoutreturn4: LAYOUTRETURN4_FILE carries a range; every other type (FSID, ALL) is void.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layoutreturn4 {
    File(LayoutreturnFile4),
    Other(u32),
}

impl Decode for Layoutreturn4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            1 => Layoutreturn4::File(LayoutreturnFile4::decode(r)?),
            other => Layoutreturn4::Other(other),
        })
    }
}

impl Encode for Layoutreturn4 {
    fn encode(&self, w: &mut Writer) {
        match self {
            Layoutreturn4::File(f) => {
                w.u32(1);
                f.encode(w);
            }
            Layoutreturn4::Other(t) => w.u32(*t),
        }
    }
}

xdr_struct! {
    /// LAYOUTRETURN4args.
    pub struct Layoutreturn4Args {
        pub reclaim: bool,
        pub layout_type: u32,
        pub iomode: u32,
        pub layoutreturn: Layoutreturn4,
    }
}

/// secinfo_style4 (SECINFO_NO_NAME).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecinfoStyle4 {
    CurrentFh = 0,
    Parent = 1,
}

impl Decode for SecinfoStyle4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            0 => SecinfoStyle4::CurrentFh,
            1 => SecinfoStyle4::Parent,
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for SecinfoStyle4 {
    fn encode(&self, w: &mut Writer) {
        w.u32(*self as u32);
    }
}

xdr_struct! {
    /// SEQUENCE4args.
    #[derive(Copy)]
    pub struct Sequence4Args {
        pub sessionid: SessionId4,
        pub sequenceid: u32,
        pub slotid: u32,
        pub highest_slotid: u32,
        pub cachethis: bool,
    }
}

xdr_struct! {
    /// SET_SSV4args.
    pub struct SetSsv4Args {
        pub ssv: Opaque4,
        pub digest: Opaque4,
    }
}

/// TEST_STATEID4args.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestStateid4Args {
    pub stateids: Vec<Stateid4>,
}

impl Decode for TestStateid4Args {
    fn decode(r: &mut Reader) -> Result<Self> {
        let n = r.array_len(TEST_STATEIDS_MAX, Stateid4::SIZE)?;
        let mut stateids = Vec::with_capacity(n);
        for _ in 0..n {
            stateids.push(Stateid4::decode(r)?);
        }
        Ok(TestStateid4Args { stateids })
    }
}

impl Encode for TestStateid4Args {
    fn encode(&self, w: &mut Writer) {
        encode_array(w, &self.stateids);
    }
}

xdr_struct! {
    /// WANT_DELEGATION4args.
    pub struct WantDelegation4Args {
        pub want: u32,
        pub claim: DelegClaim4,
    }
}

/// Declares `NfsArgOp4` from one table: operations without arguments, then operations with
/// one argument type each. The decoder, encoder and `opnum` all come from the same table, so
/// they cannot disagree.
macro_rules! arg_ops {
    (
        unit { $($(#[$um:meta])* $uop:ident => $uvariant:ident,)* }
        args { $($(#[$am:meta])* $aop:ident => $avariant:ident($t:ty),)* }
    ) => {
        /// nfs_argop4: one operation of a COMPOUND with its decoded arguments.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum NfsArgOp4 {
            $($(#[$um])* $uvariant,)*
            $($(#[$am])* $avariant($t),)*
        }

        impl NfsArgOp4 {
            /// The operation number (nfs_opnum4).
            pub fn opnum(&self) -> u32 {
                match self {
                    $(NfsArgOp4::$uvariant => op4::$uop,)*
                    $(NfsArgOp4::$avariant(_) => op4::$aop,)*
                }
            }

            /// Decodes the arguments of NFSv4.1 operation `opnum`; `Ok(None)` when NFSv4.1
            /// defines no such operation.
            fn decode_args(opnum: u32, r: &mut Reader) -> Result<Option<NfsArgOp4>> {
                Ok(Some(match opnum {
                    $(op4::$uop => NfsArgOp4::$uvariant,)*
                    $(op4::$aop => NfsArgOp4::$avariant(<$t as Decode>::decode(r)?),)*
                    _ => return Ok(None),
                }))
            }

            fn encode_args(&self, w: &mut Writer) {
                match self {
                    $(NfsArgOp4::$uvariant => {})*
                    $(NfsArgOp4::$avariant(a) => a.encode(w),)*
                }
            }
        }
    };
}

arg_ops! {
    unit {
        GETFH => Getfh,
        LOOKUPP => Lookupp,
        PUTPUBFH => Putpubfh,
        PUTROOTFH => Putrootfh,
        READLINK => Readlink,
        RESTOREFH => Restorefh,
        SAVEFH => Savefh,
    }
    args {
        /// ACCESS4args: the access bits asked for (`access4::*`).
        ACCESS => Access(u32),
        CLOSE => Close(Close4Args),
        COMMIT => Commit(Commit4Args),
        CREATE => Create(Create4Args),
        /// DELEGPURGE4args: a clientid.
        DELEGPURGE => Delegpurge(Clientid4),
        /// DELEGRETURN4args: the delegation stateid.
        DELEGRETURN => Delegreturn(Stateid4),
        /// GETATTR4args: the attributes asked for.
        GETATTR => Getattr(Bitmap4),
        /// LINK4args: the new name (the saved FH is the source).
        LINK => Link(Component4),
        LOCK => Lock(Lock4Args),
        LOCKT => Lockt(Lockt4Args),
        LOCKU => Locku(Locku4Args),
        /// LOOKUP4args.
        LOOKUP => Lookup(Component4),
        /// NVERIFY4args.
        NVERIFY => Nverify(Fattr4),
        OPEN => Open(Open4Args),
        /// OPENATTR4args: createdir.
        OPENATTR => Openattr(bool),
        OPEN_DOWNGRADE => OpenDowngrade(OpenDowngrade4Args),
        /// PUTFH4args.
        PUTFH => Putfh(NfsFh4),
        READ => Read(Read4Args),
        READDIR => Readdir(Readdir4Args),
        /// REMOVE4args: target.
        REMOVE => Remove(Component4),
        RENAME => Rename(Rename4Args),
        /// SECINFO4args: name.
        SECINFO => Secinfo(Component4),
        SETATTR => Setattr(Setattr4Args),
        /// VERIFY4args.
        VERIFY => Verify(Fattr4),
        WRITE => Write(Write4Args),
        BACKCHANNEL_CTL => BackchannelCtl(BackchannelCtl4Args),
        BIND_CONN_TO_SESSION => BindConnToSession(BindConnToSession4Args),
        EXCHANGE_ID => ExchangeId(ExchangeId4Args),
        CREATE_SESSION => CreateSession(CreateSession4Args),
        /// DESTROY_SESSION4args.
        DESTROY_SESSION => DestroySession(SessionId4),
        /// FREE_STATEID4args.
        FREE_STATEID => FreeStateid(Stateid4),
        GET_DIR_DELEGATION => GetDirDelegation(GetDirDelegation4Args),
        GETDEVICEINFO => Getdeviceinfo(Getdeviceinfo4Args),
        GETDEVICELIST => Getdevicelist(Getdevicelist4Args),
        LAYOUTCOMMIT => Layoutcommit(Layoutcommit4Args),
        LAYOUTGET => Layoutget(Layoutget4Args),
        LAYOUTRETURN => Layoutreturn(Layoutreturn4Args),
        SECINFO_NO_NAME => SecinfoNoName(SecinfoStyle4),
        SEQUENCE => Sequence(Sequence4Args),
        SET_SSV => SetSsv(SetSsv4Args),
        TEST_STATEID => TestStateid(TestStateid4Args),
        WANT_DELEGATION => WantDelegation(WantDelegation4Args),
        /// DESTROY_CLIENTID4args.
        DESTROY_CLIENTID => DestroyClientid(Clientid4),
        /// RECLAIM_COMPLETE4args: rca_one_fs.
        RECLAIM_COMPLETE => ReclaimComplete(bool),
    }
}

impl NfsArgOp4 {
    /// The RFC's name of this operation.
    pub fn name(&self) -> &'static str {
        op4::name(self.opnum())
    }
}

impl Encode for NfsArgOp4 {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.opnum());
        self.encode_args(w);
    }
}

/// COMPOUND4args as a client builds it (and as the server sees it once every op decoded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compound4Args {
    pub tag: Tag4,
    pub minorversion: u32,
    pub argarray: Vec<NfsArgOp4>,
}

/// Why decoding a COMPOUND stopped before its last operation. The server executes the ops
/// decoded before the stop, in order, as usual; if they all succeed it answers the stop as the
/// final result ([`DecodeStop::result`]) and as the COMPOUND status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeStop {
    /// `minorversion` is not [`MINOR_VERSION`]; no op was decoded. The reply is
    /// NFS4ERR_MINOR_VERS_MISMATCH with an empty result array (RFC 8881 §16.2.3).
    MinorVersMismatch,
    /// The client sent `count` ops, more than `limits::COMPOUND_OPS_MAX`. Only the first op is
    /// decoded (nothing is allocated for the rest), so the server can check it is SEQUENCE and
    /// answer NFS4ERR_TOO_MANY_OPS in its result, as RFC 8881 §18.46.3 describes for
    /// ca_maxoperations. If that first op does not decode, the stop is [`DecodeStop::Op`]
    /// instead. (NFSv4.0 would answer NFS4ERR_RESOURCE; this codec decodes 4.1 only.)
    TooManyOps { count: u32 },
    /// Operation number `index` (0-based) failed to decode. `opnum` is the result's resop:
    /// the op's own number, or OP_ILLEGAL for a number NFSv4.1 does not define. `status` is
    /// NFS4ERR_BADXDR (truncated or malformed arguments, over-limit lengths), NFS4ERR_OP_ILLEGAL
    /// (undefined op) or NFS4ERR_NOTSUPP (an NFSv4.0 op that NFSv4.1 forbids; its arguments
    /// are not read). When the op number itself is cut off, `opnum` is OP_ILLEGAL with
    /// NFS4ERR_BADXDR. Answer it with `NfsResOp4::error(opnum, status)`.
    Op {
        index: usize,
        opnum: u32,
        status: Nfsstat4,
    },
}

impl DecodeStop {
    /// The COMPOUND status this stop produces once the ops before it have succeeded.
    pub fn status(&self) -> Nfsstat4 {
        match self {
            DecodeStop::MinorVersMismatch => Nfsstat4::MinorVersMismatch,
            DecodeStop::TooManyOps { .. } => Nfsstat4::TooManyOps,
            DecodeStop::Op { status, .. } => *status,
        }
    }
}

/// A decoded COMPOUND: the ops that decoded, and why decoding stopped early, if it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedCompound4 {
    pub args: Compound4Args,
    pub stop: Option<DecodeStop>,
}

impl Compound4Args {
    /// Decodes a COMPOUND call body. `Err` only when the header (tag, minorversion, op count)
    /// itself is malformed or truncated, or when bytes follow the last operation: no result
    /// can be attributed to an op, and the server answers GARBAGE_ARGS, as knfsd does. Every
    /// problem inside an operation is a [`DecodeStop`] instead.
    pub fn decode(r: &mut Reader) -> Result<DecodedCompound4> {
        let tag = Tag4::decode(r)?;
        let minorversion = r.u32()?;
        let count = r.u32()?;
        let mut args = Compound4Args {
            tag,
            minorversion,
            argarray: Vec::new(),
        };
        if minorversion != MINOR_VERSION {
            return Ok(DecodedCompound4 {
                args,
                stop: Some(DecodeStop::MinorVersMismatch),
            });
        }
        let too_many = count > COMPOUND_OPS_MAX;
        let wanted = if too_many { 1 } else { count as usize };
        // Every op takes at least its 4-byte number, so the bytes left bound the allocation too.
        args.argarray = Vec::with_capacity(wanted.min(r.remaining() / 4));
        for index in 0..wanted {
            match decode_op(r) {
                Ok(op) => args.argarray.push(op),
                Err((opnum, status)) => {
                    let stop = Some(DecodeStop::Op {
                        index,
                        opnum,
                        status,
                    });
                    return Ok(DecodedCompound4 { args, stop });
                }
            }
        }
        if too_many {
            return Ok(DecodedCompound4 {
                args,
                stop: Some(DecodeStop::TooManyOps { count }),
            });
        }
        r.finish()?;
        Ok(DecodedCompound4 { args, stop: None })
    }
}

/// Decodes one nfs_argop4, or says which result to answer it with.
fn decode_op(r: &mut Reader) -> std::result::Result<NfsArgOp4, (u32, Nfsstat4)> {
    let Ok(opnum) = r.u32() else {
        return Err((op4::ILLEGAL, Nfsstat4::BadXdr));
    };
    if op4::is_mandatory_not_implemented(opnum) {
        return Err((opnum, Nfsstat4::NotSupp));
    }
    match NfsArgOp4::decode_args(opnum, r) {
        Ok(Some(op)) => Ok(op),
        Ok(None) => Err((op4::ILLEGAL, Nfsstat4::OpIllegal)),
        Err(_) => Err((opnum, Nfsstat4::BadXdr)),
    }
}

impl Encode for Compound4Args {
    fn encode(&self, w: &mut Writer) {
        self.tag.encode(w);
        w.u32(self.minorversion);
        encode_array(w, &self.argarray);
    }
}

/// Largest encoded sizes of the variable parts of results, for [`NfsArgOp4::result_len_max`].
mod size {
    use crate::limits::{
        BITMAP4_WORDS_MAX, FH4_LEN_MAX, OPAQUE4_LEN_MAX, PATH_DECODE_LEN_MAX, SEC_OID4_LEN_MAX,
        SMALL_ARRAY4_MAX,
    };

    /// resop and status.
    pub const HEAD: usize = 8;
    pub const STATEID: usize = 16;
    pub const CHANGE_INFO: usize = 4 + 8 + 8;
    pub const BITMAP: usize = 4 + 4 * BITMAP4_WORDS_MAX as usize;
    pub const OPAQUE4: usize = 4 + OPAQUE4_LEN_MAX as usize;
    pub const OWNER: usize = 8 + OPAQUE4;
    /// LOCK4denied.
    pub const LOCK_DENIED: usize = 8 + 8 + 4 + OWNER;
    /// open_write_delegation4 with its type word, the largest open_delegation4 arm.
    pub const DELEGATION: usize = 4 + STATEID + 4 + 12 + (12 + OPAQUE4);
    pub const FH: usize = 4 + FH4_LEN_MAX as usize;
    pub const LINK_TEXT: usize = 4 + PATH_DECODE_LEN_MAX as usize;
    /// A SECINFO list of RPCSEC_GSS entries, as long as we ever send.
    pub const SECINFO: usize =
        4 + SMALL_ARRAY4_MAX as usize * (4 + 4 + SEC_OID4_LEN_MAX as usize + 4 + 4);
    pub const IMPL_ID: usize = 4 + 2 * OPAQUE4 + 12;
    /// state_protect4_r with SP4_SSV and the most GSS handles.
    pub const STATE_PROTECT: usize =
        4 + 2 * BITMAP + 4 * 4 + 4 + SMALL_ARRAY4_MAX as usize * OPAQUE4;
    pub const CHANNEL_ATTRS: usize = 6 * 4 + 4 + 4;
}

impl NfsArgOp4 {
    /// The most bytes this op's nfs_resop4 can take in a reply (resop included), computed from
    /// its arguments: what a server checks against the session's ca_maxresponsesize (and
    /// ca_maxresponsesize_cached) before running an op that changes state, so that
    /// NFS4ERR_REP_TOO_BIG never comes after the change (RFC 8881 §2.10.6.4; knfsd's
    /// `op_rsize_bop`). `None` for GETATTR, whose size depends on the attribute values: encode
    /// it with [`crate::v4::Compound4ResWriter::push_within`] instead.
    pub fn result_len_max(&self) -> Option<usize> {
        use size::*;
        use NfsArgOp4::*;
        let pad4 = |n: usize| n + crate::xdr::pad_len(n);
        Some(match self {
            Getfh => HEAD + FH,
            Lookupp | Putpubfh | Putrootfh | Restorefh | Savefh => HEAD,
            Readlink => HEAD + LINK_TEXT,
            Access(_) => HEAD + 8,
            Close(_) | Locku(_) | OpenDowngrade(_) => HEAD + STATEID,
            Commit(_) => HEAD + 8,
            Create(_) => HEAD + CHANGE_INFO + BITMAP,
            Delegpurge(_) | Delegreturn(_) | Lookup(_) | Nverify(_) | Openattr(_) | Putfh(_)
            | Verify(_) | BackchannelCtl(_) | DestroySession(_) | FreeStateid(_)
            | DestroyClientid(_) | ReclaimComplete(_) => HEAD,
            Getattr(_) => return None,
            Link(_) | Remove(_) => HEAD + CHANGE_INFO,
            Lock(_) | Lockt(_) => HEAD + LOCK_DENIED.max(STATEID),
            Open(_) => HEAD + STATEID + CHANGE_INFO + 4 + BITMAP + DELEGATION,
            Read(a) => {
                HEAD + 4 + 4 + pad4((a.count as usize).min(crate::limits::IO_SIZE_MAX as usize))
            }
            // maxcount bounds READDIR4resok (RFC 8881 §18.23.2).
            Readdir(a) => HEAD + a.maxcount as usize,
            Rename(_) => HEAD + 2 * CHANGE_INFO,
            Secinfo(_) | SecinfoNoName(_) => HEAD + SECINFO,
            Setattr(_) => HEAD + BITMAP,
            Write(_) => HEAD + 4 + 4 + 8,
            BindConnToSession(_) => HEAD + 16 + 4 + 4,
            ExchangeId(_) => {
                HEAD + 8 + 4 + 4 + STATE_PROTECT + (8 + OPAQUE4) + OPAQUE4 + 4 + IMPL_ID
            }
            CreateSession(_) => HEAD + 16 + 4 + 4 + 2 * CHANNEL_ATTRS,
            GetDirDelegation(_) => HEAD + 4 + 8 + STATEID + 3 * BITMAP,
            // gdia_maxcount bounds the device address (RFC 8881 §18.40.3).
            Getdeviceinfo(a) => HEAD + (a.maxcount as usize).max(4) + BITMAP,
            Getdevicelist(a) => HEAD + 8 + 8 + 4 + 16 * a.maxdevices as usize + 4,
            Layoutcommit(_) => HEAD + 4 + 8,
            // loga_maxcount bounds LAYOUTGET4resok (RFC 8881 §18.43.3).
            Layoutget(a) => HEAD + (a.maxcount as usize).max(4),
            Layoutreturn(_) => HEAD + 4 + STATEID,
            Sequence(_) => HEAD + 16 + 5 * 4,
            SetSsv(_) => HEAD + OPAQUE4,
            TestStateid(a) => HEAD + 4 + 4 * a.stateids.len(),
            WantDelegation(_) => HEAD + DELEGATION,
        })
    }
}
