//! NFSv4.1 data types shared by arguments and results (RFC 8881 §3, XDR in RFC 5662), each named
//! after its XDR type, with bounded decoders and encoders.

use bytes::Bytes;

use crate::limits::{
    BITMAP4_WORDS_MAX, COMPOUND_TAG_LEN_MAX, FATTR4_VALS_LEN_MAX, FH4_LEN_MAX,
    LAYOUT4_BODY_LEN_MAX, NAME_DECODE_LEN_MAX, OPAQUE4_LEN_MAX, PATH_DECODE_LEN_MAX,
    SEC_OID4_LEN_MAX, SMALL_ARRAY4_MAX,
};
use crate::rpc::AuthSys;
use crate::v4::consts::{claim4, createmode4, delegation4, flavor, wnd4};
use crate::xdr::{Decode, Encode, Reader, Result, Writer, XdrError};

/// Declares a struct whose XDR encoding is its fields in order, each field's type bringing its
/// own bounded codec.
macro_rules! xdr_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fm])* pub $f: $t,)*
        }

        impl $crate::xdr::Decode for $name {
            fn decode(r: &mut $crate::xdr::Reader) -> $crate::xdr::Result<Self> {
                Ok($name { $($f: <$t as $crate::xdr::Decode>::decode(r)?,)* })
            }
        }

        impl $crate::xdr::Encode for $name {
            fn encode(&self, w: &mut $crate::xdr::Writer) {
                $($crate::xdr::Encode::encode(&self.$f, w);)*
            }
        }
    };
}
pub(crate) use xdr_struct;

/// Declares a newtype over a variable-length opaque<> whose decoder enforces `$max`.
macro_rules! bounded_opaque {
    ($(#[$m:meta])* $name:ident, $max:expr) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
        pub struct $name(pub Bytes);

        impl $name {
            /// The longest value the decoder accepts.
            pub const LEN_MAX: u32 = $max;
        }

        impl Decode for $name {
            fn decode(r: &mut Reader) -> Result<Self> {
                Ok($name(r.opaque($max)?))
            }
        }

        impl Encode for $name {
            fn encode(&self, w: &mut Writer) {
                w.opaque(&self.0);
            }
        }

        impl From<&'static [u8]> for $name {
            fn from(b: &'static [u8]) -> $name {
                $name(Bytes::from_static(b))
            }
        }
    };
}

bounded_opaque!(
    /// nfs_fh4: opaque<NFS4_FHSIZE>, kept as a slice of the request.
    NfsFh4,
    FH4_LEN_MAX
);
bounded_opaque!(
    /// component4: one file name. Names past the store's limit but within this one decode and
    /// get NFS4ERR_NAMETOOLONG from the server; UTF-8 checks (NFS4ERR_INVAL/BADCHAR) are the
    /// server's too.
    Component4,
    NAME_DECODE_LEN_MAX
);
bounded_opaque!(
    /// linktext4: a symlink's target.
    LinkText4,
    PATH_DECODE_LEN_MAX
);
bounded_opaque!(
    /// The COMPOUND tag (utf8str_cs), echoed in the reply.
    Tag4,
    COMPOUND_TAG_LEN_MAX
);
bounded_opaque!(
    /// opaque<NFS4_OPAQUE_LIMIT>: client and owner identifiers, server scope, major id.
    Opaque4,
    OPAQUE4_LEN_MAX
);
bounded_opaque!(
    /// A short utf8string (implementation ids, ACE principals, netids and addresses).
    Utf8Str4,
    OPAQUE4_LEN_MAX
);
bounded_opaque!(
    /// sec_oid4: a GSS mechanism OID.
    SecOid4,
    SEC_OID4_LEN_MAX
);
bounded_opaque!(
    /// gsshandle4_t: an RPCSEC_GSS context handle.
    GssHandle4,
    OPAQUE4_LEN_MAX
);
bounded_opaque!(
    /// An opaque pNFS or notification body (loc_body, lou_body, da_addr_body, notifylist4).
    Body4,
    LAYOUT4_BODY_LEN_MAX
);

/// verifier4: opaque[NFS4_VERIFIER_SIZE].
pub type Verifier4 = [u8; 8];

/// clientid4.
pub type Clientid4 = u64;

/// deviceid4: opaque[NFS4_DEVICEID4_SIZE].
pub type Deviceid4 = [u8; 16];

