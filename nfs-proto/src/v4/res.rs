//! COMPOUND4res (RFC 8881 §16.2): an encoder for every NFSv4.1 operation's result, with the
//! resok and error arms of RFC 5662's XDR, decoders for a test client, and a reply writer that
//! keeps READ payloads out of the head buffer and lets the server hold a reply to a size budget.

use bytes::{Bytes, BytesMut};

use crate::limits::{
    COMPOUND_OPS_MAX, IO_SIZE_MAX, LAYOUT4_ARRAY_MAX, READDIR4_ENTRIES_MAX, SMALL_ARRAY4_MAX,
    TEST_STATEIDS_MAX,
};
use crate::v4::consts::{op4, Nfsstat4};
use crate::v4::types::*;
use crate::xdr::{pad_len, Decode, Encode, Reader, Result, Writer, XdrError};

/// An operation's result: the resok arm, or the status of a void error arm. `Err(Nfsstat4::Ok)`
/// is a bug in the caller (it would encode NFS4_OK without its resok).
pub type Res<T> = std::result::Result<T, Nfsstat4>;

/// `union switch (nfsstat4 status) { case NFS4_OK: T; default: void; }`.
impl<T: Encode> Encode for Res<T> {
    fn encode(&self, w: &mut Writer) {
        match self {
            Ok(v) => {
                w.u32(Nfsstat4::Ok as u32);
                v.encode(w);
            }
            Err(s) => {
                debug_assert!(!s.is_ok(), "Err(NFS4_OK) has no encoding");
                s.encode(w)
            }
        }
    }
}

impl<T: Decode> Decode for Res<T> {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match Nfsstat4::decode(r)? {
            Nfsstat4::Ok => Ok(T::decode(r)?),
            s => Err(s),
        })
    }
}

/// What every operation result can say about itself.
pub trait OpStatus {
    /// The result's nfsstat4.
    fn status(&self) -> Nfsstat4;
    /// The result of a failed op with status `s` (the void error arm, or an empty bitmap where
    /// the RFC's result always carries one).
    fn from_error(s: Nfsstat4) -> Self;
}

impl OpStatus for Nfsstat4 {
    fn status(&self) -> Nfsstat4 {
        *self
    }
    fn from_error(s: Nfsstat4) -> Self {
        s
    }
}

impl<T> OpStatus for Res<T> {
    fn status(&self) -> Nfsstat4 {
        match self {
            Ok(_) => Nfsstat4::Ok,
            Err(s) => *s,
        }
    }
    fn from_error(s: Nfsstat4) -> Self {
        Err(s)
    }
}

xdr_struct! {
    /// ACCESS4resok.
    #[derive(Copy)]
    pub struct Access4ResOk {
        pub supported: u32,
        pub access: u32,
    }
}

xdr_struct! {
    /// CREATE4resok.
    pub struct Create4ResOk {
        pub cinfo: ChangeInfo4,
        pub attrset: Bitmap4,
    }
}

/// LOCK4res: NFS4ERR_DENIED carries the conflicting lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lock4Res {
    Ok(Stateid4),
    Denied(Lock4Denied),
    /// Any other status. Not NFS4_OK or NFS4ERR_DENIED, which have their own arms.
    Fail(Nfsstat4),
}

impl Decode for Lock4Res {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match Nfsstat4::decode(r)? {
            Nfsstat4::Ok => Lock4Res::Ok(Stateid4::decode(r)?),
            Nfsstat4::Denied => Lock4Res::Denied(Lock4Denied::decode(r)?),
            s => Lock4Res::Fail(s),
        })
    }
}

impl Encode for Lock4Res {
    fn encode(&self, w: &mut Writer) {
        match self {
            Lock4Res::Ok(s) => {
                w.u32(Nfsstat4::Ok as u32);
                s.encode(w);
            }
            Lock4Res::Denied(d) => {
                w.u32(Nfsstat4::Denied as u32);
                d.encode(w);
            }
            Lock4Res::Fail(s) => s.encode(w),
        }
    }
}

