//! File-system calls shipped from a node to the metadata leader, and their answers, sans IO.
//!
//! A call is one `backend::Store` method with its arguments; an answer is that method's result
//! plus the leader's write verifier. Little-endian, every length checked against what is left
//! of the frame before anything is allocated (the frame itself is bounded by
//! `rpc::FRAME_BODY_MAX`). File data (a WRITE's payload, a READ's bytes) is carried raw at the
//! end of the body and decoded as a `Bytes` slice of the frame: never copied.

use bytes::Bytes;

use backend::engine::{Layout, RequestId};
use backend::{
    AccessMask, Attr, CopyResidency, CreateMode, Cred, DirEntry, DirPage, Error, FileId, FileType,
    FsStat, NodeKind, PreAttr, ReadResult, Residency, SetAttr, SetTime, Stability, Timestamp, Wcc,
    WriteResult,
};

/// One `Store` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Getattr(FileId),
    Setattr {
        cred: Cred,
        id: FileId,
        attr: SetAttr,
        guard: Option<Timestamp>,
    },
    Lookup {
        cred: Cred,
        dir: FileId,
        name: Vec<u8>,
    },
    Parent {
        cred: Cred,
        dir: FileId,
    },
    Access {
        cred: Cred,
        id: FileId,
        mask: AccessMask,
    },
    Readlink {
        cred: Cred,
        id: FileId,
    },
    Read {
        cred: Cred,
        id: FileId,
        offset: u64,
        count: u32,
    },
    Write {
        cred: Cred,
        id: FileId,
        offset: u64,
        stability: Stability,
        data: Bytes,
    },
    Create {
        cred: Cred,
        dir: FileId,
        name: Vec<u8>,
        kind: NodeKind,
        attr: SetAttr,
        mode: CreateMode,
    },
    Remove {
        cred: Cred,
        dir: FileId,
        name: Vec<u8>,
    },
    Rmdir {
        cred: Cred,
        dir: FileId,
        name: Vec<u8>,
    },
    Rename {
        cred: Cred,
        from_dir: FileId,
        from_name: Vec<u8>,
        to_dir: FileId,
        to_name: Vec<u8>,
    },
    Link {
        cred: Cred,
        file: FileId,
        dir: FileId,
        name: Vec<u8>,
    },
    Readdir {
        cred: Cred,
        dir: FileId,
        cookie: u64,
        count_max: u32,
        with_attrs: bool,
    },
    Commit {
        id: FileId,
        offset: u64,
        count: u64,
    },
    Fsstat(FileId),
    Residency(FileId),
    /// The data calls: what the writing engine asks of the node that holds a file's data
    /// (`super::ClusterData`), answered from that node's data store.
    DataRead {
        ino: u64,
        offset: u64,
        len: u32,
    },
    DataWrite {
        ino: u64,
        offset: u64,
        data: Bytes,
    },
    DataSetLen {
        ino: u64,
        len: u64,
    },
    DataSync(u64),
    DataRemove(u64),
    DataResidency {
        ino: u64,
        size: u64,
    },
    /// A scrub's read: checks `len` bytes at `offset` on the holder's medium, past its cache
    /// (`DataStore::verify`).
    DataVerify {
        ino: u64,
        offset: u64,
        len: u32,
    },
    /// `Store::put_doc`: protocol state kept in the metadata log.
    PutDoc {
        key: Vec<u8>,
        version: u64,
        doc: Vec<u8>,
    },
    /// `Store::doc`.
    Doc(Vec<u8>),
    /// `Store::set_replication` (an export's replication factor on its root).
    SetReplication {
        dir: FileId,
        copies: Option<u8>,
    },
    /// `Store::replication`.
    Replication(FileId),
    /// A new owner of a floating target fences it at its epoch before it serves: from then
    /// on the writer refuses calls carrying an older epoch for the target, once those
    /// already running have ended (`super::ClusterStore::fence_at`).
    FenceTarget(TargetEpoch),
}

impl Call {
    /// Whether the call only reads: a leader answers it after a read barrier.
    pub fn reads(&self) -> bool {
        matches!(
            self,
            Call::Getattr(_)
                | Call::Lookup { .. }
                | Call::Parent { .. }
                | Call::Access { .. }
                | Call::Readlink { .. }
                | Call::Read { .. }
                | Call::Readdir { .. }
                | Call::Fsstat(_)
                | Call::Residency(_)
                | Call::Doc(_)
                | Call::Replication(_)
        )
    }

    /// Whether running the call twice could answer differently than running it once: it
    /// runs as a request, at most once across leaders (`super::ClusterStore::dispatch`).
    /// WRITE and COMMIT may run again (the same bytes, the same flush).
    pub fn once(&self) -> bool {
        matches!(
            self,
            Call::Setattr { .. }
                | Call::Create { .. }
                | Call::Remove { .. }
                | Call::Rmdir { .. }
                | Call::Rename { .. }
                | Call::Link { .. }
        )
    }

    /// Whether the call is for the data store of the node it is sent to, not for the writer.
    pub fn is_data(&self) -> bool {
        matches!(
            self,
            Call::DataRead { .. }
                | Call::DataWrite { .. }
                | Call::DataSetLen { .. }
                | Call::DataSync(_)
                | Call::DataRemove(_)
                | Call::DataResidency { .. }
                | Call::DataVerify { .. }
        )
    }
}

/// A call's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Attr(Attr),
    Wcc(Wcc),
    Access(AccessMask, Attr),
    Readlink(Vec<u8>, Attr),
    Read(ReadResult),
    Write(WriteResult),
    Made(Attr, Wcc),
    Renamed(Wcc, Wcc),
    Dir(DirPage),
    Fsstat(FsStat),
    Residency(Residency),
    Failed(Error),
    /// A data call that returns nothing.
    Done,
    /// A data read's bytes.
    Data(Bytes),
    /// A document and its version (`Call::Doc`).
    Doc(Option<(u64, Vec<u8>)>),
    /// `Call::DataVerify` found the range bad on the holder's medium, and why.
    Bad(String),
    /// `Call::Replication`'s factor.
    Replication(Option<u8>),
}

