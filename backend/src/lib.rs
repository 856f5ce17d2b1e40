//! The storage backend of Sluice: the [`Store`] trait and its implementations.
//!
//! A `Store` is an inode-based file system: every object is named by a [`FileId`] (inode number
//! plus generation), directories map names to inodes, and regular files hold bytes. It knows
//! nothing about NFS: no wire types, no status codes. The NFS layer maps [`Error`] onto
//! `nfsstat3`/`nfsstat4` in one place (`nfs_server::error`).
//!
//! Contract shared by every implementation (checked by `tests/conformance.rs`):
//! * Permission checks are POSIX and use the [`Cred`] passed in. uid 0 bypasses read/write
//!   checks (export root squashing happens above this layer, before the `Cred` is built).
//!   The owner of a regular file may always READ and WRITE it, whatever its mode bits: the NFS
//!   client already checked the mode at open(2) time, and `open(O_CREAT|O_WRONLY, 0444)` must work.
//! * Metadata operations (create, mkdir, symlink, mknod, link, remove, rmdir, rename, setattr)
//!   are on stable storage when they return, as RFC 1813 §3.3 requires of a server.
//! * A `write` with [`Stability::Unstable`] may sit in memory until [`Store::commit`]; one with
//!   `DataSync`/`FileSync` is on stable storage (data and the size that covers it) when it returns.
//! * [`Store::write_verifier`] changes whenever data acknowledged `Unstable` may have been lost:
//!   on every restart, and after any failed flush.
//! * Directory cookies are stable: a cookie returned by [`Store::readdir`] stays valid across
//!   insertions, removals and restarts; it resumes after the entry it was returned with.
//! * Inode numbers are never reused, so a stale [`FileId`] is detected by its generation.

use std::future::Future;

use bytes::Bytes;

pub mod engine;
mod group;
pub mod local;
pub mod mem;
pub mod nvme;
pub mod testing;

/// Longest name of a directory entry, in bytes.
pub const NAME_LEN_MAX: usize = 255;
/// Longest symbolic link target, in bytes.
pub const PATH_LEN_MAX: usize = 4096;
/// Largest file size the stores accept (8 EiB would overflow offsets in some clients).
pub const FILE_SIZE_MAX: u64 = 1 << 62;

/// Identity of a file system object: an inode number that is never reused, and a generation
/// that lets a holder of an old identity detect that the object is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub ino: u64,
    pub generation: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    BlockDevice,
    CharDevice,
    Socket,
    Fifo,
}

/// Seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanoseconds: u32,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: d.as_secs() as i64,
            nanoseconds: d.subsec_nanos(),
        }
    }
}

/// Attributes of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub id: FileId,
    pub file_type: FileType,
    /// Permission bits including setuid (0o4000), setgid (0o2000) and sticky (0o1000).
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Bytes of storage actually used.
    pub used: u64,
    /// Major and minor device numbers for block and character devices.
    pub rdev: (u32, u32),
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    /// Increases on every change to data or attributes (NFSv4 change attribute).
    pub change: u64,
}

/// The attributes of an object just before an operation changed it (NFSv3 `wcc_attr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreAttr {
    pub size: u64,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
}

impl From<&Attr> for PreAttr {
    fn from(a: &Attr) -> PreAttr {
        PreAttr {
            size: a.size,
            mtime: a.mtime,
            ctime: a.ctime,
        }
    }
}

/// Attributes before and after a change (weak cache consistency).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wcc {
    pub before: PreAttr,
    pub after: Attr,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetTime {
    #[default]
    DontChange,
    ServerNow,
    Client(Timestamp),
}

/// Attributes to change; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: SetTime,
    pub mtime: SetTime,
}

/// Who is asking: the credentials after export squashing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cred {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (AUTH_SYS carries at most 16).
    pub groups: Vec<u32>,
}

impl Cred {
    pub fn root() -> Cred {
        Cred {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
        }
    }

    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// Access rights, as NFSv3 ACCESS and NFSv4 ACCESS define them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessMask(pub u32);

impl AccessMask {
    pub const READ: u32 = 0x01;
    pub const LOOKUP: u32 = 0x02;
    pub const MODIFY: u32 = 0x04;
    pub const EXTEND: u32 = 0x08;
    pub const DELETE: u32 = 0x10;
    pub const EXECUTE: u32 = 0x20;
}

/// What kind of object to create, with what it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Regular,
    Directory,
    Symlink { target: Vec<u8> },
    BlockDevice { rdev: (u32, u32) },
    CharDevice { rdev: (u32, u32) },
    Socket,
    Fifo,
}