impl OpStatus for Lock4Res {
    fn status(&self) -> Nfsstat4 {
        match self {
            Lock4Res::Ok(_) => Nfsstat4::Ok,
            Lock4Res::Denied(_) => Nfsstat4::Denied,
            Lock4Res::Fail(s) => *s,
        }
    }
    fn from_error(s: Nfsstat4) -> Self {
        Lock4Res::Fail(s)
    }
}

/// LOCKT4res: no conflict, or the conflicting lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lockt4Res {
    Ok,
    Denied(Lock4Denied),
    /// Any other status (not NFS4_OK or NFS4ERR_DENIED).
    Fail(Nfsstat4),
}

impl Decode for Lockt4Res {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match Nfsstat4::decode(r)? {
            Nfsstat4::Ok => Lockt4Res::Ok,
            Nfsstat4::Denied => Lockt4Res::Denied(Lock4Denied::decode(r)?),
            s => Lockt4Res::Fail(s),
        })
    }
}

impl Encode for Lockt4Res {
    fn encode(&self, w: &mut Writer) {
        match self {
            Lockt4Res::Ok => w.u32(Nfsstat4::Ok as u32),
            Lockt4Res::Denied(d) => {
                w.u32(Nfsstat4::Denied as u32);
                d.encode(w);
            }
            Lockt4Res::Fail(s) => s.encode(w),
        }
    }
}

impl OpStatus for Lockt4Res {
    fn status(&self) -> Nfsstat4 {
        match self {
            Lockt4Res::Ok => Nfsstat4::Ok,
            Lockt4Res::Denied(_) => Nfsstat4::Denied,
            Lockt4Res::Fail(s) => *s,
        }
    }
    fn from_error(s: Nfsstat4) -> Self {
        Lockt4Res::Fail(s)
    }
}

xdr_struct! {
    /// OPEN4resok.
    pub struct Open4ResOk {
        pub stateid: Stateid4,
        pub cinfo: ChangeInfo4,
        pub rflags: u32,
        pub attrset: Bitmap4,
        pub delegation: OpenDelegation4,
    }
}

/// READ4resok. When the server encodes it, `data` is not copied: see [`NfsResOp4::encode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read4ResOk {
    pub eof: bool,
    pub data: Bytes,
}

impl Decode for Read4ResOk {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(Read4ResOk {
            eof: r.bool()?,
            data: r.opaque(IO_SIZE_MAX)?,
        })
    }
}

impl Encode for Read4ResOk {
    fn encode(&self, w: &mut Writer) {
        w.bool(self.eof);
        w.opaque(&self.data);
    }
}

xdr_struct! {
    /// entry4 (without its nextentry link).
    pub struct Entry4 {
        pub cookie: u64,
        pub name: Component4,
        pub attrs: Fattr4,
    }
}

impl Entry4 {
    /// Encoded size in a READDIR reply, with the preceding value_follows word, for a server
    /// filling a reply up to `maxcount`.
    pub fn encoded_len(&self) -> usize {
        4 + 8
            + crate::xdr::opaque_size(self.name.0.len())
            + 4
            + 4 * self.attrs.attrmask.0.len()
            + crate::xdr::opaque_size(self.attrs.attr_vals.len())
    }
}

/// READDIR4resok: the entries are XDR's linked list, held as a vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readdir4ResOk {
    pub cookieverf: Verifier4,
    pub entries: Vec<Entry4>,
    pub eof: bool,
}

impl Decode for Readdir4ResOk {
    fn decode(r: &mut Reader) -> Result<Self> {
        let cookieverf = r.opaque_fixed::<8>()?;
        let mut entries = Vec::new();
        while r.bool()? {
            if entries.len() >= READDIR4_ENTRIES_MAX as usize {
                return Err(XdrError::TooLong {
                    len: entries.len() as u32 + 1,
                    max: READDIR4_ENTRIES_MAX,
                });
            }
            entries.push(Entry4::decode(r)?);
        }
        Ok(Readdir4ResOk {
            cookieverf,
            entries,
            eof: r.bool()?,
        })
    }
}

