//! The inode record: what the engine keeps per object, and its byte encoding for stores that
//! persist bytes (the local store). The encoding starts with a version byte so a later format can
//! be told apart; decoding never panics on corrupt input, it fails with [`Error::Io`].

use crate::{Attr, Error, FileId, FileType, Result, Timestamp};

/// Version 2 added the layout; version 3 the replication factor (written only by records
/// that have one, so a node of an older build reads every other record). Versions 1 (no
/// layout) and 2 still decode.
const RECORD_VERSION: u8 = 3;
const RECORD_VERSION_2: u8 = 2;
const RECORD_VERSION_1: u8 = 1;
/// The most copies a replication factor may ask for (the 1, 2 or 3; `cluster.replicas`
/// has the same bound).
pub const REPLICATION_MAX: u8 = 3;
/// Most nodes one layout names: a bound checked before anything is allocated when decoding.
pub const LAYOUT_NODES_MAX: usize = 32;

/// Where a regular file's data lives: its placement, kept in its inode record and so in the
/// metadata (the log, in a cluster), not in any data store. Chunk `i` (1 MiB) has its copies on
/// `nodes[(i + k) % nodes.len()]` for `k` in `0..copies`: a file can be striped over nodes for
/// bandwidth and copied for safety without one metadata record per chunk. Where a copy sits on
/// its node's devices (physical blocks, checksums) is that node's own business: three copies
/// sit at three different places, so block maps are per-node by nature and stay in the node's
/// data store. See `docs/decisions/0006-placement-in-metadata.md`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Copies of each chunk, 1 up to `nodes.len()`.
    pub copies: u8,
    /// Node ids, 1 to [`LAYOUT_NODES_MAX`] of them, no repeats.
    pub nodes: Vec<u64>,
}

impl Layout {
    /// One copy on one node: what a single node (a cluster of one) gives every new file.
    pub fn on(node: u64) -> Layout {
        Layout {
            copies: 1,
            nodes: vec![node],
        }
    }

    /// The nodes holding chunk `chunk`, first copy first.
    pub fn holders(&self, chunk: u64) -> impl Iterator<Item = u64> + '_ {
        let n = self.nodes.len() as u64;
        (0..u64::from(self.copies)).map(move |k| self.nodes[((chunk % n + k) % n) as usize])
    }

    /// Whether `node` holds a copy of any chunk of the file.
    pub fn holds(&self, node: u64) -> bool {
        self.nodes.contains(&node)
    }

    fn valid(&self) -> bool {
        let n = self.nodes.len();
        (1..=LAYOUT_NODES_MAX).contains(&n)
            && (1..=n).contains(&usize::from(self.copies))
            && self
                .nodes
                .iter()
                .enumerate()
                .all(|(i, node)| !self.nodes[..i].contains(node))
    }
}

/// Everything the engine knows about one object, except its directory entries and data bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    pub generation: u64,
    pub file_type: FileType,
    pub mode: u32,
    /// Hard links for non-directories; 2 + subdirectories for directories.
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Logical size of a regular file (the data store is only a sparse backing area) or the
    /// length of a symlink target.
    pub size: u64,
    pub rdev: (u32, u32),
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
    pub change: u64,
    /// Directories: the parent directory (the root is its own parent). Others: 0.
    pub parent: u64,
    /// Directories: the highest entry sequence number issued so far (the readdir cookie space).
    pub last_seq: u64,
    /// Regular files made by an exclusive create, until the next setattr.
    pub verifier: Option<[u8; 8]>,
    /// Regular files: where the data lives. `None` for other types, and for files written
    /// before layouts existed (their data is on the node whose store holds this record).
    pub layout: Option<Layout>,
    /// The replication factor asked for. Directories: what regular files made below them get
    /// (the nearest directory up the tree that has one decides; an export's root carries the
    /// export's). Regular files: the copies the rebuild keeps them at. `None`: the cluster's
    /// default (`cluster.replicas`). 1 to [`REPLICATION_MAX`].
    pub replication: Option<u8>,
    /// Symlinks: the target.
    pub target: Vec<u8>,
}

