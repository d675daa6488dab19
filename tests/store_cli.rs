//! `whatsip cdr` against a temporary database, through the real binary.
use std::process::{Command, Output};
use whatsip::store::{
    CallRecord, CallState, Completion, Direction, MediaCounters, Reason, Store, Timestamp,
};

fn whatsip(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_whatsip"))
        .args(args)
        .output()
        .expect("run whatsip")
}

fn seeded_db(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("cdr.db");
    let mut store = Store::open(&path).unwrap();
    let mut a = CallRecord::new(
        "call-a",
        Direction::UserInitiated,
        "+15550001111",
        "+15551234567",
        Timestamp::from_unix_ms(1_795_300_000_000),
    );
    a.trunk = Some("asterisk".into());
    a.answered_at = Some(Timestamp::from_unix_ms(1_795_300_001_000));
    store.insert(&a).unwrap();
    store
        .complete(
            "call-a",
            &Completion {
                ended_at: Timestamp::from_unix_ms(1_795_300_043_500),
                state: CallState::Completed,
                reason: Some(Reason::text("BYE from user")),
                media: MediaCounters::default(),
            },
        )
        .unwrap();
    let b = CallRecord::new(
        "call-b",
        Direction::BusinessInitiated,
        "+15550001111",
        "US.13491208655302741918",
        Timestamp::from_unix_ms(1_795_300_100_000),
    );
    store.insert(&b).unwrap();
    store
        .complete(
            "call-b",
            &Completion {
                ended_at: Timestamp::from_unix_ms(1_795_300_101_000),
                state: CallState::Rejected,
                reason: Some(Reason {
                    sip_code: Some(403),
                    meta_code: Some(138006),
                    text: Some("no permission".into()),
                }),
                media: MediaCounters::default(),
            },
        )
        .unwrap();
    let c = CallRecord::new(
        "call-c",
        Direction::UserInitiated,
        "+15550001111",
        "+15557654321",
        Timestamp::from_unix_ms(1_795_300_200_000),
    );
    store.insert(&c).unwrap();
    path
}

#[test]
fn prints_an_aligned_table_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = seeded_db(dir.path());
    let out = whatsip(&["cdr", "--db", db.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("STARTED (UTC)"));
    assert!(
        lines[1].contains("call-c") && lines[1].contains("Connecting (open)"),
        "{text}"
    );
    assert!(lines[2].contains("call-b") && lines[2].contains("SIP 403 Meta 138006 no permission"));
    assert!(lines[3].contains("2026-11-21T22:26:40.000Z") && lines[3].contains("42.500s"));
    assert!(
        lines[3].contains("+15551234567"),
        "numbers are the record: shown whole"
    );
    // Columns line up: each header starts where its cells start.
    for h in ["DIRECTION", "USER", "STATE", "DURATION", "ID"] {
        let col = lines[0].find(h).unwrap();
        for l in &lines[1..] {
            let before = &l[..col];
            assert!(before.ends_with("  "), "column {h} misaligned in {l:?}");
            assert_ne!(l.as_bytes()[col], b' ', "column {h} empty in {l:?}");
        }
    }
}

#[test]
fn json_lines_with_filters_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = seeded_db(dir.path());
    let db = db.to_str().unwrap();
    let out = whatsip(&["cdr", "--db", db, "--json", "--number", "15551234567"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let recs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["id"], "call-a");
    assert_eq!(recs[0]["duration_s"], 42.5);
    assert_eq!(recs[0]["trunk"], "asterisk");
    assert_eq!(recs[0]["started_at"], "2026-11-21T22:26:40.000Z");

    let out = whatsip(&["cdr", "--db", db, "--json", "--limit", "2"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let got: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(got, ["call-c", "call-b"]);

    let out = whatsip(&[
        "cdr",
        "--db",
        db,
        "--json",
        "--since",
        "2026-11-21T22:28:00Z",
    ]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
    let out = whatsip(&[
        "cdr",
        "--db",
        db,
        "--json",
        "--state",
        "rejected",
        "--direction",
        "business_initiated",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.contains("\"meta_code\":138006"));
}

#[test]
fn clear_errors_for_a_missing_database_and_bad_filters() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.db");
    let out = whatsip(&["cdr", "--db", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no call-record database at"), "{err}");
    assert!(!missing.exists(), "the CLI must not create a database");

    let db = seeded_db(dir.path());
    for bad in [
        ["--since", "last tuesday"],
        ["--state", "Answered"],
        ["--direction", "up"],
    ] {
        let out = whatsip(&["cdr", "--db", db.to_str().unwrap(), bad[0], bad[1]]);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn reading_does_not_recover_open_records() {
    let dir = tempfile::tempdir().unwrap();
    let db = seeded_db(dir.path());
    let out = whatsip(&[
        "cdr",
        "--db",
        db.to_str().unwrap(),
        "--json",
        "--state",
        "Connecting",
    ]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    let store = Store::open_existing(&db).unwrap();
    assert!(store.get("call-c").unwrap().unwrap().open);
}
