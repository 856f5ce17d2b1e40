//! File handles: self-describing, stable across restarts, and unforgeable.
//!
//! Layout (40 bytes, big-endian):
//!
//! | bytes  | field                                                          |
//! |--------|----------------------------------------------------------------|
//! | 0      | format version (1)                                             |
//! | 1..4   | reserved, zero (room for a node or shard hint in later formats) |
//! | 4..8   | export id                                                      |
//! | 8..16  | inode number                                                   |
//! | 16..24 | generation                                                     |
//! | 24..40 | SipHash-2-4-128 MAC of bytes 0..24 under the cluster key        |
//!
//! Any node holding the cluster key can decode and verify a handle, so a handle survives a
//! restart and, later, a failover to another node. The MAC binds the export id to the inode,
//! so a client cannot rewrite a handle to reach into another export.

use std::hash::Hasher;
use std::path::Path;

use backend::FileId;
use siphasher::sip128::{Hasher128, SipHasher24};

pub const FH_VERSION: u8 = 1;
pub const FH_LEN: usize = 40;
const MAC_OFFSET: usize = 24;

/// A decoded and verified handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileHandle {
    pub export_id: u32,
    pub id: FileId,
}

/// Why a handle was refused. Both map to NFS3ERR_BADHANDLE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FhError {
    /// Wrong length or unknown version.
    Malformed,
    /// The MAC does not match: forged, corrupted or from another cluster.
    BadMac,
}

/// The per-cluster secret that signs handles.
#[derive(Clone)]
pub struct FhKey {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for FhKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FhKey(..)")
    }
}

impl FhKey {
    pub fn from_bytes(b: [u8; 16]) -> FhKey {
        FhKey {
            k0: u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            k1: u64::from_le_bytes(b[8..].try_into().expect("8 bytes")),
        }
    }

    /// Loads the key from `path`, creating it (mode 0600, 16 random bytes) if it does not exist.
    pub fn load_or_create(path: &Path) -> std::io::Result<FhKey> {
        match std::fs::read(path) {
            Ok(b) => {
                let arr: [u8; 16] = b.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} must hold exactly 16 bytes, found {}; restore it from another \
                             node of the cluster (a new key makes every client handle stale)",
                            path.display(),
                            b.len()
                        ),
                    )
                })?;
                Ok(FhKey::from_bytes(arr))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut b = [0u8; 16];
                getrandom::getrandom(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
                crate::fsutil::replace_file(path, &b, Some(0o600))?;
                Ok(FhKey::from_bytes(b))
            }
            Err(e) => Err(e),
        }
    }

    fn mac(&self, body: &[u8]) -> [u8; 16] {
        let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
        h.write(body);
        h.finish128().as_bytes()
    }

    pub fn encode(&self, fh: &FileHandle) -> [u8; FH_LEN] {
        let mut b = [0u8; FH_LEN];
        b[0] = FH_VERSION;
        b[4..8].copy_from_slice(&fh.export_id.to_be_bytes());
        b[8..16].copy_from_slice(&fh.id.ino.to_be_bytes());
        b[16..24].copy_from_slice(&fh.id.generation.to_be_bytes());
        let mac = self.mac(&b[..MAC_OFFSET]);
        b[MAC_OFFSET..].copy_from_slice(&mac);
        b
    }

    pub fn decode(&self, b: &[u8]) -> Result<FileHandle, FhError> {
        if b.len() != FH_LEN || b[0] != FH_VERSION || b[1..4] != [0, 0, 0] {
            return Err(FhError::Malformed);
        }
        let mac = self.mac(&b[..MAC_OFFSET]);
        // Compare without an early exit so timing says nothing about where a forgery differs.
        let diff = mac
            .iter()
            .zip(&b[MAC_OFFSET..])
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        if diff != 0 {
            return Err(FhError::BadMac);
        }
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Ok(FileHandle {
            export_id: u32_at(4),
            id: FileId {
                ino: u64_at(8),
                generation: u64_at(16),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> FhKey {
        FhKey::from_bytes([7; 16])
    }

    fn handle() -> FileHandle {
        FileHandle {
            export_id: 3,
            id: FileId {
                ino: 42,
                generation: 9,
            },
        }
    }

    #[test]
    fn handle_round_trips_under_the_same_key() {
        let b = key().encode(&handle());
        assert_eq!(key().decode(&b), Ok(handle()));
    }

    #[test]
    fn handle_with_a_rewritten_export_id_is_refused() {
        let mut b = key().encode(&handle());
        b[7] = 4;
        assert_eq!(key().decode(&b), Err(FhError::BadMac));
    }

    #[test]
    fn handle_from_another_cluster_is_refused() {
        let b = key().encode(&handle());
        assert_eq!(FhKey::from_bytes([8; 16]).decode(&b), Err(FhError::BadMac));
    }

    #[test]
    fn short_or_unknown_version_handles_are_malformed() {
        let b = key().encode(&handle());
        assert_eq!(key().decode(&b[..39]), Err(FhError::Malformed));
        let mut v = b;
        v[0] = 2;
        assert_eq!(key().decode(&v), Err(FhError::Malformed));
    }

    #[test]
    fn key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cluster.key");
        let a = FhKey::load_or_create(&p).unwrap().encode(&handle());
        let b = FhKey::load_or_create(&p).unwrap().encode(&handle());
        assert_eq!(a, b);
    }
}