/// sessionid4: opaque[NFS4_SESSIONID_SIZE].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId4(pub [u8; 16]);

impl Decode for SessionId4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(SessionId4(r.opaque_fixed::<16>()?))
    }
}

impl Encode for SessionId4 {
    fn encode(&self, w: &mut Writer) {
        w.opaque_fixed(&self.0);
    }
}

/// stateid4 (RFC 8881 §8.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stateid4 {
    pub seqid: u32,
    pub other: [u8; 12],
}

impl Stateid4 {
    /// The anonymous stateid: all zeros (RFC 8881 §8.2.3).
    pub const ANONYMOUS: Stateid4 = Stateid4 {
        seqid: 0,
        other: [0; 12],
    };
    /// The READ bypass stateid: all ones.
    pub const READ_BYPASS: Stateid4 = Stateid4 {
        seqid: u32::MAX,
        other: [0xff; 12],
    };
    /// The current stateid: seqid 1, other all zeros.
    pub const CURRENT: Stateid4 = Stateid4 {
        seqid: 1,
        other: [0; 12],
    };
    /// The invalid stateid: seqid all ones, other all zeros.
    pub const INVALID: Stateid4 = Stateid4 {
        seqid: u32::MAX,
        other: [0; 12],
    };

    /// Encoded size.
    pub const SIZE: usize = 16;
}

impl Decode for Stateid4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(Stateid4 {
            seqid: r.u32()?,
            other: r.opaque_fixed::<12>()?,
        })
    }
}

impl Encode for Stateid4 {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.seqid);
        w.opaque_fixed(&self.other);
    }
}

/// bitmap4: a set of attribute (or notification, or operation) numbers, at most
/// `BITMAP4_WORDS_MAX` words on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bitmap4(pub Vec<u32>);

impl Bitmap4 {
    pub fn new() -> Bitmap4 {
        Bitmap4(Vec::new())
    }

    /// The set of the given bits.
    pub fn from_bits(bits: &[u32]) -> Bitmap4 {
        let mut b = Bitmap4::new();
        for &bit in bits {
            b.set(bit);
        }
        b
    }

    /// The number of bits a bitmap4 can hold here: 32 × `BITMAP4_WORDS_MAX`.
    pub const BITS_MAX: u32 = 32 * BITMAP4_WORDS_MAX;

    /// Adds `bit`, growing the word array as needed. Bits from [`Bitmap4::BITS_MAX`] up are a
    /// caller bug (no peer would decode them); they are ignored rather than allocated for.
    pub fn set(&mut self, bit: u32) {
        debug_assert!(bit < Bitmap4::BITS_MAX, "bit {bit} beyond bitmap4 limit");
        if bit >= Bitmap4::BITS_MAX {
            return;
        }
        let word = (bit / 32) as usize;
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << (bit % 32);
    }

    /// Removes `bit`.
    pub fn clear(&mut self, bit: u32) {
        if let Some(w) = self.0.get_mut((bit / 32) as usize) {
            *w &= !(1 << (bit % 32));
        }
    }

    pub fn contains(&self, bit: u32) -> bool {
        self.0
            .get((bit / 32) as usize)
            .is_some_and(|w| w & (1 << (bit % 32)) != 0)
    }

    /// True when no bit is set (whatever the word count).
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// The set bits in ascending order: the order of values in attr_vals.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &word)| {
            (0..32u32)
                .filter(move |b| word & (1 << b) != 0)
                .map(move |b| i as u32 * 32 + b)
        })
    }

    /// The bits set in both `self` and `other`.
    pub fn intersection(&self, other: &Bitmap4) -> Bitmap4 {
        let mut b = Bitmap4(
            self.0
                .iter()
                .zip(other.0.iter())
                .map(|(a, b)| a & b)
                .collect(),
        );
        while b.0.last() == Some(&0) {
            b.0.pop();
        }
        b
    }
}

impl Decode for Bitmap4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        let n = r.array_len(BITMAP4_WORDS_MAX, 4)?;
        let mut words = Vec::with_capacity(n);
        for _ in 0..n {
            words.push(r.u32()?);
        }
        Ok(Bitmap4(words))
    }
}

impl Encode for Bitmap4 {
    fn encode(&self, w: &mut Writer) {
        encode_array(w, &self.0);
    }
}

