//! Call records in an embedded SQLite database (WAL mode, schema versioned by
//! `PRAGMA user_version`).
//!
//! Guarantees:
//! - A record is written when a call starts (`open = 1`) and completed when it ends, so a crash
//!   leaves an open record; the next gateway process marks such records `Failed` with reason
//!   "gateway restarted" ([`Store::recover_interrupted`], run by [`Recorder::spawn`]).
//! - The call and packet paths never wait on the disk: they hold a [`Recorder`], which hands
//!   events to one writer thread through a bounded channel and counts (and logs) what it had to
//!   drop when the channel is full.
//! - The API and CLI read with the synchronous [`Store::list`] / [`Store::get`].
//! - Phone numbers are stored whole; log lines show them only through `crate::redact::phone`.
pub mod cdr;
mod record;
mod recorder;
pub mod schema;
mod timestamp;

pub use record::{
    CallRecord, CallState, Completion, Direction, Flow, MediaCounters, Reason, RecordFilter,
    RecordUpdate, RecordView, UnknownWord,
};
pub use recorder::{Recorder, RecorderMonitor, RecorderStats, WriterHandle};
pub use timestamp::Timestamp;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where call records live unless the profile says otherwise.
pub const DEFAULT_PATH: &str = "var/whatsip.db";

/// The `[store]` section of the gateway config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite file; parent folders are created.
    pub path: PathBuf,
    /// Capacity of the recorder's channel (events queued for the writer thread).
    pub queue: usize,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            path: PathBuf::from(DEFAULT_PATH),
            queue: Recorder::DEFAULT_CAPACITY,
        }
    }
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot create folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no call-record database at {0}")]
    Missing(PathBuf),
    #[error(
        "call-record database {path} has schema version {found}, newer than this build ({supported}); upgrade whatsip"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("call-record database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("call-record database holds an invalid {column}: {value:?}")]
    Corrupt { column: &'static str, value: String },
    #[error("cannot start the call-record writer thread: {0}")]
    Thread(std::io::Error),
}

/// A connection to the call-record database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const COLUMNS: &str = "id, whatsapp_call_id, pbx_call_id, wacid, direction, business_number, user, \
    trunk, started_at, ringing_at, answered_at, ended_at, state, open, reason_sip, reason_meta, \
    reason_text, wa_to_pbx_packets, wa_to_pbx_bytes, pbx_to_wa_packets, pbx_to_wa_bytes, \
    decrypt_failures";

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn strip_plus(n: &str) -> &str {
    n.trim().trim_start_matches('+')
}

impl Store {
    /// Opens (creating it and its parent folders if needed) and migrates the database.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(&path)?;
        Store::init(conn, path)
    }

    /// Opens an existing database (never creates one); migrates it if it is older.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(StoreError::Missing(path));
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        Store::init(conn, path)
    }

    fn init(mut conn: Connection, path: PathBuf) -> Result<Store, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers (API, CLI) never block the writer, and a crash loses nothing committed.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let found = schema::version(&conn)?;
        if found > schema::CURRENT_VERSION {
            return Err(StoreError::TooNew {
                path,
                found,
                supported: schema::CURRENT_VERSION,
            });
        }
        let (from, to) = schema::migrate(&mut conn)?;
        if from != to {
            tracing::info!(path = %path.display(), from, to, "call-record schema migrated");
        }
        Ok(Store { conn, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(schema::version(&self.conn)?)
    }

    /// Writes a new (open) record. Fails if the id exists.
    pub fn insert(&mut self, r: &CallRecord) -> Result<(), StoreError> {
        insert(&self.conn, r, false)
    }

    /// Writes `r` whole, replacing any record with its id.
    pub fn upsert(&mut self, r: &CallRecord) -> Result<(), StoreError> {
        insert(&self.conn, r, true)
    }

    /// Applies `u` to record `id`. Returns whether the record exists.
    pub fn update(&mut self, id: &str, u: &RecordUpdate) -> Result<bool, StoreError> {
        update(&self.conn, id, u)
    }

    /// Closes record `id`. Returns whether the record exists.
    pub fn complete(&mut self, id: &str, c: &Completion) -> Result<bool, StoreError> {
        complete(&self.conn, id, c)
    }

    /// Marks records left open by a previous process as `Failed`, reason "gateway restarted",
    /// end unknown. Only the process that owns the database (the gateway's writer) may call
    /// this; readers such as `whatsip cdr` must not. Returns how many were closed.
    pub fn recover_interrupted(&mut self) -> Result<usize, StoreError> {
        let n = self.conn.execute(
            "UPDATE call_records SET open = 0, state = 'Failed', reason_sip = NULL, \
             reason_meta = NULL, reason_text = ?1 WHERE open = 1",
            params![Store::RESTART_REASON],
        )?;
        if n > 0 {
            tracing::warn!(
                records = n,
                "call records left open by a previous process marked Failed"
            );
        }
        Ok(n)
    }

    /// Reason text of records closed by [`Store::recover_interrupted`].
    pub const RESTART_REASON: &'static str = "gateway restarted";

    /// One record by gateway call id.
    pub fn get(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM call_records WHERE id = ?1");
        let raw = self
            .conn
            .query_row(&sql, params![id], RawRecord::from_row)
            .optional()?;
        raw.map(RawRecord::into_record).transpose()
    }

    /// Records matching `f`, newest first.
    pub fn list(&self, f: &RecordFilter) -> Result<Vec<CallRecord>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM call_records WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(since) = f.since {
            args.push(since.unix_ms().into());
            sql.push_str(&format!(" AND started_at >= ?{}", args.len()));
        }
        if let Some(n) = &f.number {
            args.push(strip_plus(n).to_string().into());
            let i = args.len();
            sql.push_str(&format!(
                " AND (ltrim(user, '+') = ?{i} OR ltrim(business_number, '+') = ?{i})"
            ));
        }
        if let Some(d) = f.direction {
            args.push(d.as_str().to_string().into());
            sql.push_str(&format!(" AND direction = ?{}", args.len()));
        }
        if let Some(s) = f.state {
            args.push(s.as_str().to_string().into());
            sql.push_str(&format!(" AND state = ?{}", args.len()));
        }
        args.push(i64::from(f.effective_limit()).into());
        sql.push_str(&format!(
            " ORDER BY started_at DESC, rowid DESC LIMIT ?{}",
            args.len()
        ));
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(args), RawRecord::from_row)?;
        let mut out = Vec::new();
        for raw in rows {
            out.push(raw?.into_record()?);
        }
        Ok(out)
    }
}

