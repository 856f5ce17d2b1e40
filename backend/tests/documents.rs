//! Documents kept beside the metadata (`Store::put_doc`, `MetaOp::PutDoc`): the newest version
//! wins whatever order saves arrive in, they survive a restart, a snapshot carries them, and
//! keys and bodies are bounded.

use backend::engine::{MetaStore, DOC_KEY_MAX, DOC_LEN_MAX};
use backend::local::{LocalMeta, LocalStore};
use backend::mem::MemStore;
use backend::{Error, Store};

async fn newest_version_wins<S: Store>(store: &S) {
    assert_eq!(store.doc(b"node/1/nsm").await.unwrap(), None);
    store
        .put_doc(b"node/1/nsm", 2, b"two".to_vec())
        .await
        .unwrap();
    store
        .put_doc(b"node/1/nsm", 1, b"one".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store.doc(b"node/1/nsm").await.unwrap(),
        Some((2, b"two".to_vec())),
        "an older save arriving late is skipped"
    );
    store.put_doc(b"node/1/nsm", 3, Vec::new()).await.unwrap();
    assert_eq!(
        store.doc(b"node/1/nsm").await.unwrap(),
        Some((3, Vec::new()))
    );
    assert_eq!(
        store.doc(b"node/2/nsm").await.unwrap(),
        None,
        "keys are apart"
    );
}

#[tokio::test]
async fn the_newest_version_of_a_document_wins_in_the_memory_store() {
    newest_version_wins(&MemStore::new()).await;
}

#[tokio::test]
async fn the_newest_version_of_a_document_wins_and_survives_a_restart_in_the_local_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = LocalStore::open(dir.path()).unwrap();
        newest_version_wins(&store).await;
    }
    let store = LocalStore::open(dir.path()).unwrap();
    assert_eq!(
        store.doc(b"node/1/nsm").await.unwrap(),
        Some((3, Vec::new()))
    );
}

#[tokio::test]
async fn a_key_or_document_beyond_the_bounds_is_invalid() {
    let store = MemStore::new();
    let long = vec![b'k'; DOC_KEY_MAX + 1];
    assert_eq!(
        store.put_doc(&long, 1, Vec::new()).await,
        Err(Error::Invalid)
    );
    assert_eq!(store.put_doc(b"", 1, Vec::new()).await, Err(Error::Invalid));
    let big = vec![0; DOC_LEN_MAX + 1];
    assert_eq!(store.put_doc(b"k", 1, big).await, Err(Error::Invalid));
    store
        .put_doc(&vec![b'k'; DOC_KEY_MAX], 1, vec![0; DOC_LEN_MAX])
        .await
        .unwrap();
}

#[test]
fn a_snapshot_carries_the_documents_and_replaces_the_installers_own() {
    let dir = tempfile::tempdir().unwrap();
    let put = |meta: &LocalMeta, key: &[u8], version: u64, doc: &[u8]| {
        meta.apply_logged(
            Some(&backend::engine::Batch {
                epoch: 0,
                preconditions: &[],
                ops: &[backend::engine::MetaOp::PutDoc {
                    key: key.to_vec(),
                    version,
                    doc: doc.to_vec(),
                }],
            }),
            "state",
            b"",
        )
        .unwrap()
        .unwrap();
    };
    let a = LocalMeta::open(&dir.path().join("a.redb")).unwrap();
    put(&a, b"admin", 4, b"exports");
    let (all, _) = a.export("state").unwrap();
    let b = LocalMeta::open(&dir.path().join("b.redb")).unwrap();
    put(&b, b"stale", 1, b"gone");
    b.import(&all, "state", b"").unwrap();
    assert_eq!(b.doc(b"admin").unwrap(), Some((4, b"exports".to_vec())));
    assert_eq!(b.doc(b"stale").unwrap(), None, "replaced by the snapshot");
}