/// The most entries a directory page may carry on the wire (a READDIR reply is far smaller).
const DIR_ENTRIES_MAX: usize = 1 << 16;
/// The most supplementary groups in a credential (AUTH_SYS carries 16; NFSv4 a few more).
const GROUPS_MAX: usize = 64;

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn id(&mut self, id: FileId) {
        self.u64(id.ino);
        self.u64(id.generation);
    }
    fn time(&mut self, t: Timestamp) {
        self.u64(t.seconds as u64);
        self.u32(t.nanoseconds);
    }
    fn opt_time(&mut self, t: Option<Timestamp>) {
        self.bool(t.is_some());
        if let Some(t) = t {
            self.time(t);
        }
    }
    fn opt_u32(&mut self, v: Option<u32>) {
        self.bool(v.is_some());
        if let Some(v) = v {
            self.u32(v);
        }
    }
    /// A residency's own fields (not its placement or copies).
    fn residency(&mut self, r: &Residency) {
        self.bytes(r.store.as_bytes());
        self.bool(r.device.is_some());
        if let Some(d) = &r.device {
            self.bytes(d.as_bytes());
        }
        self.bool(r.data_file.is_some());
        if let Some(f) = &r.data_file {
            self.bytes(f.as_os_str().as_encoded_bytes());
        }
        self.u32(r.extents.len() as u32);
        for (off, len) in &r.extents {
            self.u64(*off);
            self.u64(*len);
        }
    }
    fn cred(&mut self, c: &Cred) {
        self.u32(c.uid);
        self.u32(c.gid);
        self.u32(c.groups.len() as u32);
        for g in &c.groups {
            self.u32(*g);
        }
    }
    fn set_time(&mut self, t: SetTime) {
        match t {
            SetTime::DontChange => self.u8(0),
            SetTime::ServerNow => self.u8(1),
            SetTime::Client(t) => {
                self.u8(2);
                self.time(t);
            }
        }
    }
    fn set_attr(&mut self, a: &SetAttr) {
        self.opt_u32(a.mode);
        self.opt_u32(a.uid);
        self.opt_u32(a.gid);
        self.bool(a.size.is_some());
        if let Some(size) = a.size {
            self.u64(size);
        }
        self.set_time(a.atime);
        self.set_time(a.mtime);
    }
    fn file_type(&mut self, t: FileType) {
        self.u8(match t {
            FileType::Regular => 1,
            FileType::Directory => 2,
            FileType::Symlink => 3,
            FileType::BlockDevice => 4,
            FileType::CharDevice => 5,
            FileType::Socket => 6,
            FileType::Fifo => 7,
        });
    }
    fn attr(&mut self, a: &Attr) {
        self.id(a.id);
        self.file_type(a.file_type);
        self.u32(a.mode);
        self.u32(a.nlink);
        self.u32(a.uid);
        self.u32(a.gid);
        self.u64(a.size);
        self.u64(a.used);
        self.u32(a.rdev.0);
        self.u32(a.rdev.1);
        self.time(a.atime);
        self.time(a.mtime);
        self.time(a.ctime);
        self.u64(a.change);
    }
    fn wcc(&mut self, w: &Wcc) {
        self.u64(w.before.size);
        self.time(w.before.mtime);
        self.time(w.before.ctime);
        self.attr(&w.after);
    }
    fn stability(&mut self, s: Stability) {
        self.u8(match s {
            Stability::Unstable => 0,
            Stability::DataSync => 1,
            Stability::FileSync => 2,
        });
    }
    fn kind(&mut self, k: &NodeKind) {
        match k {
            NodeKind::Regular => self.u8(1),
            NodeKind::Directory => self.u8(2),
            NodeKind::Symlink { target } => {
                self.u8(3);
                self.bytes(target);
            }
            NodeKind::BlockDevice { rdev } => {
                self.u8(4);
                self.u32(rdev.0);
                self.u32(rdev.1);
            }
            NodeKind::CharDevice { rdev } => {
                self.u8(5);
                self.u32(rdev.0);
                self.u32(rdev.1);
            }
            NodeKind::Socket => self.u8(6),
            NodeKind::Fifo => self.u8(7),
        }
    }
    fn mode(&mut self, m: CreateMode) {
        match m {
            CreateMode::Unchecked => self.u8(0),
            CreateMode::Guarded => self.u8(1),
            CreateMode::Exclusive(v) => {
                self.u8(2);
                self.0.extend_from_slice(&v);
            }
        }
    }
    fn error(&mut self, e: &Error) {
        let (code, detail) = match e {
            Error::NotFound => (1, None),
            Error::Stale => (2, None),
            Error::Exists => (3, None),
            Error::NotDir => (4, None),
            Error::IsDir => (5, None),
            Error::NotEmpty => (6, None),
            Error::Access => (7, None),
            Error::Perm => (8, None),
            Error::NameTooLong => (9, None),
            Error::Invalid => (10, None),
            Error::NotRegular(t) => (11, Some(*t)),
            Error::NotSymlink(t) => (12, Some(*t)),
            Error::GuardMismatch => (13, None),
            Error::Fenced => (14, None),
            Error::Unavailable => (15, None),
            Error::FileTooBig => (16, None),
            Error::NoSpace => (17, None),
            Error::TooManyLinks => (18, None),
            Error::BadCookie => (19, None),
            Error::NotSupported => (20, None),
            Error::Busy => (21, None),
            Error::Io(msg) => {
                self.u8(22);
                self.bytes(msg.as_bytes());
                return;
            }
        };
        self.u8(code);
        if let Some(t) = detail {
            self.file_type(t);
        }
    }
}

/// Leads a shipped call that names its request: `0 secs:u64 node:u64 seq:u64` (no call
/// starts with 0).
const REQUEST_TAG: u8 = 0;
/// Leads a data call that names the term of the writer sending it: `254 term:u64` (no call
/// starts with 254). Comes before a request tag when both are present.
const EPOCH_TAG: u8 = 254;
/// Leads a call made on a floating target's behalf: `253 epoch:u64 name` (no call starts
/// with 253). Comes after an epoch tag and before a request tag.
const TARGET_TAG: u8 = 253;
/// The longest target name a call may carry.
pub const TARGET_NAME_MAX: usize = 255;

/// A floating mount target and the ownership epoch its owner serves it at (the revision of
/// its etcd claim, `ha/PROTOCOL.md` §6): a call made on the target's behalf carries it, and
/// the writer refuses it once a later owner has fenced the target at a greater epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TargetEpoch {
    pub name: std::sync::Arc<str>,
    pub epoch: u64,
}

/// What travels ahead of a shipped call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The request a mutating call runs as (see `backend::engine::on_behalf_of`).
    pub request: Option<RequestId>,
    /// For a data call: the metadata-log term of the writing engine that sends it. The
    /// receiving node refuses a term older than one it has seen (fencing).
    pub epoch: Option<u64>,
    /// For a call made on a floating target's behalf: the target and its owner's epoch.
    pub target: Option<TargetEpoch>,
}

