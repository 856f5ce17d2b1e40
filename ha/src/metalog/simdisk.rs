//! A simulated disk under redb, for the deterministic simulation (`ha/tests/simulation/`).
//!
//! Each file keeps two images: its bytes as written, and its bytes as of its last sync. A
//! process crash keeps what was written (the page cache survives); a **power loss** puts every
//! file of the disk back to its synced image. A **lying** disk answers every sync without
//! keeping anything, so a power loss takes it back to its state before it started lying. A
//! disk in [`Trouble`] is **full** (every write refused, as on a copy-on-write file system
//! with no room left; syncs honoured) or
//! fails its syncs with **EIO**, dropping what they should have written as Linux does after a
//! failed writeback: the pages count as clean, so no later sync writes them.
//!
//! A file is open through at most one [`SimBackend`] at a time, as redb's own file lock would
//! have it. A power loss also ends the handles of the life that lost power: their reads and
//! writes fail from then on, so the tasks of a dead process winding down cannot touch the disk
//! of the next life.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// One node's disk: its files by path.
#[derive(Debug, Default, Clone)]
pub struct SimDisk {
    files: Arc<Mutex<BTreeMap<PathBuf, Arc<Mutex<FileState>>>>>,
    lying: Arc<AtomicBool>,
    trouble: Arc<AtomicU8>,
}

/// What is wrong with a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    None = 0,
    /// No room: every write is refused (in place too, as on a copy-on-write file system);
    /// syncs are honoured.
    Full = 1,
    /// Syncs fail, and what they should have written is lost at the next power loss.
    Eio = 2,
}

#[derive(Debug, Default)]
struct FileState {
    written: Vec<u8>,
    synced: Vec<u8>,
    /// Ranges written since the last sync (what a sync copies).
    dirty: Vec<(usize, usize)>,
    /// The life of the handle that has the file open (0: none).
    holder: u64,
    /// Lives handed out so far; a power loss starts a new one for every file.
    lives: u64,
    /// Lives that lost power: their handles are dead.
    dead_below: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimDisk {
    /// Opens `path` (created empty if new). Refused while another handle holds it, with a
    /// message that says "already open", as redb's would.
    pub fn open(&self, path: &Path) -> Result<SimBackend, String> {
        let file = Arc::clone(lock(&self.files).entry(path.to_path_buf()).or_default());
        let life = {
            let mut f = lock(&file);
            if f.holder != 0 {
                return Err(format!("{}: already open", path.display()));
            }
            f.lives += 1;
            f.holder = f.lives;
            f.lives
        };
        Ok(SimBackend {
            file,
            life,
            lying: Arc::clone(&self.lying),
            trouble: Arc::clone(&self.trouble),
        })
    }

    /// The process using the disk dies (kill -9): every open handle is dead at once, so
    /// nothing it had not written yet is written, and it closes nothing cleanly. What it
    /// wrote stays (the page cache survives).
    pub fn kill(&self) {
        for file in lock(&self.files).values() {
            let mut f = lock(file);
            f.holder = 0;
            f.dead_below = f.lives + 1;
        }
    }

    /// The power fails: every file goes back to its last synced bytes, and every open handle
    /// is dead.
    pub fn power_loss(&self) {
        self.power_loss_keeping(&mut || false);
    }

    /// The power fails after the disk wrote some of what was not synced yet, in any order:
    /// each unsynced 4 KiB sector keeps its new bytes if `kept()` says so, else goes back to
    /// its last synced bytes (a file's length is kept). Every open handle is dead.
    pub fn power_loss_keeping(&self, kept: &mut dyn FnMut() -> bool) {
        const SECTOR: usize = 4096;
        for file in lock(&self.files).values() {
            let mut f = lock(file);
            let f = &mut *f;
            let mut image = f.synced.clone();
            image.resize(f.written.len(), 0);
            let mut sectors: Vec<usize> = f
                .dirty
                .drain(..)
                .flat_map(|(start, end)| (start / SECTOR)..end.div_ceil(SECTOR))
                .collect();
            sectors.sort_unstable();
            sectors.dedup();
            for sector in sectors {
                let start = sector * SECTOR;
                let end = (start + SECTOR).min(image.len());
                if start < end && kept() {
                    image[start..end].copy_from_slice(&f.written[start..end]);
                }
            }
            f.written = image;
        }
        self.kill();
    }

    /// From now on, syncs are answered and do nothing (`true`), or honoured again (`false`).
    pub fn set_lying(&self, lying: bool) {
        self.lying.store(lying, Ordering::SeqCst);
    }

    /// From now on, the disk has `trouble` (`Trouble::None`: it works again).
    pub fn set_trouble(&self, trouble: Trouble) {
        self.trouble.store(trouble as u8, Ordering::SeqCst);
    }

    /// What is wrong with the disk now.
    pub fn trouble(&self) -> Trouble {
        trouble_of(&self.trouble)
    }
}

/// An open file of a [`SimDisk`], as redb's storage.
#[derive(Debug)]
pub struct SimBackend {
    file: Arc<Mutex<FileState>>,
    life: u64,
    lying: Arc<AtomicBool>,
    trouble: Arc<AtomicU8>,
}

fn trouble_of(t: &AtomicU8) -> Trouble {
    match t.load(Ordering::SeqCst) {
        1 => Trouble::Full,
        2 => Trouble::Eio,
        _ => Trouble::None,
    }
}

impl SimBackend {
    fn state(&self) -> io::Result<MutexGuard<'_, FileState>> {
        let f = lock(&self.file);
        if self.life < f.dead_below {
            return Err(io::Error::other(
                "simulated power loss: this handle is dead",
            ));
        }
        Ok(f)
    }

