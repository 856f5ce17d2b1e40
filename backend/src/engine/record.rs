//! The inode record: what the engine keeps per object, and its byte encoding for stores that
//! persist bytes (the local store). The encoding starts with a version byte so a later format can
//! be told apart; decoding never panics on corrupt input, it fails with [`Error::Io`].

use crate::{Attr, Error, FileId, FileType, Result, Timestamp};

const RECORD_VERSION: u8 = 1;

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
        out.push(RECORD_VERSION);
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
        out.extend_from_slice(&self.target);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Inode> {
        let mut r = Reader(bytes);
        if r.take::<1>()?[0] != RECORD_VERSION {
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
            target: b"abc".to_vec(),
        };
        assert_eq!(Inode::decode(&inode.encode()), Ok(inode));
    }

    #[test]
    fn truncated_record_fails_to_decode_without_panicking() {
        assert!(Inode::decode(&[RECORD_VERSION, 1, 0]).is_err());
        assert!(Inode::decode(&[]).is_err());
    }
}