/// Encodes a call behind its envelope.
pub fn encode_shipped(call: &Call, envelope: Envelope) -> (Vec<u8>, Option<Bytes>) {
    let mut o = Out(Vec::with_capacity(64 + 34));
    if let Some(term) = envelope.epoch {
        o.u8(EPOCH_TAG);
        o.u64(term);
    }
    if let Some(t) = &envelope.target {
        o.u8(TARGET_TAG);
        o.u64(t.epoch);
        o.bytes(t.name.as_bytes());
    }
    if let Some(r) = envelope.request {
        o.u8(REQUEST_TAG);
        o.u64(r.secs);
        o.u64(r.node);
        o.u64(r.seq);
    }
    let data = encode_call_into(&mut o, call);
    (o.0, data)
}

/// Encodes a call: the body, and the file data that follows it raw (a WRITE's payload).
pub fn encode_call(call: &Call) -> (Vec<u8>, Option<Bytes>) {
    let mut o = Out(Vec::with_capacity(64));
    let data = encode_call_into(&mut o, call);
    (o.0, data)
}

fn encode_call_into(o: &mut Out, call: &Call) -> Option<Bytes> {
    let mut data = None;
    match call {
        Call::Getattr(id) => {
            o.u8(1);
            o.id(*id);
        }
        Call::Setattr {
            cred,
            id,
            attr,
            guard,
        } => {
            o.u8(2);
            o.cred(cred);
            o.id(*id);
            o.set_attr(attr);
            o.opt_time(*guard);
        }
        Call::Lookup { cred, dir, name } => {
            o.u8(3);
            o.cred(cred);
            o.id(*dir);
            o.bytes(name);
        }
        Call::Parent { cred, dir } => {
            o.u8(4);
            o.cred(cred);
            o.id(*dir);
        }
        Call::Access { cred, id, mask } => {
            o.u8(5);
            o.cred(cred);
            o.id(*id);
            o.u32(mask.0);
        }
        Call::Readlink { cred, id } => {
            o.u8(6);
            o.cred(cred);
            o.id(*id);
        }
        Call::Read {
            cred,
            id,
            offset,
            count,
        } => {
            o.u8(7);
            o.cred(cred);
            o.id(*id);
            o.u64(*offset);
            o.u32(*count);
        }
        Call::Write {
            cred,
            id,
            offset,
            stability,
            data: bytes,
        } => {
            o.u8(8);
            o.cred(cred);
            o.id(*id);
            o.u64(*offset);
            o.stability(*stability);
            o.u32(bytes.len() as u32);
            data = Some(bytes.clone());
        }
        Call::Create {
            cred,
            dir,
            name,
            kind,
            attr,
            mode,
        } => {
            o.u8(9);
            o.cred(cred);
            o.id(*dir);
            o.bytes(name);
            o.kind(kind);
            o.set_attr(attr);
            o.mode(*mode);
        }
        Call::Remove { cred, dir, name } => {
            o.u8(10);
            o.cred(cred);
            o.id(*dir);
            o.bytes(name);
        }
        Call::Rmdir { cred, dir, name } => {
            o.u8(11);
            o.cred(cred);
            o.id(*dir);
            o.bytes(name);
        }
        Call::Rename {
            cred,
            from_dir,
            from_name,
            to_dir,
            to_name,
        } => {
            o.u8(12);
            o.cred(cred);
            o.id(*from_dir);
            o.bytes(from_name);
            o.id(*to_dir);
            o.bytes(to_name);
        }
        Call::Link {
            cred,
            file,
            dir,
            name,
        } => {
            o.u8(13);
            o.cred(cred);
            o.id(*file);
            o.id(*dir);
            o.bytes(name);
        }
        Call::Readdir {
            cred,
            dir,
            cookie,
            count_max,
            with_attrs,
        } => {
            o.u8(14);
            o.cred(cred);
            o.id(*dir);
            o.u64(*cookie);
            o.u32(*count_max);
            o.bool(*with_attrs);
        }
        Call::Commit { id, offset, count } => {
            o.u8(15);
            o.id(*id);
            o.u64(*offset);
            o.u64(*count);
        }
        Call::Fsstat(id) => {
            o.u8(16);
            o.id(*id);
        }
        Call::Residency(id) => {
            o.u8(17);
            o.id(*id);
        }
        Call::DataRead { ino, offset, len } => {
            o.u8(18);
            o.u64(*ino);
            o.u64(*offset);
            o.u32(*len);
        }
        Call::DataWrite {
            ino,
            offset,
            data: bytes,
        } => {
            o.u8(19);
            o.u64(*ino);
            o.u64(*offset);
            o.u32(bytes.len() as u32);
            data = Some(bytes.clone());
        }
        Call::DataSetLen { ino, len } => {
            o.u8(20);
            o.u64(*ino);
            o.u64(*len);
        }
        Call::DataSync(ino) => {
            o.u8(21);
            o.u64(*ino);
        }
        Call::DataRemove(ino) => {
            o.u8(22);
            o.u64(*ino);
        }
        Call::DataResidency { ino, size } => {
            o.u8(23);
            o.u64(*ino);
            o.u64(*size);
        }
        Call::PutDoc { key, version, doc } => {
            o.u8(24);
            o.bytes(key);
            o.u64(*version);
            o.bytes(doc);
        }
        Call::DataVerify { ino, offset, len } => {
            o.u8(26);
            o.u64(*ino);
            o.u64(*offset);
            o.u32(*len);
        }
        Call::Doc(key) => {
            o.u8(25);
            o.bytes(key);
        }
        Call::SetReplication { dir, copies } => {
            o.u8(27);
            o.id(*dir);
            o.u8(copies.unwrap_or(0));
        }
        Call::Replication(id) => {
            o.u8(28);
            o.id(*id);
        }
        Call::FenceTarget(t) => {
            o.u8(29);
            o.u64(t.epoch);
            o.bytes(t.name.as_bytes());
        }
    }
    data
}