fn insert(conn: &Connection, r: &CallRecord, replace: bool) -> Result<(), StoreError> {
    let reason = r.reason.clone().unwrap_or_default();
    let verb = if replace {
        "INSERT OR REPLACE"
    } else {
        "INSERT"
    };
    conn.execute(
        &format!(
            "{verb} INTO call_records ({COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
              ?19, ?20, ?21, ?22)"
        ),
        params![
            r.id,
            r.whatsapp_call_id,
            r.pbx_call_id,
            r.wacid,
            r.direction.as_str(),
            r.business_number,
            r.user,
            r.trunk,
            r.started_at.unix_ms(),
            r.ringing_at.map(Timestamp::unix_ms),
            r.answered_at.map(Timestamp::unix_ms),
            r.ended_at.map(Timestamp::unix_ms),
            r.state.as_str(),
            r.open,
            reason.sip_code,
            reason.meta_code,
            reason.text,
            to_i64(r.media.whatsapp_to_pbx.packets),
            to_i64(r.media.whatsapp_to_pbx.bytes),
            to_i64(r.media.pbx_to_whatsapp.packets),
            to_i64(r.media.pbx_to_whatsapp.bytes),
            to_i64(r.media.decrypt_failures),
        ],
    )?;
    Ok(())
}

fn update(conn: &Connection, id: &str, u: &RecordUpdate) -> Result<bool, StoreError> {
    let m = u.media.unwrap_or_default();
    let n = conn.execute(
        "UPDATE call_records SET \
           state = coalesce(?2, state), \
           ringing_at = coalesce(?3, ringing_at), \
           answered_at = coalesce(?4, answered_at), \
           whatsapp_call_id = coalesce(?5, whatsapp_call_id), \
           pbx_call_id = coalesce(?6, pbx_call_id), \
           wacid = coalesce(?7, wacid), \
           trunk = coalesce(?8, trunk), \
           wa_to_pbx_packets = CASE WHEN ?9 THEN ?10 ELSE wa_to_pbx_packets END, \
           wa_to_pbx_bytes = CASE WHEN ?9 THEN ?11 ELSE wa_to_pbx_bytes END, \
           pbx_to_wa_packets = CASE WHEN ?9 THEN ?12 ELSE pbx_to_wa_packets END, \
           pbx_to_wa_bytes = CASE WHEN ?9 THEN ?13 ELSE pbx_to_wa_bytes END, \
           decrypt_failures = CASE WHEN ?9 THEN ?14 ELSE decrypt_failures END \
         WHERE id = ?1",
        params![
            id,
            u.state.map(CallState::as_str),
            u.ringing_at.map(Timestamp::unix_ms),
            u.answered_at.map(Timestamp::unix_ms),
            u.whatsapp_call_id,
            u.pbx_call_id,
            u.wacid,
            u.trunk,
            u.media.is_some(),
            to_i64(m.whatsapp_to_pbx.packets),
            to_i64(m.whatsapp_to_pbx.bytes),
            to_i64(m.pbx_to_whatsapp.packets),
            to_i64(m.pbx_to_whatsapp.bytes),
            to_i64(m.decrypt_failures),
        ],
    )?;
    Ok(n > 0)
}

