//! NFSv4.1 protocol numbers (RFC 8881, XDR in RFC 5662): status codes, operation numbers,
//! attribute numbers and flag words, in the RFC's order and spelling.

use crate::xdr::{Decode, Encode, Reader, Result, Writer, XdrError};

macro_rules! nfsstat4 {
    ($($(#[$m:meta])* $variant:ident = $val:literal => $name:literal,)*) => {
        /// nfsstat4 (RFC 8881 §15.1), every value NFSv4.0 and NFSv4.1 define.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub enum Nfsstat4 {
            $($(#[$m])* $variant = $val,)*
        }

        impl Nfsstat4 {
            /// The RFC's name without the NFS4ERR_ prefix ("OK", "BADXDR", "DELAY", ...).
            pub fn name(self) -> &'static str {
                match self {
                    $(Nfsstat4::$variant => $name,)*
                }
            }

            /// The status with wire value `v`, if the protocol defines one.
            pub fn from_u32(v: u32) -> Option<Nfsstat4> {
                match v {
                    $($val => Some(Nfsstat4::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

nfsstat4! {
    #[default]
    Ok = 0 => "OK",
    Perm = 1 => "PERM",
    NoEnt = 2 => "NOENT",
    Io = 5 => "IO",
    Nxio = 6 => "NXIO",
    Access = 13 => "ACCESS",
    Exist = 17 => "EXIST",
    Xdev = 18 => "XDEV",
    NotDir = 20 => "NOTDIR",
    IsDir = 21 => "ISDIR",
    Inval = 22 => "INVAL",
    Fbig = 27 => "FBIG",
    NoSpc = 28 => "NOSPC",
    Rofs = 30 => "ROFS",
    Mlink = 31 => "MLINK",
    NameTooLong = 63 => "NAMETOOLONG",
    NotEmpty = 66 => "NOTEMPTY",
    Dquot = 69 => "DQUOT",
    Stale = 70 => "STALE",
    BadHandle = 10001 => "BADHANDLE",
    BadCookie = 10003 => "BAD_COOKIE",
    NotSupp = 10004 => "NOTSUPP",
    TooSmall = 10005 => "TOOSMALL",
    ServerFault = 10006 => "SERVERFAULT",
    BadType = 10007 => "BADTYPE",
    Delay = 10008 => "DELAY",
    Same = 10009 => "SAME",
    Denied = 10010 => "DENIED",
    Expired = 10011 => "EXPIRED",
    Locked = 10012 => "LOCKED",
    Grace = 10013 => "GRACE",
    FhExpired = 10014 => "FHEXPIRED",
    ShareDenied = 10015 => "SHARE_DENIED",
    WrongSec = 10016 => "WRONGSEC",
    ClidInUse = 10017 => "CLID_INUSE",
    /// NFSv4.0 only: RFC 8881 says NFSv4.1 servers never return it.
    Resource = 10018 => "RESOURCE",
    Moved = 10019 => "MOVED",
    NoFileHandle = 10020 => "NOFILEHANDLE",
    MinorVersMismatch = 10021 => "MINOR_VERS_MISMATCH",
    StaleClientid = 10022 => "STALE_CLIENTID",
    StaleStateid = 10023 => "STALE_STATEID",
    OldStateid = 10024 => "OLD_STATEID",
    BadStateid = 10025 => "BAD_STATEID",
    BadSeqid = 10026 => "BAD_SEQID",
    NotSame = 10027 => "NOT_SAME",
    LockRange = 10028 => "LOCK_RANGE",
    Symlink = 10029 => "SYMLINK",
    RestoreFh = 10030 => "RESTOREFH",
    LeaseMoved = 10031 => "LEASE_MOVED",
    AttrNotSupp = 10032 => "ATTRNOTSUPP",
    NoGrace = 10033 => "NO_GRACE",
    ReclaimBad = 10034 => "RECLAIM_BAD",
    ReclaimConflict = 10035 => "RECLAIM_CONFLICT",
    BadXdr = 10036 => "BADXDR",
    LocksHeld = 10037 => "LOCKS_HELD",
    OpenMode = 10038 => "OPENMODE",
    BadOwner = 10039 => "BADOWNER",
    BadChar = 10040 => "BADCHAR",
    BadName = 10041 => "BADNAME",
    BadRange = 10042 => "BAD_RANGE",
    LockNotSupp = 10043 => "LOCK_NOTSUPP",
    OpIllegal = 10044 => "OP_ILLEGAL",
    Deadlock = 10045 => "DEADLOCK",
    FileOpen = 10046 => "FILE_OPEN",
    AdminRevoked = 10047 => "ADMIN_REVOKED",
    CbPathDown = 10048 => "CB_PATH_DOWN",
    BadIoMode = 10049 => "BADIOMODE",
    BadLayout = 10050 => "BADLAYOUT",
    BadSessionDigest = 10051 => "BAD_SESSION_DIGEST",
    BadSession = 10052 => "BADSESSION",
    BadSlot = 10053 => "BADSLOT",
    CompleteAlready = 10054 => "COMPLETE_ALREADY",
    ConnNotBoundToSession = 10055 => "CONN_NOT_BOUND_TO_SESSION",
    DelegAlreadyWanted = 10056 => "DELEG_ALREADY_WANTED",
    BackChanBusy = 10057 => "BACK_CHAN_BUSY",
    LayoutTryLater = 10058 => "LAYOUTTRYLATER",
    LayoutUnavailable = 10059 => "LAYOUTUNAVAILABLE",
    NoMatchingLayout = 10060 => "NOMATCHING_LAYOUT",
    RecallConflict = 10061 => "RECALLCONFLICT",
    UnknownLayoutType = 10062 => "UNKNOWN_LAYOUTTYPE",
    SeqMisordered = 10063 => "SEQ_MISORDERED",
    SequencePos = 10064 => "SEQUENCE_POS",
    ReqTooBig = 10065 => "REQ_TOO_BIG",
    RepTooBig = 10066 => "REP_TOO_BIG",
    RepTooBigToCache = 10067 => "REP_TOO_BIG_TO_CACHE",
    RetryUncachedRep = 10068 => "RETRY_UNCACHED_REP",
    UnsafeCompound = 10069 => "UNSAFE_COMPOUND",
    TooManyOps = 10070 => "TOO_MANY_OPS",
    OpNotInSession = 10071 => "OP_NOT_IN_SESSION",
    HashAlgUnsupp = 10072 => "HASH_ALG_UNSUPP",
    ClientidBusy = 10074 => "CLIENTID_BUSY",
    PnfsIoHole = 10075 => "PNFS_IO_HOLE",
    SeqFalseRetry = 10076 => "SEQ_FALSE_RETRY",
    BadHighSlot = 10077 => "BAD_HIGH_SLOT",
    DeadSession = 10078 => "DEADSESSION",
    EncrAlgUnsupp = 10079 => "ENCR_ALG_UNSUPP",
    PnfsNoLayout = 10080 => "PNFS_NO_LAYOUT",
    NotOnlyOp = 10081 => "NOT_ONLY_OP",
    WrongCred = 10082 => "WRONG_CRED",
    WrongType = 10083 => "WRONG_TYPE",
    DirDelegUnavail = 10084 => "DIRDELEG_UNAVAIL",
    RejectDeleg = 10085 => "REJECT_DELEG",
    ReturnConflict = 10086 => "RETURNCONFLICT",
    DelegRevoked = 10087 => "DELEG_REVOKED",
}

impl Nfsstat4 {
    pub fn is_ok(self) -> bool {
        self == Nfsstat4::Ok
    }
}

impl Decode for Nfsstat4 {
    fn decode(r: &mut Reader) -> Result<Self> {
        let v = r.u32()?;
        Nfsstat4::from_u32(v).ok_or(XdrError::BadDiscriminant(v))
    }
}

impl Encode for Nfsstat4 {
    fn encode(&self, w: &mut Writer) {
        w.u32(*self as u32);
    }
}

/// NFSv4 procedures (RFC 8881 §16). Everything but NULL travels inside COMPOUND.
pub mod proc4 {
    pub const NULL: u32 = 0;
    pub const COMPOUND: u32 = 1;
}

/// Operation numbers, nfs_opnum4 (RFC 8881 §16.2.1). Ops 20, 30, 35, 36 and 39 are NFSv4.0
/// operations that NFSv4.1 marks "mandatory to not implement" (RFC 8881 §17).
pub mod op4 {
    pub const ACCESS: u32 = 3;
    pub const CLOSE: u32 = 4;
    pub const COMMIT: u32 = 5;
    pub const CREATE: u32 = 6;
    pub const DELEGPURGE: u32 = 7;
    pub const DELEGRETURN: u32 = 8;
    pub const GETATTR: u32 = 9;
    pub const GETFH: u32 = 10;
    pub const LINK: u32 = 11;
    pub const LOCK: u32 = 12;
    pub const LOCKT: u32 = 13;
    pub const LOCKU: u32 = 14;
    pub const LOOKUP: u32 = 15;
    pub const LOOKUPP: u32 = 16;
    pub const NVERIFY: u32 = 17;
    pub const OPEN: u32 = 18;
    pub const OPENATTR: u32 = 19;
    pub const OPEN_CONFIRM: u32 = 20;
    pub const OPEN_DOWNGRADE: u32 = 21;
    pub const PUTFH: u32 = 22;
    pub const PUTPUBFH: u32 = 23;
    pub const PUTROOTFH: u32 = 24;
    pub const READ: u32 = 25;
    pub const READDIR: u32 = 26;
    pub const READLINK: u32 = 27;
    pub const REMOVE: u32 = 28;
    pub const RENAME: u32 = 29;
    pub const RENEW: u32 = 30;
    pub const RESTOREFH: u32 = 31;
    pub const SAVEFH: u32 = 32;
    pub const SECINFO: u32 = 33;
    pub const SETATTR: u32 = 34;
    pub const SETCLIENTID: u32 = 35;
    pub const SETCLIENTID_CONFIRM: u32 = 36;
    pub const VERIFY: u32 = 37;
    pub const WRITE: u32 = 38;
    pub const RELEASE_LOCKOWNER: u32 = 39;
    pub const BACKCHANNEL_CTL: u32 = 40;
    pub const BIND_CONN_TO_SESSION: u32 = 41;
    pub const EXCHANGE_ID: u32 = 42;
    pub const CREATE_SESSION: u32 = 43;
    pub const DESTROY_SESSION: u32 = 44;
    pub const FREE_STATEID: u32 = 45;
    pub const GET_DIR_DELEGATION: u32 = 46;
    pub const GETDEVICEINFO: u32 = 47;
    pub const GETDEVICELIST: u32 = 48;
    pub const LAYOUTCOMMIT: u32 = 49;
    pub const LAYOUTGET: u32 = 50;
    pub const LAYOUTRETURN: u32 = 51;
    pub const SECINFO_NO_NAME: u32 = 52;
    pub const SEQUENCE: u32 = 53;
    pub const SET_SSV: u32 = 54;
    pub const TEST_STATEID: u32 = 55;
    pub const WANT_DELEGATION: u32 = 56;
    pub const DESTROY_CLIENTID: u32 = 57;
    pub const RECLAIM_COMPLETE: u32 = 58;
    pub const ILLEGAL: u32 = 10044;

    /// The first and last operation numbers NFSv4.1 defines.
    pub const FIRST: u32 = ACCESS;
    pub const LAST: u32 = RECLAIM_COMPLETE;

    /// True for the NFSv4.0 operations NFSv4.1 forbids (OPEN_CONFIRM, RENEW, SETCLIENTID,
    /// SETCLIENTID_CONFIRM, RELEASE_LOCKOWNER). RFC 8881 §17 marks them MNI and §15.2 lists
    /// NFS4ERR_NOTSUPP as their only result; they are not OP_ILLEGAL, because the op numbers
    /// exist in the protocol (RFC 8178 §5: an obsoleted op gets an error, not a decode failure).
    pub fn is_mandatory_not_implemented(op: u32) -> bool {
        matches!(
            op,
            OPEN_CONFIRM | RENEW | SETCLIENTID | SETCLIENTID_CONFIRM | RELEASE_LOCKOWNER
        )
    }

    /// The RFC's name of an operation ("ILLEGAL" for anything undefined), for logs and metrics.
    pub fn name(op: u32) -> &'static str {
        const NAMES: [&str; (LAST + 1) as usize] = [
            "ILLEGAL",
            "ILLEGAL",
            "ILLEGAL",
            "ACCESS",
            "CLOSE",
            "COMMIT",
            "CREATE",
            "DELEGPURGE",
            "DELEGRETURN",
            "GETATTR",
            "GETFH",
            "LINK",
            "LOCK",
            "LOCKT",
            "LOCKU",
            "LOOKUP",
            "LOOKUPP",
            "NVERIFY",
            "OPEN",
            "OPENATTR",
            "OPEN_CONFIRM",
            "OPEN_DOWNGRADE",
            "PUTFH",
            "PUTPUBFH",
            "PUTROOTFH",
            "READ",
            "READDIR",
            "READLINK",
            "REMOVE",
            "RENAME",
            "RENEW",
            "RESTOREFH",
            "SAVEFH",
            "SECINFO",
            "SETATTR",
            "SETCLIENTID",
            "SETCLIENTID_CONFIRM",
            "VERIFY",
            "WRITE",
            "RELEASE_LOCKOWNER",
            "BACKCHANNEL_CTL",
            "BIND_CONN_TO_SESSION",
            "EXCHANGE_ID",
            "CREATE_SESSION",
            "DESTROY_SESSION",
            "FREE_STATEID",
            "GET_DIR_DELEGATION",
            "GETDEVICEINFO",
            "GETDEVICELIST",
            "LAYOUTCOMMIT",
            "LAYOUTGET",
            "LAYOUTRETURN",
            "SECINFO_NO_NAME",
            "SEQUENCE",
            "SET_SSV",
            "TEST_STATEID",
            "WANT_DELEGATION",
            "DESTROY_CLIENTID",
            "RECLAIM_COMPLETE",
        ];
        NAMES.get(op as usize).copied().unwrap_or("ILLEGAL")
    }
}

/// The callback program (RFC 8881 §16.2.2 / §20). Its program number is the client's choice
/// (`csa_cb_program` in CREATE_SESSION); the version is always 1.
pub mod cb4 {
    pub const VERSION: u32 = 1;
    pub const CB_NULL: u32 = 0;
    pub const CB_COMPOUND: u32 = 1;
}

/// Callback operation numbers, nfs_cb_opnum4 (RFC 8881 §20).
pub mod cb_op4 {
    pub const CB_GETATTR: u32 = 3;
    pub const CB_RECALL: u32 = 4;
    pub const CB_LAYOUTRECALL: u32 = 5;
    pub const CB_NOTIFY: u32 = 6;
    pub const CB_PUSH_DELEG: u32 = 7;
    pub const CB_RECALL_ANY: u32 = 8;
    pub const CB_RECALLABLE_OBJ_AVAIL: u32 = 9;
    pub const CB_RECALL_SLOT: u32 = 10;
    pub const CB_SEQUENCE: u32 = 11;
    pub const CB_WANTS_CANCELLED: u32 = 12;
    pub const CB_NOTIFY_LOCK: u32 = 13;
    pub const CB_NOTIFY_DEVICEID: u32 = 14;
    pub const CB_ILLEGAL: u32 = 10044;

    /// The RFC's name of a callback operation ("CB_ILLEGAL" for anything undefined).
    pub fn name(op: u32) -> &'static str {
        const NAMES: [&str; 12] = [
            "CB_GETATTR",
            "CB_RECALL",
            "CB_LAYOUTRECALL",
            "CB_NOTIFY",
            "CB_PUSH_DELEG",
            "CB_RECALL_ANY",
            "CB_RECALLABLE_OBJ_AVAIL",
            "CB_RECALL_SLOT",
            "CB_SEQUENCE",
            "CB_WANTS_CANCELLED",
            "CB_NOTIFY_LOCK",
            "CB_NOTIFY_DEVICEID",
        ];
        op.checked_sub(CB_GETATTR)
            .and_then(|i| NAMES.get(i as usize).copied())
            .unwrap_or("CB_ILLEGAL")
    }
}

/// fattr4 attribute numbers (RFC 8881 §5.6 REQUIRED, §5.7 RECOMMENDED, and the NFSv4.1
/// additions of §5.8 to §5.12).
pub mod attr4 {
    // REQUIRED (RFC 8881 §5.6).
    pub const SUPPORTED_ATTRS: u32 = 0;
    pub const TYPE: u32 = 1;
    pub const FH_EXPIRE_TYPE: u32 = 2;
    pub const CHANGE: u32 = 3;
    pub const SIZE: u32 = 4;
    pub const LINK_SUPPORT: u32 = 5;
    pub const SYMLINK_SUPPORT: u32 = 6;
    pub const NAMED_ATTR: u32 = 7;
    pub const FSID: u32 = 8;
    pub const UNIQUE_HANDLES: u32 = 9;
    pub const LEASE_TIME: u32 = 10;
    pub const RDATTR_ERROR: u32 = 11;
    pub const FILEHANDLE: u32 = 19;
    pub const SUPPATTR_EXCLCREAT: u32 = 75;
    // RECOMMENDED (RFC 8881 §5.7).
    pub const ACL: u32 = 12;
    pub const ACLSUPPORT: u32 = 13;
    pub const ARCHIVE: u32 = 14;
    pub const CANSETTIME: u32 = 15;
    pub const CASE_INSENSITIVE: u32 = 16;
    pub const CASE_PRESERVING: u32 = 17;
    pub const CHOWN_RESTRICTED: u32 = 18;
    pub const FILEID: u32 = 20;
    pub const FILES_AVAIL: u32 = 21;
    pub const FILES_FREE: u32 = 22;
    pub const FILES_TOTAL: u32 = 23;
    pub const FS_LOCATIONS: u32 = 24;
    pub const HIDDEN: u32 = 25;
    pub const HOMOGENEOUS: u32 = 26;
    pub const MAXFILESIZE: u32 = 27;
    pub const MAXLINK: u32 = 28;
    pub const MAXNAME: u32 = 29;
    pub const MAXREAD: u32 = 30;
    pub const MAXWRITE: u32 = 31;
    pub const MIMETYPE: u32 = 32;
    pub const MODE: u32 = 33;
    pub const NO_TRUNC: u32 = 34;
    pub const NUMLINKS: u32 = 35;
    pub const OWNER: u32 = 36;
    pub const OWNER_GROUP: u32 = 37;
    pub const QUOTA_AVAIL_HARD: u32 = 38;
    pub const QUOTA_AVAIL_SOFT: u32 = 39;
    pub const QUOTA_USED: u32 = 40;
    pub const RAWDEV: u32 = 41;
    pub const SPACE_AVAIL: u32 = 42;
    pub const SPACE_FREE: u32 = 43;
    pub const SPACE_TOTAL: u32 = 44;
    pub const SPACE_USED: u32 = 45;
    pub const SYSTEM: u32 = 46;
    pub const TIME_ACCESS: u32 = 47;
    pub const TIME_ACCESS_SET: u32 = 48;
    pub const TIME_BACKUP: u32 = 49;
    pub const TIME_CREATE: u32 = 50;
    pub const TIME_DELTA: u32 = 51;
    pub const TIME_METADATA: u32 = 52;
    pub const TIME_MODIFY: u32 = 53;
    pub const TIME_MODIFY_SET: u32 = 54;
    pub const MOUNTED_ON_FILEID: u32 = 55;
    // New in NFSv4.1.
    pub const DIR_NOTIF_DELAY: u32 = 56;
    pub const DIRENT_NOTIF_DELAY: u32 = 57;
    pub const DACL: u32 = 58;
    pub const SACL: u32 = 59;
    pub const CHANGE_POLICY: u32 = 60;
    pub const FS_STATUS: u32 = 61;
    pub const FS_LAYOUT_TYPES: u32 = 62;
    pub const LAYOUT_HINT: u32 = 63;
    pub const LAYOUT_TYPES: u32 = 64;
    pub const LAYOUT_BLKSIZE: u32 = 65;
    pub const LAYOUT_ALIGNMENT: u32 = 66;
    pub const FS_LOCATIONS_INFO: u32 = 67;
    pub const MDSTHRESHOLD: u32 = 68;
    pub const RETENTION_GET: u32 = 69;
    pub const RETENTION_SET: u32 = 70;
    pub const RETENTEVT_GET: u32 = 71;
    pub const RETENTEVT_SET: u32 = 72;
    pub const RETENTION_HOLD: u32 = 73;
    pub const MODE_SET_MASKED: u32 = 74;
    pub const FS_CHARSET_CAP: u32 = 76;

    /// The attributes every NFSv4.1 server must support (RFC 8881 §5.6).
    pub const REQUIRED: [u32; 14] = [
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
        FILEHANDLE,
        SUPPATTR_EXCLCREAT,
    ];
}

/// nfs_ftype4: file types.
pub mod ftype4 {
    pub const NF4REG: u32 = 1;
    pub const NF4DIR: u32 = 2;
    pub const NF4BLK: u32 = 3;
    pub const NF4CHR: u32 = 4;
    pub const NF4LNK: u32 = 5;
    pub const NF4SOCK: u32 = 6;
    pub const NF4FIFO: u32 = 7;
    pub const NF4ATTRDIR: u32 = 8;
    pub const NF4NAMEDATTR: u32 = 9;
}

/// fh_expire_type values (RFC 8881 §4.2.1).
pub mod fh4 {
    pub const PERSISTENT: u32 = 0x0000_0000;
    pub const NOEXPIRE_WITH_OPEN: u32 = 0x0000_0001;
    pub const VOLATILE_ANY: u32 = 0x0000_0002;
    pub const VOL_MIGRATION: u32 = 0x0000_0004;
    pub const VOL_RENAME: u32 = 0x0000_0008;
}

/// ACCESS4 bits (RFC 8881 §18.1).
pub mod access4 {
    pub const READ: u32 = 0x0000_0001;
    pub const LOOKUP: u32 = 0x0000_0002;
    pub const MODIFY: u32 = 0x0000_0004;
    pub const EXTEND: u32 = 0x0000_0008;
    pub const DELETE: u32 = 0x0000_0010;
    pub const EXECUTE: u32 = 0x0000_0020;
}

/// OPEN share access and deny bits, delegation wants and result flags (RFC 8881 §18.16).
pub mod open4 {
    pub const SHARE_ACCESS_READ: u32 = 0x0000_0001;
    pub const SHARE_ACCESS_WRITE: u32 = 0x0000_0002;
    pub const SHARE_ACCESS_BOTH: u32 = 0x0000_0003;
    pub const SHARE_DENY_NONE: u32 = 0x0000_0000;
    pub const SHARE_DENY_READ: u32 = 0x0000_0001;
    pub const SHARE_DENY_WRITE: u32 = 0x0000_0002;
    pub const SHARE_DENY_BOTH: u32 = 0x0000_0003;
    pub const SHARE_ACCESS_WANT_DELEG_MASK: u32 = 0xFF00;
    pub const SHARE_ACCESS_WANT_NO_PREFERENCE: u32 = 0x0000;
    pub const SHARE_ACCESS_WANT_READ_DELEG: u32 = 0x0100;
    pub const SHARE_ACCESS_WANT_WRITE_DELEG: u32 = 0x0200;
    pub const SHARE_ACCESS_WANT_ANY_DELEG: u32 = 0x0300;
    pub const SHARE_ACCESS_WANT_NO_DELEG: u32 = 0x0400;
    pub const SHARE_ACCESS_WANT_CANCEL: u32 = 0x0500;
    pub const SHARE_ACCESS_WANT_SIGNAL_DELEG_WHEN_RESRC_AVAIL: u32 = 0x10000;
    pub const SHARE_ACCESS_WANT_PUSH_DELEG_WHEN_UNCONTENDED: u32 = 0x20000;
    pub const RESULT_CONFIRM: u32 = 0x0000_0002;
    pub const RESULT_LOCKTYPE_POSIX: u32 = 0x0000_0004;
    pub const RESULT_PRESERVE_UNLINKED: u32 = 0x0000_0008;
    pub const RESULT_MAY_NOTIFY_LOCK: u32 = 0x0000_0020;
}

/// open_claim_type4 (RFC 8881 §18.16.1).
pub mod claim4 {
    pub const NULL: u32 = 0;
    pub const PREVIOUS: u32 = 1;
    pub const DELEGATE_CUR: u32 = 2;
    pub const DELEGATE_PREV: u32 = 3;
    pub const FH: u32 = 4;
    pub const DELEG_CUR_FH: u32 = 5;
    pub const DELEG_PREV_FH: u32 = 6;
}

/// createmode4 (RFC 8881 §18.16.1).
pub mod createmode4 {
    pub const UNCHECKED4: u32 = 0;
    pub const GUARDED4: u32 = 1;
    pub const EXCLUSIVE4: u32 = 2;
    pub const EXCLUSIVE4_1: u32 = 3;
}

/// open_delegation_type4 (RFC 8881 §18.16.1).
pub mod delegation4 {
    pub const NONE: u32 = 0;
    pub const READ: u32 = 1;
    pub const WRITE: u32 = 2;
    pub const NONE_EXT: u32 = 3;
}

/// why_no_delegation4 (RFC 8881 §18.16.1).
pub mod wnd4 {
    pub const NOT_WANTED: u32 = 0;
    pub const CONTENTION: u32 = 1;
    pub const RESOURCE: u32 = 2;
    pub const NOT_SUPP_FTYPE: u32 = 3;
    pub const WRITE_DELEG_NOT_SUPP_FTYPE: u32 = 4;
    pub const NOT_SUPP_UPGRADE: u32 = 5;
    pub const NOT_SUPP_DOWNGRADE: u32 = 6;
    pub const CANCELLED: u32 = 7;
    pub const IS_DIR: u32 = 8;
}

/// EXCHANGE_ID flags (RFC 8881 §18.35).
pub mod exchgid4 {
    pub const FLAG_SUPP_MOVED_REFER: u32 = 0x0000_0001;
    pub const FLAG_SUPP_MOVED_MIGR: u32 = 0x0000_0002;
    pub const FLAG_SUPP_FENCE_OPS: u32 = 0x0000_0004;
    pub const FLAG_BIND_PRINC_STATEID: u32 = 0x0000_0100;
    pub const FLAG_USE_NON_PNFS: u32 = 0x0001_0000;
    pub const FLAG_USE_PNFS_MDS: u32 = 0x0002_0000;
    pub const FLAG_USE_PNFS_DS: u32 = 0x0004_0000;
    pub const FLAG_MASK_PNFS: u32 = 0x0007_0000;
    pub const FLAG_UPD_CONFIRMED_REC_A: u32 = 0x4000_0000;
    pub const FLAG_CONFIRMED_R: u32 = 0x8000_0000;
}

/// CREATE_SESSION flags (RFC 8881 §18.36).
pub mod create_session4 {
    pub const FLAG_PERSIST: u32 = 0x0000_0001;
    pub const FLAG_CONN_BACK_CHAN: u32 = 0x0000_0002;
    pub const FLAG_CONN_RDMA: u32 = 0x0000_0004;
}

/// sr_status_flags of SEQUENCE (RFC 8881 §18.46).
pub mod seq4_status {
    pub const CB_PATH_DOWN: u32 = 0x0000_0001;
    pub const CB_GSS_CONTEXTS_EXPIRING: u32 = 0x0000_0002;
    pub const CB_GSS_CONTEXTS_EXPIRED: u32 = 0x0000_0004;
    pub const EXPIRED_ALL_STATE_REVOKED: u32 = 0x0000_0008;
    pub const EXPIRED_SOME_STATE_REVOKED: u32 = 0x0000_0010;
    pub const ADMIN_STATE_REVOKED: u32 = 0x0000_0020;
    pub const RECALLABLE_STATE_REVOKED: u32 = 0x0000_0040;
    pub const LEASE_MOVED: u32 = 0x0000_0080;
    pub const RESTART_RECLAIM_NEEDED: u32 = 0x0000_0100;
    pub const CB_PATH_DOWN_SESSION: u32 = 0x0000_0200;
    pub const BACKCHANNEL_FAULT: u32 = 0x0000_0400;
    pub const DEVID_CHANGED: u32 = 0x0000_0800;
    pub const DEVID_DELETED: u32 = 0x0000_1000;
}

/// RPC security flavors that appear inside NFSv4 (callback_sec_parms4, secinfo4).
pub mod flavor {
    pub const AUTH_NONE: u32 = 0;
    pub const AUTH_SYS: u32 = 1;
    pub const RPCSEC_GSS: u32 = 6;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_survives_its_wire_value() {
        for v in (0..100).chain(10000..10100) {
            if let Some(s) = Nfsstat4::from_u32(v) {
                assert_eq!(s as u32, v);
                assert!(!s.name().is_empty());
            }
        }
        assert_eq!(Nfsstat4::from_u32(19), None);
        assert_eq!(Nfsstat4::from_u32(10073), None);
        assert_eq!(Nfsstat4::DelegRevoked.name(), "DELEG_REVOKED");
    }

    #[test]
    fn op_names_follow_the_rfc_numbering() {
        assert_eq!(op4::name(op4::ACCESS), "ACCESS");
        assert_eq!(op4::name(op4::SEQUENCE), "SEQUENCE");
        assert_eq!(op4::name(op4::RECLAIM_COMPLETE), "RECLAIM_COMPLETE");
        assert_eq!(op4::name(2), "ILLEGAL");
        assert_eq!(op4::name(59), "ILLEGAL");
        assert_eq!(cb_op4::name(cb_op4::CB_SEQUENCE), "CB_SEQUENCE");
        assert_eq!(
            cb_op4::name(cb_op4::CB_NOTIFY_DEVICEID),
            "CB_NOTIFY_DEVICEID"
        );
        assert_eq!(cb_op4::name(2), "CB_ILLEGAL");
    }
}