/// How `create` treats an existing name (RFC 1813 §3.3.8 `createmode3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateMode {
    /// Succeed on an existing regular file (applying the size in the attributes, if any).
    Unchecked,
    /// Fail with [`Error::Exists`] if the name exists.
    Guarded,
    /// Exactly-once create: the verifier is stored with the file; a retried create with the same
    /// verifier succeeds and returns the same file, a different verifier fails with `Exists`.
    Exclusive([u8; 8]),
}

/// How durable a write must be before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stability {
    Unstable,
    DataSync,
    FileSync,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteResult {
    pub count: u32,
    /// The stability actually reached (never weaker than asked).
    pub committed: Stability,
    pub wcc: Wcc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResult {
    pub data: Bytes,
    pub eof: bool,
    pub attr: Attr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Resume a listing after this entry by passing this cookie back.
    pub cookie: u64,
    pub name: Vec<u8>,
    pub id: FileId,
    /// Filled when `readdir` was asked for attributes.
    pub attr: Option<Attr>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirPage {
    pub entries: Vec<DirEntry>,
    /// True when the last entry of the directory is in `entries`.
    pub eof: bool,
    pub dir_attr: Attr,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsStat {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub avail_bytes: u64,
    pub total_files: u64,
    pub free_files: u64,
    pub avail_files: u64,
}

/// Where a file's bytes live (admin `residency`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Residency {
    /// The file's placement, from its metadata: which nodes hold which chunks. `None` for a
    /// file written before layouts existed (its data is on the node that holds its record).
    pub placement: Option<engine::Layout>,
    /// "local", "memory", "nvme"; empty when this node holds none of the file's data.
    pub store: &'static str,
    /// The block device under the data, when known (e.g. "/dev/nvme0n1").
    pub device: Option<String>,
    /// The file holding the data on the node's file system, if any.
    pub data_file: Option<std::path::PathBuf>,
    /// Byte ranges (offset, length) that hold data; holes are left out.
    pub extents: Vec<(u64, u64)>,
    /// In a cluster, every copy the placement names, asked of its node (the fields above are
    /// the first copy that answered). Empty on a single node: the fields above are the copy.
    pub copies: Vec<CopyResidency>,
}

/// One copy of a file's data, on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyResidency {
    pub node: u64,
    /// What the node's store said (its `placement` and `copies` left empty), or why the node
    /// could not be asked.
    pub found: std::result::Result<Residency, String>,
}

/// Errors of the store. The NFS layer maps each one to a wire status; no `_` arm there, so a new
/// variant forces a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// No such object or name (ENOENT).
    NotFound,
    /// The `FileId` names an object that no longer exists (its generation does not match).
    Stale,
    /// The name already exists (EEXIST).
    Exists,
    /// A directory was expected (ENOTDIR).
    NotDir,
    /// A non-directory was expected (EISDIR).
    IsDir,
    /// The directory is not empty (ENOTEMPTY).
    NotEmpty,
    /// The credentials lack permission (EACCES).
    Access,
    /// The operation is reserved to the owner or root (EPERM).
    Perm,
    NameTooLong,
    /// An argument makes no sense for this object (EINVAL).
    Invalid,
    /// A regular file was expected (READ, WRITE); the object is of this type. Carried so that
    /// NFSv4.1 can tell ISDIR from SYMLINK from INVAL without asking again.
    NotRegular(FileType),
    /// A symbolic link was expected (READLINK); the object is of this type.
    NotSymlink(FileType),
    /// SETATTR's guard: the object's ctime is not the one the caller gave; nothing changed
    /// (NFSv3 `sattrguard3`, NOT_SYNC).
    GuardMismatch,
    /// This node may no longer change the data: a newer writer (a higher epoch) owns it. The
    /// request must not be retried here; the client's retry reaches the new owner.
    Fenced,
    /// The metadata log or the data replicas cannot be reached now (no quorum). Transient.
    Unavailable,
    /// A file would exceed [`FILE_SIZE_MAX`] (EFBIG).
    FileTooBig,
    /// The device is full (ENOSPC).
    NoSpace,
    /// Too many links to one inode (EMLINK).
    TooManyLinks,
    /// A readdir cookie that the directory never issued.
    BadCookie,
    /// The operation is not offered by this store.
    NotSupported,
    /// A temporary condition; the client should retry later (NFS3ERR_JUKEBOX / NFS4ERR_DELAY).
    Busy,
    /// Data failed its checksum or the medium reported an error (EIO). Never wrong data.
    Io(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(msg) => write!(f, "I/O error: {msg}"),
            other => write!(f, "{other:?}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// The file system every protocol front end runs against.
///
/// All methods may be called concurrently from many tasks. Futures are `Send` so a multi-threaded
/// runtime can move them.
pub trait Store: Send + Sync + 'static {
    /// The root directory of the store.
    fn root(&self) -> FileId;

    /// Changes on every restart and after any failed flush (see the module docs).
    fn write_verifier(&self) -> [u8; 8];

    fn getattr(&self, id: FileId) -> impl Future<Output = Result<Attr>> + Send;

    /// Changes attributes. `guard`, when set, is the ctime the caller believes the object has;
    /// a mismatch fails with [`Error::GuardMismatch`] and changes nothing (NFSv3
    /// `sattrguard3`; the NFS layer reports it as NOT_SYNC).
    fn setattr(
        &self,
        cred: &Cred,
        id: FileId,
        attr: SetAttr,
        guard: Option<Timestamp>,
    ) -> impl Future<Output = Result<Wcc>> + Send;

    fn lookup(
        &self,
        cred: &Cred,
        dir: FileId,
        name: &[u8],
    ) -> impl Future<Output = Result<Attr>> + Send;

    /// The parent of a directory (the root is its own parent).
    fn parent(&self, cred: &Cred, dir: FileId) -> impl Future<Output = Result<Attr>> + Send;

    /// Which of the rights in `mask` the credentials hold on `id`.
    fn access(
        &self,
        cred: &Cred,
        id: FileId,
        mask: AccessMask,
    ) -> impl Future<Output = Result<(AccessMask, Attr)>> + Send;

    fn readlink(
        &self,
        cred: &Cred,
        id: FileId,
    ) -> impl Future<Output = Result<(Vec<u8>, Attr)>> + Send;

    fn read(
        &self,
        cred: &Cred,
        id: FileId,
        offset: u64,
        count: u32,
    ) -> impl Future<Output = Result<ReadResult>> + Send;

    fn write(
        &self,
        cred: &Cred,
        id: FileId,
        offset: u64,
        data: Bytes,
        stability: Stability,
    ) -> impl Future<Output = Result<WriteResult>> + Send;

    /// Creates a regular file, directory, symlink or special file in `dir`.
    /// Returns the new object's attributes and the directory's wcc.
    /// `mode` applies to `Regular` only; the others behave as `Guarded`.
    fn create(
        &self,
        cred: &Cred,
        dir: FileId,
        name: &[u8],
        kind: NodeKind,
        attr: SetAttr,
        mode: CreateMode,
    ) -> impl Future<Output = Result<(Attr, Wcc)>> + Send;

    /// Removes a non-directory entry.
    fn remove(
        &self,
        cred: &Cred,
        dir: FileId,
        name: &[u8],
    ) -> impl Future<Output = Result<Wcc>> + Send;

    /// Removes an empty directory.
    fn rmdir(
        &self,
        cred: &Cred,
        dir: FileId,
        name: &[u8],
    ) -> impl Future<Output = Result<Wcc>> + Send;

    /// Renames with POSIX rename(2) semantics (atomic replace of a compatible target).
    /// Returns the wcc of the source and target directories.
    fn rename(
        &self,
        cred: &Cred,
        from_dir: FileId,
        from_name: &[u8],
        to_dir: FileId,
        to_name: &[u8],
    ) -> impl Future<Output = Result<(Wcc, Wcc)>> + Send;

    /// Makes a hard link to a non-directory. Returns the file's attributes and the dir's wcc.
    fn link(
        &self,
        cred: &Cred,
        file: FileId,
        dir: FileId,
        name: &[u8],
    ) -> impl Future<Output = Result<(Attr, Wcc)>> + Send;

    /// Lists `dir` after `cookie` (0 = from the start), at most `count_max` entries.
    /// "." and ".." are not listed; the NFS layer synthesizes them.
    fn readdir(
        &self,
        cred: &Cred,
        dir: FileId,
        cookie: u64,
        count_max: usize,
        with_attrs: bool,
    ) -> impl Future<Output = Result<DirPage>> + Send;

    /// Makes every write to `id` so far durable (data and the metadata that covers it).
    /// `offset`/`count` are a hint; a store may flush the whole file.
    fn commit(
        &self,
        id: FileId,
        offset: u64,
        count: u64,
    ) -> impl Future<Output = Result<Attr>> + Send;

    fn fsstat(&self, id: FileId) -> impl Future<Output = Result<FsStat>> + Send;

    /// Where the data of a regular file lives (for operators; not on any hot path).
    fn residency(&self, id: FileId) -> impl Future<Output = Result<Residency>> + Send;

    /// Sets the replication factor of directory `dir` (`None`: none of its own): regular files
    /// made below it from now on get that many copies, unless a directory nearer to them has
    /// a factor of its own. Files made before keep theirs. An administrative call (an
    /// export's `replication`), never one a client can make. [`Error::Invalid`] outside
    /// `1..=`[`engine::REPLICATION_MAX`]; [`Error::NotDir`] for a non-directory.
    fn set_replication(
        &self,
        dir: FileId,
        copies: Option<u8>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The replication factor `id` carries itself (see [`Store::set_replication`]; for a
    /// regular file, the one it was made with). `None`: the cluster's default.
    fn replication(&self, id: FileId) -> impl Future<Output = Result<Option<u8>>> + Send;

    /// Makes `doc` the document under `key`, unless one of `version` or above is kept
    /// ([`engine::MetaOp::PutDoc`]): protocol state kept beside the metadata, and with it in a
    /// cluster's log. Durable (committed by the log) when the future returns `Ok`. Bounded by
    /// [`engine::DOC_KEY_MAX`] and [`engine::DOC_LEN_MAX`] (else [`Error::Invalid`]).
    fn put_doc(
        &self,
        key: &[u8],
        version: u64,
        doc: Vec<u8>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The document under `key` and its version.
    fn doc(&self, key: &[u8]) -> impl Future<Output = Result<Option<(u64, Vec<u8>)>>> + Send;

    /// Fences floating mount target `target` at ownership epoch `epoch` before this node
    /// serves it: calls an earlier owner makes on the target's behalf are refused from then on
    /// ([`Error::Fenced`] for this call when a greater epoch fenced it already). A store that
    /// no other node writes to (not a cluster's) receives no other owner's calls: nothing to
    /// fence.
    fn fence_target(&self, target: &str, epoch: u64) -> impl Future<Output = Result<()>> + Send {
        let _ = (target, epoch);
        std::future::ready(Ok(()))
    }

    /// Figures about the store's machinery for metrics, read at scrape time: `(name, value)`
    /// pairs (e.g. the metadata log's term and apply lag). None by default.
    fn stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// Figures about the data store for metrics (e.g. its block cache), like [`Store::stats`].
    fn data_stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// A shared store is a store (a cluster node hands its store to the front ends and keeps a
/// handle for the calls other nodes ship to it).
impl<S: Store> Store for std::sync::Arc<S> {
    fn root(&self) -> FileId {
        (**self).root()
    }
    fn write_verifier(&self) -> [u8; 8] {
        (**self).write_verifier()
    }
    fn getattr(&self, id: FileId) -> impl Future<Output = Result<Attr>> + Send {
        (**self).getattr(id)
    }
    fn setattr(
        &self,
        cred: &Cred,
        id: FileId,
        attr: SetAttr,
        guard: Option<Timestamp>,
    ) -> impl Future<Output = Result<Wcc>> + Send {
        (**self).setattr(cred, id, attr, guard)
    }
    fn lookup(
        &self,
        cred: &Cred,
        dir: FileId,
        name: &[u8],
    ) -> impl Future<Output = Result<Attr>> + Send {
        (**self).lookup(cred, dir, name)
    }
    fn parent(&self, cred: &Cred, dir: FileId) -> impl Future<Output = Result<Attr>> + Send {
        (**self).parent(cred, dir)
    }
    fn access(
        &self,
        cred: &Cred,
        id: FileId,
        mask: AccessMask,
    ) -> impl Future<Output = Result<(AccessMask, Attr)>> + Send {
        (**self).access(cred, id, mask)
    }
    fn readlink(
        &self,
        cred: &Cred,
        id: FileId,
    ) -> impl Future<Output = Result<(Vec<u8>, Attr)>> + Send {
        (**self).readlink(cred, id)
    }
    fn read(
        &self,
        cred: &Cred,
        id: FileId,
        offset: u64,
        count: u32,
    ) -> impl Future<Output = Result<ReadResult>> + Send {
        (**self).read(cred, id, offset, count)
    }
    fn write(
        &self,
        cred: &Cred,
        id: FileId,
        offset: u64,
        data: Bytes,
        stability: Stability,
    ) -> impl Future<Output = Result<WriteResult>> + Send {
        (**self).write(cred, id, offset, data, stability)
    }
    fn create(
        &self,
        cred: &Cred,
        dir: FileId,
        name: &[u8],
        kind: NodeKind,
        attr: SetAttr,
        mode: CreateMode,
    ) -> impl Future<Output = Result<(Attr, Wcc)>> + Send {
        (**self).create(cred, dir, name, kind, attr, mode)
    }
    fn remove(
        &self,
        cred: &Cred,
        dir: FileId,
        name: &[u8],
    ) -> impl Future<Output = Result<Wcc>> + Send {
        (**self).remove(cred, dir, name)
    }
    fn rmdir(
        &self,
        cred: &Cred,
        dir: FileId,
        name: &[u8],
    ) -> impl Future<Output = Result<Wcc>> + Send {
        (**self).rmdir(cred, dir, name)
    }
    fn rename(
        &self,
        cred: &Cred,
        from_dir: FileId,
        from_name: &[u8],
        to_dir: FileId,
        to_name: &[u8],
    ) -> impl Future<Output = Result<(Wcc, Wcc)>> + Send {
        (**self).rename(cred, from_dir, from_name, to_dir, to_name)
    }
    fn link(
        &self,
        cred: &Cred,
        file: FileId,
        dir: FileId,
        name: &[u8],
    ) -> impl Future<Output = Result<(Attr, Wcc)>> + Send {
        (**self).link(cred, file, dir, name)
    }
    fn readdir(
        &self,
        cred: &Cred,
        dir: FileId,
        cookie: u64,
        count_max: usize,
        with_attrs: bool,
    ) -> impl Future<Output = Result<DirPage>> + Send {
        (**self).readdir(cred, dir, cookie, count_max, with_attrs)
    }
    fn commit(
        &self,
        id: FileId,
        offset: u64,
        count: u64,
    ) -> impl Future<Output = Result<Attr>> + Send {
        (**self).commit(id, offset, count)
    }
    fn fsstat(&self, id: FileId) -> impl Future<Output = Result<FsStat>> + Send {
        (**self).fsstat(id)
    }
    fn residency(&self, id: FileId) -> impl Future<Output = Result<Residency>> + Send {
        (**self).residency(id)
    }
    fn set_replication(
        &self,
        dir: FileId,
        copies: Option<u8>,
    ) -> impl Future<Output = Result<()>> + Send {
        (**self).set_replication(dir, copies)
    }
    fn replication(&self, id: FileId) -> impl Future<Output = Result<Option<u8>>> + Send {
        (**self).replication(id)
    }
    fn put_doc(
        &self,
        key: &[u8],
        version: u64,
        doc: Vec<u8>,
    ) -> impl Future<Output = Result<()>> + Send {
        (**self).put_doc(key, version, doc)
    }
    fn doc(&self, key: &[u8]) -> impl Future<Output = Result<Option<(u64, Vec<u8>)>>> + Send {
        (**self).doc(key)
    }
    fn fence_target(&self, target: &str, epoch: u64) -> impl Future<Output = Result<()>> + Send {
        (**self).fence_target(target, epoch)
    }
    fn stats(&self) -> Vec<(&'static str, u64)> {
        (**self).stats()
    }
    fn data_stats(&self) -> Vec<(&'static str, u64)> {
        (**self).data_stats()
    }
}