/// Encodes an answer with the leader's write verifier: the body, and the file data that
/// follows it raw (a READ's bytes).
pub fn encode_answer(verifier: [u8; 8], answer: &Answer) -> (Vec<u8>, Option<Bytes>) {
    let mut o = Out(Vec::with_capacity(160));
    o.0.extend_from_slice(&verifier);
    let mut data = None;
    match answer {
        Answer::Attr(a) => {
            o.u8(1);
            o.attr(a);
        }
        Answer::Wcc(w) => {
            o.u8(2);
            o.wcc(w);
        }
        Answer::Access(mask, a) => {
            o.u8(3);
            o.u32(mask.0);
            o.attr(a);
        }
        Answer::Readlink(target, a) => {
            o.u8(4);
            o.bytes(target);
            o.attr(a);
        }
        Answer::Read(r) => {
            o.u8(5);
            o.bool(r.eof);
            o.attr(&r.attr);
            o.u32(r.data.len() as u32);
            data = Some(r.data.clone());
        }
        Answer::Write(w) => {
            o.u8(6);
            o.u32(w.count);
            o.stability(w.committed);
            o.wcc(&w.wcc);
        }
        Answer::Made(a, w) => {
            o.u8(7);
            o.attr(a);
            o.wcc(w);
        }
        Answer::Renamed(from, to) => {
            o.u8(8);
            o.wcc(from);
            o.wcc(to);
        }
        Answer::Dir(page) => {
            o.u8(9);
            o.bool(page.eof);
            o.attr(&page.dir_attr);
            o.u32(page.entries.len() as u32);
            for e in &page.entries {
                o.u64(e.cookie);
                o.bytes(&e.name);
                o.id(e.id);
                o.bool(e.attr.is_some());
                if let Some(a) = &e.attr {
                    o.attr(a);
                }
            }
        }
        Answer::Fsstat(f) => {
            o.u8(10);
            for v in [
                f.total_bytes,
                f.free_bytes,
                f.avail_bytes,
                f.total_files,
                f.free_files,
                f.avail_files,
            ] {
                o.u64(v);
            }
        }
        Answer::Residency(r) => {
            o.u8(11);
            o.bool(r.placement.is_some());
            if let Some(l) = &r.placement {
                o.u8(l.copies);
                o.u32(l.nodes.len() as u32);
                for n in &l.nodes {
                    o.u64(*n);
                }
            }
            o.residency(r);
            // Only when there are copies, so that a holder's answer (none) reads the same to
            // a node of an older build (a leader's answer to a residency call, which lists
            // them, does not: `sluice residency` needs every node on this build).
            if !r.copies.is_empty() {
                o.u32(r.copies.len() as u32);
                for c in &r.copies {
                    o.u64(c.node);
                    o.bool(c.found.is_ok());
                    match &c.found {
                        Ok(r) => o.residency(r),
                        Err(why) => o.bytes(why.as_bytes()),
                    }
                }
            }
        }
        Answer::Failed(e) => {
            o.u8(12);
            o.error(e);
        }
        Answer::Done => o.u8(13),
        Answer::Data(bytes) => {
            o.u8(14);
            o.u32(bytes.len() as u32);
            data = Some(bytes.clone());
        }
        Answer::Doc(found) => {
            o.u8(15);
            o.bool(found.is_some());
            if let Some((version, doc)) = found {
                o.u64(*version);
                o.bytes(doc);
            }
        }
        Answer::Bad(why) => {
            o.u8(16);
            o.bytes(why.as_bytes());
        }
        Answer::Replication(copies) => {
            o.u8(17);
            o.u8(copies.unwrap_or(0));
        }
    }
    (o.0, data)
}

struct In {
    buf: Bytes,
    pos: usize,
}

type Decoded<T> = Result<T, String>;

