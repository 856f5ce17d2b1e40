//! The engine over a metadata store whose commit resolves later, as a replicated store's does
//! when its log reaches a quorum: a mutation answers only after its commit, no thread waits
//! for it meanwhile, and a failed commit is an error with a new write verifier.

use std::future::Future;
use std::sync::{Arc, Mutex};

use backend::engine::{Batch, Counter, Engine, Inode, MetaStore, StoredEntry};
use backend::mem::{MemData, MemMeta};
use backend::{CreateMode, Cred, Error, NodeKind, Result, SetAttr, Store};
use tokio::sync::oneshot;

/// MemMeta whose commits wait for the test to release them, one by one.
#[derive(Clone, Default)]
struct Quorum {
    meta: Arc<MemMeta>,
    pending: Arc<Mutex<Vec<oneshot::Sender<Result<()>>>>>,
}

impl Quorum {
    fn release(&self, outcome: Result<()>) -> bool {
        let next = self.pending.lock().unwrap().pop();
        next.map(|tx| tx.send(outcome).is_ok()).unwrap_or(false)
    }

    fn waiting(&self) -> usize {
        self.pending.lock().unwrap().len()
    }
}

impl MetaStore for Quorum {
    const BLOCKING: bool = false;
    fn inode(&self, ino: u64) -> Result<Option<Inode>> {
        self.meta.inode(ino)
    }
    fn entry(&self, dir: u64, name: &[u8]) -> Result<Option<(u64, u64)>> {
        self.meta.entry(dir, name)
    }
    fn entries(&self, dir: u64, after_seq: u64, limit: usize) -> Result<Vec<StoredEntry>> {
        self.meta.entries(dir, after_seq, limit)
    }
    fn counter(&self, counter: Counter) -> Result<Option<u64>> {
        self.meta.counter(counter)
    }
    fn inode_count(&self) -> Result<u64> {
        self.meta.inode_count()
    }
    fn apply(&self, batch: &Batch<'_>) -> Result<()> {
        self.meta.apply(batch)
    }
    fn commit(
        &self,
        _announced: bool,
    ) -> impl Future<Output = Result<()>> + Send + 'static + use<> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().push(tx);
        async move { rx.await.unwrap_or(Err(Error::Unavailable)) }
    }
}

fn opened(quorum: &Quorum) -> Engine<Quorum, MemData> {
    // Opening commits the root directory: release that commit from another thread.
    let q = quorum.clone();
    let releaser = std::thread::spawn(move || {
        while !q.release(Ok(())) {
            std::thread::yield_now();
        }
    });
    let store = Engine::with_stores(quorum.clone(), MemData::default()).unwrap();
    releaser.join().unwrap();
    store
}

async fn until_waiting(quorum: &Quorum, n: usize) {
    while quorum.waiting() < n {
        tokio::task::yield_now().await;
    }
}

type Created = backend::Result<(backend::Attr, backend::Wcc)>;

/// Creates `name` in the root on a task of its own, so the test can watch it wait.
fn spawn_create(
    store: &Arc<Engine<Quorum, MemData>>,
    name: &str,
    kind: NodeKind,
) -> tokio::task::JoinHandle<Created> {
    let (s, name) = (Arc::clone(store), name.to_string());
    tokio::spawn(async move {
        let root = s.root();
        let attr = SetAttr::default();
        s.create(
            &Cred::root(),
            root,
            name.as_bytes(),
            kind,
            attr,
            CreateMode::Guarded,
        )
        .await
    })
}

#[tokio::test(flavor = "current_thread")]
async fn a_create_answers_only_after_its_commit_resolves() {
    let quorum = Quorum::default();
    let store = Arc::new(opened(&quorum));
    let root = store.root();
    let create = spawn_create(&store, "f", NodeKind::Regular);
    // On a single-threaded runtime the create can only be parked on its commit, not on a
    // thread: the runtime goes on running other tasks (this one).
    until_waiting(&quorum, 1).await;
    assert!(!create.is_finished());
    // The applied batch is already visible to this node's reads, as the contract says.
    assert!(store.lookup(&Cred::root(), root, b"f").await.is_ok());
    assert!(quorum.release(Ok(())));
    let (attr, _) = create.await.unwrap().unwrap();
    assert_eq!(attr.size, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_commit_fails_the_call_and_changes_the_write_verifier() {
    let quorum = Quorum::default();
    let store = Arc::new(opened(&quorum));
    let before = store.write_verifier();
    let create = spawn_create(&store, "g", NodeKind::Directory);
    until_waiting(&quorum, 1).await;
    assert!(quorum.release(Err(Error::Unavailable)));
    assert_eq!(create.await.unwrap().err(), Some(Error::Unavailable));
    assert_ne!(store.write_verifier(), before);
}

#[tokio::test(flavor = "current_thread")]
async fn many_mutations_wait_for_their_commits_at_once() {
    let quorum = Quorum::default();
    let store = Arc::new(opened(&quorum));
    let calls: Vec<_> = (0..16)
        .map(|i| spawn_create(&store, &format!("f{i}"), NodeKind::Regular))
        .collect();
    // All sixteen are in flight together, none holding a thread or the engine's lock.
    until_waiting(&quorum, 16).await;
    while quorum.release(Ok(())) {}
    for call in calls {
        call.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_commit_refused_as_fenced_stops_the_engine() {
    let quorum = Quorum::default();
    let store = Arc::new(opened(&quorum));
    let create = spawn_create(&store, "h", NodeKind::Regular);
    until_waiting(&quorum, 1).await;
    // The log's new leader belongs to a newer owner: this writer's batch was never committed.
    assert!(quorum.release(Err(Error::Fenced)));
    assert_eq!(create.await.unwrap().err(), Some(Error::Fenced));
    assert!(store.is_fenced());
    let again = spawn_create(&store, "i", NodeKind::Regular).await.unwrap();
    assert_eq!(again.err(), Some(Error::Fenced));
}