/// fattr4: an attribute mask and the values of those attributes, concatenated in ascending
/// attribute order. Values stay undecoded bytes (a slice of the request); [`FattrWriter`]
/// builds them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fattr4 {
    pub attrmask: Bitmap4,
    pub attr_vals: Bytes,
}

impl Fattr4 {
    /// A reader over the attribute values, to decode them in `attrmask` order.
    pub fn vals_reader(&self) -> Reader {
        Reader::new(self.attr_vals.clone())
    }
}

impl Decode for Fattr4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(Fattr4 {
            attrmask: Bitmap4::decode(r)?,
            attr_vals: r.opaque(FATTR4_VALS_LEN_MAX)?,
        })
    }
}

impl Encode for Fattr4 {
    fn encode(&self, w: &mut Writer) {
        self.attrmask.encode(w);
        w.opaque(&self.attr_vals);
    }
}

/// Builds a fattr4: call [`FattrWriter::attr`] once per attribute, in ascending order, with a
/// closure that encodes the value.
#[derive(Debug, Default)]
pub struct FattrWriter {
    mask: Bitmap4,
    vals: Writer,
    last: Option<u32>,
}

impl FattrWriter {
    pub fn new() -> FattrWriter {
        FattrWriter::default()
    }

    /// Appends the value of attribute `attr`. Attributes must come in ascending order, as the
    /// receiver decodes the values by walking the mask; a call out of order is a bug in the
    /// caller.
    pub fn attr(&mut self, attr: u32, value: impl FnOnce(&mut Writer)) -> &mut FattrWriter {
        debug_assert!(
            self.last.is_none_or(|l| l < attr),
            "attributes out of order"
        );
        self.last = Some(attr);
        self.mask.set(attr);
        value(&mut self.vals);
        self
    }

    /// Appends an attribute whose value has its own encoder.
    pub fn value<T: Encode>(&mut self, attr: u32, value: &T) -> &mut FattrWriter {
        self.attr(attr, |w| value.encode(w))
    }

    /// Bytes of attribute values so far (to stop before a reply budget is exceeded).
    pub fn vals_len(&self) -> usize {
        self.vals.len()
    }

    pub fn finish(self) -> Fattr4 {
        Fattr4 {
            attrmask: self.mask,
            attr_vals: self.vals.into_bytes(),
        }
    }
}

xdr_struct! {
    /// nfstime4.
    #[derive(Copy, Default)]
    pub struct Nfstime4 {
        pub seconds: i64,
        pub nseconds: u32,
    }
}

/// settime4 (time_access_set, time_modify_set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settime4 {
    ServerTime,
    ClientTime(Nfstime4),
}

impl Decode for Settime4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            0 => Settime4::ServerTime,
            1 => Settime4::ClientTime(Nfstime4::decode(r)?),
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for Settime4 {
    fn encode(&self, w: &mut Writer) {
        match self {
            Settime4::ServerTime => w.u32(0),
            Settime4::ClientTime(t) => {
                w.u32(1);
                t.encode(w);
            }
        }
    }
}

xdr_struct! {
    /// fsid4.
    #[derive(Copy, Default)]
    pub struct Fsid4 {
        pub major: u64,
        pub minor: u64,
    }
}

xdr_struct! {
    /// specdata4: device numbers.
    #[derive(Copy, Default)]
    pub struct Specdata4 {
        pub specdata1: u32,
        pub specdata2: u32,
    }
}

xdr_struct! {
    /// change_info4: a directory's change attribute around a modification.
    #[derive(Copy, Default)]
    pub struct ChangeInfo4 {
        pub atomic: bool,
        pub before: u64,
        pub after: u64,
    }
}

xdr_struct! {
    /// state_owner4 (open_owner4, lock_owner4).
    pub struct StateOwner4 {
        pub clientid: Clientid4,
        pub owner: Opaque4,
    }
}

xdr_struct! {
    /// client_owner4 (EXCHANGE_ID).
    pub struct ClientOwner4 {
        pub co_verifier: Verifier4,
        pub co_ownerid: Opaque4,
    }
}

xdr_struct! {
    /// server_owner4 (EXCHANGE_ID result).
    pub struct ServerOwner4 {
        pub so_minor_id: u64,
        pub so_major_id: Opaque4,
    }
}

xdr_struct! {
    /// nfs_impl_id4.
    pub struct NfsImplId4 {
        pub nii_domain: Utf8Str4,
        pub nii_name: Utf8Str4,
        pub nii_date: Nfstime4,
    }
}