impl In {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Decoded<&[u8]> {
        if n > self.left() {
            return Err(format!("{n} bytes wanted, {} left", self.left()));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Decoded<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Decoded<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Decoded<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bool(&mut self) -> Decoded<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(format!("{v} is not a boolean")),
        }
    }
    /// A count of items of at least `item` bytes each, checked against what is left.
    fn count(&mut self, item: usize, max: usize) -> Decoded<usize> {
        let n = self.u32()? as usize;
        if n > max || n.saturating_mul(item) > self.left() {
            return Err(format!("a count of {n} does not fit the frame"));
        }
        Ok(n)
    }
    fn bytes(&mut self) -> Decoded<Vec<u8>> {
        let n = self.count(1, usize::MAX)?;
        Ok(self.take(n)?.to_vec())
    }
    /// A document key, within `backend::engine::DOC_KEY_MAX` and not empty.
    fn doc_key(&mut self) -> Decoded<Vec<u8>> {
        let key = self.bytes()?;
        if key.is_empty() || key.len() > backend::engine::DOC_KEY_MAX {
            return Err(format!("a document key of {} bytes", key.len()));
        }
        Ok(key)
    }
    /// A target and its epoch: `epoch:u64 name`, the name UTF-8, not empty, within
    /// [`TARGET_NAME_MAX`].
    fn target(&mut self) -> Decoded<TargetEpoch> {
        let epoch = self.u64()?;
        let n = self.count(1, TARGET_NAME_MAX)?;
        let name = std::str::from_utf8(self.take(n)?)
            .map_err(|_| "a target name that is not UTF-8".to_string())?
            .to_string();
        if name.is_empty() {
            return Err("an empty target name".into());
        }
        Ok(TargetEpoch {
            name: name.into(),
            epoch,
        })
    }
    /// A document, within `backend::engine::DOC_LEN_MAX`.
    fn doc(&mut self) -> Decoded<Vec<u8>> {
        let n = self.count(1, backend::engine::DOC_LEN_MAX)?;
        Ok(self.take(n)?.to_vec())
    }
    /// `n` bytes as a slice of the frame, not a copy.
    fn shared(&mut self, n: usize) -> Decoded<Bytes> {
        if n > self.left() {
            return Err(format!("{n} data bytes wanted, {} left", self.left()));
        }
        let s = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(s)
    }
    fn id(&mut self) -> Decoded<FileId> {
        Ok(FileId {
            ino: self.u64()?,
            generation: self.u64()?,
        })
    }
    fn time(&mut self) -> Decoded<Timestamp> {
        let seconds = self.u64()? as i64;
        let nanoseconds = self.u32()?;
        if nanoseconds >= 1_000_000_000 {
            return Err(format!("{nanoseconds} nanoseconds"));
        }
        Ok(Timestamp {
            seconds,
            nanoseconds,
        })
    }
    fn opt_time(&mut self) -> Decoded<Option<Timestamp>> {
        Ok(if self.bool()? {
            Some(self.time()?)
        } else {
            None
        })
    }
    fn opt_u32(&mut self) -> Decoded<Option<u32>> {
        Ok(if self.bool()? {
            Some(self.u32()?)
        } else {
            None
        })
    }
    fn cred(&mut self) -> Decoded<Cred> {
        let uid = self.u32()?;
        let gid = self.u32()?;
        let n = self.count(4, GROUPS_MAX)?;
        let groups = (0..n).map(|_| self.u32()).collect::<Decoded<_>>()?;
        Ok(Cred { uid, gid, groups })
    }
    fn set_time(&mut self) -> Decoded<SetTime> {
        Ok(match self.u8()? {
            0 => SetTime::DontChange,
            1 => SetTime::ServerNow,
            2 => SetTime::Client(self.time()?),
            v => return Err(format!("set-time {v}")),
        })
    }
    fn set_attr(&mut self) -> Decoded<SetAttr> {
        Ok(SetAttr {
            mode: self.opt_u32()?,
            uid: self.opt_u32()?,
            gid: self.opt_u32()?,
            size: if self.bool()? {
                Some(self.u64()?)
            } else {
                None
            },
            atime: self.set_time()?,
            mtime: self.set_time()?,
        })
    }
    fn file_type(&mut self) -> Decoded<FileType> {
        Ok(match self.u8()? {
            1 => FileType::Regular,
            2 => FileType::Directory,
            3 => FileType::Symlink,
            4 => FileType::BlockDevice,
            5 => FileType::CharDevice,
            6 => FileType::Socket,
            7 => FileType::Fifo,
            v => return Err(format!("file type {v}")),
        })
    }
    fn attr(&mut self) -> Decoded<Attr> {
        Ok(Attr {
            id: self.id()?,
            file_type: self.file_type()?,
            mode: self.u32()?,
            nlink: self.u32()?,
            uid: self.u32()?,
            gid: self.u32()?,
            size: self.u64()?,
            used: self.u64()?,
            rdev: (self.u32()?, self.u32()?),
            atime: self.time()?,
            mtime: self.time()?,
            ctime: self.time()?,
            change: self.u64()?,
        })
    }
    fn wcc(&mut self) -> Decoded<Wcc> {
        Ok(Wcc {
            before: PreAttr {
                size: self.u64()?,
                mtime: self.time()?,
                ctime: self.time()?,
            },
            after: self.attr()?,
        })
    }
    fn stability(&mut self) -> Decoded<Stability> {
        Ok(match self.u8()? {
            0 => Stability::Unstable,
            1 => Stability::DataSync,
            2 => Stability::FileSync,
            v => return Err(format!("stability {v}")),
        })
    }
    fn rdev(&mut self) -> Decoded<(u32, u32)> {
        Ok((self.u32()?, self.u32()?))
    }
    fn kind(&mut self) -> Decoded<NodeKind> {
        Ok(match self.u8()? {
            1 => NodeKind::Regular,
            2 => NodeKind::Directory,
            3 => NodeKind::Symlink {
                target: self.bytes()?,
            },
            4 => NodeKind::BlockDevice { rdev: self.rdev()? },
            5 => NodeKind::CharDevice { rdev: self.rdev()? },
            6 => NodeKind::Socket,
            7 => NodeKind::Fifo,
            v => return Err(format!("node kind {v}")),
        })
    }
    fn mode(&mut self) -> Decoded<CreateMode> {
        Ok(match self.u8()? {
            0 => CreateMode::Unchecked,
            1 => CreateMode::Guarded,
            2 => {
                let mut v = [0u8; 8];
                v.copy_from_slice(self.take(8)?);
                CreateMode::Exclusive(v)
            }
            v => return Err(format!("create mode {v}")),
        })
    }
    fn error(&mut self) -> Decoded<Error> {
        Ok(match self.u8()? {
            1 => Error::NotFound,
            2 => Error::Stale,
            3 => Error::Exists,
            4 => Error::NotDir,
            5 => Error::IsDir,
            6 => Error::NotEmpty,
            7 => Error::Access,
            8 => Error::Perm,
            9 => Error::NameTooLong,
            10 => Error::Invalid,
            11 => Error::NotRegular(self.file_type()?),
            12 => Error::NotSymlink(self.file_type()?),
            13 => Error::GuardMismatch,
            14 => Error::Fenced,
            15 => Error::Unavailable,
            16 => Error::FileTooBig,
            17 => Error::NoSpace,
            18 => Error::TooManyLinks,
            19 => Error::BadCookie,
            20 => Error::NotSupported,
            21 => Error::Busy,
            22 => Error::Io(String::from_utf8_lossy(&self.bytes()?).into_owned()),
            v => return Err(format!("error code {v}")),
        })
    }
    /// A residency's own fields (`Out::residency`).
    fn residency(&mut self) -> Decoded<Residency> {
        let store = known_store(&self.bytes()?);
        let device = if self.bool()? {
            Some(String::from_utf8_lossy(&self.bytes()?).into_owned())
        } else {
            None
        };
        let data_file = if self.bool()? {
            Some(std::path::PathBuf::from(
                String::from_utf8_lossy(&self.bytes()?).into_owned(),
            ))
        } else {
            None
        };
        let n = self.count(16, usize::MAX)?;
        let extents = (0..n)
            .map(|_| Ok((self.u64()?, self.u64()?)))
            .collect::<Decoded<_>>()?;
        Ok(Residency {
            placement: None,
            store,
            device,
            data_file,
            extents,
            copies: Vec::new(),
        })
    }

    fn end(&self) -> Decoded<()> {
        if self.left() != 0 {
            return Err(format!("{} bytes after the end", self.left()));
        }
        Ok(())
    }
}

/// Decodes a call from a frame body (its data, if any, is a slice of `body`).
pub fn decode_call(body: Bytes) -> Decoded<Call> {
    let mut i = In { buf: body, pos: 0 };
    decode_call_in(&mut i)
}

/// Decodes a call behind its envelope ([`encode_shipped`]).
pub fn decode_shipped(body: Bytes) -> Decoded<(Envelope, Call)> {
    let mut i = In { buf: body, pos: 0 };
    let epoch = if i.buf.first() == Some(&EPOCH_TAG) {
        i.u8()?;
        Some(i.u64()?)
    } else {
        None
    };
    let target = if i.buf.get(i.pos) == Some(&TARGET_TAG) {
        i.u8()?;
        Some(i.target()?)
    } else {
        None
    };
    let request = if i.buf.get(i.pos) == Some(&REQUEST_TAG) {
        i.u8()?;
        Some(RequestId {
            secs: i.u64()?,
            node: i.u64()?,
            seq: i.u64()?,
        })
    } else {
        None
    };
    let envelope = Envelope {
        request,
        epoch,
        target,
    };
    Ok((envelope, decode_call_in(&mut i)?))
}

