//! `whatsip cdr`: prints call records from the database as an aligned table or JSON lines.
//! Reads only: never creates the database and never runs crash recovery (the gateway may be
//! running and own the open records).
use super::{CallRecord, RecordFilter, Store, Timestamp};
use crate::api::RecordQuery;
use crate::cli::CdrArgs;
use std::io::Write;
use std::process::ExitCode;

/// Runs the subcommand, printing to stdout; errors go to stderr with exit status 1.
pub fn main(args: &CdrArgs) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run(args, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("whatsip cdr: {e}");
            ExitCode::from(1)
        }
    }
}

/// The filter `args` asks for.
pub fn filter(args: &CdrArgs, now: Timestamp) -> Result<RecordFilter, String> {
    RecordQuery {
        since: args.since.clone(),
        number: args.number.clone(),
        direction: args.direction.clone(),
        state: args.state.clone(),
        limit: Some(args.limit),
    }
    .to_filter(now)
}

pub fn run(args: &CdrArgs, out: &mut impl Write) -> Result<(), String> {
    let filter = filter(args, Timestamp::now())?;
    let store = Store::open_existing(&args.db).map_err(|e| e.to_string())?;
    let records = store.list(&filter).map_err(|e| e.to_string())?;
    let res = if args.json {
        records.iter().try_for_each(|r| {
            let line = serde_json::to_string(&r.view()).map_err(std::io::Error::other)?;
            writeln!(out, "{line}")
        })
    } else {
        write_table(&records, out)
    };
    res.map_err(|e| format!("writing output: {e}"))
}

const HEADERS: [&str; 9] = [
    "STARTED (UTC)",
    "DIRECTION",
    "USER",
    "BUSINESS",
    "TRUNK",
    "STATE",
    "DURATION",
    "REASON",
    "ID",
];

fn row(r: &CallRecord) -> [String; 9] {
    let state = if r.open {
        format!("{} (open)", r.state)
    } else {
        r.state.to_string()
    };
    [
        r.started_at.to_string(),
        match r.direction {
            super::Direction::UserInitiated => "user".into(),
            super::Direction::BusinessInitiated => "business".into(),
        },
        r.user.clone(),
        r.business_number.clone(),
        r.trunk.clone().unwrap_or_else(|| "-".into()),
        state,
        r.duration_s()
            .map(|d| format!("{d:.3}s"))
            .unwrap_or_else(|| "-".into()),
        r.reason
            .as_ref()
            .map(|x| x.to_string())
            .unwrap_or_else(|| "-".into()),
        r.id.clone(),
    ]
}

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
pub fn write_table(records: &[CallRecord], out: &mut impl Write) -> std::io::Result<()> {
    let rows: Vec<[String; 9]> = records.iter().map(row).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header = HEADERS.map(String::from);
    for r in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, (cell, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
