//! `nfsserve-dir DIR ADDR:PORT`: serve DIR over NFSv3 with the `nfsserve` crate.
//!
//! This is the nfsserve column of `bench/run.sh`. It does what the crate's own directory-mirror
//! demo does: file ids are handed out on first sight of a path and kept in a table, and every
//! operation goes straight to the local file system.
//!
//! nfsserve answers every WRITE with FILE_SYNC and refuses COMMIT, so `write` syncs the file
//! before it returns. Anything less would acknowledge data that is not on stable storage.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nfsserve::fs_util::{exists_no_traverse, file_setattr, metadata_to_fattr3, path_setattr};
use nfsserve::nfs::{fattr3, fileid3, filename3, nfspath3, nfsstat3, sattr3};
use nfsserve::tcp::{NFSTcp, NFSTcpListener};
use nfsserve::vfs::{DirEntry, NFSFileSystem, ReadDirResult, VFSCapabilities};

const ROOT_ID: fileid3 = 1;

/// Maps file ids to paths and back. Ids are never reused; a removed path keeps its id pointing
/// nowhere, so a stale handle gets NOENT/STALE rather than another file.
#[derive(Default)]
struct Ids {
    by_id: HashMap<fileid3, PathBuf>,
    by_path: HashMap<PathBuf, fileid3>,
    next: fileid3,
}

struct DirFs {
    ids: Mutex<Ids>,
}

fn io_error(e: std::io::Error) -> nfsstat3 {
    // Linux errno values; this program only runs where the bench runs.
    match e.raw_os_error() {
        Some(2) => nfsstat3::NFS3ERR_NOENT,
        Some(13) | Some(1) => nfsstat3::NFS3ERR_ACCES,
        Some(17) => nfsstat3::NFS3ERR_EXIST,
        Some(20) => nfsstat3::NFS3ERR_NOTDIR,
        Some(21) => nfsstat3::NFS3ERR_ISDIR,
        Some(28) => nfsstat3::NFS3ERR_NOSPC,
        Some(39) => nfsstat3::NFS3ERR_NOTEMPTY,
        _ => nfsstat3::NFS3ERR_IO,
    }
}

impl DirFs {
    fn new(root: PathBuf) -> DirFs {
        let mut ids = Ids {
            next: ROOT_ID + 1,
            ..Ids::default()
        };
        ids.by_id.insert(ROOT_ID, root.clone());
        ids.by_path.insert(root, ROOT_ID);
        DirFs {
            ids: Mutex::new(ids),
        }
    }

    fn path(&self, id: fileid3) -> Result<PathBuf, nfsstat3> {
        let ids = self.ids.lock().unwrap();
        ids.by_id.get(&id).cloned().ok_or(nfsstat3::NFS3ERR_STALE)
    }

    fn id(&self, path: &Path) -> fileid3 {
        let mut ids = self.ids.lock().unwrap();
        if let Some(&id) = ids.by_path.get(path) {
            return id;
        }
        let id = ids.next;
        ids.next += 1;
        ids.by_id.insert(id, path.to_path_buf());
        ids.by_path.insert(path.to_path_buf(), id);
        id
    }

    fn forget(&self, path: &Path) {
        let mut ids = self.ids.lock().unwrap();
        if let Some(id) = ids.by_path.remove(path) {
            ids.by_id.remove(&id);
        }
    }

    fn child(&self, dir: fileid3, name: &[u8]) -> Result<PathBuf, nfsstat3> {
        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
            return Err(nfsstat3::NFS3ERR_INVAL);
        }
        Ok(self.path(dir)?.join(OsStr::from_bytes(name)))
    }

    fn attr(&self, id: fileid3, path: &Path) -> Result<fattr3, nfsstat3> {
        let meta = path.symlink_metadata().map_err(io_error)?;
        Ok(metadata_to_fattr3(id, &meta))
    }

    fn made(&self, path: &Path) -> Result<(fileid3, fattr3), nfsstat3> {
        let id = self.id(path);
        Ok((id, self.attr(id, path)?))
    }
}

#[async_trait::async_trait]
impl NFSFileSystem for DirFs {
    fn capabilities(&self) -> VFSCapabilities {
        VFSCapabilities::ReadWrite
    }

    fn root_dir(&self) -> fileid3 {
        ROOT_ID
    }

    async fn lookup(&self, dir: fileid3, name: &filename3) -> Result<fileid3, nfsstat3> {
        let path = self.child(dir, name)?;
        if exists_no_traverse(&path) {
            Ok(self.id(&path))
        } else {
            Err(nfsstat3::NFS3ERR_NOENT)
        }
    }

    async fn getattr(&self, id: fileid3) -> Result<fattr3, nfsstat3> {
        self.attr(id, &self.path(id)?)
    }

    async fn setattr(&self, id: fileid3, set: sattr3) -> Result<fattr3, nfsstat3> {
        let path = self.path(id)?;
        path_setattr(&path, &set).await?;
        self.attr(id, &path)
    }