fn decode_call_in(i: &mut In) -> Decoded<Call> {
    let call = match i.u8()? {
        1 => Call::Getattr(i.id()?),
        2 => Call::Setattr {
            cred: i.cred()?,
            id: i.id()?,
            attr: i.set_attr()?,
            guard: i.opt_time()?,
        },
        3 => Call::Lookup {
            cred: i.cred()?,
            dir: i.id()?,
            name: i.bytes()?,
        },
        4 => Call::Parent {
            cred: i.cred()?,
            dir: i.id()?,
        },
        5 => Call::Access {
            cred: i.cred()?,
            id: i.id()?,
            mask: AccessMask(i.u32()?),
        },
        6 => Call::Readlink {
            cred: i.cred()?,
            id: i.id()?,
        },
        7 => Call::Read {
            cred: i.cred()?,
            id: i.id()?,
            offset: i.u64()?,
            count: i.u32()?,
        },
        8 => {
            let (cred, id, offset, stability) = (i.cred()?, i.id()?, i.u64()?, i.stability()?);
            let n = i.u32()? as usize;
            Call::Write {
                cred,
                id,
                offset,
                stability,
                data: i.shared(n)?,
            }
        }
        9 => Call::Create {
            cred: i.cred()?,
            dir: i.id()?,
            name: i.bytes()?,
            kind: i.kind()?,
            attr: i.set_attr()?,
            mode: i.mode()?,
        },
        10 => Call::Remove {
            cred: i.cred()?,
            dir: i.id()?,
            name: i.bytes()?,
        },
        11 => Call::Rmdir {
            cred: i.cred()?,
            dir: i.id()?,
            name: i.bytes()?,
        },
        12 => Call::Rename {
            cred: i.cred()?,
            from_dir: i.id()?,
            from_name: i.bytes()?,
            to_dir: i.id()?,
            to_name: i.bytes()?,
        },
        13 => Call::Link {
            cred: i.cred()?,
            file: i.id()?,
            dir: i.id()?,
            name: i.bytes()?,
        },
        14 => Call::Readdir {
            cred: i.cred()?,
            dir: i.id()?,
            cookie: i.u64()?,
            count_max: i.u32()?,
            with_attrs: i.bool()?,
        },
        15 => Call::Commit {
            id: i.id()?,
            offset: i.u64()?,
            count: i.u64()?,
        },
        16 => Call::Fsstat(i.id()?),
        17 => Call::Residency(i.id()?),
        18 => Call::DataRead {
            ino: i.u64()?,
            offset: i.u64()?,
            len: i.u32()?,
        },
        19 => {
            let (ino, offset) = (i.u64()?, i.u64()?);
            let n = i.u32()? as usize;
            Call::DataWrite {
                ino,
                offset,
                data: i.shared(n)?,
            }
        }
        20 => Call::DataSetLen {
            ino: i.u64()?,
            len: i.u64()?,
        },
        21 => Call::DataSync(i.u64()?),
        22 => Call::DataRemove(i.u64()?),
        23 => Call::DataResidency {
            ino: i.u64()?,
            size: i.u64()?,
        },
        24 => Call::PutDoc {
            key: i.doc_key()?,
            version: i.u64()?,
            doc: i.doc()?,
        },
        25 => Call::Doc(i.doc_key()?),
        26 => Call::DataVerify {
            ino: i.u64()?,
            offset: i.u64()?,
            len: i.u32()?,
        },
        // 0: none (the engine checks the range of the others).
        27 => Call::SetReplication {
            dir: i.id()?,
            copies: Some(i.u8()?).filter(|&c| c != 0),
        },
        28 => Call::Replication(i.id()?),
        29 => Call::FenceTarget(i.target()?),
        v => return Err(format!("call {v}")),
    };
    i.end()?;
    Ok(call)
}

fn known_store(name: &[u8]) -> &'static str {
    match name {
        b"local" => "local",
        b"memory" => "memory",
        b"nvme" => "nvme",
        _ => "",
    }
}

