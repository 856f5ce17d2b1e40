//! Every wire limit in one place. Each is checked before anything is allocated for the item.

/// Largest READ or WRITE payload we offer (FSINFO rtmax/wtmax): 1 MiB.
pub const IO_SIZE_MAX: u32 = 1 << 20;
/// Largest RPC record accepted from a client: a 1 MiB WRITE plus generous header room.
pub const RECORD_LEN_MAX: usize = IO_SIZE_MAX as usize + 64 * 1024;
/// RFC 5531: opaque_auth bodies are at most 400 bytes.
pub const AUTH_BODY_LEN_MAX: u32 = 400;
/// RFC 5531 Appendix A: machinename<255>.
pub const MACHINE_NAME_LEN_MAX: u32 = 255;
/// RFC 5531 Appendix A: gids<16>.
pub const AUTH_SYS_GROUPS_MAX: u32 = 16;
/// RFC 1813: nfs_fh3 is opaque<NFS3_FHSIZE>, NFS3_FHSIZE = 64.
pub const FH3_LEN_MAX: u32 = 64;
/// Longest file name decoded; longer names are GARBAGE_ARGS. Names longer than the store's
/// NAME_LEN_MAX (255) but within this decode and get NFS3ERR_NAMETOOLONG.
pub const NAME_DECODE_LEN_MAX: u32 = 1024;
/// Longest path (symlink target, MOUNT dirpath) decoded.
pub const PATH_DECODE_LEN_MAX: u32 = 4096;
/// RFC 1813 MOUNT: dirpath<MNTPATHLEN>, MNTPATHLEN = 1024.
pub const MOUNT_PATH_LEN_MAX: u32 = 1024;
/// Largest READDIR/READDIRPLUS reply we build, whatever the client asks for.
pub const READDIR_REPLY_LEN_MAX: u32 = 1 << 20;
/// rpcbind strings (netid, universal address, owner).
pub const RPCB_STRING_LEN_MAX: u32 = 256;

// NFSv4.1 (RFC 8881). Decoding stops at the first item over its limit; see `v4` for how each
// failure maps to a status.

/// Operations decoded from one COMPOUND. knfsd allows 200 (`NFSD_MAX_OPS_PER_COMPOUND`); a
/// session's `ca_maxoperations` is negotiated at or below this, so a longer COMPOUND is refused
/// with NFS4ERR_TOO_MANY_OPS before its ops are allocated.
pub const COMPOUND_OPS_MAX: u32 = 128;
/// Operations decoded from a CB_COMPOUND reply (our callbacks send at most a handful).
pub const CB_COMPOUND_OPS_MAX: u32 = 16;
/// COMPOUND tag (utf8str_cs). knfsd's `NFSD4_MAX_TAGLEN` is 128 too.
pub const COMPOUND_TAG_LEN_MAX: u32 = 128;
/// RFC 8881 §3.2: nfs_fh4 is opaque<NFS4_FHSIZE>, NFS4_FHSIZE = 128.
pub const FH4_LEN_MAX: u32 = 128;
/// RFC 8881 §3.2: NFS4_OPAQUE_LIMIT bounds client and owner identifiers and server scopes.
pub const OPAQUE4_LEN_MAX: u32 = 1024;
/// Words in a bitmap4. Attribute numbers end at 82 (three words); clients may pad with zero
/// words, so we accept up to 256 attributes' worth.
pub const BITMAP4_WORDS_MAX: u32 = 8;
/// attr_vals of a fattr4 sent by a client (SETATTR, CREATE, OPEN, VERIFY): room for an ACL of
/// a few hundred entries.
pub const FATTR4_VALS_LEN_MAX: u32 = 64 * 1024;
/// Entries of small protocol arrays: security flavors (SECINFO, callback_sec_parms4), hash and
/// encryption algorithm OIDs, referring-call lists, notifications.
pub const SMALL_ARRAY4_MAX: u32 = 16;
/// A GSS OID (sec_oid4) or GSS handle.
pub const SEC_OID4_LEN_MAX: u32 = 128;
/// Stateids in one TEST_STATEID.
pub const TEST_STATEIDS_MAX: u32 = 1024;
/// Opaque pNFS bodies (layout, layoutupdate, device address, notification lists).
pub const LAYOUT4_BODY_LEN_MAX: u32 = 64 * 1024;
/// Layouts in a LAYOUTGET reply, devices in a GETDEVICELIST reply (client-side decode).
pub const LAYOUT4_ARRAY_MAX: u32 = 256;
/// Entries decoded from one READDIR reply (client-side decode).
pub const READDIR4_ENTRIES_MAX: u32 = 1 << 16;
/// ACEs in one ACL attribute value.
pub const ACL4_ACES_MAX: u32 = 1024;