impl Encode for Readdir4ResOk {
    fn encode(&self, w: &mut Writer) {
        w.opaque_fixed(&self.cookieverf);
        for e in &self.entries {
            w.bool(true);
            e.encode(w);
        }
        w.bool(false);
        w.bool(self.eof);
    }
}

xdr_struct! {
    /// RENAME4resok.
    #[derive(Copy)]
    pub struct Rename4ResOk {
        pub source_cinfo: ChangeInfo4,
        pub target_cinfo: ChangeInfo4,
    }
}

/// SECINFO4resok: the acceptable flavors, most preferred first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecinfoList4(pub Vec<Secinfo4>);

impl Decode for SecinfoList4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(SecinfoList4(decode_array(r, SMALL_ARRAY4_MAX)?))
    }
}

impl Encode for SecinfoList4 {
    fn encode(&self, w: &mut Writer) {
        encode_array(w, &self.0);
    }
}

xdr_struct! {
    /// SETATTR4res: the attributes set are returned whatever the status.
    pub struct Setattr4Res {
        pub status: Nfsstat4,
        pub attrsset: Bitmap4,
    }
}

impl OpStatus for Setattr4Res {
    fn status(&self) -> Nfsstat4 {
        self.status
    }
    fn from_error(s: Nfsstat4) -> Self {
        Setattr4Res {
            status: s,
            attrsset: Bitmap4::new(),
        }
    }
}

xdr_struct! {
    /// WRITE4resok.
    #[derive(Copy)]
    pub struct Write4ResOk {
        pub count: u32,
        pub committed: StableHow4,
        pub writeverf: Verifier4,
    }
}

xdr_struct! {
    /// BIND_CONN_TO_SESSION4resok. `dir` is a channel_dir_from_server4 (CDFS4_*).
    pub struct BindConnToSession4ResOk {
        pub sessid: SessionId4,
        pub dir: u32,
        pub use_conn_in_rdma_mode: bool,
    }
}

xdr_struct! {
    /// EXCHANGE_ID4resok.
    pub struct ExchangeId4ResOk {
        pub clientid: Clientid4,
        pub sequenceid: u32,
        pub flags: u32,
        pub state_protect: StateProtect4R,
        pub server_owner: ServerOwner4,
        pub server_scope: Opaque4,
        pub server_impl_id: Option<NfsImplId4>,
    }
}

xdr_struct! {
    /// CREATE_SESSION4resok.
    pub struct CreateSession4ResOk {
        pub sessionid: SessionId4,
        pub sequence: u32,
        pub flags: u32,
        pub fore_chan_attrs: ChannelAttrs4,
        pub back_chan_attrs: ChannelAttrs4,
    }
}

xdr_struct! {
    /// GET_DIR_DELEGATION4resok.
    pub struct GetDirDelegation4ResOk {
        pub cookieverf: Verifier4,
        pub stateid: Stateid4,
        pub notification: Bitmap4,
        pub child_attributes: Bitmap4,
        pub dir_attributes: Bitmap4,
    }
}

/// GET_DIR_DELEGATION4res_non_fatal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GetDirDelegation4ResNonFatal {
    Ok(GetDirDelegation4ResOk),
    /// GDD4_UNAVAIL with gddrnf_will_signal_deleg_avail.
    Unavail(bool),
}

impl Decode for GetDirDelegation4ResNonFatal {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            0 => GetDirDelegation4ResNonFatal::Ok(GetDirDelegation4ResOk::decode(r)?),
            1 => GetDirDelegation4ResNonFatal::Unavail(r.bool()?),
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for GetDirDelegation4ResNonFatal {
    fn encode(&self, w: &mut Writer) {
        match self {
            GetDirDelegation4ResNonFatal::Ok(ok) => {
                w.u32(0);
                ok.encode(w);
            }
            GetDirDelegation4ResNonFatal::Unavail(b) => {
                w.u32(1);
                w.bool(*b);
            }
        }
    }
}

xdr_struct! {
    /// GETDEVICEINFO4resok; device_addr4 has the shape of layout_content4.
    pub struct Getdeviceinfo4ResOk {
        pub device_addr: LayoutContent4,
        pub notification: Bitmap4,
    }
}

/// GETDEVICEINFO4res: NFS4ERR_TOOSMALL carries the count the client should have offered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Getdeviceinfo4Res {
    Ok(Getdeviceinfo4ResOk),
    TooSmall {
        mincount: u32,
    },
    /// Any other status (not NFS4_OK or NFS4ERR_TOOSMALL).
    Fail(Nfsstat4),
}

