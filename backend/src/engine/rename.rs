//! rename(2): the one operation that touches two directories, two entries and up to three
//! inodes in a single metadata batch.

use super::perm::{may, require, require_sticky, MAY_EXEC, MAY_WRITE};
use super::{validate_name, wcc, DataStore, Inner, Inode, MetaStore, Tx, ROOT_INO};
use crate::{Cred, Error, FileId, Result, Timestamp, Wcc};

/// Deepest directory nesting the subtree check follows before calling the tree corrupt.
const DEPTH_MAX: usize = 1 << 16;

/// The source of a rename, resolved.
struct Source {
    ino: u64,
    seq: u64,
    inode: Inode,
}

impl<M: MetaStore, D: DataStore> Inner<M, D> {
    pub(super) fn rename(
        &self,
        cx: &super::CallCx,
        cred: &Cred,
        from_id: FileId,
        from_name: &[u8],
        to_id: FileId,
        to_name: &[u8],
    ) -> Result<(Wcc, Wcc)> {
        validate_name(from_name)?;
        validate_name(to_name)?;
        let mut state = self.lock();
        let mut tx = Tx::new(&self.meta, &mut state);
        let from_dir = tx.dir(from_id)?;
        let to_dir = tx.dir(to_id)?;
        require(may(cred, &from_dir, MAY_WRITE | MAY_EXEC))?;
        require(may(cred, &to_dir, MAY_WRITE | MAY_EXEC))?;
        let (ino, seq) = self
            .meta
            .entry(from_id.ino, from_name)?
            .ok_or(Error::NotFound)?;
        let source = Source {
            ino,
            seq,
            inode: tx.child(ino)?,
        };
        require_sticky(cred, &from_dir, &source.inode)?;
        let target = self.meta.entry(to_id.ino, to_name)?;
        let unchanged = (
            wcc(&from_dir, &from_dir, from_id.ino),
            wcc(&to_dir, &to_dir, to_id.ino),
        );
        // POSIX: renaming a name onto itself, or onto another link of the same file, does nothing.
        if target.is_some_and(|(child, _)| child == source.ino) {
            return Ok(unchanged);
        }
        if source.inode.is_dir() && from_id.ino != to_id.ino {
            self.check_dir_move(&mut tx, cred, &source, to_id.ino)?;
        }
        let now = Timestamp::now();
        let mut from_after = from_dir.clone();
        from_after.touch_mtime(now);
        tx.put(from_id.ino, from_after);
        let mut freed = None;
        if let Some((target_ino, target_seq)) = target {
            let mut target_inode = tx.child(target_ino)?;
            check_replace(
                &self.meta,
                cred,
                &to_dir,
                &source.inode,
                target_ino,
                &target_inode,
            )?;
            let mut to_after = tx.dir(to_id)?;
            tx.remove_entry(to_id.ino, to_name, target_seq);
            freed = self.unlink_child(&mut tx, &mut to_after, target_ino, &mut target_inode, now);
            tx.put(to_id.ino, to_after);
        }
        move_entry(
            &mut tx,
            &source,
            from_id.ino,
            from_name,
            to_id.ino,
            to_name,
            now,
        )?;
        let from_after = tx.dir(from_id)?;
        let to_after = tx.dir(to_id)?;
        tx.commit(cx)?;
        drop(state);
        self.free_data(freed);
        Ok((
            wcc(&from_dir, &from_after, from_id.ino),
            wcc(&to_dir, &to_after, to_id.ino),
        ))
    }

    /// A directory may not move into its own subtree, and moving it to another parent rewrites
    /// its "..", which needs write permission on it (as Linux requires).
    fn check_dir_move(
        &self,
        tx: &mut Tx<'_, M>,
        cred: &Cred,
        source: &Source,
        to_ino: u64,
    ) -> Result<()> {
        require(may(cred, &source.inode, MAY_WRITE))?;
        let mut ino = to_ino;
        for _ in 0..DEPTH_MAX {
            if ino == source.ino {
                return Err(Error::Invalid);
            }
            if ino == ROOT_INO {
                return Ok(());
            }
            ino = tx.child(ino)?.parent;
        }
        Err(Error::Io(
            "directory tree deeper than the limit; parent pointers may loop".into(),
        ))
    }
}

/// The rules for replacing an existing target: types must agree, a directory target must be
/// empty, and the sticky bit of the target directory applies.
fn check_replace<M: MetaStore>(
    meta: &M,
    cred: &Cred,
    to_dir: &Inode,
    source: &Inode,
    target_ino: u64,
    target: &Inode,
) -> Result<()> {
    match (source.is_dir(), target.is_dir()) {
        (true, false) => return Err(Error::NotDir),
        (false, true) => return Err(Error::IsDir),
        (true, true) if !meta.entries(target_ino, 0, 1)?.is_empty() => return Err(Error::NotEmpty),
        _ => {}
    }
    require_sticky(cred, to_dir, target)
}

/// Moves the source entry and fixes link counts and the parent pointer of a moved directory.
fn move_entry<M: MetaStore>(
    tx: &mut Tx<'_, M>,
    source: &Source,
    from_ino: u64,
    from_name: &[u8],
    to_ino: u64,
    to_name: &[u8],
    now: Timestamp,
) -> Result<()> {
    tx.remove_entry(from_ino, from_name, source.seq);
    let mut moved = source.inode.clone();
    moved.touch_ctime(now);
    if moved.is_dir() && from_ino != to_ino {
        moved.parent = to_ino;
        let mut from_dir = tx.child(from_ino)?;
        from_dir.nlink = from_dir.nlink.saturating_sub(1);
        tx.put(from_ino, from_dir);
        let mut to_dir = tx.child(to_ino)?;
        to_dir.nlink = to_dir.nlink.checked_add(1).ok_or(Error::TooManyLinks)?;
        tx.put(to_ino, to_dir);
    }
    tx.put(source.ino, moved);
    let mut to_dir = tx.child(to_ino)?;
    to_dir.touch_mtime(now);
    tx.add_entry(to_ino, &mut to_dir, to_name, source.ino);
    tx.put(to_ino, to_dir);
    Ok(())
}
