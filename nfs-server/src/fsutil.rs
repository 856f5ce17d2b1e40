//! Small files written whole: the cluster key, the admin state, protocol state documents and
//! the boot epoch. One way to replace them, so that every one is atomic and durable.

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `contents`: written to a temporary sibling, synced, renamed over
/// `path`, and the directory synced, so a crash leaves either the old file or the new one,
/// and the new one is on stable storage when this returns. `mode` sets the permissions of a
/// new file (e.g. `0o600` for secrets); `None` takes the default.
pub fn replace_file(path: &Path, contents: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        if let Some(m) = mode {
            opts.mode(m);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_file_leaves_the_new_contents_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("doc");
        replace_file(&p, b"one", None).unwrap();
        replace_file(&p, b"two", Some(0o600)).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(!dir.path().join("doc.tmp").exists());
    }

    #[test]
    fn a_secret_is_created_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key");
        replace_file(&p, b"k", Some(0o600)).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