xdr_struct! {
    /// netaddr4 (RFC 5665 universal address).
    pub struct Netaddr4 {
        pub na_r_netid: Utf8Str4,
        pub na_r_addr: Utf8Str4,
    }
}

xdr_struct! {
    /// state_protect_ops4.
    pub struct StateProtectOps4 {
        pub spo_must_enforce: Bitmap4,
        pub spo_must_allow: Bitmap4,
    }
}

/// ssv_sp_parms4: the client's SP4_SSV offer. Decoded fully so the server can answer it
/// (today with NFS4ERR_ENCR_ALG_UNSUPP or NFS4ERR_HASH_ALG_UNSUPP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsvSpParms4 {
    pub ssp_ops: StateProtectOps4,
    pub ssp_hash_algs: Vec<SecOid4>,
    pub ssp_encr_algs: Vec<SecOid4>,
    pub ssp_window: u32,
    pub ssp_num_gss_handles: u32,
}

impl Decode for SsvSpParms4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(SsvSpParms4 {
            ssp_ops: StateProtectOps4::decode(r)?,
            ssp_hash_algs: decode_array(r, SMALL_ARRAY4_MAX)?,
            ssp_encr_algs: decode_array(r, SMALL_ARRAY4_MAX)?,
            ssp_window: r.u32()?,
            ssp_num_gss_handles: r.u32()?,
        })
    }
}

impl Encode for SsvSpParms4 {
    fn encode(&self, w: &mut Writer) {
        self.ssp_ops.encode(w);
        encode_array(w, &self.ssp_hash_algs);
        encode_array(w, &self.ssp_encr_algs);
        w.u32(self.ssp_window);
        w.u32(self.ssp_num_gss_handles);
    }
}

/// state_protect4_a: the state protection a client asks for in EXCHANGE_ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateProtect4A {
    None,
    MachCred(StateProtectOps4),
    Ssv(SsvSpParms4),
}

impl Decode for StateProtect4A {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            0 => StateProtect4A::None,
            1 => StateProtect4A::MachCred(StateProtectOps4::decode(r)?),
            2 => StateProtect4A::Ssv(SsvSpParms4::decode(r)?),
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for StateProtect4A {
    fn encode(&self, w: &mut Writer) {
        match self {
            StateProtect4A::None => w.u32(0),
            StateProtect4A::MachCred(ops) => {
                w.u32(1);
                ops.encode(w);
            }
            StateProtect4A::Ssv(p) => {
                w.u32(2);
                p.encode(w);
            }
        }
    }
}

/// ssv_prot_info4: the server's SP4_SSV answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsvProtInfo4 {
    pub spi_ops: StateProtectOps4,
    pub spi_hash_alg: u32,
    pub spi_encr_alg: u32,
    pub spi_ssv_len: u32,
    pub spi_window: u32,
    pub spi_handles: Vec<GssHandle4>,
}

impl Decode for SsvProtInfo4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(SsvProtInfo4 {
            spi_ops: StateProtectOps4::decode(r)?,
            spi_hash_alg: r.u32()?,
            spi_encr_alg: r.u32()?,
            spi_ssv_len: r.u32()?,
            spi_window: r.u32()?,
            spi_handles: decode_array(r, SMALL_ARRAY4_MAX)?,
        })
    }
}

impl Encode for SsvProtInfo4 {
    fn encode(&self, w: &mut Writer) {
        self.spi_ops.encode(w);
        w.u32(self.spi_hash_alg);
        w.u32(self.spi_encr_alg);
        w.u32(self.spi_ssv_len);
        w.u32(self.spi_window);
        encode_array(w, &self.spi_handles);
    }
}

/// state_protect4_r: the state protection the server grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateProtect4R {
    None,
    MachCred(StateProtectOps4),
    Ssv(SsvProtInfo4),
}

