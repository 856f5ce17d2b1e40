//! The one place where store errors become wire statuses. No `_` arms: a new
//! `backend::Error` variant does not compile until it has a status here.

use backend::{Error, FileType};
use nfs_proto::mount::MountStat3;
use nfs_proto::v3::Nfsstat3;
use nfs_proto::v4::Nfsstat4;

pub fn to_nfsstat3(e: &Error) -> Nfsstat3 {
    match e {
        Error::NotFound => Nfsstat3::NoEnt,
        Error::Stale => Nfsstat3::Stale,
        Error::Exists => Nfsstat3::Exist,
        Error::NotDir => Nfsstat3::NotDir,
        Error::IsDir => Nfsstat3::IsDir,
        Error::NotEmpty => Nfsstat3::NotEmpty,
        Error::Access => Nfsstat3::Acces,
        Error::Perm => Nfsstat3::Perm,
        Error::NameTooLong => Nfsstat3::NameTooLong,
        Error::Invalid => Nfsstat3::Inval,
        Error::NotRegular(FileType::Directory) => Nfsstat3::IsDir,
        Error::NotRegular(_) | Error::NotSymlink(_) => Nfsstat3::Inval,
        // RFC 1813 §3.3.2.
        Error::GuardMismatch => Nfsstat3::NotSync,
        Error::FileTooBig => Nfsstat3::Fbig,
        Error::NoSpace => Nfsstat3::NoSpc,
        Error::TooManyLinks => Nfsstat3::Mlink,
        Error::BadCookie => Nfsstat3::BadCookie,
        Error::NotSupported => Nfsstat3::NotSupp,
        // Transient: the client retries after a delay instead of failing the application.
        Error::Busy => Nfsstat3::Jukebox,
        // The client's retry, after a delay, reaches the target's new owner (Fenced) or a
        // store that has its quorum back (Unavailable).
        Error::Fenced | Error::Unavailable => Nfsstat3::Jukebox,
        Error::Io(_) => Nfsstat3::Io,
    }
}

/// RFC 8881 §15: the NFSv4.1 status for a store error.
pub fn to_nfsstat4(e: &Error) -> Nfsstat4 {
    match e {
        Error::NotFound => Nfsstat4::NoEnt,
        Error::Stale => Nfsstat4::Stale,
        Error::Exists => Nfsstat4::Exist,
        Error::NotDir => Nfsstat4::NotDir,
        Error::IsDir => Nfsstat4::IsDir,
        Error::NotEmpty => Nfsstat4::NotEmpty,
        Error::Access => Nfsstat4::Access,
        Error::Perm => Nfsstat4::Perm,
        Error::NameTooLong => Nfsstat4::NameTooLong,
        Error::Invalid => Nfsstat4::Inval,
        // §18.22.3 (READ), §18.32.3 (WRITE): a directory is ISDIR, a symlink SYMLINK.
        Error::NotRegular(FileType::Directory) => Nfsstat4::IsDir,
        Error::NotRegular(FileType::Symlink) => Nfsstat4::Symlink,
        Error::NotRegular(_) => Nfsstat4::Inval,
        // §18.24.3 (READLINK).
        Error::NotSymlink(FileType::Directory) => Nfsstat4::IsDir,
        Error::NotSymlink(_) => Nfsstat4::Inval,
        Error::GuardMismatch => Nfsstat4::NotSame,
        Error::FileTooBig => Nfsstat4::Fbig,
        Error::NoSpace => Nfsstat4::NoSpc,
        Error::TooManyLinks => Nfsstat4::Mlink,
        Error::BadCookie => Nfsstat4::BadCookie,
        Error::NotSupported => Nfsstat4::NotSupp,
        // Transient: the client retries after a delay (RFC 8881 §15.1.1.3).
        Error::Busy => Nfsstat4::Delay,
        Error::Fenced | Error::Unavailable => Nfsstat4::Delay,
        Error::Io(_) => Nfsstat4::Io,
    }
}

pub fn to_mountstat3(e: &Error) -> MountStat3 {
    match e {
        Error::NotFound | Error::Stale => MountStat3::NoEnt,
        Error::NotDir => MountStat3::NotDir,
        Error::Access | Error::Perm => MountStat3::Acces,
        Error::NameTooLong => MountStat3::NameTooLong,
        Error::Invalid
        | Error::BadCookie
        | Error::IsDir
        | Error::NotRegular(_)
        | Error::NotSymlink(_)
        | Error::GuardMismatch => MountStat3::Inval,
        Error::NotSupported => MountStat3::NotSupp,
        Error::Exists
        | Error::NotEmpty
        | Error::FileTooBig
        | Error::NoSpace
        | Error::TooManyLinks
        | Error::Busy
        | Error::Fenced
        | Error::Unavailable => MountStat3::ServerFault,
        Error::Io(_) => MountStat3::Io,
    }
}

/// NFSv4.1 status of an operation whose protocol state (client records) could not be made
/// durable: the client must not be told it succeeded.
pub fn state_save_failed_v4(_: &std::io::Error) -> Nfsstat4 {
    Nfsstat4::ServerFault
}

/// NLM status of a lock request whose client could not be recorded durably in the NSM monitor
/// list (without the record, a restart would neither notify it nor let it reclaim).
pub fn state_save_failed_nlm(_: &std::io::Error) -> nfs_proto::nlm::Nlm4Stat {
    nfs_proto::nlm::Nlm4Stat::DeniedNoLocks
}