impl Inode {
    pub fn attr(&self, ino: u64) -> Attr {
        let used = match self.file_type {
            FileType::Regular => self.size.div_ceil(4096).saturating_mul(4096),
            _ => 4096,
        };
        Attr {
            id: FileId {
                ino,
                generation: self.generation,
            },
            file_type: self.file_type,
            mode: self.mode,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            used,
            rdev: self.rdev,
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            change: self.change,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Directory
    }

    /// Records a change at `now`: ctime moves, and `change` increases even across restarts
    /// (it never goes below the clock in nanoseconds).
    pub fn touch_ctime(&mut self, now: Timestamp) {
        self.ctime = now;
        self.change = (self.change + 1).max(timestamp_nanos(now));
    }

    /// A data or entry change: mtime and ctime move.
    pub fn touch_mtime(&mut self, now: Timestamp) {
        self.mtime = now;
        self.touch_ctime(now);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(112 + self.target.len());
        out.push(if self.replication.is_some() {
            RECORD_VERSION
        } else {
            RECORD_VERSION_2
        });
        out.push(file_type_code(self.file_type));
        for v in [
            self.mode,
            self.nlink,
            self.uid,
            self.gid,
            self.rdev.0,
            self.rdev.1,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.generation,
            self.size,
            self.change,
            self.parent,
            self.last_seq,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for t in [self.atime, self.mtime, self.ctime] {
            out.extend_from_slice(&t.seconds.to_le_bytes());
            out.extend_from_slice(&t.nanoseconds.to_le_bytes());
        }
        match self.verifier {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&v);
            }
            None => out.push(0),
        }
        match &self.layout {
            Some(layout) => {
                debug_assert!(layout.valid(), "encoding an invalid layout {layout:?}");
                out.push(1);
                out.push(layout.copies);
                // At most LAYOUT_NODES_MAX (32) nodes: fits a byte.
                out.push(layout.nodes.len() as u8);
                for node in &layout.nodes {
                    out.extend_from_slice(&node.to_le_bytes());
                }
            }
            None => out.push(0),
        }
        if let Some(r) = self.replication {
            debug_assert!((1..=REPLICATION_MAX).contains(&r), "replication {r}");
            out.push(r);
        }
        out.extend_from_slice(&self.target);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Inode> {
        let mut r = Reader(bytes);
        let version = r.take::<1>()?[0];
        if ![RECORD_VERSION, RECORD_VERSION_2, RECORD_VERSION_1].contains(&version) {
            return Err(corrupt());
        }
        let file_type = file_type_from_code(r.take::<1>()?[0])?;
        let [mode, nlink, uid, gid, major, minor] = [(); 6].map(|_| r.u32());
        let [generation, size, change, parent, last_seq] = [(); 5].map(|_| r.u64());
        let [atime, mtime, ctime] = [(); 3].map(|_| r.timestamp());
        let verifier = match r.take::<1>()?[0] {
            0 => None,
            1 => Some(r.take::<8>()?),
            _ => return Err(corrupt()),
        };
        let layout = match version {
            RECORD_VERSION_1 => None,
            _ => match r.take::<1>()?[0] {
                0 => None,
                1 => {
                    let [copies, n] = r.take::<2>()?;
                    // Bounded before allocating: at most LAYOUT_NODES_MAX nodes.
                    if usize::from(n) > LAYOUT_NODES_MAX {
                        return Err(corrupt());
                    }
                    let nodes = (0..n).map(|_| r.u64()).collect::<Result<Vec<u64>>>()?;
                    let layout = Layout { copies, nodes };
                    if !layout.valid() {
                        return Err(corrupt());
                    }
                    Some(layout)
                }
                _ => return Err(corrupt()),
            },
        };
        let replication = match version {
            RECORD_VERSION => match r.take::<1>()?[0] {
                r @ 1..=REPLICATION_MAX => Some(r),
                _ => return Err(corrupt()),
            },
            _ => None,
        };
        Ok(Inode {
            generation: generation?,
            file_type,
            mode: mode?,
            nlink: nlink?,
            uid: uid?,
            gid: gid?,
            size: size?,
            rdev: (major?, minor?),
            atime: atime?,
            mtime: mtime?,
            ctime: ctime?,
            change: change?,
            parent: parent?,
            last_seq: last_seq?,
            verifier,
            layout,
            replication,
            target: r.0.to_vec(),
        })
    }
}

pub fn timestamp_nanos(t: Timestamp) -> u64 {
    (t.seconds.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(t.nanoseconds))
}

fn corrupt() -> Error {
    Error::Io("corrupt inode record in the metadata store".into())
}

fn file_type_code(t: FileType) -> u8 {
    match t {
        FileType::Regular => 1,
        FileType::Directory => 2,
        FileType::Symlink => 3,
        FileType::BlockDevice => 4,
        FileType::CharDevice => 5,
        FileType::Socket => 6,
        FileType::Fifo => 7,
    }
}

fn file_type_from_code(code: u8) -> Result<FileType> {
    Ok(match code {
        1 => FileType::Regular,
        2 => FileType::Directory,
        3 => FileType::Symlink,
        4 => FileType::BlockDevice,
        5 => FileType::CharDevice,
        6 => FileType::Socket,
        7 => FileType::Fifo,
        _ => return Err(corrupt()),
    })
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or_else(corrupt)?;
        self.0 = rest;
        Ok(*head)
    }

    fn u32(&mut self) -> Result<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64> {
        self.take().map(u64::from_le_bytes)
    }