impl Decode for StateProtect4R {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            0 => StateProtect4R::None,
            1 => StateProtect4R::MachCred(StateProtectOps4::decode(r)?),
            2 => StateProtect4R::Ssv(SsvProtInfo4::decode(r)?),
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for StateProtect4R {
    fn encode(&self, w: &mut Writer) {
        match self {
            StateProtect4R::None => w.u32(0),
            StateProtect4R::MachCred(ops) => {
                w.u32(1);
                ops.encode(w);
            }
            StateProtect4R::Ssv(p) => {
                w.u32(2);
                p.encode(w);
            }
        }
    }
}

xdr_struct! {
    /// channel_attrs4 (CREATE_SESSION). `ca_rdma_ird` is uint32_t<1>, which encodes exactly
    /// like an optional value.
    #[derive(Default)]
    pub struct ChannelAttrs4 {
        pub ca_headerpadsize: u32,
        pub ca_maxrequestsize: u32,
        pub ca_maxresponsesize: u32,
        pub ca_maxresponsesize_cached: u32,
        pub ca_maxoperations: u32,
        pub ca_maxrequests: u32,
        pub ca_rdma_ird: Option<u32>,
    }
}

xdr_struct! {
    /// gss_cb_handles4.
    pub struct GssCbHandles4 {
        pub gcbp_service: u32,
        pub gcbp_handle_from_server: GssHandle4,
        pub gcbp_handle_from_client: GssHandle4,
    }
}

/// callback_sec_parms4: how the server authenticates its callbacks. The union has no default
/// arm, so a flavor other than AUTH_NONE, AUTH_SYS and RPCSEC_GSS cannot be skipped and is
/// NFS4ERR_BADXDR; RPCSEC_GSS decodes, and the server may refuse it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallbackSecParms4 {
    AuthNone,
    AuthSys(AuthSys),
    RpcsecGss(GssCbHandles4),
}

impl Decode for CallbackSecParms4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            flavor::AUTH_NONE => CallbackSecParms4::AuthNone,
            flavor::AUTH_SYS => CallbackSecParms4::AuthSys(AuthSys::decode(r)?),
            flavor::RPCSEC_GSS => CallbackSecParms4::RpcsecGss(GssCbHandles4::decode(r)?),
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for CallbackSecParms4 {
    fn encode(&self, w: &mut Writer) {
        match self {
            CallbackSecParms4::AuthNone => w.u32(flavor::AUTH_NONE),
            CallbackSecParms4::AuthSys(a) => {
                w.u32(flavor::AUTH_SYS);
                a.encode(w);
            }
            CallbackSecParms4::RpcsecGss(g) => {
                w.u32(flavor::RPCSEC_GSS);
                g.encode(w);
            }
        }
    }
}

/// nfs_lock_type4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NfsLockType4 {
    Read = 1,
    Write = 2,
    /// Blocking read.
    ReadW = 3,
    /// Blocking write.
    WriteW = 4,
}

impl NfsLockType4 {
    /// True for WRITE_LT and WRITEW_LT.
    pub fn is_write(self) -> bool {
        matches!(self, NfsLockType4::Write | NfsLockType4::WriteW)
    }
}

impl Decode for NfsLockType4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            1 => NfsLockType4::Read,
            2 => NfsLockType4::Write,
            3 => NfsLockType4::ReadW,
            4 => NfsLockType4::WriteW,
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for NfsLockType4 {
    fn encode(&self, w: &mut Writer) {
        w.u32(*self as u32);
    }
}

/// stable_how4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StableHow4 {
    Unstable = 0,
    DataSync = 1,
    FileSync = 2,
}

impl Decode for StableHow4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            0 => StableHow4::Unstable,
            1 => StableHow4::DataSync,
            2 => StableHow4::FileSync,
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for StableHow4 {
    fn encode(&self, w: &mut Writer) {
        w.u32(*self as u32);
    }
}

xdr_struct! {
    /// open_to_lock_owner4: the first lock of a lock owner, tied to an open.
    pub struct OpenToLockOwner4 {
        pub open_seqid: u32,
        pub open_stateid: Stateid4,
        pub lock_seqid: u32,
        pub lock_owner: StateOwner4,
    }
}

xdr_struct! {
    /// exist_lock_owner4: a lock owner that already holds a lock stateid.
    pub struct ExistLockOwner4 {
        pub lock_stateid: Stateid4,
        pub lock_seqid: u32,
    }
}

/// locker4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Locker4 {
    NewLockOwner(OpenToLockOwner4),
    ExistingLockOwner(ExistLockOwner4),
}

impl Decode for Locker4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(if r.bool()? {
            Locker4::NewLockOwner(OpenToLockOwner4::decode(r)?)
        } else {
            Locker4::ExistingLockOwner(ExistLockOwner4::decode(r)?)
        })
    }
}

