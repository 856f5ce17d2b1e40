//! The `MetaStore` suite (`backend::testing`) against the in-memory and redb stores, one test
//! per rule so a failure names it.

use backend::local::LocalMeta;
use backend::mem::MemMeta;
use backend::testing::*;
use backend::Error;

trait Fresh: Subject {
    fn fresh(dir: &std::path::Path) -> Self;
}

impl Fresh for MemMeta {
    fn fresh(_: &std::path::Path) -> Self {
        MemMeta::default()
    }
}

impl Fresh for LocalMeta {
    fn fresh(dir: &std::path::Path) -> Self {
        LocalMeta::open(&dir.join("meta.redb")).unwrap()
    }
}

macro_rules! suite {
    ($module:ident, $store:ty) => {
        mod $module {
            use super::*;

            fn fresh() -> (tempfile::TempDir, $store) {
                let dir = tempfile::tempdir().unwrap();
                let s = <$store as Fresh>::fresh(dir.path());
                (dir, s)
            }

            #[test]
            fn a_batch_applies_all_its_ops_and_lists_entries_in_sequence_order() {
                let (_d, s) = fresh();
                super::a_batch_applies_all_its_ops_and_lists_entries_in_sequence_order(s);
            }

            #[test]
            fn a_failed_precondition_applies_nothing() {
                let (_d, s) = fresh();
                super::a_failed_precondition_applies_nothing(s);
            }

            #[test]
            fn an_older_writer_is_fenced_once_a_newer_one_has_written() {
                let (_d, s) = fresh();
                super::an_older_writer_is_fenced_once_a_newer_one_has_written(s);
            }

            #[test]
            fn the_fencing_epoch_and_synced_batches_survive_a_reopen() {
                let (d, s) = fresh();
                super::the_fencing_epoch_and_synced_batches_survive_a_reopen(s, d.path());
            }

            #[test]
            fn deletes_remove_inodes_and_entries() {
                let (_d, s) = fresh();
                super::deletes_remove_inodes_and_entries(s);
            }

            #[test]
            fn a_page_of_entries_sees_committed_and_uncommitted_changes_alike() {
                let (_d, s) = fresh();
                super::a_page_of_entries_sees_committed_and_uncommitted_changes_alike(s);
            }
        }
    };
}

suite!(mem, MemMeta);
suite!(redb, LocalMeta);

#[tokio::test]
async fn an_engine_whose_store_saw_a_newer_writer_stops_and_serves_nothing_from_its_caches() {
    use backend::{CreateMode, Cred, NodeKind, SetAttr, Store};
    let s = backend::mem::MemStore::new();
    let root = Cred::root();
    let create = |name: &'static str| {
        s.create(
            &root,
            s.root(),
            name.as_bytes(),
            NodeKind::Regular,
            SetAttr::default(),
            CreateMode::Guarded,
        )
    };
    let (f, _) = create("f").await.unwrap();
    assert_eq!(
        s.lookup(&Cred::root(), s.root(), b"f").await.unwrap().id,
        f.id
    );
    // This engine's epoch is now below the one the store has accepted: a newer owner wrote.
    s.set_writer_epoch(0);
    assert_eq!(create("g").await.map(|_| ()), Err(Error::Fenced));
    assert!(s.is_fenced());
    assert_eq!(
        s.lookup(&Cred::root(), s.root(), b"f").await.map(|_| ()),
        Err(Error::Fenced),
        "no cached answer once fenced"
    );
    assert_eq!(s.getattr(f.id).await.map(|_| ()), Err(Error::Fenced));
}
