//! The Raft log, vote and committed pointer in redb.
//!
//! Entries are rows `index → serde_json(Entry)`; the vote, the committed log id and the last
//! purged log id are rows of a small meta table. Every method that writes returns (or, for
//! `append`, reports through its callback) only after the redb commit, so what openraft believes
//! is on disk is on disk. All state lives in redb, so a clone is a complete log reader.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{any, blocking, BoxError, Entry, LogId, NodeId, StorageError, TypeConfig, LOG, LOG_META};

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

/// The Raft log store. Clones share the database; openraft uses them as log readers.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub(super) fn new(db: Arc<Database>) -> Self {
        LogStore { db }
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, BoxError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG_META)?;
        let value = match table.get(key)? {
            Some(value) => Some(serde_json::from_slice(value.value())?),
            None => None,
        };
        Ok(value)
    }

    async fn write_meta<T: Serialize>(&self, key: &'static str, value: &T) -> Result<(), BoxError> {
        let bytes = serde_json::to_vec(value)?;
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write()?;
            txn.open_table(LOG_META)?.insert(key, bytes.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(Into::into)
    }

    /// Entries with index in `[start, end)`; `end` of `None` means to the last one.
    fn read_entries(&self, start: u64, end: Option<u64>) -> Result<Vec<Entry>, BoxError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG)?;
        let rows = match end {
            Some(end) => table.range(start..end)?,
            None => table.range(start..)?,
        };
        let mut entries = Vec::new();
        for row in rows {
            let (_, value) = row?;
            entries.push(serde_json::from_slice(value.value())?);
        }
        Ok(entries)
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, BoxError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOG)?;
        let last = match table.last()? {
            Some((_, value)) => Some(serde_json::from_slice::<Entry>(value.value())?.log_id),
            None => None,
        };
        Ok(last)
    }
}

/// `[start, end)` of an arbitrary range of log indexes; `None` when the range holds nothing.
fn index_bounds(range: &impl RangeBounds<u64>) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(&i) => i,
        Bound::Excluded(&i) => i.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&i) => i.checked_add(1),
        Bound::Excluded(&i) => Some(i),
        Bound::Unbounded => None,
    };
    match end {
        Some(end) if end <= start => None,
        _ => Some((start, end)),
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let Some((start, end)) = index_bounds(&range) else {
            return Ok(Vec::new());
        };
        Ok(self.read_entries(start, end).map_err(|e| StorageIOError::read_logs(any(e)))?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> =
            self.read_meta(KEY_LAST_PURGED).map_err(|e| StorageIOError::read_logs(any(e)))?;
        let last_entry = self.last_entry_id().map_err(|e| StorageIOError::read_logs(any(e)))?;
        Ok(LogState { last_purged_log_id, last_log_id: last_entry.or(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        Ok(self.write_meta(KEY_VOTE, vote).await.map_err(|e| StorageIOError::write_vote(any(e)))?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.read_meta(KEY_VOTE).map_err(|e| StorageIOError::read_vote(any(e)))?)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        Ok(self.write_meta(KEY_COMMITTED, &committed).await.map_err(|e| StorageIOError::write(any(e)))?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> =
            self.read_meta(KEY_COMMITTED).map_err(|e| StorageIOError::read(any(e)))?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            rows.push((entry.log_id.index, bytes));
        }
        let db = self.db.clone();
        let written = blocking(move || {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(LOG)?;
                for (index, bytes) in &rows {
                    table.insert(index, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write()?;
            txn.open_table(LOG)?.retain_in(log_id.index.., |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(StorageIOError::write_logs)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let purged = serde_json::to_vec(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        let db = self.db.clone();
        // The purge pointer and the deletion commit together, so a crash never leaves a hole.
        blocking(move || {
            let txn = db.begin_write()?;
            txn.open_table(LOG_META)?.insert(KEY_LAST_PURGED, purged.as_slice())?;
            txn.open_table(LOG)?.retain_in(..=log_id.index, |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(StorageIOError::write_logs)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::storage::RaftLogStorageExt;
    use openraft::testing::{blank_ent, log_id};

    use super::*;
    use crate::store::open;

    #[test]
    #[allow(clippy::reversed_empty_ranges, reason = "an inverted range must read as empty")]
    fn index_bounds_cover_every_range_shape() {
        assert_eq!(index_bounds(&(..)), Some((0, None)));
        assert_eq!(index_bounds(&(3..)), Some((3, None)));
        assert_eq!(index_bounds(&(3..5)), Some((3, Some(5))));
        assert_eq!(index_bounds(&(3..=5)), Some((3, Some(6))));
        assert_eq!(index_bounds(&(5..5)), None);
        assert_eq!(index_bounds(&(6..5)), None);
        assert_eq!(index_bounds(&(..=u64::MAX)), Some((0, None)));
    }

    #[tokio::test]
    async fn log_vote_and_committed_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raft.redb");
        {
            let (mut log, _sm) = open(&path).expect("open");
            let entries: Vec<Entry> = (1..=5).map(|i| blank_ent::<TypeConfig>(1, 1, i)).collect();
            log.blocking_append(entries).await.expect("append");
            log.purge(log_id(1, 1, 2)).await.expect("purge");
            log.save_vote(&Vote::new(3, 1)).await.expect("vote");
            log.save_committed(Some(log_id(1, 1, 4))).await.expect("committed");
        }

        let (mut log, _sm) = open(&path).expect("reopen");
        let state = log.get_log_state().await.expect("log state");
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 5)));
        let indexes: Vec<u64> =
            log.try_get_log_entries(..).await.expect("entries").iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, vec![3, 4, 5]);
        assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(3, 1)));
        assert_eq!(log.read_committed().await.expect("committed"), Some(log_id(1, 1, 4)));
    }
}