impl Encode for Locker4 {
    fn encode(&self, w: &mut Writer) {
        match self {
            Locker4::NewLockOwner(o) => {
                w.bool(true);
                o.encode(w);
            }
            Locker4::ExistingLockOwner(o) => {
                w.bool(false);
                o.encode(w);
            }
        }
    }
}

xdr_struct! {
    /// LOCK4denied: the conflicting lock, returned with NFS4ERR_DENIED.
    pub struct Lock4Denied {
        pub offset: u64,
        pub length: u64,
        pub locktype: NfsLockType4,
        pub owner: StateOwner4,
    }
}

/// createhow4 (RFC 8881 §18.16.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreateHow4 {
    Unchecked(Fattr4),
    Guarded(Fattr4),
    Exclusive(Verifier4),
    /// EXCLUSIVE4_1: a verifier and attributes (RFC 8881 §18.16.3).
    Exclusive41 {
        verifier: Verifier4,
        attrs: Fattr4,
    },
}

impl Decode for CreateHow4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            createmode4::UNCHECKED4 => CreateHow4::Unchecked(Fattr4::decode(r)?),
            createmode4::GUARDED4 => CreateHow4::Guarded(Fattr4::decode(r)?),
            createmode4::EXCLUSIVE4 => CreateHow4::Exclusive(r.opaque_fixed::<8>()?),
            createmode4::EXCLUSIVE4_1 => CreateHow4::Exclusive41 {
                verifier: r.opaque_fixed::<8>()?,
                attrs: Fattr4::decode(r)?,
            },
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for CreateHow4 {
    fn encode(&self, w: &mut Writer) {
        match self {
            CreateHow4::Unchecked(a) => {
                w.u32(createmode4::UNCHECKED4);
                a.encode(w);
            }
            CreateHow4::Guarded(a) => {
                w.u32(createmode4::GUARDED4);
                a.encode(w);
            }
            CreateHow4::Exclusive(v) => {
                w.u32(createmode4::EXCLUSIVE4);
                w.opaque_fixed(v);
            }
            CreateHow4::Exclusive41 { verifier, attrs } => {
                w.u32(createmode4::EXCLUSIVE4_1);
                w.opaque_fixed(verifier);
                attrs.encode(w);
            }
        }
    }
}

/// openflag4: `None` for OPEN4_NOCREATE, `Some(how)` for OPEN4_CREATE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenFlag4(pub Option<CreateHow4>);

impl Decode for OpenFlag4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(OpenFlag4(match r.u32()? {
            0 => None,
            1 => Some(CreateHow4::decode(r)?),
            d => return Err(XdrError::BadDiscriminant(d)),
        }))
    }
}

impl Encode for OpenFlag4 {
    fn encode(&self, w: &mut Writer) {
        match &self.0 {
            None => w.u32(0),
            Some(how) => {
                w.u32(1);
                how.encode(w);
            }
        }
    }
}

/// open_delegation_type4, as carried by CLAIM_PREVIOUS and deleg_claim4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenDelegationType4 {
    None = 0,
    Read = 1,
    Write = 2,
    NoneExt = 3,
}

impl Decode for OpenDelegationType4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            delegation4::NONE => OpenDelegationType4::None,
            delegation4::READ => OpenDelegationType4::Read,
            delegation4::WRITE => OpenDelegationType4::Write,
            delegation4::NONE_EXT => OpenDelegationType4::NoneExt,
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for OpenDelegationType4 {
    fn encode(&self, w: &mut Writer) {
        w.u32(*self as u32);
    }
}

/// open_claim4: what an OPEN names (RFC 8881 §18.16.1), every claim type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenClaim4 {
    /// CLAIM_NULL: `file` in the current directory.
    Null(Component4),
    /// CLAIM_PREVIOUS: reclaim after a server restart; the current FH is the file.
    Previous(OpenDelegationType4),
    /// CLAIM_DELEGATE_CUR: open under a delegation, by name.
    DelegateCur {
        delegate_stateid: Stateid4,
        file: Component4,
    },
    /// CLAIM_DELEGATE_PREV: reclaim a delegation after a client restart, by name.
    DelegatePrev(Component4),
    /// CLAIM_FH: the current FH is the file.
    Fh,
    /// CLAIM_DELEG_CUR_FH: open under a delegation, by the current FH.
    DelegCurFh(Stateid4),
    /// CLAIM_DELEG_PREV_FH: reclaim a delegation, by the current FH.
    DelegPrevFh,
}