impl Decode for Getdeviceinfo4Res {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match Nfsstat4::decode(r)? {
            Nfsstat4::Ok => Getdeviceinfo4Res::Ok(Getdeviceinfo4ResOk::decode(r)?),
            Nfsstat4::TooSmall => Getdeviceinfo4Res::TooSmall { mincount: r.u32()? },
            s => Getdeviceinfo4Res::Fail(s),
        })
    }
}

impl Encode for Getdeviceinfo4Res {
    fn encode(&self, w: &mut Writer) {
        match self {
            Getdeviceinfo4Res::Ok(ok) => {
                w.u32(Nfsstat4::Ok as u32);
                ok.encode(w);
            }
            Getdeviceinfo4Res::TooSmall { mincount } => {
                w.u32(Nfsstat4::TooSmall as u32);
                w.u32(*mincount);
            }
            Getdeviceinfo4Res::Fail(s) => s.encode(w),
        }
    }
}

impl OpStatus for Getdeviceinfo4Res {
    fn status(&self) -> Nfsstat4 {
        match self {
            Getdeviceinfo4Res::Ok(_) => Nfsstat4::Ok,
            Getdeviceinfo4Res::TooSmall { .. } => Nfsstat4::TooSmall,
            Getdeviceinfo4Res::Fail(s) => *s,
        }
    }
    fn from_error(s: Nfsstat4) -> Self {
        Getdeviceinfo4Res::Fail(s)
    }
}

/// GETDEVICELIST4resok.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Getdevicelist4ResOk {
    pub cookie: u64,
    pub cookieverf: Verifier4,
    pub deviceid_list: Vec<Deviceid4>,
    pub eof: bool,
}

impl Decode for Getdevicelist4ResOk {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(Getdevicelist4ResOk {
            cookie: r.u64()?,
            cookieverf: r.opaque_fixed::<8>()?,
            deviceid_list: decode_array(r, LAYOUT4_ARRAY_MAX)?,
            eof: r.bool()?,
        })
    }
}

impl Encode for Getdevicelist4ResOk {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.cookie);
        w.opaque_fixed(&self.cookieverf);
        encode_array(w, &self.deviceid_list);
        w.bool(self.eof);
    }
}

/// LAYOUTGET4resok.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layoutget4ResOk {
    pub return_on_close: bool,
    pub stateid: Stateid4,
    pub layouts: Vec<Layout4>,
}

impl Decode for Layoutget4ResOk {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(Layoutget4ResOk {
            return_on_close: r.bool()?,
            stateid: Stateid4::decode(r)?,
            layouts: decode_array(r, LAYOUT4_ARRAY_MAX)?,
        })
    }
}

impl Encode for Layoutget4ResOk {
    fn encode(&self, w: &mut Writer) {
        w.bool(self.return_on_close);
        self.stateid.encode(w);
        encode_array(w, &self.layouts);
    }
}

/// LAYOUTGET4res: NFS4ERR_LAYOUTTRYLATER says whether the server will signal availability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layoutget4Res {
    Ok(Layoutget4ResOk),
    TryLater {
        will_signal_layout_avail: bool,
    },
    /// Any other status (not NFS4_OK or NFS4ERR_LAYOUTTRYLATER).
    Fail(Nfsstat4),
}

