//! Who this server is, from cluster configuration and never from the host: the cluster id
//! (the NFSv4.1 server owner and scope every node shares), this node's id, and the epoch of
//! this run. See `ha/PROTOCOL.md`, "Node identity".
//!
//! * `server_owner.so_major_id` and `server_scope` are `sluice:<cluster id>` on every node, so a
//!   client that follows a mount target to another node sees the same server (RFC 8881
//!   §2.10.4) and its file handles, signed by the shared cluster key, stay valid.
//! * `server_owner.so_minor_id` is the node id: two nodes are one server but not one endpoint
//!   for session trunking.
//! * The epoch tags clientids, sessionids and stateids. It must differ on every start and never
//!   repeat, so it is a counter kept in `<data_dir>/epoch`, advanced and made durable before the
//!   server answers anything. Wall-clock seconds would repeat after a clock step backwards.

use std::path::Path;

/// The longest cluster id.
pub const CLUSTER_ID_LEN_MAX: usize = 64;

/// This server's identity for one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: u64,
    /// This run's epoch: greater than every earlier run's on this data directory.
    pub epoch: u32,
}

impl Identity {
    /// NFSv4.1 `so_major_id` and `server_scope`: the same on every node of the cluster.
    pub fn server_major_id(&self) -> Vec<u8> {
        format!("sluice:{}", self.cluster_id).into_bytes()
    }

    /// Loads the identity for a new run in `data_dir`: the cluster id (`configured`, else the
    /// one generated at the first start), and the next epoch, made durable before returning.
    pub fn start(
        data_dir: &Path,
        configured: Option<&str>,
        node_id: u64,
    ) -> std::io::Result<Identity> {
        let cluster_id = match configured {
            Some(id) => {
                check_cluster_id(id).map_err(std::io::Error::other)?;
                id.to_string()
            }
            None => load_or_create_cluster_id(&data_dir.join("cluster.id"))?,
        };
        bind_node_id(&data_dir.join("node.id"), node_id)?;
        let epoch = advance_epoch(&data_dir.join("epoch"))?;
        Ok(Identity {
            cluster_id,
            node_id,
            epoch,
        })
    }
}

/// Whether `id` can name a cluster: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_cluster_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > CLUSTER_ID_LEN_MAX {
        return Err(format!(
            "{id:?} must be 1 to {CLUSTER_ID_LEN_MAX} characters"
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("{id:?} contains {c:?}; use only A-Z a-z 0-9 . _ -"));
    }
    Ok(())
}

fn load_or_create_cluster_id(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let id = text.trim().to_string();
            check_cluster_id(&id).map_err(|e| {
                std::io::Error::other(format!(
                    "{}: {e}; restore the file (every node of the cluster must share it) or set \
                     [cluster] id",
                    path.display()
                ))
            })?;
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = [0u8; 8];
            getrandom::getrandom(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
            let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
            crate::fsutil::replace_file(path, format!("{id}\n").as_bytes(), None)?;
            tracing::info!(cluster = %id, "new cluster id (kept in {})", path.display());
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

/// Ties a data directory to one node: file layouts in the metadata name the nodes that hold
/// each file's data, so a directory written as node N must keep starting as node N. The first
/// start records the configured id in `path`; a later start with another id is refused.
fn bind_node_id(path: &Path, node_id: u64) -> std::io::Result<()> {
    if node_id == 0 {
        return Err(std::io::Error::other(
            "[cluster] node_id must be 1 or more (0 names no node)",
        ));
    }
    match std::fs::read_to_string(path) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(bound) if bound == node_id => Ok(()),
            Ok(bound) => Err(std::io::Error::other(format!(
                "this data directory holds the data of node {bound} ({}), but [cluster] \
                 node_id is {node_id}: files placed on node {bound} would be unreachable. Set \
                 node_id = {bound}, or start node {node_id} on its own empty data directory",
                path.display()
            ))),
            Err(_) => Err(std::io::Error::other(format!(
                "{}: not a node id ({:?}); write the node id this directory was created with",
                path.display(),
                text.trim()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::fsutil::replace_file(path, format!("{node_id}\n").as_bytes(), None)
        }
        Err(e) => Err(e),
    }
}

/// Reads the last epoch in `path` (0 if none), stores the next one durably and returns it.
fn advance_epoch(path: &Path) -> std::io::Result<u32> {
    let last = match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse::<u32>().map_err(|_| {
            std::io::Error::other(format!(
                "{}: not an epoch number ({:?}); a lost epoch could let a client's old state \
                 be taken for new: restore the file, or write a number above any epoch this \
                 node used",
                path.display(),
                text.trim()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let next = last
        .checked_add(1)
        .filter(|&e| e != u32::MAX)
        .ok_or_else(|| {
            std::io::Error::other(format!("{}: epochs are exhausted", path.display()))
        })?;
    crate::fsutil::replace_file(path, format!("{next}\n").as_bytes(), None)?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_start_gets_a_greater_epoch_and_the_same_generated_cluster_id() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::start(dir.path(), None, 1).unwrap();
        let b = Identity::start(dir.path(), None, 1).unwrap();
        assert_eq!(a.cluster_id, b.cluster_id);
        assert!(b.epoch > a.epoch);
        assert_eq!(a.epoch, 1);
    }

    #[test]
    fn a_data_directory_keeps_the_node_id_it_was_first_started_with() {
        let dir = tempfile::tempdir().unwrap();
        Identity::start(dir.path(), None, 3).unwrap();
        Identity::start(dir.path(), None, 3).unwrap();
        let err = Identity::start(dir.path(), None, 4)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds the data of node 3"), "{err}");
        assert!(err.contains("node_id is 4"), "{err}");
        let zero = Identity::start(tempfile::tempdir().unwrap().path(), None, 0);
        assert!(zero.unwrap_err().to_string().contains("1 or more"));
    }

    #[test]
    fn the_server_owner_comes_from_the_cluster_id_not_the_host() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let a = Identity::start(d1.path(), Some("prod-1"), 1).unwrap();
        let b = Identity::start(d2.path(), Some("prod-1"), 2).unwrap();
        assert_eq!(a.server_major_id(), b"sluice:prod-1");
        assert_eq!(a.server_major_id(), b.server_major_id());
        assert_ne!(a.node_id, b.node_id);
    }

    #[test]
    fn a_damaged_epoch_file_stops_the_start_instead_of_reusing_epochs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("epoch"), "garbage").unwrap();
        let e = Identity::start(dir.path(), None, 1).unwrap_err();
        assert!(e.to_string().contains("not an epoch number"), "{e}");
    }

    #[test]
    fn cluster_ids_are_checked() {
        assert!(check_cluster_id("a.b_c-1").is_ok());
        assert!(check_cluster_id("").is_err());
        assert!(check_cluster_id("has space").is_err());
        assert!(check_cluster_id(&"x".repeat(65)).is_err());
    }
}
