//! Where protocol state that must outlive a restart is kept: the NFSv4.1 client records (who
//! may reclaim, RFC 8881 §8.4.2) and the NSM monitor list (whom to notify). One fallible,
//! async trait, so that a replicated implementation (the cluster's metadata log) can back it
//! later without the protocol code changing.
//!
//! In a metadata log (a cluster, or a node with `metadata = "log"`) the documents are log
//! entries ([`LogStateStore`]): every node holds every node's, under keys named by node id,
//! so the node that takes over a dead node's mount targets can read whom that node served.
//!
//! The unit is a whole document per [`StateKey`], written with a version. The state layer
//! builds each document from its tables under their lock and saves it after the lock is
//! dropped; saves of one key may therefore arrive out of order, and the version sorts them
//! out: a document is a snapshot that contains every change of the lower versions, so a save
//! older than one already durable is skipped and reported durable. A failed save is an error
//! to the caller, which must not tell its client that the change is done.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

/// A boxed future of a store call.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = std::io::Result<T>> + Send + 'a>>;

/// The documents of the protocol state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateKey {
    /// Confirmed NFSv4.1 client records.
    Nfs4Clients,
    /// The NSM state number and monitor list.
    Nsm,
}

impl StateKey {
    /// The file that holds the document in a data directory (the names earlier versions used,
    /// so an upgrade keeps its clients' right to reclaim).
    pub fn file_name(self) -> &'static str {
        match self {
            StateKey::Nfs4Clients => "nfs4-clients",
            StateKey::Nsm => "nsm",
        }
    }
}

/// The metadata-log document under which node `node` keeps `key` ([`LogStateStore`]).
pub fn node_doc_key(node: u64, key: StateKey) -> Vec<u8> {
    format!("node/{node}/{}", key.file_name()).into_bytes()
}

pub trait StateStore: Send + Sync + 'static {
    /// The document last saved under `key`, if any.
    fn load(&self, key: StateKey) -> StoreFuture<'_, Option<Vec<u8>>>;
    /// Makes `doc` the document under `key`; durable when the future returns `Ok`. A `version`
    /// not above the last durable one of `key` is skipped: that one already contains it.
    fn save(&self, key: StateKey, version: u64, doc: Vec<u8>) -> StoreFuture<'_, ()>;
}

/// The last durable version per key, held across a write: writes of a key are ordered, and a
/// save that a newer one overtook is skipped (reported durable) instead of written.
#[derive(Default)]
struct Durable(tokio::sync::Mutex<HashMap<StateKey, u64>>);

impl Durable {
    /// Runs `write` unless a version at least `version` of `key` is durable already.
    async fn save(
        &self,
        key: StateKey,
        version: u64,
        write: impl Future<Output = std::io::Result<()>>,
    ) -> std::io::Result<()> {
        let mut durable = self.0.lock().await;
        if durable.get(&key).is_some_and(|&v| v >= version) {
            return Ok(());
        }
        write.await?;
        durable.insert(key, version);
        Ok(())
    }
}

/// Documents in files of a data directory, each replaced atomically and synced.
pub struct FileStateStore {
    dir: PathBuf,
    durable: Durable,
}

impl FileStateStore {
    pub fn new(dir: &std::path::Path) -> FileStateStore {
        FileStateStore {
            dir: dir.to_path_buf(),
            durable: Default::default(),
        }
    }
}

impl StateStore for FileStateStore {
    fn load(&self, key: StateKey) -> StoreFuture<'_, Option<Vec<u8>>> {
        let path = self.dir.join(key.file_name());
        Box::pin(async move {
            match tokio::fs::read(&path).await {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", path.display()),
                )),
            }
        })
    }

    fn save(&self, key: StateKey, version: u64, doc: Vec<u8>) -> StoreFuture<'_, ()> {
        let path = self.dir.join(key.file_name());
        let write = async move {
            let p = path.clone();
            tokio::task::spawn_blocking(move || crate::fsutil::replace_file(&p, &doc, None))
                .await
                .map_err(std::io::Error::other)?
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("saving {}: {e}", path.display()))
                })
        };
        Box::pin(self.durable.save(key, version, write))
    }
}

/// Documents in the metadata store's documents (`backend::Store::put_doc`): in a cluster, log
/// entries every node applies. Each node keeps its own under `node/<id>/<file name>`. A key the
/// log does not hold yet is read from the data directory's file of that name, so a node that
/// moves from files to the log keeps its clients' right to reclaim; its next save puts the
/// document in the log.
pub struct LogStateStore<S> {
    store: S,
    node: u64,
    files: FileStateStore,
    /// One save of a key in the log at a time; saves a newer one overtook are skipped, not
    /// queued as log entries.
    saved: Durable,
}

impl<S: backend::Store> LogStateStore<S> {
    pub fn new(store: S, node: u64, data_dir: &std::path::Path) -> LogStateStore<S> {
        LogStateStore {
            store,
            node,
            files: FileStateStore::new(data_dir),
            saved: Default::default(),
        }
    }

