//! POSIX permission rules and the attribute changes of SETATTR, as pure functions over an inode
//! record, so `create` and `setattr` share them and they can be read in one place.

use super::record::Inode;
use crate::{Cred, Error, FileType, Result, SetAttr, SetTime, Timestamp, FILE_SIZE_MAX};

pub const MAY_READ: u32 = 4;
pub const MAY_WRITE: u32 = 2;
pub const MAY_EXEC: u32 = 1;

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;

/// POSIX rwx check. Root passes everything except executing a non-directory with no x bit.
pub fn may(cred: &Cred, inode: &Inode, want: u32) -> bool {
    if cred.uid == 0 {
        return want & MAY_EXEC == 0 || inode.is_dir() || inode.mode & 0o111 != 0;
    }
    let bits = if cred.uid == inode.uid {
        inode.mode >> 6
    } else if cred.in_group(inode.gid) {
        inode.mode >> 3
    } else {
        inode.mode
    };
    bits & want & 7 == want
}

/// The check for READ, WRITE and truncate of file data: POSIX, plus the owner override
/// (the NFS client checked the mode at open time; see the crate docs).
pub fn may_io(cred: &Cred, inode: &Inode, want: u32) -> bool {
    (inode.file_type == FileType::Regular && cred.uid == inode.uid) || may(cred, inode, want)
}

pub fn require(allowed: bool) -> Result<()> {
    if allowed {
        Ok(())
    } else {
        Err(Error::Access)
    }
}

/// In a sticky directory only the entry's owner, the directory's owner or root may remove or
/// rename an entry (EPERM otherwise, as Linux answers).
pub fn require_sticky(cred: &Cred, dir: &Inode, child: &Inode) -> Result<()> {
    let allowed =
        dir.mode & S_ISVTX == 0 || cred.uid == 0 || cred.uid == dir.uid || cred.uid == child.uid;
    if allowed {
        Ok(())
    } else {
        Err(Error::Perm)
    }
}

/// Mode bits for a new object: the caller's mode (no umask; the client applied it), the
/// directory's setgid inherited by subdirectories, and setgid dropped from files whose group the
/// creator is not in.
pub fn initial_mode(cred: &Cred, parent: &Inode, file_type: FileType, mode: u32, gid: u32) -> u32 {
    let mut mode = mode & 0o7777;
    if file_type == FileType::Directory && parent.mode & S_ISGID != 0 {
        mode |= S_ISGID;
    }
    if file_type != FileType::Directory && cred.uid != 0 && !cred.in_group(gid) {
        mode &= !S_ISGID;
    }
    mode
}

/// Writes by anyone but root drop setuid and setgid, so a modified program cannot keep them.
/// Returns whether the mode changed.
pub fn kill_suid_on_write(cred: &Cred, inode: &mut Inode) -> bool {
    if cred.uid == 0 || inode.mode & (S_ISUID | S_ISGID) == 0 {
        return false;
    }
    inode.mode &= !(S_ISUID | S_ISGID);
    true
}

/// Checks every change in `attr` against the POSIX rules, then applies them all (or none).
/// Returns whether the size changed; the caller owns truncating the data.
pub fn apply_setattr(
    cred: &Cred,
    inode: &mut Inode,
    attr: &SetAttr,
    now: Timestamp,
) -> Result<bool> {
    check_setattr(cred, inode, attr)?;
    let owner_changed = attr.uid.is_some_and(|u| u != inode.uid);
    let group_changed = attr.gid.is_some_and(|g| g != inode.gid);
    inode.uid = attr.uid.unwrap_or(inode.uid);
    inode.gid = attr.gid.unwrap_or(inode.gid);
    if (owner_changed || group_changed) && inode.file_type == FileType::Regular {
        inode.mode &= !(S_ISUID | S_ISGID);
    }
    if let Some(mode) = attr.mode {
        inode.mode = mode & 0o7777;
        let drop_setgid = cred.uid != 0 && !inode.is_dir() && !cred.in_group(inode.gid);
        if drop_setgid {
            inode.mode &= !S_ISGID;
        }
    }
    let size_changed = attr.size.is_some_and(|s| s != inode.size);
    if let Some(size) = attr.size {
        inode.size = size;
    }
    if size_changed {
        inode.touch_mtime(now);
    } else {
        inode.touch_ctime(now);
    }
    inode.atime = resolve_time(attr.atime, inode.atime, now);
    inode.mtime = resolve_time(attr.mtime, inode.mtime, now);
    // knfsd clears the exclusive-create verifier with the first SETATTR; so do we, so a late
    // retry of the create cannot be mistaken for the original once the client has moved on.
    inode.verifier = None;
    Ok(size_changed)
}

fn check_setattr(cred: &Cred, inode: &Inode, attr: &SetAttr) -> Result<()> {
    let root = cred.uid == 0;
    let owner = cred.uid == inode.uid;
    let perm = |ok: bool| if ok { Ok(()) } else { Err(Error::Perm) };
    if let Some(uid) = attr.uid {
        perm(root || (owner && uid == inode.uid))?;
    }
    if let Some(gid) = attr.gid {
        perm(root || (owner && (gid == inode.gid || cred.in_group(gid))))?;
    }
    if attr.mode.is_some() {
        perm(root || owner)?;
    }
    if let Some(size) = attr.size {
        match inode.file_type {
            FileType::Regular => {}
            FileType::Directory => return Err(Error::IsDir),
            _ => return Err(Error::Invalid),
        }
        if size > FILE_SIZE_MAX {
            return Err(Error::FileTooBig);
        }
        require(may_io(cred, inode, MAY_WRITE))?;
    }
    for time in [attr.atime, attr.mtime] {
        match time {
            SetTime::DontChange => {}
            SetTime::Client(_) => perm(root || owner)?,
            SetTime::ServerNow => require(root || owner || may(cred, inode, MAY_WRITE))?,
        }
    }
    Ok(())
}

fn resolve_time(time: SetTime, current: Timestamp, now: Timestamp) -> Timestamp {
    match time {
        SetTime::DontChange => current,
        SetTime::ServerNow => now,
        SetTime::Client(t) => t,
    }
}