impl Decode for Layoutget4Res {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match Nfsstat4::decode(r)? {
            Nfsstat4::Ok => Layoutget4Res::Ok(Layoutget4ResOk::decode(r)?),
            Nfsstat4::LayoutTryLater => Layoutget4Res::TryLater {
                will_signal_layout_avail: r.bool()?,
            },
            s => Layoutget4Res::Fail(s),
        })
    }
}

impl Encode for Layoutget4Res {
    fn encode(&self, w: &mut Writer) {
        match self {
            Layoutget4Res::Ok(ok) => {
                w.u32(Nfsstat4::Ok as u32);
                ok.encode(w);
            }
            Layoutget4Res::TryLater {
                will_signal_layout_avail,
            } => {
                w.u32(Nfsstat4::LayoutTryLater as u32);
                w.bool(*will_signal_layout_avail);
            }
            Layoutget4Res::Fail(s) => s.encode(w),
        }
    }
}

impl OpStatus for Layoutget4Res {
    fn status(&self) -> Nfsstat4 {
        match self {
            Layoutget4Res::Ok(_) => Nfsstat4::Ok,
            Layoutget4Res::TryLater { .. } => Nfsstat4::LayoutTryLater,
            Layoutget4Res::Fail(s) => *s,
        }
    }
    fn from_error(s: Nfsstat4) -> Self {
        Layoutget4Res::Fail(s)
    }
}

xdr_struct! {
    /// SEQUENCE4resok.
    #[derive(Copy)]
    pub struct Sequence4ResOk {
        pub sessionid: SessionId4,
        pub sequenceid: u32,
        pub slotid: u32,
        pub highest_slotid: u32,
        pub target_highest_slotid: u32,
        pub status_flags: u32,
    }
}

/// TEST_STATEID4resok: one status per stateid asked about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusList4(pub Vec<Nfsstat4>);

impl Decode for StatusList4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(StatusList4(decode_array(r, TEST_STATEIDS_MAX)?))
    }
}

impl Encode for StatusList4 {
    fn encode(&self, w: &mut Writer) {
        encode_array(w, &self.0);
    }
}

