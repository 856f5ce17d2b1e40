//! The byte form of a metadata [`Batch`]: what the metadata log stores and nodes send each
//! other. Versioned, little-endian, and decoded with every count and length bounded by the
//! bytes actually present before anything is allocated; decoding never panics and fails with
//! [`Error::Io`] on anything malformed.
//!
//! ```text
//! batch    = version:u8 (1) epoch:u64 npre:u32 precondition* nops:u32 op*
//! name     = len:u16 (1..=255) bytes
//! precondition = 1 dir:u64 name                 EntryAbsent
//!              | 2 dir:u64 name child:u64       EntryIs
//!              | 3 ino:u64 exists:u8            InodeExists
//!              | 4 counter:u8 set:u8 value:u64  CounterIs (value 0 when unset)
//! op       = 1 ino:u64 len:u32 record           PutInode (record: Inode::encode)
//!          | 2 ino:u64                          DeleteInode
//!          | 3 dir:u64 name child:u64 seq:u64   PutEntry
//!          | 4 dir:u64 name seq:u64             DeleteEntry
//!          | 5 counter:u8 value:u64             SetCounter
//!          | 6 secs:u64 node:u64 seq:u64        NoteRequest
//!          | 7 key:u8+bytes version:u64 doc:u32+bytes   PutDoc
//! ```

use super::{Batch, Counter, Inode, MetaOp, Precondition};
use crate::{Error, Result, NAME_LEN_MAX, PATH_LEN_MAX};

const VERSION: u8 = 1;
/// Longest encoded inode record: the fixed part, a full layout and a symlink target.
const RECORD_LEN_MAX: usize = 256 + super::LAYOUT_NODES_MAX * 8 + PATH_LEN_MAX;

/// A [`Batch`] that owns its parts, as decoded from bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnedBatch {
    pub epoch: u64,
    pub preconditions: Vec<Precondition>,
    pub ops: Vec<MetaOp>,
}

impl OwnedBatch {
    pub fn as_batch(&self) -> Batch<'_> {
        Batch {
            epoch: self.epoch,
            preconditions: &self.preconditions,
            ops: &self.ops,
        }
    }
}

impl From<&Batch<'_>> for OwnedBatch {
    fn from(b: &Batch<'_>) -> OwnedBatch {
        OwnedBatch {
            epoch: b.epoch,
            preconditions: b.preconditions.to_vec(),
            ops: b.ops.to_vec(),
        }
    }
}

fn counter_code(c: Counter) -> u8 {
    match c {
        Counter::FormatVersion => 1,
        Counter::NextIno => 2,
        Counter::WriterEpoch => 3,
    }
}

fn counter_from(code: u8) -> Result<Counter> {
    Ok(match code {
        1 => Counter::FormatVersion,
        2 => Counter::NextIno,
        3 => Counter::WriterEpoch,
        _ => return Err(malformed("counter")),
    })
}

fn malformed(what: &str) -> Error {
    Error::Io(format!("malformed metadata batch: bad {what}"))
}

