//! A metadata log applies every entry to the redb store without an fsync (the log replays what a
//! crash loses). redb frees the pages a transaction replaced only at a durable commit, so the
//! store commits durably once in a while: its file must not grow with every apply.

use backend::engine::{Batch, Counter, MetaOp};
use backend::local::LocalMeta;

#[test]
fn thousands_of_log_applies_leave_the_store_s_file_small() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let store = LocalMeta::open(&path).unwrap();
    for i in 0..3000u64 {
        let ops = [
            MetaOp::PutEntry {
                dir: 1,
                name: format!("file-{i:06}").into_bytes(),
                child: 1000 + i,
                seq: i + 1,
            },
            MetaOp::SetCounter(Counter::NextIno, 1001 + i),
        ];
        let batch = Batch {
            epoch: 0,
            preconditions: &[],
            ops: &ops,
        };
        let state = format!("applied {i}");
        store
            .apply_logged(Some(&batch), "state", state.as_bytes())
            .unwrap()
            .unwrap();
    }
    let size = std::fs::metadata(&path).unwrap().len();
    // Without durable commits among the applies it grew by tens of KB per apply (over 100 MB
    // here).
    assert!(
        size < 24 << 20,
        "meta.redb is {size} bytes after 3000 applies"
    );
    assert_eq!(store.log_state("state").unwrap().unwrap(), b"applied 2999");
}
