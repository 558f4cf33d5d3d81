//! The Raft state machine: the [`ClusterState`] in memory, persisted to redb after every batch.
//!
//! `apply` runs each committed entry through `ClusterState::apply`, then writes the whole state,
//! the last applied log id and the last membership in one redb transaction, so they can never
//! disagree on disk. The latest snapshot (meta and bytes) is kept in the same table so
//! `get_current_snapshot` survives a restart. Clones share everything: openraft uses one as the
//! snapshot builder while the original keeps applying.

use std::io::Cursor;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError, StoredMembership,
};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{any, blocking, BoxError, Entry, LogId, NodeId, StorageError, TypeConfig, STATE_MACHINE};
use crate::state::{ClusterState, CommandResponse};

/// The applied cluster state, readable without going through Raft.
pub type SharedState = Arc<RwLock<ClusterState>>;

type Membership = StoredMembership<NodeId, BasicNode>;
type Meta = SnapshotMeta<NodeId, BasicNode>;

const KEY_STATE: &str = "state";
const KEY_LAST_APPLIED: &str = "last_applied";
const KEY_LAST_MEMBERSHIP: &str = "last_membership";
const KEY_SNAPSHOT_META: &str = "snapshot_meta";
const KEY_SNAPSHOT_DATA: &str = "snapshot_data";

/// Where the applied log ends. Changed only while the state's write lock is held, so a reader
/// holding the state's read lock sees the two agree.
#[derive(Clone, Debug, Default)]
struct Applied {
    last_applied: Option<LogId>,
    last_membership: Membership,
}

/// What the state machine persists, and the layout of a snapshot's bytes (`S` is borrowed when
/// writing, owned when reading).
#[derive(Serialize, Deserialize)]
pub(super) struct Persisted<S = ClusterState> {
    pub(super) state: S,
    last_applied: Option<LogId>,
    last_membership: Membership,
}

/// The Raft state machine over [`ClusterState`].
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<Database>,
    state: SharedState,
    applied: Arc<Mutex<Applied>>,
    applied_index: Arc<watch::Sender<u64>>,
}

impl StateMachineStore {
    /// Loads the persisted state from `db`, or starts empty.
    pub(super) fn load(db: Arc<Database>) -> Result<Self, BoxError> {
        let persisted = read_persisted(&db)?;
        let (state, applied) = match persisted {
            Some(p) => (p.state, Applied { last_applied: p.last_applied, last_membership: p.last_membership }),
            None => (ClusterState::default(), Applied::default()),
        };
        let (applied_index, _) = watch::channel(index_of(applied.last_applied));
        Ok(StateMachineStore {
            db,
            state: Arc::new(RwLock::new(state)),
            applied: Arc::new(Mutex::new(applied)),
            applied_index: Arc::new(applied_index),
        })
    }

    /// The applied state, shared: hold its read lock briefly and never across an `.await`.
    pub fn shared_state(&self) -> SharedState {
        self.state.clone()
    }

    /// The index of the last applied entry (0 before any), updated after each applied batch is
    /// persisted: a writer waits here until its entry's index is reached.
    pub fn applied_index(&self) -> watch::Receiver<u64> {
        self.applied_index.subscribe()
    }

    /// The state and where it ends, read together under the state's lock.
    fn read_consistent<T>(&self, f: impl FnOnce(&ClusterState, &Applied) -> T) -> T {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        f(&state, &applied)
    }
}

fn index_of(log_id: Option<LogId>) -> u64 {
    log_id.map_or(0, |id| id.index)
}

/// The rows that persist `state` and `applied`, written together in one transaction.
fn state_rows(state: &ClusterState, applied: &Applied) -> Result<Vec<(&'static str, Vec<u8>)>, BoxError> {
    Ok(vec![
        (KEY_STATE, serde_json::to_vec(state)?),
        (KEY_LAST_APPLIED, serde_json::to_vec(&applied.last_applied)?),
        (KEY_LAST_MEMBERSHIP, serde_json::to_vec(&applied.last_membership)?),
    ])
}