    /// The document key of `key` for this node.
    pub fn doc_key(&self, key: StateKey) -> Vec<u8> {
        node_doc_key(self.node, key)
    }
}

fn log_error(what: &str, e: backend::Error) -> std::io::Error {
    std::io::Error::other(format!("{what} the metadata log: {e}"))
}

impl<S: backend::Store> StateStore for LogStateStore<S> {
    fn load(&self, key: StateKey) -> StoreFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move {
            match self.store.doc(&self.doc_key(key)).await {
                Ok(Some((_, doc))) => Ok(Some(doc)),
                Ok(None) => self.files.load(key).await,
                Err(e) => Err(log_error("reading from", e)),
            }
        })
    }

    fn save(&self, key: StateKey, version: u64, doc: Vec<u8>) -> StoreFuture<'_, ()> {
        let write = async move {
            self.store
                .put_doc(&self.doc_key(key), version, doc)
                .await
                .map_err(|e| log_error("saving to", e))
        };
        Box::pin(self.saved.save(key, version, write))
    }
}

/// Documents in memory, lost at exit (the memory store, tests). It can be told to fail, so
/// tests can show that a failed save reaches the client as an error.
#[derive(Default)]
pub struct MemStateStore {
    docs: std::sync::Mutex<HashMap<StateKey, (u64, Vec<u8>)>>,
    failing: std::sync::atomic::AtomicBool,
}

impl MemStateStore {
    /// From now on every save fails (`true`) or works again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// The document under `key` and its version, as a restarted server would load it.
    pub fn get(&self, key: StateKey) -> Option<(u64, Vec<u8>)> {
        self.docs
            .lock()
            .expect("docs lock poisoned")
            .get(&key)
            .cloned()
    }

    /// Sets the document under `key` at version 0 (tests: the state a previous run left).
    pub fn put(&self, key: StateKey, doc: Vec<u8>) {
        let mut docs = self.docs.lock().expect("docs lock poisoned");
        docs.insert(key, (0, doc));
    }
}

impl StateStore for MemStateStore {
    fn load(&self, key: StateKey) -> StoreFuture<'_, Option<Vec<u8>>> {
        let doc = self.get(key).map(|d| d.1);
        Box::pin(async move { Ok(doc) })
    }

    fn save(&self, key: StateKey, version: u64, doc: Vec<u8>) -> StoreFuture<'_, ()> {
        let res = if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            Err(std::io::Error::other("state store refuses saves (test)"))
        } else {
            let mut docs = self.docs.lock().expect("docs lock poisoned");
            if docs.get(&key).is_none_or(|d| d.0 < version) {
                docs.insert(key, (version, doc));
            }
            Ok(())
        };
        Box::pin(async move { res })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_store_keeps_the_newest_version_whatever_order_saves_arrive_in() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStateStore::new(dir.path());
        assert_eq!(s.load(StateKey::Nsm).await.unwrap(), None);
        s.save(StateKey::Nsm, 2, b"two".to_vec()).await.unwrap();
        s.save(StateKey::Nsm, 1, b"one".to_vec()).await.unwrap();
        assert_eq!(s.load(StateKey::Nsm).await.unwrap().unwrap(), b"two");
        let reopened = FileStateStore::new(dir.path());
        assert_eq!(reopened.load(StateKey::Nsm).await.unwrap().unwrap(), b"two");
        assert!(dir.path().join("nsm").exists());
    }

    #[tokio::test]
    async fn a_log_store_keeps_each_nodes_documents_apart_and_reads_an_older_file_until_it_saves() {
        let dir = tempfile::tempdir().unwrap();
        FileStateStore::new(dir.path())
            .save(StateKey::Nsm, 5, b"from the file".to_vec())
            .await
            .unwrap();
        let store = std::sync::Arc::new(backend::mem::MemStore::new());
        let one = LogStateStore::new(store.clone(), 1, dir.path());
        let two = LogStateStore::new(store.clone(), 2, tempfile::tempdir().unwrap().path());
        assert_eq!(
            one.load(StateKey::Nsm).await.unwrap().unwrap(),
            b"from the file"
        );
        one.save(StateKey::Nsm, 6, b"in the log".to_vec())
            .await
            .unwrap();
        one.save(StateKey::Nsm, 4, b"late".to_vec()).await.unwrap();
        assert_eq!(
            one.load(StateKey::Nsm).await.unwrap().unwrap(),
            b"in the log"
        );
        assert_eq!(two.load(StateKey::Nsm).await.unwrap(), None);
        assert_eq!(
            backend::Store::doc(&store, b"node/1/nsm").await.unwrap(),
            Some((6, b"in the log".to_vec()))
        );
    }

    #[tokio::test]
    async fn a_failing_store_reports_the_failure_and_keeps_the_old_document() {
        let s = MemStateStore::default();
        s.save(StateKey::Nfs4Clients, 1, b"a".to_vec())
            .await
            .unwrap();
        s.set_failing(true);
        assert!(s
            .save(StateKey::Nfs4Clients, 2, b"b".to_vec())
            .await
            .is_err());
        assert_eq!(s.get(StateKey::Nfs4Clients).unwrap().1, b"a");
    }
}