    fn timestamp(&mut self) -> Result<Timestamp> {
        let seconds = i64::from_le_bytes(self.take()?);
        let nanoseconds = self.u32()?;
        Ok(Timestamp {
            seconds,
            nanoseconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_record_decodes_to_the_same_record() {
        let inode = Inode {
            generation: 7,
            file_type: FileType::Symlink,
            mode: 0o777,
            nlink: 1,
            uid: 10,
            gid: 20,
            size: 3,
            rdev: (1, 2),
            atime: Timestamp {
                seconds: 1,
                nanoseconds: 2,
            },
            mtime: Timestamp::default(),
            ctime: Timestamp::now(),
            change: 99,
            parent: 0,
            last_seq: 0,
            verifier: Some([1; 8]),
            layout: None,
            replication: None,
            target: b"abc".to_vec(),
        };
        assert_eq!(Inode::decode(&inode.encode()), Ok(inode));
    }

    #[test]
    fn a_record_with_a_replication_factor_keeps_it_and_one_without_stays_version_2() {
        let dir = crate::testing::inode(FileType::Directory);
        assert_eq!(dir.encode()[0], RECORD_VERSION_2);
        let asks = Inode {
            replication: Some(2),
            ..dir
        };
        let bytes = asks.encode();
        assert_eq!(bytes[0], RECORD_VERSION);
        assert_eq!(Inode::decode(&bytes), Ok(asks.clone()));
        let file = Inode {
            replication: Some(1),
            target: Vec::new(),
            ..regular(Some(Layout::on(4)))
        };
        assert_eq!(Inode::decode(&file.encode()), Ok(file));
        for bad in [0, REPLICATION_MAX + 1] {
            let mut b = bytes.clone();
            *b.last_mut().expect("the factor is last") = bad;
            assert!(Inode::decode(&b).is_err(), "factor {bad}");
        }
    }

    fn regular(layout: Option<Layout>) -> Inode {
        Inode {
            size: 5 << 20,
            layout,
            ..crate::testing::inode(FileType::Regular)
        }
    }

    #[test]
    fn a_record_keeps_the_file_layout() {
        let layout = Layout {
            copies: 2,
            nodes: vec![3, 1, 2],
        };
        let inode = regular(Some(layout));
        assert_eq!(Inode::decode(&inode.encode()), Ok(inode));
    }

    #[test]
    fn a_version_1_record_decodes_without_a_layout() {
        // What builds before layouts wrote: version 1, no layout byte.
        let mut old = regular(None).encode();
        old[0] = RECORD_VERSION_1;
        let layout_byte = old.len() - 1; // empty target: the layout tag is last
        assert_eq!(old[layout_byte], 0);
        old.truncate(layout_byte);
        assert_eq!(Inode::decode(&old), Ok(regular(None)));
    }

    #[test]
    fn layouts_with_too_many_repeated_or_no_nodes_are_corrupt() {
        let encoded = |copies: u8, nodes: Vec<u64>| {
            let mut bytes = regular(None).encode();
            bytes.pop();
            bytes.extend_from_slice(&[1, copies, nodes.len() as u8]);
            for n in nodes {
                bytes.extend_from_slice(&n.to_le_bytes());
            }
            bytes
        };
        assert!(Inode::decode(&encoded(1, vec![])).is_err());
        assert!(Inode::decode(&encoded(1, vec![4, 4])).is_err());
        assert!(Inode::decode(&encoded(3, vec![1, 2])).is_err());
        assert!(Inode::decode(&encoded(0, vec![1])).is_err());
        assert!(Inode::decode(&encoded(1, (1..=33).collect())).is_err());
        // A count byte larger than the bytes that follow fails cleanly too.
        let mut short = regular(None).encode();
        short.pop();
        short.extend_from_slice(&[1, 1, 200, 1, 2]);
        assert!(Inode::decode(&short).is_err());
        assert!(Inode::decode(&encoded(2, vec![7, 8, 9])).is_ok());
    }

    #[test]
    fn chunk_copies_rotate_over_the_layout_nodes() {
        let layout = Layout {
            copies: 2,
            nodes: vec![10, 20, 30],
        };
        let holders = |chunk| layout.holders(chunk).collect::<Vec<_>>();
        assert_eq!(holders(0), [10, 20]);
        assert_eq!(holders(1), [20, 30]);
        assert_eq!(holders(2), [30, 10]);
        assert_eq!(holders(3), [10, 20]);
        assert_eq!(Layout::on(7).holders(u64::MAX).collect::<Vec<_>>(), [7]);
    }

    #[test]
    fn truncated_record_fails_to_decode_without_panicking() {
        assert!(Inode::decode(&[RECORD_VERSION, 1, 0]).is_err());
        assert!(Inode::decode(&[]).is_err());
    }
}