/// Encodes `batch`. Names longer than [`NAME_LEN_MAX`] are never in a batch (the engine
/// refuses them first); encoding one is a bug.
pub fn encode(batch: &Batch<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + batch.ops.len() * 64);
    out.push(VERSION);
    out.extend_from_slice(&batch.epoch.to_le_bytes());
    out.extend_from_slice(&(batch.preconditions.len() as u32).to_le_bytes());
    let name = |out: &mut Vec<u8>, name: &[u8]| {
        debug_assert!((1..=NAME_LEN_MAX).contains(&name.len()));
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
    };
    for p in batch.preconditions {
        match p {
            Precondition::EntryAbsent { dir, name: n } => {
                out.push(1);
                out.extend_from_slice(&dir.to_le_bytes());
                name(&mut out, n);
            }
            Precondition::EntryIs {
                dir,
                name: n,
                child,
            } => {
                out.push(2);
                out.extend_from_slice(&dir.to_le_bytes());
                name(&mut out, n);
                out.extend_from_slice(&child.to_le_bytes());
            }
            Precondition::InodeExists(ino, exists) => {
                out.push(3);
                out.extend_from_slice(&ino.to_le_bytes());
                out.push(u8::from(*exists));
            }
            Precondition::CounterIs(c, value) => {
                out.push(4);
                out.push(counter_code(*c));
                out.push(u8::from(value.is_some()));
                out.extend_from_slice(&value.unwrap_or(0).to_le_bytes());
            }
        }
    }
    out.extend_from_slice(&(batch.ops.len() as u32).to_le_bytes());
    for op in batch.ops {
        match op {
            MetaOp::PutInode(ino, inode) => {
                out.push(1);
                out.extend_from_slice(&ino.to_le_bytes());
                let record = inode.encode();
                out.extend_from_slice(&(record.len() as u32).to_le_bytes());
                out.extend_from_slice(&record);
            }
            MetaOp::DeleteInode(ino) => {
                out.push(2);
                out.extend_from_slice(&ino.to_le_bytes());
            }
            MetaOp::PutEntry {
                dir,
                name: n,
                child,
                seq,
            } => {
                out.push(3);
                out.extend_from_slice(&dir.to_le_bytes());
                name(&mut out, n);
                out.extend_from_slice(&child.to_le_bytes());
                out.extend_from_slice(&seq.to_le_bytes());
            }
            MetaOp::DeleteEntry { dir, name: n, seq } => {
                out.push(4);
                out.extend_from_slice(&dir.to_le_bytes());
                name(&mut out, n);
                out.extend_from_slice(&seq.to_le_bytes());
            }
            MetaOp::SetCounter(c, value) => {
                out.push(5);
                out.push(counter_code(*c));
                out.extend_from_slice(&value.to_le_bytes());
            }
            MetaOp::NoteRequest(id) => {
                out.push(6);
                for v in [id.secs, id.node, id.seq] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            MetaOp::PutDoc { key, version, doc } => {
                // Bounded where a document enters (engine::check_doc).
                out.push(7);
                out.push(key.len() as u8);
                out.extend_from_slice(key);
                out.extend_from_slice(&version.to_le_bytes());
                out.extend_from_slice(&(doc.len() as u32).to_le_bytes());
                out.extend_from_slice(doc);
            }
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(malformed(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.bytes(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.bytes(4, what)?);
        Ok(u32::from_le_bytes(a))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8, what)?);
        Ok(u64::from_le_bytes(a))
    }

    fn bool(&mut self, what: &str) -> Result<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(malformed(what)),
        }
    }

    fn name(&mut self) -> Result<Vec<u8>> {
        let len = usize::from(self.u16("name length")?);
        if !(1..=NAME_LEN_MAX).contains(&len) {
            return Err(malformed("name length"));
        }
        Ok(self.bytes(len, "name")?.to_vec())
    }

    /// A count of items that take at least `min_len` bytes each: bounded by what is left, so
    /// a lying count cannot make the decoder allocate.
    fn count(&mut self, min_len: usize, what: &str) -> Result<usize> {
        let n = self.u32(what)? as usize;
        if n > self.0.len() / min_len {
            return Err(malformed(what));
        }
        Ok(n)
    }
}