/// Decodes an answer and the leader's write verifier from a frame body.
pub fn decode_answer(body: Bytes) -> Decoded<([u8; 8], Answer)> {
    let mut i = In { buf: body, pos: 0 };
    let mut verifier = [0u8; 8];
    verifier.copy_from_slice(i.take(8)?);
    let answer = match i.u8()? {
        1 => Answer::Attr(i.attr()?),
        2 => Answer::Wcc(i.wcc()?),
        3 => Answer::Access(AccessMask(i.u32()?), i.attr()?),
        4 => Answer::Readlink(i.bytes()?, i.attr()?),
        5 => {
            let (eof, attr) = (i.bool()?, i.attr()?);
            let n = i.u32()? as usize;
            Answer::Read(ReadResult {
                data: i.shared(n)?,
                eof,
                attr,
            })
        }
        6 => Answer::Write(WriteResult {
            count: i.u32()?,
            committed: i.stability()?,
            wcc: i.wcc()?,
        }),
        7 => Answer::Made(i.attr()?, i.wcc()?),
        8 => Answer::Renamed(i.wcc()?, i.wcc()?),
        9 => {
            let (eof, dir_attr) = (i.bool()?, i.attr()?);
            // An entry is at least a cookie, a name length, an id and a flag.
            let n = i.count(8 + 4 + 16 + 1, DIR_ENTRIES_MAX)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                entries.push(DirEntry {
                    cookie: i.u64()?,
                    name: i.bytes()?,
                    id: i.id()?,
                    attr: if i.bool()? { Some(i.attr()?) } else { None },
                });
            }
            Answer::Dir(DirPage {
                entries,
                eof,
                dir_attr,
            })
        }
        10 => Answer::Fsstat(FsStat {
            total_bytes: i.u64()?,
            free_bytes: i.u64()?,
            avail_bytes: i.u64()?,
            total_files: i.u64()?,
            free_files: i.u64()?,
            avail_files: i.u64()?,
        }),
        11 => {
            let placement = if i.bool()? {
                let copies = i.u8()?;
                let n = i.count(8, backend::engine::LAYOUT_NODES_MAX)?;
                let nodes = (0..n).map(|_| i.u64()).collect::<Decoded<_>>()?;
                Some(Layout { copies, nodes })
            } else {
                None
            };
            let mut r = i.residency()?;
            r.placement = placement;
            if i.left() > 0 {
                // Each copy is at least a node, a flag and a length.
                let n = i.count(13, backend::engine::LAYOUT_NODES_MAX)?;
                for _ in 0..n {
                    let node = i.u64()?;
                    let found = if i.bool()? {
                        Ok(i.residency()?)
                    } else {
                        Err(String::from_utf8_lossy(&i.bytes()?).into_owned())
                    };
                    r.copies.push(CopyResidency { node, found });
                }
            }
            Answer::Residency(r)
        }
        12 => Answer::Failed(i.error()?),
        13 => Answer::Done,
        14 => {
            let n = i.u32()? as usize;
            Answer::Data(i.shared(n)?)
        }
        15 => Answer::Doc(if i.bool()? {
            Some((i.u64()?, i.doc()?))
        } else {
            None
        }),
        16 => Answer::Bad(String::from_utf8_lossy(&i.bytes()?).into_owned()),
        17 => Answer::Replication(match i.u8()? {
            0 => None,
            r @ 1..=backend::engine::REPLICATION_MAX => Some(r),
            r => return Err(format!("replication factor {r}")),
        }),
        v => return Err(format!("answer {v}")),
    };
    i.end()?;
    Ok((verifier, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred() -> Cred {
        Cred {
            uid: 1000,
            gid: 100,
            groups: vec![4, 27],
        }
    }

    fn id(ino: u64) -> FileId {
        FileId { ino, generation: 7 }
    }

    fn attr() -> Attr {
        let t = Timestamp {
            seconds: -5,
            nanoseconds: 999_999_999,
        };
        Attr {
            id: id(9),
            file_type: FileType::CharDevice,
            mode: 0o4755,
            nlink: 3,
            uid: 1,
            gid: 2,
            size: u64::MAX,
            used: 4096,
            rdev: (8, 1),
            atime: t,
            mtime: Timestamp::default(),
            ctime: t,
            change: 77,
        }
    }

    fn wcc() -> Wcc {
        Wcc {
            before: PreAttr {
                size: 3,
                mtime: Timestamp::default(),
                ctime: Timestamp {
                    seconds: 1,
                    nanoseconds: 2,
                },
            },
            after: attr(),
        }
    }

    fn round_trip_call(call: Call) {
        let (mut body, data) = encode_call(&call);
        body.extend_from_slice(data.as_deref().unwrap_or_default());
        assert_eq!(decode_call(Bytes::from(body.clone())), Ok(call.clone()));
        assert_eq!(
            decode_shipped(Bytes::from(body)),
            Ok((Envelope::default(), call.clone()))
        );
        // And as a request: the same call behind its id (and a writer's term).
        let request = RequestId {
            secs: 1_800_000_000,
            node: 2,
            seq: u64::MAX,
        };
        let target = TargetEpoch {
            name: "ckpt-a".into(),
            epoch: 1 << 40,
        };
        for (epoch, target) in [(None, None), (Some(7), None), (None, Some(target.clone()))] {
            let plain = epoch.is_none() && target.is_none();
            let envelope = Envelope {
                request: Some(request),
                epoch,
                target,
            };
            let (mut body, data) = encode_shipped(&call, envelope.clone());
            body.extend_from_slice(data.as_deref().unwrap_or_default());
            assert_eq!(
                decode_shipped(Bytes::from(body.clone())),
                Ok((envelope, call.clone()))
            );
            if plain {
                // A plain call decoder refuses it; a truncated id is refused.
                assert!(decode_call(Bytes::from(body.clone())).is_err());
                assert!(decode_shipped(Bytes::copy_from_slice(&body[..20])).is_err());
            }
        }
    }

    fn round_trip_answer(answer: Answer) {
        let (mut body, data) = encode_answer([1, 2, 3, 4, 5, 6, 7, 8], &answer);
        body.extend_from_slice(data.as_deref().unwrap_or_default());
        assert_eq!(
            decode_answer(Bytes::from(body)),
            Ok(([1, 2, 3, 4, 5, 6, 7, 8], answer))
        );
    }

    #[test]
    fn every_call_decodes_to_what_was_encoded() {
        let set = SetAttr {
            mode: Some(0o600),
            uid: None,
            gid: Some(5),
            size: Some(1 << 40),
            atime: SetTime::ServerNow,
            mtime: SetTime::Client(Timestamp {
                seconds: 3,
                nanoseconds: 4,
            }),
        };
        for call in [
            Call::Getattr(id(1)),
            Call::Setattr {
                cred: cred(),
                id: id(2),
                attr: set.clone(),
                guard: Some(Timestamp::default()),
            },
            Call::Lookup {
                cred: cred(),
                dir: id(1),
                name: b"a name".to_vec(),
            },
            Call::Parent {
                cred: cred(),
                dir: id(3),
            },
            Call::Access {
                cred: cred(),
                id: id(3),
                mask: AccessMask(0x3f),
            },
            Call::Readlink {
                cred: cred(),
                id: id(4),
            },
            Call::Read {
                cred: cred(),
                id: id(5),
                offset: 1 << 33,
                count: 1 << 20,
            },
            Call::Write {
                cred: cred(),
                id: id(5),
                offset: 12,
                stability: Stability::DataSync,
                data: Bytes::from_static(b"some file data"),
            },
            Call::Create {
                cred: cred(),
                dir: id(1),
                name: b"l".to_vec(),
                kind: NodeKind::Symlink {
                    target: b"../x".to_vec(),
                },
                attr: set.clone(),
                mode: CreateMode::Exclusive([9; 8]),
            },
            Call::Create {
                cred: cred(),
                dir: id(1),
                name: b"dev".to_vec(),
                kind: NodeKind::BlockDevice { rdev: (1, 2) },
                attr: SetAttr::default(),
                mode: CreateMode::Unchecked,
            },
            Call::Remove {
                cred: cred(),
                dir: id(1),
                name: b"f".to_vec(),
            },
            Call::Rmdir {
                cred: cred(),
                dir: id(1),
                name: b"d".to_vec(),
            },
            Call::Rename {
                cred: cred(),
                from_dir: id(1),
                from_name: b"a".to_vec(),
                to_dir: id(2),
                to_name: b"b".to_vec(),
            },
            Call::Link {
                cred: cred(),
                file: id(5),
                dir: id(1),
                name: b"hard".to_vec(),
            },
            Call::Readdir {
                cred: cred(),
                dir: id(1),
                cookie: 42,
                count_max: 8192,
                with_attrs: true,
            },
            Call::Commit {
                id: id(5),
                offset: 0,
                count: 0,
            },
            Call::Fsstat(id(1)),
            Call::Residency(id(5)),
            Call::SetReplication {
                dir: id(1),
                copies: Some(2),
            },
            Call::SetReplication {
                dir: id(1),
                copies: None,
            },
            Call::Replication(id(5)),
            Call::FenceTarget(TargetEpoch {
                name: "ckpt".into(),
                epoch: 7,
            }),
            Call::DataRead {
                ino: 5,
                offset: 1 << 20,
                len: 4096,
            },
            Call::DataWrite {
                ino: 5,
                offset: 3,
                data: Bytes::from_static(b"chunk"),
            },
            Call::DataSetLen { ino: 5, len: 0 },
            Call::DataSync(5),
            Call::DataRemove(5),
            Call::DataResidency { ino: 5, size: 10 },
            Call::DataVerify {
                ino: 5,
                offset: 2 << 20,
                len: 1 << 20,
            },
            Call::PutDoc {
                key: b"node/2/nfs4-clients".to_vec(),
                version: 9,
                doc: vec![7; 1000],
            },
            Call::Doc(b"node/2/nsm".to_vec()),
        ] {
            round_trip_call(call);
        }
    }

    #[test]
    fn every_answer_decodes_to_what_was_encoded() {
        for answer in [
            Answer::Attr(attr()),
            Answer::Wcc(wcc()),
            Answer::Access(AccessMask(3), attr()),
            Answer::Readlink(b"target".to_vec(), attr()),
            Answer::Read(ReadResult {
                data: Bytes::from_static(b"read bytes"),
                eof: true,
                attr: attr(),
            }),
            Answer::Write(WriteResult {
                count: 10,
                committed: Stability::FileSync,
                wcc: wcc(),
            }),
            Answer::Made(attr(), wcc()),
            Answer::Renamed(wcc(), wcc()),
            Answer::Dir(DirPage {
                entries: vec![
                    DirEntry {
                        cookie: 1,
                        name: b"x".to_vec(),
                        id: id(10),
                        attr: Some(attr()),
                    },
                    DirEntry {
                        cookie: 2,
                        name: b"y".to_vec(),
                        id: id(11),
                        attr: None,
                    },
                ],
                eof: false,
                dir_attr: attr(),
            }),
            Answer::Fsstat(FsStat {
                total_bytes: 1,
                free_bytes: 2,
                avail_bytes: 3,
                total_files: 4,
                free_files: 5,
                avail_files: 6,
            }),
            Answer::Residency(Residency {
                placement: Some(Layout {
                    copies: 2,
                    nodes: vec![3, 1, 2],
                }),
                store: "nvme",
                device: Some("/dev/nvme0n1".into()),
                data_file: Some("/data/x".into()),
                extents: vec![(0, 4096), (1 << 20, 8192)],
                copies: Vec::new(),
            }),
            Answer::Residency(Residency {
                placement: Some(Layout {
                    copies: 2,
                    nodes: vec![3, 1],
                }),
                store: "local",
                extents: vec![(0, 4096)],
                copies: vec![
                    CopyResidency {
                        node: 3,
                        found: Ok(Residency {
                            store: "nvme",
                            device: Some("/dev/nvme1n1".into()),
                            extents: vec![(0, 4096)],
                            ..Residency::default()
                        }),
                    },
                    CopyResidency {
                        node: 1,
                        found: Err("node 1 did not answer".into()),
                    },
                ],
                ..Residency::default()
            }),
            Answer::Residency(Residency::default()),
            Answer::Replication(Some(3)),
            Answer::Replication(None),
            Answer::Failed(Error::NotRegular(FileType::Directory)),
            Answer::Failed(Error::Io("disk on fire".into())),
            Answer::Failed(Error::Unavailable),
            Answer::Done,
            Answer::Data(Bytes::from_static(b"held here")),
            Answer::Doc(None),
            Answer::Doc(Some((3, b"doc".to_vec()))),
            Answer::Bad("bad data on disk: checksum mismatch".into()),
        ] {
            round_trip_answer(answer);
        }
    }

    #[test]
    fn a_file_payload_is_a_slice_of_the_frame_not_a_copy() {
        let call = Call::Write {
            cred: cred(),
            id: id(5),
            offset: 0,
            stability: Stability::Unstable,
            data: Bytes::from(vec![7u8; 4096]),
        };
        let (mut body, data) = encode_call(&call);
        body.extend_from_slice(&data.unwrap());
        let frame = Bytes::from(body);
        let start = frame.as_ptr() as usize;
        let Ok(Call::Write { data, .. }) = decode_call(frame.clone()) else {
            panic!("a write")
        };
        let at = data.as_ptr() as usize;
        assert!(at >= start && at + data.len() <= start + frame.len());
    }

    #[test]
    fn counts_that_do_not_fit_the_frame_are_refused_before_allocating() {
        // A directory page claiming 4 billion entries in a few bytes.
        let mut body = vec![0u8; 8];
        body.push(9);
        body.push(0);
        let (mut a, _) = encode_answer([0; 8], &Answer::Attr(attr()));
        body.extend_from_slice(&a.split_off(9));
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_answer(Bytes::from(body)).is_err());
        // A credential with too many groups.
        let mut call = vec![2u8];
        call.extend_from_slice(&0u32.to_le_bytes());
        call.extend_from_slice(&0u32.to_le_bytes());
        call.extend_from_slice(&1000u32.to_le_bytes());
        call.extend_from_slice(&[0u8; 4000]);
        assert!(decode_call(Bytes::from(call)).is_err());
        // Trailing bytes and unknown tags.
        let (mut ok, _) = encode_call(&Call::Fsstat(id(1)));
        ok.push(0);
        assert!(decode_call(Bytes::from(ok)).is_err());
        assert!(decode_call(Bytes::from_static(&[99])).is_err());
        assert!(decode_answer(Bytes::from_static(&[0; 9])).is_err());
    }

    #[test]
    fn target_names_that_are_empty_too_long_or_not_utf8_are_refused() {
        let fence = |name: &[u8]| {
            let mut body = vec![29u8];
            body.extend_from_slice(&7u64.to_le_bytes());
            body.extend_from_slice(&(name.len() as u32).to_le_bytes());
            body.extend_from_slice(name);
            decode_call(Bytes::from(body))
        };
        assert!(fence(b"ckpt").is_ok());
        assert!(fence(b"").is_err());
        assert!(fence(&[0xff, 0xfe]).is_err());
        assert!(fence(&[b'a'; TARGET_NAME_MAX]).is_ok());
        assert!(fence(&[b'a'; TARGET_NAME_MAX + 1]).is_err());
    }
}
