//! The records of calls that ran (`MetaOp::NoteRequest`) in the redb store a metadata log
//! applies to: found while fresh, forgotten once a record `REQUEST_KEEP_SECS` newer is applied,
//! carried by a snapshot (export, import), and kept only if the batch that carries them is.

use backend::engine::{Batch, MetaOp, Precondition, RequestId, REQUEST_KEEP_SECS};
use backend::local::LocalMeta;
use backend::Error;

fn note(store: &LocalMeta, id: RequestId) {
    store
        .apply_logged(
            Some(&Batch {
                epoch: 0,
                preconditions: &[],
                ops: &[MetaOp::NoteRequest(id)],
            }),
            "state",
            b"",
        )
        .unwrap()
        .unwrap();
}

fn id(secs: u64, seq: u64) -> RequestId {
    RequestId { secs, node: 2, seq }
}

#[test]
fn a_call_is_found_until_a_record_a_minute_newer_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalMeta::open(&dir.path().join("meta.redb")).unwrap();
    let start = 1_800_000_000;
    note(&store, id(start, 1));
    assert!(store.request_ran(id(start, 1)).unwrap());
    assert!(!store.request_ran(id(start, 2)).unwrap());
    assert!(!store
        .request_ran(RequestId {
            node: 3,
            ..id(start, 1)
        })
        .unwrap());
    note(&store, id(start + REQUEST_KEEP_SECS, 2));
    assert!(
        store.request_ran(id(start, 1)).unwrap(),
        "exactly the window: kept"
    );
    note(&store, id(start + REQUEST_KEEP_SECS + 1, 3));
    assert!(
        !store.request_ran(id(start, 1)).unwrap(),
        "older than the window: forgotten"
    );
    assert!(store.request_ran(id(start + REQUEST_KEEP_SECS, 2)).unwrap());
}

#[test]
fn a_snapshot_carries_the_records_to_the_node_that_installs_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalMeta::open(&dir.path().join("a.redb")).unwrap();
    note(&store, id(1_800_000_000, 7));
    let (all, _) = store.export("state").unwrap();
    let other = LocalMeta::open(&dir.path().join("b.redb")).unwrap();
    note(&other, id(1_800_000_000, 8));
    other.import(&all, "state", b"").unwrap();
    assert!(other.request_ran(id(1_800_000_000, 7)).unwrap());
    assert!(
        !other.request_ran(id(1_800_000_000, 8)).unwrap(),
        "replaced by the snapshot"
    );
}

#[test]
fn a_refused_batch_records_no_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalMeta::open(&dir.path().join("meta.redb")).unwrap();
    let refused = store
        .apply_logged(
            Some(&Batch {
                epoch: 0,
                preconditions: &[Precondition::InodeExists(42, true)],
                ops: &[MetaOp::NoteRequest(id(1_800_000_000, 1))],
            }),
            "state",
            b"",
        )
        .unwrap();
    assert_eq!(refused, Err(Error::GuardMismatch));
    assert!(!store.request_ran(id(1_800_000_000, 1)).unwrap());
}

#[test]
fn a_snapshot_without_records_leaves_a_store_that_still_answers_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let empty = LocalMeta::open(&dir.path().join("a.redb")).unwrap();
    let (all, _) = empty.export("state").unwrap();
    let other = LocalMeta::open(&dir.path().join("b.redb")).unwrap();
    note(&other, id(1_800_000_000, 8));
    other.import(&all, "state", b"").unwrap();
    assert!(!other.request_ran(id(1_800_000_000, 8)).unwrap());
    other.export("state").unwrap();
}

#[test]
fn a_snapshot_carries_every_record_the_exporter_holds_whatever_their_times() {
    // Records applied out of time order (a node whose clock was behind): the exporter keeps
    // both, and so must the importer.
    let dir = tempfile::tempdir().unwrap();
    let store = LocalMeta::open(&dir.path().join("a.redb")).unwrap();
    let late = id(1_800_000_000 + 2 * REQUEST_KEEP_SECS, 1);
    let early = id(1_800_000_000, 2);
    note(&store, late);
    note(&store, early);
    assert!(store.request_ran(early).unwrap());
    let (all, _) = store.export("state").unwrap();
    let other = LocalMeta::open(&dir.path().join("b.redb")).unwrap();
    other.import(&all, "state", b"").unwrap();
    assert!(other.request_ran(late).unwrap());
    assert!(other.request_ran(early).unwrap());
    assert_eq!(other.export("state").unwrap().0, all);
}

#[test]
fn a_call_named_by_its_client_is_found_whatever_clock_stamped_the_try_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalMeta::open(&dir.path().join("meta.redb")).unwrap();
    let start = 1_800_000_000;
    let client = |secs, seq| RequestId {
        secs,
        node: RequestId::FROM_CLIENT | 0x1234,
        seq,
    };
    note(&store, client(start, 1));
    // A retransmission reaching another node is stamped with that node's clock.
    assert!(store.request_ran(client(start + 5, 1)).unwrap());
    assert!(store.request_ran(client(start - 5, 1)).unwrap());
    assert!(!store.request_ran(client(start, 2)).unwrap());
    // A node's own id with the same numbers is another call.
    assert!(!store
        .request_ran(RequestId {
            secs: start + 5,
            node: 0x1234,
            seq: 1
        })
        .unwrap());
    // Carried by a snapshot.
    let (all, _) = store.export("state").unwrap();
    let other = LocalMeta::open(&dir.path().join("b.redb")).unwrap();
    other.import(&all, "state", b"").unwrap();
    assert!(other.request_ran(client(start + 1, 1)).unwrap());
    // Forgotten with its record.
    note(&store, client(start + REQUEST_KEEP_SECS + 1, 3));
    assert!(!store.request_ran(client(start, 1)).unwrap());
    assert!(store.request_ran(client(start, 3)).unwrap());
}
