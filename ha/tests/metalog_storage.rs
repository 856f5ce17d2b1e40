//! The metadata log's storage (the redb log and the redb state machine) against openraft's own
//! storage test suite: every rule openraft relies on (vote, append, truncate, purge, applied
//! state, membership, snapshots) checked on our implementation.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use backend::local::LocalMeta;
use ha::metalog::log::LogStore;
use ha::metalog::sm::StateMachine;
use ha::metalog::TypeConfig;
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

/// `voters`: what the log store is told the voter count is. With one, appends are made
/// durable inline; with more (or 0, unknown), by the flush thread.
struct Builder {
    voters: u64,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let voters = Arc::new(AtomicU64::new(self.voters));
        let log = LogStore::open(&dir.path().join("raft-log.redb"), voters).unwrap();
        let meta = Arc::new(LocalMeta::open(&dir.path().join("meta.redb")).unwrap());
        let sm = StateMachine::open(meta, &dir.path().join("raft-snapshot")).unwrap();
        Ok((dir, log, sm))
    }
}

#[test]
fn the_log_and_state_machine_pass_openraft_s_storage_suite() {
    Suite::test_all(Builder { voters: 3 }).unwrap();
}

#[test]
fn a_cluster_of_one_s_inline_appends_pass_openraft_s_storage_suite() {
    Suite::test_all(Builder { voters: 1 }).unwrap();
}
