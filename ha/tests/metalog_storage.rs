//! The metadata log's storage (the redb log and the redb state machine) against openraft's own
//! storage test suite: every rule openraft relies on (vote, append, truncate, purge, applied
//! state, membership, snapshots) checked on our implementation.

use std::sync::Arc;

use backend::local::LocalMeta;
use ha::metalog::log::LogStore;
use ha::metalog::sm::StateMachine;
use ha::metalog::TypeConfig;
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::open(&dir.path().join("raft-log.redb")).unwrap();
        let meta = Arc::new(LocalMeta::open(&dir.path().join("meta.redb")).unwrap());
        let sm = StateMachine::open(meta, &dir.path().join("raft-snapshot")).unwrap();
        Ok((dir, log, sm))
    }
}

#[test]
fn the_log_and_state_machine_pass_openraft_s_storage_suite() {
    Suite::test_all(Builder).unwrap();
}