    async fn read(
        &self,
        id: fileid3,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<u8>, bool), nfsstat3> {
        let path = self.path(id)?;
        tokio::task::spawn_blocking(move || {
            let file = File::open(&path).map_err(io_error)?;
            let len = file.metadata().map_err(io_error)?.len();
            let start = offset.min(len);
            let end = offset.saturating_add(count as u64).min(len);
            let mut buf = vec![0; (end - start) as usize];
            file.read_exact_at(&mut buf, start).map_err(io_error)?;
            Ok((buf, end >= len))
        })
        .await
        .map_err(|_| nfsstat3::NFS3ERR_IO)?
    }

    async fn write(&self, id: fileid3, offset: u64, data: &[u8]) -> Result<fattr3, nfsstat3> {
        let path = self.path(id)?;
        let data = data.to_vec();
        let meta = tokio::task::spawn_blocking(move || {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_error)?;
            file.write_all_at(&data, offset).map_err(io_error)?;
            // Answered FILE_SYNC by the crate: the data must be on stable storage first.
            file.sync_data().map_err(io_error)?;
            file.metadata().map_err(io_error)
        })
        .await
        .map_err(|_| nfsstat3::NFS3ERR_IO)??;
        Ok(metadata_to_fattr3(id, &meta))
    }

    async fn create(
        &self,
        dir: fileid3,
        name: &filename3,
        set: sattr3,
    ) -> Result<(fileid3, fattr3), nfsstat3> {
        let path = self.child(dir, name)?;
        let file = File::create(&path).map_err(io_error)?;
        file_setattr(&file, &set).await?;
        self.made(&path)
    }

    async fn create_exclusive(&self, dir: fileid3, name: &filename3) -> Result<fileid3, nfsstat3> {
        let path = self.child(dir, name)?;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error)?;
        Ok(self.id(&path))
    }

    async fn mkdir(&self, dir: fileid3, name: &filename3) -> Result<(fileid3, fattr3), nfsstat3> {
        let path = self.child(dir, name)?;
        fs::create_dir(&path).map_err(io_error)?;
        self.made(&path)
    }

    async fn remove(&self, dir: fileid3, name: &filename3) -> Result<(), nfsstat3> {
        let path = self.child(dir, name)?;
        let meta = path.symlink_metadata().map_err(io_error)?;
        if meta.is_dir() {
            fs::remove_dir(&path).map_err(io_error)?;
        } else {
            fs::remove_file(&path).map_err(io_error)?;
        }
        self.forget(&path);
        Ok(())
    }

    async fn rename(
        &self,
        from_dir: fileid3,
        from: &filename3,
        to_dir: fileid3,
        to: &filename3,
    ) -> Result<(), nfsstat3> {
        let (old, new) = (self.child(from_dir, from)?, self.child(to_dir, to)?);
        fs::rename(&old, &new).map_err(io_error)?;
        // Only the renamed entry is re-keyed; ids below a renamed directory go stale, as in the
        // crate's own demo.
        self.forget(&new);
        let mut ids = self.ids.lock().unwrap();
        if let Some(id) = ids.by_path.remove(&old) {
            ids.by_id.insert(id, new.clone());
            ids.by_path.insert(new, id);
        }
        Ok(())
    }

    async fn readdir(
        &self,
        dir: fileid3,
        start_after: fileid3,
        max: usize,
    ) -> Result<ReadDirResult, nfsstat3> {
        let dir_path = self.path(dir)?;
        let mut entries: Vec<(fileid3, PathBuf)> = fs::read_dir(&dir_path)
            .map_err(io_error)?
            .filter_map(|e| e.ok())
            .map(|e| (self.id(&e.path()), e.path()))
            .filter(|(id, _)| *id > start_after)
            .collect();
        // Ids only grow, so sorting by id gives a listing order that a cookie can resume.
        entries.sort();
        let mut result = ReadDirResult {
            entries: Vec::new(),
            end: entries.len() <= max,
        };
        for (id, path) in entries.into_iter().take(max) {
            if let Ok(attr) = self.attr(id, &path) {
                let name = path.file_name().unwrap_or_default().as_bytes().to_vec();
                result.entries.push(DirEntry {
                    fileid: id,
                    name: name.into(),
                    attr,
                });
            }
        }
        Ok(result)
    }

    async fn symlink(
        &self,
        dir: fileid3,
        name: &filename3,
        target: &nfspath3,
        _: &sattr3,
    ) -> Result<(fileid3, fattr3), nfsstat3> {
        let path = self.child(dir, name)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &path).map_err(io_error)?;
        self.made(&path)
    }

    async fn readlink(&self, id: fileid3) -> Result<nfspath3, nfsstat3> {
        let target = self.path(id)?.read_link().map_err(io_error)?;
        Ok(target.as_os_str().as_bytes().to_vec().into())
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, addr] = args.as_slice() else {
        eprintln!("usage: nfsserve-dir DIR ADDR:PORT");
        std::process::exit(2);
    };
    let root = fs::canonicalize(dir).unwrap_or_else(|e| {
        eprintln!("nfsserve-dir: {dir}: {e}");
        std::process::exit(2);
    });
    let listener = NFSTcpListener::bind(addr, DirFs::new(root))
        .await
        .unwrap_or_else(|e| {
            eprintln!("nfsserve-dir: cannot listen on {addr}: {e}");
            std::process::exit(1);
        });
    if let Err(e) = listener.handle_forever().await {
        eprintln!("nfsserve-dir: {e}");
        std::process::exit(1);
    }
}
