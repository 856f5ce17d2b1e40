//! [`MemStore`]: the engine over in-memory metadata and data, for tests and the simulator.
//! Nothing survives a drop. Data is kept in fixed-size chunks so a write at a large offset
//! costs one chunk, not the whole hole.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use crate::engine::{
    check_batch, Batch, Counter, DataStore, Engine, Inode, MetaOp, MetaStore, StoredEntry,
};
use crate::{FsStat, Result};

/// An in-memory [`Store`](crate::Store).
pub type MemStore = Engine<MemMeta, MemData>;

impl MemStore {
    pub fn new() -> MemStore {
        // Opening in-memory stores cannot fail: no I/O happens.
        match Engine::with_stores(MemMeta::default(), MemData::default()) {
            Ok(store) => store,
            Err(e) => unreachable!("in-memory store failed to open: {e}"),
        }
    }
}

impl Default for MemStore {
    fn default() -> MemStore {
        MemStore::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
pub struct MemMeta {
    tables: Mutex<MetaTables>,
}

#[derive(Default)]
struct MetaTables {
    inodes: HashMap<u64, Inode>,
    /// (dir, name) -> (child, seq)
    names: BTreeMap<(u64, Vec<u8>), (u64, u64)>,
    /// (dir, seq) -> (name, child)
    seqs: BTreeMap<(u64, u64), (Vec<u8>, u64)>,
    counters: HashMap<Counter, u64>,
    /// key -> (version, document)
    docs: HashMap<Vec<u8>, (u64, Vec<u8>)>,
}

impl MetaStore for MemMeta {
    const BLOCKING: bool = false;

    fn inode(&self, ino: u64) -> Result<Option<Inode>> {
        Ok(lock(&self.tables).inodes.get(&ino).cloned())
    }

    fn entry(&self, dir: u64, name: &[u8]) -> Result<Option<(u64, u64)>> {
        Ok(lock(&self.tables).names.get(&(dir, name.to_vec())).copied())
    }

    fn doc(&self, key: &[u8]) -> Result<Option<(u64, Vec<u8>)>> {
        Ok(lock(&self.tables).docs.get(key).cloned())
    }

    fn entries(&self, dir: u64, after_seq: u64, limit: usize) -> Result<Vec<StoredEntry>> {
        let tables = lock(&self.tables);
        let Some(start) = after_seq.checked_add(1) else {
            return Ok(Vec::new());
        };
        Ok(tables
            .seqs
            .range((dir, start)..=(dir, u64::MAX))
            .take(limit)
            .map(|(&(_, seq), (name, child))| StoredEntry {
                seq,
                name: name.clone(),
                child: *child,
            })
            .collect())
    }

    fn counter(&self, counter: Counter) -> Result<Option<u64>> {
        Ok(lock(&self.tables).counters.get(&counter).copied())
    }

    fn inode_count(&self) -> Result<u64> {
        Ok(lock(&self.tables).inodes.len() as u64)
    }

    fn commit(
        &self,
        _announced: bool,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static + use<> {
        std::future::ready(Ok(()))
    }

    fn apply(&self, batch: &Batch<'_>) -> Result<()> {
        let mut t = lock(&self.tables);
        let raised = {
            let t = &*t;
            check_batch(
                batch,
                |c| Ok(t.counters.get(&c).copied()),
                |dir, name| Ok(t.names.get(&(dir, name.to_vec())).map(|e| e.0)),
                |ino| Ok(t.inodes.contains_key(&ino)),
            )?
        };
        if let Some(epoch) = raised {
            t.counters.insert(Counter::WriterEpoch, epoch);
        }
        for op in batch.ops {
            match op {
                MetaOp::PutInode(ino, inode) => {
                    t.inodes.insert(*ino, inode.clone());
                }
                MetaOp::DeleteInode(ino) => {
                    t.inodes.remove(ino);
                }
                MetaOp::PutEntry {
                    dir,
                    name,
                    child,
                    seq,
                } => {
                    t.names.insert((*dir, name.clone()), (*child, *seq));
                    t.seqs.insert((*dir, *seq), (name.clone(), *child));
                }
                MetaOp::DeleteEntry { dir, name, seq } => {
                    t.names.remove(&(*dir, name.clone()));
                    t.seqs.remove(&(*dir, *seq));
                }
                MetaOp::SetCounter(counter, value) => {
                    t.counters.insert(*counter, *value);
                }
                // Only a metadata log's state machine answers retries; this store is never one.
                MetaOp::NoteRequest(_) => {}
                MetaOp::PutDoc { key, version, doc } => {
                    if t.docs.get(key).is_none_or(|d| d.0 < *version) {
                        t.docs.insert(key.clone(), (*version, doc.clone()));
                    }
                }
            }
        }
        Ok(())
    }
}

const CHUNK_BYTES: usize = 64 * 1024;
/// What an in-memory store reports as its capacity.
const TOTAL_BYTES: u64 = 1 << 40;
const TOTAL_FILES: u64 = 1 << 32;

#[derive(Default)]
pub struct MemData {
    files: Mutex<HashMap<u64, MemFile>>,
}

/// A sparse byte area: chunks that were never written read as zeros.
#[derive(Default)]
struct MemFile {
    len: u64,
    chunks: BTreeMap<u64, Box<[u8]>>,
}

fn split(pos: u64) -> (u64, usize) {
    (
        pos / CHUNK_BYTES as u64,
        (pos % CHUNK_BYTES as u64) as usize,
    )
}

impl MemFile {
    fn truncate(&mut self, len: u64) {
        let (index, within) = split(len);
        self.chunks.retain(|&i, _| i <= index);
        if let Some(chunk) = self.chunks.get_mut(&index) {
            chunk[within..].fill(0);
        }
        self.len = len;
    }
}

impl DataStore for MemData {
    const BLOCKING: bool = false;

    fn residency(&self, ino: u64, size: u64) -> Result<crate::Residency> {
        let files = lock(&self.files);
        let mut extents: Vec<(u64, u64)> = Vec::new();
        if let Some(file) = files.get(&ino) {
            for &index in file.chunks.keys() {
                let start = index * CHUNK_BYTES as u64;
                let end = (start + CHUNK_BYTES as u64).min(size);
                if start >= end {
                    continue;
                }
                match extents.last_mut() {
                    Some((o, l)) if *o + *l == start => *l += end - start,
                    _ => extents.push((start, end - start)),
                }
            }
        }
        Ok(crate::Residency {
            placement: None,
            store: "memory",
            device: None,
            data_file: None,
            extents,
            copies: Vec::new(),
        })
    }

    fn read_at(&self, ino: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let files = lock(&self.files);
        let Some(file) = files.get(&ino) else {
            return Ok(0);
        };
        let n = file.len.saturating_sub(offset).min(buf.len() as u64) as usize;
        let mut done = 0;
        while done < n {
            let (index, within) = split(offset + done as u64);
            let step = (CHUNK_BYTES - within).min(n - done);
            let target = &mut buf[done..done + step];
            match file.chunks.get(&index) {
                Some(chunk) => target.copy_from_slice(&chunk[within..within + step]),
                None => target.fill(0),
            }
            done += step;
        }
        Ok(n)
    }

    fn write_at(&self, ino: u64, offset: u64, data: &[u8]) -> Result<()> {
        let mut files = lock(&self.files);
        let file = files.entry(ino).or_default();
        let mut done = 0;
        while done < data.len() {
            let (index, within) = split(offset + done as u64);
            let step = (CHUNK_BYTES - within).min(data.len() - done);
            let chunk = file
                .chunks
                .entry(index)
                .or_insert_with(|| vec![0; CHUNK_BYTES].into_boxed_slice());
            chunk[within..within + step].copy_from_slice(&data[done..done + step]);
            done += step;
        }
        file.len = file.len.max(offset + data.len() as u64);
        Ok(())
    }

    fn set_len(&self, ino: u64, len: u64) -> Result<()> {
        let mut files = lock(&self.files);
        if let Some(file) = files.get_mut(&ino) {
            if len < file.len {
                file.truncate(len);
            } else {
                file.len = len;
            }
        }
        Ok(())
    }

    fn sync(&self, _ino: u64) -> Result<()> {
        Ok(())
    }

    fn remove(&self, ino: u64) -> Result<()> {
        lock(&self.files).remove(&ino);
        Ok(())
    }

    fn space(&self, files_used: u64) -> Result<FsStat> {
        let chunks: usize = lock(&self.files).values().map(|f| f.chunks.len()).sum();
        let free_bytes = TOTAL_BYTES.saturating_sub(chunks as u64 * CHUNK_BYTES as u64);
        let free_files = TOTAL_FILES.saturating_sub(files_used);
        Ok(FsStat {
            total_bytes: TOTAL_BYTES,
            free_bytes,
            avail_bytes: free_bytes,
            total_files: TOTAL_FILES,
            free_files,
            avail_files: free_files,
        })
    }
}