/// Decodes a batch encoded by [`encode`]; trailing bytes are an error.
pub fn decode(bytes: &[u8]) -> Result<OwnedBatch> {
    let mut r = Reader(bytes);
    if r.u8("version")? != VERSION {
        return Err(malformed("version"));
    }
    let epoch = r.u64("epoch")?;
    // The shortest precondition (InodeExists) is 10 bytes; the shortest op 9.
    let npre = r.count(10, "precondition count")?;
    let mut preconditions = Vec::with_capacity(npre);
    for _ in 0..npre {
        preconditions.push(match r.u8("precondition")? {
            1 => Precondition::EntryAbsent {
                dir: r.u64("dir")?,
                name: r.name()?,
            },
            2 => Precondition::EntryIs {
                dir: r.u64("dir")?,
                name: r.name()?,
                child: r.u64("child")?,
            },
            3 => Precondition::InodeExists(r.u64("ino")?, r.bool("exists")?),
            4 => {
                let c = counter_from(r.u8("counter")?)?;
                let set = r.bool("counter presence")?;
                let value = r.u64("counter value")?;
                if !set && value != 0 {
                    return Err(malformed("unset counter value"));
                }
                Precondition::CounterIs(c, set.then_some(value))
            }
            _ => return Err(malformed("precondition")),
        });
    }
    let nops = r.count(9, "op count")?;
    let mut ops = Vec::with_capacity(nops);
    for _ in 0..nops {
        ops.push(match r.u8("op")? {
            1 => {
                let ino = r.u64("ino")?;
                let len = r.u32("record length")? as usize;
                if len > RECORD_LEN_MAX {
                    return Err(malformed("record length"));
                }
                MetaOp::PutInode(ino, Inode::decode(r.bytes(len, "record")?)?)
            }
            2 => MetaOp::DeleteInode(r.u64("ino")?),
            3 => MetaOp::PutEntry {
                dir: r.u64("dir")?,
                name: r.name()?,
                child: r.u64("child")?,
                seq: r.u64("seq")?,
            },
            4 => MetaOp::DeleteEntry {
                dir: r.u64("dir")?,
                name: r.name()?,
                seq: r.u64("seq")?,
            },
            5 => MetaOp::SetCounter(counter_from(r.u8("counter")?)?, r.u64("counter value")?),
            6 => MetaOp::NoteRequest(super::RequestId {
                secs: r.u64("request time")?,
                node: r.u64("request node")?,
                seq: r.u64("request seq")?,
            }),
            7 => {
                let len = usize::from(r.u8("document key length")?);
                if len == 0 {
                    return Err(malformed("document key length"));
                }
                let key = r.bytes(len, "document key")?.to_vec();
                let version = r.u64("document version")?;
                let len = r.u32("document length")? as usize;
                if len > super::DOC_LEN_MAX {
                    return Err(malformed("document length"));
                }
                let doc = r.bytes(len, "document")?.to_vec();
                MetaOp::PutDoc { key, version, doc }
            }
            _ => return Err(malformed("op")),
        });
    }
    if !r.0.is_empty() {
        return Err(malformed("trailing bytes"));
    }
    Ok(OwnedBatch {
        epoch,
        preconditions,
        ops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Layout;
    use crate::FileType;

    fn file(layout: Option<Layout>, target: &[u8]) -> Inode {
        let kind = if target.is_empty() {
            FileType::Regular
        } else {
            FileType::Symlink
        };
        Inode {
            size: target.len() as u64,
            verifier: Some([7; 8]),
            layout,
            target: target.to_vec(),
            ..crate::testing::inode(kind)
        }
    }

    fn every_kind() -> OwnedBatch {
        OwnedBatch {
            epoch: 42,
            preconditions: vec![
                Precondition::EntryAbsent {
                    dir: 1,
                    name: b"new".to_vec(),
                },
                Precondition::EntryIs {
                    dir: 1,
                    name: b"old".to_vec(),
                    child: 7,
                },
                Precondition::InodeExists(7, true),
                Precondition::CounterIs(Counter::NextIno, Some(100)),
                Precondition::CounterIs(Counter::FormatVersion, None),
            ],
            ops: vec![
                MetaOp::PutInode(100, file(Some(Layout::on(3)), b"")),
                MetaOp::PutInode(101, file(None, &[b'x'; PATH_LEN_MAX])),
                MetaOp::DeleteInode(7),
                MetaOp::PutEntry {
                    dir: 1,
                    name: vec![b'n'; NAME_LEN_MAX],
                    child: 100,
                    seq: 12,
                },
                MetaOp::DeleteEntry {
                    dir: 1,
                    name: b"old".to_vec(),
                    seq: 4,
                },
                MetaOp::SetCounter(Counter::NextIno, 102),
                MetaOp::SetCounter(Counter::WriterEpoch, 42),
                MetaOp::NoteRequest(crate::engine::RequestId {
                    secs: 1_800_000_000,
                    node: 3,
                    seq: u64::MAX,
                }),
                MetaOp::PutDoc {
                    key: b"node/3/nsm".to_vec(),
                    version: 7,
                    doc: vec![0xab; 300],
                },
            ],
        }
    }

    #[test]
    fn a_batch_of_every_kind_decodes_to_itself() {
        let batch = every_kind();
        assert_eq!(decode(&encode(&batch.as_batch())), Ok(batch));
        let empty = OwnedBatch::default();
        assert_eq!(decode(&encode(&empty.as_batch())), Ok(empty));
    }

    #[test]
    fn every_truncation_of_a_batch_is_refused() {
        let bytes = encode(&every_kind().as_batch());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "accepted {len} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn lying_counts_and_lengths_are_refused_before_allocating() {
        let mut huge_count = vec![VERSION];
        huge_count.extend_from_slice(&0u64.to_le_bytes());
        huge_count.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge_count).is_err());
        let mut huge_record = vec![VERSION];
        huge_record.extend_from_slice(&0u64.to_le_bytes());
        huge_record.extend_from_slice(&0u32.to_le_bytes());
        huge_record.extend_from_slice(&1u32.to_le_bytes());
        huge_record.push(1);
        huge_record.extend_from_slice(&5u64.to_le_bytes());
        huge_record.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge_record).is_err());
    }

    #[test]
    fn unknown_versions_tags_and_empty_names_are_refused() {
        let mut bytes = encode(&every_kind().as_batch());
        bytes[0] = 2;
        assert!(decode(&bytes).is_err());
        let empty_name = OwnedBatch {
            epoch: 1,
            preconditions: vec![],
            ops: vec![MetaOp::DeleteInode(3)],
        };
        let mut bytes = encode(&empty_name.as_batch());
        let op_tag = bytes.len() - 9;
        bytes[op_tag] = 9;
        assert!(decode(&bytes).is_err());
    }
}