fn complete(conn: &Connection, id: &str, c: &Completion) -> Result<bool, StoreError> {
    let state = if c.state.is_final() {
        c.state
    } else {
        CallState::Failed
    };
    let reason = c.reason.clone().unwrap_or_default();
    let m = &c.media;
    let n = conn.execute(
        "UPDATE call_records SET open = 0, ended_at = ?2, state = ?3, reason_sip = ?4, \
           reason_meta = ?5, reason_text = ?6, wa_to_pbx_packets = ?7, wa_to_pbx_bytes = ?8, \
           pbx_to_wa_packets = ?9, pbx_to_wa_bytes = ?10, decrypt_failures = ?11 \
         WHERE id = ?1",
        params![
            id,
            c.ended_at.unix_ms(),
            state.as_str(),
            reason.sip_code,
            reason.meta_code,
            reason.text,
            to_i64(m.whatsapp_to_pbx.packets),
            to_i64(m.whatsapp_to_pbx.bytes),
            to_i64(m.pbx_to_whatsapp.packets),
            to_i64(m.pbx_to_whatsapp.bytes),
            to_i64(m.decrypt_failures),
        ],
    )?;
    Ok(n > 0)
}

/// A row as stored, before its words are checked.
struct RawRecord {
    id: String,
    whatsapp_call_id: Option<String>,
    pbx_call_id: Option<String>,
    wacid: Option<String>,
    direction: String,
    business_number: String,
    user: String,
    trunk: Option<String>,
    started_at: i64,
    ringing_at: Option<i64>,
    answered_at: Option<i64>,
    ended_at: Option<i64>,
    state: String,
    open: bool,
    reason_sip: Option<i64>,
    reason_meta: Option<i64>,
    reason_text: Option<String>,
    counters: [i64; 5],
}

impl RawRecord {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RawRecord> {
        Ok(RawRecord {
            id: r.get(0)?,
            whatsapp_call_id: r.get(1)?,
            pbx_call_id: r.get(2)?,
            wacid: r.get(3)?,
            direction: r.get(4)?,
            business_number: r.get(5)?,
            user: r.get(6)?,
            trunk: r.get(7)?,
            started_at: r.get(8)?,
            ringing_at: r.get(9)?,
            answered_at: r.get(10)?,
            ended_at: r.get(11)?,
            state: r.get(12)?,
            open: r.get(13)?,
            reason_sip: r.get(14)?,
            reason_meta: r.get(15)?,
            reason_text: r.get(16)?,
            counters: [r.get(17)?, r.get(18)?, r.get(19)?, r.get(20)?, r.get(21)?],
        })
    }

    fn into_record(self) -> Result<CallRecord, StoreError> {
        let direction = self.direction.parse().map_err(|_| StoreError::Corrupt {
            column: "direction",
            value: self.direction.clone(),
        })?;
        let state = self.state.parse().map_err(|_| StoreError::Corrupt {
            column: "state",
            value: self.state.clone(),
        })?;
        let reason = Reason {
            sip_code: self.reason_sip.and_then(|v| u16::try_from(v).ok()),
            meta_code: self.reason_meta.and_then(|v| u32::try_from(v).ok()),
            text: self.reason_text,
        };
        let [a, b, c, d, e] = self.counters;
        Ok(CallRecord {
            id: self.id,
            whatsapp_call_id: self.whatsapp_call_id,
            pbx_call_id: self.pbx_call_id,
            wacid: self.wacid,
            direction,
            business_number: self.business_number,
            user: self.user,
            trunk: self.trunk,
            started_at: Timestamp::from_unix_ms(self.started_at),
            ringing_at: self.ringing_at.map(Timestamp::from_unix_ms),
            answered_at: self.answered_at.map(Timestamp::from_unix_ms),
            ended_at: self.ended_at.map(Timestamp::from_unix_ms),
            state,
            open: self.open,
            reason: (!reason.is_empty()).then_some(reason),
            media: MediaCounters {
                whatsapp_to_pbx: Flow {
                    packets: to_u64(a),
                    bytes: to_u64(b),
                },
                pbx_to_whatsapp: Flow {
                    packets: to_u64(c),
                    bytes: to_u64(d),
                },
                decrypt_failures: to_u64(e),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_toml() {
        let d = StoreConfig::default();
        assert_eq!(d.path, PathBuf::from("var/whatsip.db"));
        assert_eq!(d.queue, Recorder::DEFAULT_CAPACITY);
        let c: StoreConfig = toml::from_str("path = \"/srv/cdr.db\"").unwrap();
        assert_eq!(c.path, PathBuf::from("/srv/cdr.db"));
        assert_eq!(c.queue, Recorder::DEFAULT_CAPACITY);
        assert!(toml::from_str::<StoreConfig>("pth = \"x\"").is_err());
    }

    #[test]
    fn recorder_open_creates_parent_folders_from_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig {
            path: dir.path().join("a/b/whatsip.db"),
            queue: 4,
        };
        let (rec, writer) = Recorder::open(&cfg).unwrap();
        assert!(cfg.path.is_file());
        drop(rec);
        writer
            .join_timeout(Duration::from_secs(30))
            .expect("writer stops");
    }
}
