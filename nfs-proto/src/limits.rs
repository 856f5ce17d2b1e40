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
