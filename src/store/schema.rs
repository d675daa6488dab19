//! Schema of the call-record database and its migrations, versioned by `PRAGMA user_version`.
//!
//! Migrations only ever append: `MIGRATIONS[n]` takes a database from version `n` to `n + 1`,
//! each in its own transaction, so a crash mid-migration leaves the previous version intact.
//! Never edit a shipped migration; add a new one.
use rusqlite::Connection;

/// Migration scripts; index `n` upgrades `user_version` `n` → `n + 1`.
pub const MIGRATIONS: &[&str] = &[
    // v1: the call records, times in ms since the Unix epoch (UTC).
    "CREATE TABLE call_records (
        id               TEXT PRIMARY KEY NOT NULL,
        whatsapp_call_id TEXT,
        pbx_call_id      TEXT,
        wacid            TEXT,
        direction        TEXT NOT NULL,
        business_number  TEXT NOT NULL,
        user             TEXT NOT NULL,
        trunk            TEXT,
        started_at       INTEGER NOT NULL,
        ringing_at       INTEGER,
        answered_at      INTEGER,
        ended_at         INTEGER,
        state            TEXT NOT NULL,
        open             INTEGER NOT NULL DEFAULT 1,
        reason_sip       INTEGER,
        reason_meta      INTEGER,
        reason_text      TEXT
    ) STRICT;
    CREATE INDEX call_records_started ON call_records (started_at);",
    // v2: media counters, and indexes for the API/CLI filters and crash recovery.
    "ALTER TABLE call_records ADD COLUMN wa_to_pbx_packets INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE call_records ADD COLUMN wa_to_pbx_bytes   INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE call_records ADD COLUMN pbx_to_wa_packets INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE call_records ADD COLUMN pbx_to_wa_bytes   INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE call_records ADD COLUMN decrypt_failures  INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX call_records_user ON call_records (user);
    CREATE INDEX call_records_business ON call_records (business_number);
    CREATE INDEX call_records_open ON call_records (open) WHERE open = 1;",
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Applies every migration above the database's version. Returns (from, to).
///
/// A database newer than this build is refused (`Err` from the caller's check), never
/// downgraded.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<(i64, i64)> {
    migrate_to(conn, CURRENT_VERSION)
}

/// Applies migrations up to `target` (tests use this to build old databases).
pub fn migrate_to(conn: &mut Connection, target: i64) -> rusqlite::Result<(i64, i64)> {
    let from = version(conn)?;
    let mut v = from;
    while v < target {
        let Some(sql) = usize::try_from(v).ok().and_then(|i| MIGRATIONS.get(i)) else {
            break;
        };
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", v + 1)?;
        tx.commit()?;
        v += 1;
    }
    Ok((from, v))
}