    fn full(&self) -> bool {
        trouble_of(&self.trouble) == Trouble::Full
    }
}

fn disk_full() -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, "simulated disk full")
}

impl Drop for SimBackend {
    fn drop(&mut self) {
        let mut f = lock(&self.file);
        if f.holder == self.life {
            f.holder = 0;
        }
    }
}

impl redb::StorageBackend for SimBackend {
    fn len(&self) -> io::Result<u64> {
        Ok(self.state()?.written.len() as u64)
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let f = self.state()?;
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start.checked_add(len).filter(|&e| e <= f.written.len());
        match end {
            Some(end) => Ok(f.written[start..end].to_vec()),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end of a simulated file",
            )),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        let mut f = self.state()?;
        let old = f.written.len();
        if len > old && self.full() {
            return Err(disk_full());
        }
        f.written.resize(len, 0);
        f.dirty.push((len.min(old), len.max(old)));
        Ok(())
    }

    // `eventual` syncs are honoured at once: stronger than a disk must be, never weaker.
    fn sync_data(&self, _eventual: bool) -> io::Result<()> {
        let mut f = self.state()?;
        if trouble_of(&self.trouble) == Trouble::Eio {
            // As Linux does after a failed writeback: the pages count as clean, so a later
            // sync that succeeds does not write them either.
            f.dirty.clear();
            return Err(io::Error::other("simulated EIO on sync"));
        }
        if self.lying.load(Ordering::SeqCst) {
            return Ok(());
        }
        let f = &mut *f;
        f.synced.resize(f.written.len(), 0);
        for (start, end) in f.dirty.drain(..) {
            let end = end.min(f.written.len());
            if start < end {
                f.synced[start..end].copy_from_slice(&f.written[start..end]);
            }
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut f = self.state()?;
        if self.full() {
            return Err(disk_full());
        }
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start
            .checked_add(data.len())
            .ok_or_else(|| io::Error::other("write past the largest offset"))?;
        if f.written.len() < end {
            f.written.resize(end, 0);
        }
        f.written[start..end].copy_from_slice(data);
        f.dirty.push((start, end));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::StorageBackend;

    /// The first 4 bytes of file "a", opened again (after its handle was dropped or died).
    fn reopened(disk: &SimDisk) -> Vec<u8> {
        disk.open(Path::new("a")).unwrap().read(0, 4).unwrap()
    }

    #[test]
    fn a_power_loss_keeps_what_was_synced_and_drops_what_was_only_written() {
        let disk = SimDisk::default();
        let f = disk.open(Path::new("a")).unwrap();
        f.write(0, b"synced").unwrap();
        f.sync_data(false).unwrap();
        f.write(0, b"lost!!").unwrap();
        assert_eq!(f.read(0, 6).unwrap(), b"lost!!");
        disk.power_loss();
        assert!(
            f.read(0, 6).is_err(),
            "the handle of the life that lost power is dead"
        );
        drop(f);
        let g = disk.open(Path::new("a")).unwrap();
        assert_eq!(g.read(0, 6).unwrap(), b"synced");
    }

    #[test]
    fn a_power_loss_may_keep_some_unsynced_sectors_and_not_others() {
        let disk = SimDisk::default();
        let f = disk.open(Path::new("a")).unwrap();
        f.write(0, &[1; 8192]).unwrap();
        f.sync_data(false).unwrap();
        f.write(0, &[2; 8192]).unwrap();
        let mut first = true;
        disk.power_loss_keeping(&mut || std::mem::replace(&mut first, false));
        drop(f);
        let g = disk.open(Path::new("a")).unwrap();
        assert_eq!(
            g.read(0, 4096).unwrap(),
            vec![2; 4096],
            "the first sector was written"
        );
        assert_eq!(
            g.read(4096, 4096).unwrap(),
            vec![1; 4096],
            "the second was not"
        );
    }

    #[test]
    fn a_lying_disk_answers_syncs_and_loses_them_at_the_power_loss() {
        let disk = SimDisk::default();
        let f = disk.open(Path::new("a")).unwrap();
        f.write(0, b"kept").unwrap();
        f.sync_data(false).unwrap();
        disk.set_lying(true);
        f.write(0, b"lied").unwrap();
        f.sync_data(false).unwrap();
        disk.power_loss();
        assert_eq!(reopened(&disk), b"kept");
    }

    #[test]
    fn a_full_disk_refuses_writes_and_keeps_what_it_has() {
        let disk = SimDisk::default();
        let f = disk.open(Path::new("a")).unwrap();
        f.write(0, b"kept").unwrap();
        disk.set_trouble(Trouble::Full);
        let full = f.write(0, b"over").unwrap_err();
        assert_eq!(full.kind(), io::ErrorKind::StorageFull);
        assert!(f.set_len(100).is_err());
        f.sync_data(false).unwrap();
        disk.power_loss();
        disk.set_trouble(Trouble::None);
        assert_eq!(reopened(&disk), b"kept");
    }

    #[test]
    fn after_a_failed_sync_a_good_one_does_not_write_what_the_failed_one_dropped() {
        let disk = SimDisk::default();
        let f = disk.open(Path::new("a")).unwrap();
        f.write(0, b"old!").unwrap();
        f.sync_data(false).unwrap();
        f.write(0, b"lost").unwrap();
        disk.set_trouble(Trouble::Eio);
        assert!(f.sync_data(false).is_err());
        disk.set_trouble(Trouble::None);
        f.sync_data(false).unwrap();
        assert_eq!(
            f.read(0, 4).unwrap(),
            b"lost",
            "the page cache still has it"
        );
        disk.power_loss();
        assert_eq!(reopened(&disk), b"old!");
    }

    #[test]
    fn a_killed_process_leaves_what_it_wrote_and_its_handles_dead() {
        let disk = SimDisk::default();
        let f = disk.open(Path::new("a")).unwrap();
        f.write(0, b"left").unwrap();
        disk.kill();
        assert!(f.write(0, b"late").is_err());
        drop(f);
        assert_eq!(reopened(&disk), b"left");
    }

    #[test]
    fn a_file_is_open_through_one_handle_at_a_time() {
        let disk = SimDisk::default();
        let f = disk.open(Path::new("a")).unwrap();
        let err = disk.open(Path::new("a")).unwrap_err();
        assert!(err.contains("already open"), "{err}");
        drop(f);
        disk.open(Path::new("a")).unwrap();
    }
}