/// Declares `NfsResOp4` from one table of (operation, variant, result type); the codec,
/// `opnum`, `status` and `error` all come from it.
macro_rules! res_ops {
    ($($(#[$m:meta])* $op:ident => $variant:ident($t:ty),)*) => {
        /// nfs_resop4: one operation's result in a COMPOUND reply.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum NfsResOp4 {
            $($(#[$m])* $variant($t),)*
            /// The result of an NFSv4.0 operation NFSv4.1 forbids (OPEN_CONFIRM, RENEW,
            /// SETCLIENTID, SETCLIENTID_CONFIRM, RELEASE_LOCKOWNER): resop is the op's own
            /// number and the status is NFS4ERR_NOTSUPP (RFC 8881 §15.2).
            Obsolete { opnum: u32, status: Nfsstat4 },
            /// ILLEGAL4res, answered under resop OP_ILLEGAL (RFC 8881 §18.52).
            Illegal(Nfsstat4),
        }

        impl NfsResOp4 {
            /// The resop number.
            pub fn opnum(&self) -> u32 {
                match self {
                    $(NfsResOp4::$variant(_) => op4::$op,)*
                    NfsResOp4::Obsolete { opnum, .. } => *opnum,
                    NfsResOp4::Illegal(_) => op4::ILLEGAL,
                }
            }

            /// This result's status; the COMPOUND status is that of its last result.
            pub fn status(&self) -> Nfsstat4 {
                match self {
                    $(NfsResOp4::$variant(r) => r.status(),)*
                    NfsResOp4::Obsolete { status, .. } | NfsResOp4::Illegal(status) => *status,
                }
            }

            /// The result of operation `opnum` failing with `status`, in the right shape for
            /// that op. Undefined op numbers give ILLEGAL4res. Not for NFS4ERR_DENIED on LOCK
            /// or LOCKT, NFS4ERR_TOOSMALL on GETDEVICEINFO or NFS4ERR_LAYOUTTRYLATER on
            /// LAYOUTGET, whose arms carry data: build those results directly.
            pub fn error(opnum: u32, status: Nfsstat4) -> NfsResOp4 {
                match opnum {
                    $(op4::$op => NfsResOp4::$variant(<$t as OpStatus>::from_error(status)),)*
                    n if op4::is_mandatory_not_implemented(n) => {
                        NfsResOp4::Obsolete { opnum: n, status }
                    }
                    _ => NfsResOp4::Illegal(status),
                }
            }

            fn encode_res(&self, w: &mut Writer) {
                match self {
                    $(NfsResOp4::$variant(r) => r.encode(w),)*
                    NfsResOp4::Obsolete { status, .. } | NfsResOp4::Illegal(status) => {
                        status.encode(w)
                    }
                }
            }

        }

        /// Decodes one nfs_resop4 (client side).
        impl Decode for NfsResOp4 {
            fn decode(r: &mut Reader) -> Result<NfsResOp4> {
                let opnum = r.u32()?;
                Ok(match opnum {
                    $(op4::$op => NfsResOp4::$variant(<$t as Decode>::decode(r)?),)*
                    n if op4::is_mandatory_not_implemented(n) => NfsResOp4::Obsolete {
                        opnum: n,
                        status: Nfsstat4::decode(r)?,
                    },
                    op4::ILLEGAL => NfsResOp4::Illegal(Nfsstat4::decode(r)?),
                    d => return Err(XdrError::BadDiscriminant(d)),
                })
            }
        }
    };
}

res_ops! {
    ACCESS => Access(Res<Access4ResOk>),
    /// CLOSE4res: the (now invalid) open stateid.
    CLOSE => Close(Res<Stateid4>),
    /// COMMIT4resok: the write verifier.
    COMMIT => Commit(Res<Verifier4>),
    CREATE => Create(Res<Create4ResOk>),
    DELEGPURGE => Delegpurge(Nfsstat4),
    DELEGRETURN => Delegreturn(Nfsstat4),
    /// GETATTR4resok: obj_attributes.
    GETATTR => Getattr(Res<Fattr4>),
    /// GETFH4resok: the current filehandle.
    GETFH => Getfh(Res<NfsFh4>),
    /// LINK4resok: cinfo.
    LINK => Link(Res<ChangeInfo4>),
    LOCK => Lock(Lock4Res),
    LOCKT => Lockt(Lockt4Res),
    /// LOCKU4res: the lock stateid.
    LOCKU => Locku(Res<Stateid4>),
    LOOKUP => Lookup(Nfsstat4),
    LOOKUPP => Lookupp(Nfsstat4),
    NVERIFY => Nverify(Nfsstat4),
    OPEN => Open(Res<Open4ResOk>),
    OPENATTR => Openattr(Nfsstat4),
    /// OPEN_DOWNGRADE4resok: the open stateid.
    OPEN_DOWNGRADE => OpenDowngrade(Res<Stateid4>),
    PUTFH => Putfh(Nfsstat4),
    PUTPUBFH => Putpubfh(Nfsstat4),
    PUTROOTFH => Putrootfh(Nfsstat4),
    READ => Read(Res<Read4ResOk>),
    READDIR => Readdir(Res<Readdir4ResOk>),
    /// READLINK4resok: the link text.
    READLINK => Readlink(Res<LinkText4>),
    /// REMOVE4resok: cinfo.
    REMOVE => Remove(Res<ChangeInfo4>),
    RENAME => Rename(Res<Rename4ResOk>),
    RESTOREFH => Restorefh(Nfsstat4),
    SAVEFH => Savefh(Nfsstat4),
    SECINFO => Secinfo(Res<SecinfoList4>),
    SETATTR => Setattr(Setattr4Res),
    VERIFY => Verify(Nfsstat4),
    WRITE => Write(Res<Write4ResOk>),
    BACKCHANNEL_CTL => BackchannelCtl(Nfsstat4),
    BIND_CONN_TO_SESSION => BindConnToSession(Res<BindConnToSession4ResOk>),
    EXCHANGE_ID => ExchangeId(Res<ExchangeId4ResOk>),
    CREATE_SESSION => CreateSession(Res<CreateSession4ResOk>),
    DESTROY_SESSION => DestroySession(Nfsstat4),
    FREE_STATEID => FreeStateid(Nfsstat4),
    GET_DIR_DELEGATION => GetDirDelegation(Res<GetDirDelegation4ResNonFatal>),
    GETDEVICEINFO => Getdeviceinfo(Getdeviceinfo4Res),
    GETDEVICELIST => Getdevicelist(Res<Getdevicelist4ResOk>),
    /// LAYOUTCOMMIT4resok: newsize4, a union on a bool that encodes like an optional size.
    LAYOUTCOMMIT => Layoutcommit(Res<Option<u64>>),
    LAYOUTGET => Layoutget(Layoutget4Res),
    /// LAYOUTRETURN4res: layoutreturn_stateid, encoded like an optional stateid.
    LAYOUTRETURN => Layoutreturn(Res<Option<Stateid4>>),
    SECINFO_NO_NAME => SecinfoNoName(Res<SecinfoList4>),
    SEQUENCE => Sequence(Res<Sequence4ResOk>),
    /// SET_SSV4resok: ssr_digest.
    SET_SSV => SetSsv(Res<Opaque4>),
    TEST_STATEID => TestStateid(Res<StatusList4>),
    /// WANT_DELEGATION4res: the delegation (or why none).
    WANT_DELEGATION => WantDelegation(Res<OpenDelegation4>),
    DESTROY_CLIENTID => DestroyClientid(Nfsstat4),
    RECLAIM_COMPLETE => ReclaimComplete(Nfsstat4),
}

impl NfsResOp4 {
    /// Encodes resop and the result after whatever `w` holds. A successful READ's data is not
    /// copied into `w`: it is returned, and belongs right after `w`'s bytes as they are when
    /// this returns, followed by `xdr::pad_len(data.len())` zero bytes. Everything else is
    /// written to `w` and returns `None`.
    pub fn encode(&self, w: &mut Writer) -> Option<Bytes> {
        w.u32(self.opnum());
        if let NfsResOp4::Read(Ok(ok)) = self {
            w.u32(Nfsstat4::Ok as u32);
            w.bool(ok.eof);
            w.u32(ok.data.len() as u32);
            return Some(ok.data.clone());
        }
        self.encode_res(w);
        None
    }
}

/// COMPOUND4res.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compound4Res {
    pub status: Nfsstat4,
    pub tag: Tag4,
    pub resarray: Vec<NfsResOp4>,
}

/// A READ payload that belongs inside an encoded reply: `data` and its XDR padding go after the
/// first `offset` bytes of the head buffer. This is knfsd's `xpo_result_payload`: TCP sends
/// head and payloads with one writev, RPC-over-RDMA moves `data` with an RDMA Write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyPayload {
    pub offset: usize,
    pub data: Bytes,
}

impl ReplyPayload {
    /// Bytes this payload adds to the reply, padding included.
    pub fn len_padded(&self) -> usize {
        self.data.len() + pad_len(self.data.len())
    }
}

impl Compound4Res {
    /// Encodes the reply after whatever `w` holds (typically the RPC reply header). READ data
    /// is returned as payloads, never copied into `w`.
    pub fn encode(&self, w: &mut Writer) -> Vec<ReplyPayload> {
        let mut out = Compound4ResWriter::new(std::mem::take(w), &self.tag);
        for res in &self.resarray {
            out.push(res);
        }
        let (head, payloads) = out.finish(self.status);
        *w = head;
        payloads
    }

    /// The reply as one contiguous buffer (payloads spliced in): for tests, fuzzing and
    /// clients, not for the server's data path.
    pub fn to_bytes(&self) -> Bytes {
        let mut w = Writer::new();
        let payloads = self.encode(&mut w);
        splice_payloads(w.as_slice(), &payloads)
    }

    /// Decodes a COMPOUND reply (client side); at most `limits::COMPOUND_OPS_MAX` results.
    pub fn decode(r: &mut Reader) -> Result<Compound4Res> {
        let status = Nfsstat4::decode(r)?;
        let tag = Tag4::decode(r)?;
        let resarray = decode_array(r, COMPOUND_OPS_MAX)?;
        r.finish()?;
        Ok(Compound4Res {
            status,
            tag,
            resarray,
        })
    }
}

/// Builds a contiguous reply from a head buffer and the payloads that belong inside it.
pub fn splice_payloads(head: &[u8], payloads: &[ReplyPayload]) -> Bytes {
    let total = head.len() + payloads.iter().map(ReplyPayload::len_padded).sum::<usize>();
    let mut out = BytesMut::with_capacity(total);
    let mut at = 0;
    for p in payloads {
        let offset = p.offset.min(head.len());
        out.extend_from_slice(&head[at.min(offset)..offset]);
        out.extend_from_slice(&p.data);
        out.extend_from_slice(&[0u8; 3][..pad_len(p.data.len())]);
        at = offset;
    }
    out.extend_from_slice(&head[at.min(head.len())..]);
    out.freeze()
}

/// Writes a COMPOUND reply one result at a time, so the server can hold it to a size budget
/// (the session's ca_maxresponsesize) and answer NFS4ERR_REP_TOO_BIG for the op that would
/// overflow it, as RFC 8881 §2.10.6.4 asks. The status and result count are patched in by
/// [`Compound4ResWriter::finish`].
#[derive(Debug)]
pub struct Compound4ResWriter {
    w: Writer,
    start: usize,
    status_at: usize,
    count_at: usize,
    count: u32,
    payloads: Vec<ReplyPayload>,
    payload_len: usize,
}

impl Compound4ResWriter {
    /// Starts a reply after whatever `w` already holds (the RPC reply header).
    pub fn new(mut w: Writer, tag: &Tag4) -> Compound4ResWriter {
        let start = w.len();
        let status_at = w.len();
        w.u32(Nfsstat4::Ok as u32);
        tag.encode(&mut w);
        let count_at = w.len();
        w.u32(0);
        Compound4ResWriter {
            w,
            start,
            status_at,
            count_at,
            count: 0,
            payloads: Vec::new(),
            payload_len: 0,
        }
    }

    /// Bytes of COMPOUND4res so far (not counting what `w` held before), payloads included:
    /// the figure to compare with ca_maxresponsesize.
    pub fn encoded_len(&self) -> usize {
        self.w.len() - self.start + self.payload_len
    }

    /// Results written so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Appends a result.
    pub fn push(&mut self, res: &NfsResOp4) {
        if let Some(data) = res.encode(&mut self.w) {
            let p = ReplyPayload {
                offset: self.w.len(),
                data,
            };
            self.payload_len += p.len_padded();
            self.payloads.push(p);
        }
        self.count += 1;
    }

    /// Appends a result only if the reply then stays within `len_max` bytes
    /// ([`Compound4ResWriter::encoded_len`]); otherwise leaves the reply as it was and returns
    /// false, and the server pushes NFS4ERR_REP_TOO_BIG (or REP_TOO_BIG_TO_CACHE) instead.
    pub fn push_within(&mut self, res: &NfsResOp4, len_max: usize) -> bool {
        let (len, payloads, payload_len) = (self.w.len(), self.payloads.len(), self.payload_len);
        self.push(res);
        if self.encoded_len() <= len_max {
            return true;
        }
        self.w.truncate(len);
        self.payloads.truncate(payloads);
        self.payload_len = payload_len;
        self.count -= 1;
        false
    }

    /// Patches in the COMPOUND status and the result count, and returns the head buffer and
    /// the payloads that go inside it.
    pub fn finish(mut self, status: Nfsstat4) -> (Writer, Vec<ReplyPayload>) {
        self.w.patch_u32(self.status_at, status as u32);
        self.w.patch_u32(self.count_at, self.count);
        (self.w, self.payloads)
    }
}