impl Decode for OpenClaim4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            claim4::NULL => OpenClaim4::Null(Component4::decode(r)?),
            claim4::PREVIOUS => OpenClaim4::Previous(OpenDelegationType4::decode(r)?),
            claim4::DELEGATE_CUR => OpenClaim4::DelegateCur {
                delegate_stateid: Stateid4::decode(r)?,
                file: Component4::decode(r)?,
            },
            claim4::DELEGATE_PREV => OpenClaim4::DelegatePrev(Component4::decode(r)?),
            claim4::FH => OpenClaim4::Fh,
            claim4::DELEG_CUR_FH => OpenClaim4::DelegCurFh(Stateid4::decode(r)?),
            claim4::DELEG_PREV_FH => OpenClaim4::DelegPrevFh,
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for OpenClaim4 {
    fn encode(&self, w: &mut Writer) {
        match self {
            OpenClaim4::Null(f) => {
                w.u32(claim4::NULL);
                f.encode(w);
            }
            OpenClaim4::Previous(t) => {
                w.u32(claim4::PREVIOUS);
                t.encode(w);
            }
            OpenClaim4::DelegateCur {
                delegate_stateid,
                file,
            } => {
                w.u32(claim4::DELEGATE_CUR);
                delegate_stateid.encode(w);
                file.encode(w);
            }
            OpenClaim4::DelegatePrev(f) => {
                w.u32(claim4::DELEGATE_PREV);
                f.encode(w);
            }
            OpenClaim4::Fh => w.u32(claim4::FH),
            OpenClaim4::DelegCurFh(s) => {
                w.u32(claim4::DELEG_CUR_FH);
                s.encode(w);
            }
            OpenClaim4::DelegPrevFh => w.u32(claim4::DELEG_PREV_FH),
        }
    }
}

/// deleg_claim4 (WANT_DELEGATION).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DelegClaim4 {
    Fh,
    DelegPrevFh,
    Previous(OpenDelegationType4),
}

impl Decode for DelegClaim4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            claim4::FH => DelegClaim4::Fh,
            claim4::DELEG_PREV_FH => DelegClaim4::DelegPrevFh,
            claim4::PREVIOUS => DelegClaim4::Previous(OpenDelegationType4::decode(r)?),
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for DelegClaim4 {
    fn encode(&self, w: &mut Writer) {
        match self {
            DelegClaim4::Fh => w.u32(claim4::FH),
            DelegClaim4::DelegPrevFh => w.u32(claim4::DELEG_PREV_FH),
            DelegClaim4::Previous(t) => {
                w.u32(claim4::PREVIOUS);
                t.encode(w);
            }
        }
    }
}

xdr_struct! {
    /// nfsace4.
    pub struct Nfsace4 {
        pub acetype: u32,
        pub flag: u32,
        pub access_mask: u32,
        pub who: Utf8Str4,
    }
}

/// nfs_space_limit4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NfsSpaceLimit4 {
    Size(u64),
    Blocks {
        num_blocks: u32,
        bytes_per_block: u32,
    },
}

impl Decode for NfsSpaceLimit4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            1 => NfsSpaceLimit4::Size(r.u64()?),
            2 => NfsSpaceLimit4::Blocks {
                num_blocks: r.u32()?,
                bytes_per_block: r.u32()?,
            },
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for NfsSpaceLimit4 {
    fn encode(&self, w: &mut Writer) {
        match self {
            NfsSpaceLimit4::Size(s) => {
                w.u32(1);
                w.u64(*s);
            }
            NfsSpaceLimit4::Blocks {
                num_blocks,
                bytes_per_block,
            } => {
                w.u32(2);
                w.u32(*num_blocks);
                w.u32(*bytes_per_block);
            }
        }
    }
}

xdr_struct! {
    /// open_read_delegation4.
    pub struct OpenReadDelegation4 {
        pub stateid: Stateid4,
        pub recall: bool,
        pub permissions: Nfsace4,
    }
}

xdr_struct! {
    /// open_write_delegation4.
    pub struct OpenWriteDelegation4 {
        pub stateid: Stateid4,
        pub recall: bool,
        pub space_limit: NfsSpaceLimit4,
        pub permissions: Nfsace4,
    }
}