fn write_rows(db: &Database, rows: &[(&'static str, Vec<u8>)]) -> Result<(), BoxError> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(STATE_MACHINE)?;
        for (key, value) in rows {
            table.insert(*key, value.as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Reads what `apply` persisted; `None` if nothing was ever applied.
pub(super) fn read_persisted(db: &Database) -> Result<Option<Persisted>, BoxError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(STATE_MACHINE)?;
    let Some(state) = table.get(KEY_STATE)? else {
        return Ok(None);
    };
    let last_applied = match table.get(KEY_LAST_APPLIED)? {
        Some(v) => serde_json::from_slice(v.value())?,
        None => None,
    };
    let last_membership = match table.get(KEY_LAST_MEMBERSHIP)? {
        Some(v) => serde_json::from_slice(v.value())?,
        None => Membership::default(),
    };
    Ok(Some(Persisted { state: serde_json::from_slice(state.value())?, last_applied, last_membership }))
}

fn read_snapshot(db: &Database) -> Result<Option<(Meta, Vec<u8>)>, BoxError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(STATE_MACHINE)?;
    let (Some(meta), Some(data)) = (table.get(KEY_SNAPSHOT_META)?, table.get(KEY_SNAPSHOT_DATA)?) else {
        return Ok(None);
    };
    Ok(Some((serde_json::from_slice(meta.value())?, data.value().to_vec())))
}

/// Makes a snapshot built here the current one, unless a newer one was installed from the leader
/// while it was being built.
fn store_built_snapshot(db: &Database, last_log_id: Option<LogId>, meta: &[u8], data: &[u8]) -> Result<(), BoxError> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(STATE_MACHINE)?;
        let stored: Option<Meta> = match table.get(KEY_SNAPSHOT_META)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        };
        if stored.is_none_or(|stored| stored.last_log_id <= last_log_id) {
            table.insert(KEY_SNAPSHOT_META, meta)?;
            table.insert(KEY_SNAPSHOT_DATA, data)?;
        }
    }
    txn.commit()?;
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, applied) = self
            .read_consistent(|state, applied| {
                let persisted = Persisted {
                    state,
                    last_applied: applied.last_applied,
                    last_membership: applied.last_membership.clone(),
                };
                serde_json::to_vec(&persisted).map(|data| (data, applied.clone()))
            })
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let snapshot_id = match applied.last_applied {
            Some(id) => format!("{id}-{nanos}"),
            None => format!("none-{nanos}"),
        };
        let meta = Meta { last_log_id: applied.last_applied, last_membership: applied.last_membership, snapshot_id };
        let meta_bytes = serde_json::to_vec(&meta).map_err(|e| StorageIOError::write_snapshot(None, &e))?;

        let db = self.db.clone();
        let last_log_id = meta.last_log_id;
        let data = blocking(move || {
            store_built_snapshot(&db, last_log_id, &meta_bytes, &data)?;
            Ok(data)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        Ok(self.read_consistent(|_, applied| (applied.last_applied, applied.last_membership.clone())))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut responses = Vec::new();
        let (rows, last_index) = {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
            for entry in entries {
                let result = match entry.payload {
                    EntryPayload::Blank => Ok(()),
                    EntryPayload::Normal(proposal) => state.apply(entry.log_id.index, &proposal),
                    EntryPayload::Membership(membership) => {
                        applied.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                        Ok(())
                    }
                };
                applied.last_applied = Some(entry.log_id);
                responses.push(CommandResponse(result));
            }
            if responses.is_empty() {
                return Ok(responses);
            }
            // Whole state per batch: small, and one commit keeps it in step with last_applied.
            let rows = state_rows(&state, &applied).map_err(|e| StorageIOError::write_state_machine(any(e)))?;
            (rows, index_of(applied.last_applied))
        };
        let db = self.db.clone();
        blocking(move || write_rows(&db, &rows)).await.map_err(StorageIOError::write_state_machine)?;
        self.applied_index.send_replace(last_index);
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let read_error = |e: BoxError| StorageIOError::read_snapshot(Some(meta.signature()), any(e));
        let persisted: Persisted = serde_json::from_slice(&data).map_err(|e| read_error(e.into()))?;
        // The meta is what the leader vouches for; the copy inside the bytes is informational.
        let applied = Applied { last_applied: meta.last_log_id, last_membership: meta.last_membership.clone() };
        let mut rows = state_rows(&persisted.state, &applied).map_err(read_error)?;
        let meta_bytes = serde_json::to_vec(meta).map_err(|e| read_error(e.into()))?;
        rows.extend([(KEY_SNAPSHOT_META, meta_bytes), (KEY_SNAPSHOT_DATA, data)]);

        let db = self.db.clone();
        blocking(move || write_rows(&db, &rows))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        {
            let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
            let mut current = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
            *state = persisted.state;
            *current = applied;
        }
        self.applied_index.send_replace(index_of(meta.last_log_id));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let stored = read_snapshot(&self.db).map_err(|e| StorageIOError::read_snapshot(None, any(e)))?;
        Ok(stored.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::Utc;
    use openraft::testing::{blank_ent, log_id, membership_ent};

    use super::*;
    use crate::objects::{Node, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus, Version};
    use crate::state::{Command, NodeRecord, Proposal};
    use crate::store::open;

    fn add_node(index: u64, id: &str) -> Entry {
        let node = NodeRecord {
            node: Node {
                id: id.into(),
                version: Version::default(),
                created_at: Utc::now(),
                updated_at: Utc::now(),
                spec: NodeSpec { role: NodeRole::Worker, ..Default::default() },
                description: NodeDescription { hostname: format!("host-{id}"), ..Default::default() },
                status: NodeStatus { state: NodeState::Ready, ..Default::default() },
                manager_status: None,
            },
            raft_id: None,
            manager_addr: String::new(),
        };
        normal(index, Command::AddNode { node })
    }

    fn normal(index: u64, command: Command) -> Entry {
        Entry { log_id: log_id(1, 1, index), payload: EntryPayload::Normal(Proposal::now(command)) }
    }

    /// Applies a blank, a membership change, two nodes and a refused removal; returns the state.
    async fn apply_some(sm: &mut StateMachineStore) -> ClusterState {
        let responses = sm
            .apply([
                blank_ent::<TypeConfig>(1, 1, 1),
                membership_ent::<TypeConfig>(1, 1, 2, vec![BTreeSet::from([1, 2])]),
                add_node(3, "n1"),
                add_node(4, "n2"),
                normal(5, Command::RemoveNode { id: "n2".into(), force: false }),
            ])
            .await
            .expect("apply");
        assert_eq!(responses.len(), 5);
        assert!(responses[..4].iter().all(|r| r.0.is_ok()), "{responses:?}");
        let refused = responses[4].0.as_ref().expect_err("n2 is not down");
        assert!(refused.message.contains("is not down and can't be removed"), "{}", refused.message);
        let state = sm.shared_state().read().expect("lock").clone();
        assert_eq!(state.nodes.keys().collect::<Vec<_>>(), vec!["n1", "n2"]);
        state
    }

    #[tokio::test]
    async fn applied_state_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        let expected_state = {
            let (_log, mut sm) = open(&path).expect("open");
            let applied_index = sm.applied_index();
            assert_eq!(*applied_index.borrow(), 0);
            let state = apply_some(&mut sm).await;
            assert_eq!(*applied_index.borrow(), 5, "applied_index follows each batch");
            state
        };

        let (_log, mut sm) = open(&path).expect("reopen");
        assert_eq!(*sm.shared_state().read().expect("lock"), expected_state);
        let (last_applied, membership) = sm.applied_state().await.expect("applied state");
        assert_eq!(last_applied, Some(log_id(1, 1, 5)));
        assert_eq!(membership.log_id(), &Some(log_id(1, 1, 2)));
        assert_eq!(membership.membership().voter_ids().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(*sm.applied_index().borrow(), 5);
    }

    #[tokio::test]
    async fn a_snapshot_installed_into_a_fresh_store_reproduces_the_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut leader) = open(&dir.path().join("leader.redb")).expect("open leader");
        let expected_state = apply_some(&mut leader).await;
        let snapshot = leader.get_snapshot_builder().await.build_snapshot().await.expect("build");
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 5)));

        let follower_path = dir.path().join("follower.redb");
        {
            let (_log, mut follower) = open(&follower_path).expect("open follower");
            let mut received = follower.begin_receiving_snapshot().await.expect("begin");
            *received = *snapshot.snapshot;
            follower.install_snapshot(&snapshot.meta, received).await.expect("install");

            assert_eq!(*follower.shared_state().read().expect("lock"), expected_state);
            assert_eq!(
                follower.applied_state().await.expect("applied"),
                leader.applied_state().await.expect("applied")
            );
            assert_eq!(*follower.applied_index().borrow(), 5);
        }

        // Installed state and snapshot are on disk, not just in memory.
        let (_log, mut follower) = open(&follower_path).expect("reopen follower");
        assert_eq!(*follower.shared_state().read().expect("lock"), expected_state);
        let current = follower.get_current_snapshot().await.expect("read").expect("a snapshot");
        assert_eq!(current.meta, snapshot.meta);
    }

    #[tokio::test]
    async fn an_older_built_snapshot_does_not_replace_an_installed_newer_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_log, mut sm) = open(&dir.path().join("raft.redb")).expect("open");
        let newer = Meta {
            last_log_id: Some(log_id(2, 1, 9)),
            last_membership: Membership::default(),
            snapshot_id: "newer".into(),
        };
        let bytes = serde_json::to_vec(&Persisted {
            state: ClusterState::default(),
            last_applied: newer.last_log_id,
            last_membership: Membership::default(),
        })
        .expect("json");
        sm.install_snapshot(&newer, Box::new(Cursor::new(bytes))).await.expect("install");

        // What a builder that started before the install would store when it finishes.
        let older = Meta { last_log_id: Some(log_id(1, 1, 3)), snapshot_id: "older".into(), ..newer.clone() };
        let older_bytes = serde_json::to_vec(&older).expect("json");
        store_built_snapshot(&sm.db, older.last_log_id, &older_bytes, b"{}").expect("store");

        let current = sm.get_current_snapshot().await.expect("read").expect("a snapshot");
        assert_eq!(current.meta, newer);
    }
}
