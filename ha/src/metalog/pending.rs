//! Batches this node applied and proposed that the state machine has not applied yet.
//!
//! `MetaStore::apply` must make a batch visible to later reads at once, but the log applies it
//! only after a quorum has it. Until then its effects live here, keyed by what they change and
//! tagged with the batch's sequence number; reads look here first, then in the state machine.
//! When the state machine reports batch `n` applied, every effect of batches up to `n` is
//! dropped: the state machine holds it (or a later batch's value) now.

use std::collections::{BTreeMap, HashMap};

use backend::engine::{Batch, Counter, Inode, MetaOp};

/// A change tagged with the batch that made it: `(batch, Some(new value) or None: removed)`.
pub type Change<T> = (u64, Option<T>);

/// `(version, document)`, a document as `MetaOp::PutDoc` stores it.
pub type Versioned = (u64, Vec<u8>);

/// `(dir, name)`, the key of a directory entry by name.
pub type NameKey = (u64, Vec<u8>);
/// `(dir, seq)`, the key of a directory entry by readdir cookie.
pub type SeqKey = (u64, u64);

#[derive(Default)]
pub struct Pending {
    /// Sequence number of the last batch pushed (the first is 1).
    pub last: u64,
    pub inodes: HashMap<u64, Change<Inode>>,
    /// (dir, name) -> (child, seq)
    pub names: BTreeMap<NameKey, Change<(u64, u64)>>,
    /// (dir, seq) -> (name, child)
    pub seqs: BTreeMap<SeqKey, Change<(Vec<u8>, u64)>>,
    pub counters: HashMap<Counter, (u64, u64)>,
    /// key -> (batch, (version, document)): the newest version this node proposed.
    pub docs: HashMap<Vec<u8>, (u64, Versioned)>,
}

impl Pending {
    /// Records the effects of `batch` (already checked); `raised` is the writer epoch it
    /// stores, if it raises it. Returns the batch's sequence number.
    pub fn push(&mut self, batch: &Batch<'_>, raised: Option<u64>) -> u64 {
        self.last += 1;
        let n = self.last;
        if let Some(epoch) = raised {
            self.counters.insert(Counter::WriterEpoch, (n, epoch));
        }
        for op in batch.ops {
            match op {
                MetaOp::PutInode(ino, inode) => {
                    self.inodes.insert(*ino, (n, Some(inode.clone())));
                }
                MetaOp::DeleteInode(ino) => {
                    self.inodes.insert(*ino, (n, None));
                }
                MetaOp::PutEntry {
                    dir,
                    name,
                    child,
                    seq,
                } => {
                    self.names
                        .insert((*dir, name.clone()), (n, Some((*child, *seq))));
                    self.seqs
                        .insert((*dir, *seq), (n, Some((name.clone(), *child))));
                }
                MetaOp::DeleteEntry { dir, name, seq } => {
                    self.names.insert((*dir, name.clone()), (n, None));
                    self.seqs.insert((*dir, *seq), (n, None));
                }
                MetaOp::SetCounter(c, v) => {
                    self.counters.insert(*c, (n, *v));
                }
                // Read from the state machine only: a retry is asked about once the call's
                // leader is gone and its successor has applied what was committed.
                MetaOp::NoteRequest(_) => {}
                MetaOp::PutDoc { key, version, doc } => {
                    if self.docs.get(key).is_none_or(|d| d.1 .0 < *version) {
                        self.docs.insert(key.clone(), (n, (*version, doc.clone())));
                    }
                }
            }
        }
        n
    }

    /// Drops the effects of batches up to `applied`, which the state machine now holds.
    pub fn settle(&mut self, applied: u64) {
        self.inodes.retain(|_, (n, _)| *n > applied);
        self.names.retain(|_, (n, _)| *n > applied);
        self.seqs.retain(|_, (n, _)| *n > applied);
        self.counters.retain(|_, (n, _)| *n > applied);
        self.docs.retain(|_, (n, _)| *n > applied);
    }

    /// Forgets every effect (after a failed commit: the state machine is the truth again).
    pub fn clear(&mut self) {
        self.inodes.clear();
        self.names.clear();
        self.seqs.clear();
        self.counters.clear();
        self.docs.clear();
    }

    /// How many directory slots of `dir` above `after_seq` this overlay changes: a read of the
    /// state machine must fetch that many more entries to fill a page.
    pub fn changes_in(&self, dir: u64, after_seq: u64) -> usize {
        match after_seq.checked_add(1) {
            Some(start) => self.seqs.range((dir, start)..=(dir, u64::MAX)).count(),
            None => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.inodes.is_empty()
            && self.names.is_empty()
            && self.seqs.is_empty()
            && self.counters.is_empty()
            && self.docs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settling_keeps_the_effects_of_later_batches_on_the_same_key() {
        let mut p = Pending::default();
        let a = [MetaOp::SetCounter(Counter::NextIno, 5)];
        let b = [MetaOp::SetCounter(Counter::NextIno, 6)];
        let batch = |ops| Batch {
            epoch: 1,
            preconditions: &[],
            ops,
        };
        assert_eq!(p.push(&batch(&a), None), 1);
        assert_eq!(p.push(&batch(&b), Some(1)), 2);
        p.settle(1);
        assert_eq!(p.counters.get(&Counter::NextIno), Some(&(2, 6)));
        p.settle(2);
        assert!(p.is_empty());
    }
}
