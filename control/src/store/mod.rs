//! Raft storage for the control plane: openraft's log store and state machine, both in one redb
//! file under the data root.
//!
//! The two halves share one `redb::Database` (through an `Arc`) but use separate tables, so a
//! log append and a state-machine write never touch the same rows. Every write commits with
//! redb's default `Durability::Immediate` (an fsync) before openraft is told it happened; commits
//! run on tokio's blocking pool so a slow disk stalls one I/O, not the Raft runtime. The applied
//! [`ClusterState`] lives in memory behind [`SharedState`] so API reads never go through Raft.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use openraft::AnyError;
use redb::{Database, TableDefinition};

use crate::state::{ClusterState, CommandResponse, Proposal};

mod log_store;
mod state_machine;

pub use log_store::LogStore;
pub use state_machine::{SharedState, StateMachineStore};

openraft::declare_raft_types!(
    /// Shoal's Raft types: entries carry a [`Proposal`], applying one yields a [`CommandResponse`].
    pub TypeConfig:
        D = Proposal,
        R = CommandResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;

/// Raft log entries by index, each as serde_json.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// The log store's small records (vote, committed, last purged log id), each as serde_json.
const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_log_meta");
/// The applied state, where it ends, and the latest snapshot.
const STATE_MACHINE: TableDefinition<&str, &[u8]> = TableDefinition::new("state_machine");

/// The error type of the closures that do redb and serde_json work: both convert into it with `?`.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens (or creates) the Raft store at `path` and loads the applied state from it.
pub fn open(path: &Path) -> anyhow::Result<(LogStore, StateMachineStore)> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let db = Database::create(path).with_context(|| format!("cannot open the Raft store {}", path.display()))?;
    create_tables(&db)
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("cannot initialize the Raft store {}", path.display()))?;
    let db = Arc::new(db);
    let state_machine = StateMachineStore::load(db.clone())
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("cannot load the applied state from {}", path.display()))?;
    Ok((LogStore::new(db), state_machine))
}

/// Reads the applied cluster state from the Raft store at `path` without starting Raft.
///
/// Returns `None` when there is no store or nothing was ever applied. The store must not be open
/// in this process (redb refuses a second open of the same file).
pub fn load_state(path: &Path) -> anyhow::Result<Option<ClusterState>> {
    if !path.exists() {
        return Ok(None);
    }
    // `open`, not a read-only open: a store left by a crashed daemon needs redb's repair first.
    let db = Database::open(path).with_context(|| format!("cannot open the Raft store {}", path.display()))?;
    let persisted = state_machine::read_persisted(&db)
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("cannot read the applied state from {}", path.display()))?;
    Ok(persisted.map(|p| p.state))
}

/// Creates every table up front, so readers can treat a missing table as corruption.
fn create_tables(db: &Database) -> Result<(), BoxError> {
    let txn = db.begin_write()?;
    txn.open_table(LOG)?;
    txn.open_table(LOG_META)?;
    txn.open_table(STATE_MACHINE)?;
    txn.commit()?;
    Ok(())
}

/// Runs `f` on tokio's blocking pool: redb commits fsync, which must not stall the Raft runtime.
async fn blocking<T, F>(f: F) -> Result<T, AnyError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, BoxError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(any),
        Err(join) => Err(AnyError::new(&join)),
    }
}

/// Converts a boxed error into openraft's serializable error, keeping its source chain.
fn any(e: BoxError) -> AnyError {
    AnyError::from_dyn(e.as_ref(), None)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::storage::RaftStateMachine;
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::StorageIOError;
    use tempfile::TempDir;

    use super::*;
    use crate::state::Command;

    /// Builds each store of openraft's conformance suite in a directory of its own.
    struct TempStoreBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStoreBuilder {
        async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
            let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(&e))?;
            let (log, sm) = open(&dir.path().join("raft.redb"))
                .map_err(|e| StorageIOError::write(AnyError::from_dyn(e.as_ref(), None)))?;
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_storage_conformance_suite() {
        // The suite makes its own tokio runtime per case, so this is a plain #[test].
        Suite::test_all(TempStoreBuilder).expect("openraft storage suite");
    }

    #[tokio::test]
    async fn load_state_returns_the_applied_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        assert_eq!(load_state(&path).expect("no file"), None);

        let expected = ClusterState { removed_nodes: BTreeSet::from(["gone".to_string()]), ..Default::default() };
        {
            let (_log, mut sm) = open(&path).expect("open");
            let restore = Proposal::now(Command::Restore { state: Box::new(expected.clone()) });
            let entry =
                Entry { log_id: openraft::testing::log_id(1, 1, 1), payload: openraft::EntryPayload::Normal(restore) };
            let responses = sm.apply([entry]).await.expect("apply");
            assert_eq!(responses, vec![CommandResponse(Ok(()))]);
        }

        assert_eq!(load_state(&path).expect("load"), Some(expected));
    }

    #[test]
    fn load_state_of_a_store_that_applied_nothing_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        drop(open(&path).expect("open"));
        assert_eq!(load_state(&path).expect("load"), None);
    }
}