/// open_none_delegation4: why no delegation was granted (OPEN_DELEGATE_NONE_EXT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenNoneDelegation4 {
    /// WND4_CONTENTION with ond_server_will_push_deleg.
    Contention(bool),
    /// WND4_RESOURCE with ond_server_will_signal_avail.
    Resource(bool),
    /// Any other why_no_delegation4 value (WND4_NOT_WANTED, WND4_IS_DIR, ...).
    Other(u32),
}

impl Decode for OpenNoneDelegation4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            wnd4::CONTENTION => OpenNoneDelegation4::Contention(r.bool()?),
            wnd4::RESOURCE => OpenNoneDelegation4::Resource(r.bool()?),
            other => OpenNoneDelegation4::Other(other),
        })
    }
}

impl Encode for OpenNoneDelegation4 {
    fn encode(&self, w: &mut Writer) {
        match self {
            OpenNoneDelegation4::Contention(b) => {
                w.u32(wnd4::CONTENTION);
                w.bool(*b);
            }
            OpenNoneDelegation4::Resource(b) => {
                w.u32(wnd4::RESOURCE);
                w.bool(*b);
            }
            OpenNoneDelegation4::Other(v) => w.u32(*v),
        }
    }
}

/// open_delegation4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenDelegation4 {
    None,
    Read(OpenReadDelegation4),
    Write(OpenWriteDelegation4),
    NoneExt(OpenNoneDelegation4),
}

impl Decode for OpenDelegation4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            delegation4::NONE => OpenDelegation4::None,
            delegation4::READ => OpenDelegation4::Read(OpenReadDelegation4::decode(r)?),
            delegation4::WRITE => OpenDelegation4::Write(OpenWriteDelegation4::decode(r)?),
            delegation4::NONE_EXT => OpenDelegation4::NoneExt(OpenNoneDelegation4::decode(r)?),
            d => return Err(XdrError::BadDiscriminant(d)),
        })
    }
}

impl Encode for OpenDelegation4 {
    fn encode(&self, w: &mut Writer) {
        match self {
            OpenDelegation4::None => w.u32(delegation4::NONE),
            OpenDelegation4::Read(d) => {
                w.u32(delegation4::READ);
                d.encode(w);
            }
            OpenDelegation4::Write(d) => {
                w.u32(delegation4::WRITE);
                d.encode(w);
            }
            OpenDelegation4::NoneExt(d) => {
                w.u32(delegation4::NONE_EXT);
                d.encode(w);
            }
        }
    }
}

xdr_struct! {
    /// rpcsec_gss_info.
    pub struct RpcsecGssInfo {
        pub oid: SecOid4,
        pub qop: u32,
        pub service: u32,
    }
}

/// secinfo4: one acceptable security flavor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Secinfo4 {
    RpcsecGss(RpcsecGssInfo),
    /// AUTH_NONE, AUTH_SYS or another flavor without parameters.
    Flavor(u32),
}

impl Decode for Secinfo4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        Ok(match r.u32()? {
            flavor::RPCSEC_GSS => Secinfo4::RpcsecGss(RpcsecGssInfo::decode(r)?),
            f => Secinfo4::Flavor(f),
        })
    }
}

impl Encode for Secinfo4 {
    fn encode(&self, w: &mut Writer) {
        match self {
            Secinfo4::RpcsecGss(i) => {
                w.u32(flavor::RPCSEC_GSS);
                i.encode(w);
            }
            Secinfo4::Flavor(f) => w.u32(*f),
        }
    }
}

xdr_struct! {
    /// layout_content4 (also layouthint4, layoutupdate4, device_addr4: a type and a body).
    pub struct LayoutContent4 {
        pub loc_type: u32,
        pub loc_body: Body4,
    }
}

xdr_struct! {
    /// layout4.
    pub struct Layout4 {
        pub lo_offset: u64,
        pub lo_length: u64,
        pub lo_iomode: u32,
        pub lo_content: LayoutContent4,
    }
}

/// Decodes an XDR array<max> of `T`, checking the count before allocating. Every XDR item is
/// at least four bytes, which bounds the count by the bytes left too.
pub fn decode_array<T: Decode>(r: &mut Reader, max: u32) -> Result<Vec<T>> {
    let n = r.array_len(max, 4)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(T::decode(r)?);
    }
    Ok(v)
}

/// Encodes an XDR array<>. The caller keeps `items` within the protocol's limit.
pub fn encode_array<T: Encode>(w: &mut Writer, items: &[T]) {
    w.u32(items.len() as u32);
    for i in items {
        i.encode(w);
    }
}
