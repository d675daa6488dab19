//! Call records end to end on a real SQLite file: start → update → complete through the
//! Recorder, crash recovery, filters, migrations, and the recorder's never-block guarantee.
use std::time::Duration;
use whatsip::store::{
    CallRecord, CallState, Completion, Direction, Flow, MediaCounters, Reason, RecordFilter,
    RecordUpdate, Recorder, Store, StoreError, Timestamp, schema,
};

const FLUSH: Duration = Duration::from_secs(30);

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(ms)
}

fn media(a: u64, b: u64, c: u64, d: u64, f: u64) -> MediaCounters {
    MediaCounters {
        whatsapp_to_pbx: Flow {
            packets: a,
            bytes: b,
        },
        pbx_to_whatsapp: Flow {
            packets: c,
            bytes: d,
        },
        decrypt_failures: f,
    }
}

#[test]
fn start_update_complete_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    // Parent folders are created.
    let path = dir.path().join("var/nested/whatsip.db");
    let (rec, writer) = Recorder::spawn(Store::open(&path).unwrap(), 64).unwrap();

    let mut start = CallRecord::new(
        "gw-1",
        Direction::UserInitiated,
        "+15550001111",
        "+15551234567",
        ts(1_795_300_000_123),
    );
    start.whatsapp_call_id = Some("abc@wa.meta.vc".into());
    start.wacid = Some("wacid.HBgLMTU1NTEyMzQ1NjcVAgASGCA".into());
    assert!(rec.start(start.clone()));
    assert!(rec.flush(FLUSH));

    // Written at start: an open record exists before the call ends.
    let reader = Store::open_existing(&path).unwrap();
    let open = reader
        .get("gw-1")
        .unwrap()
        .expect("record written at start");
    assert!(open.open);
    assert_eq!(open.state, CallState::Connecting);
    assert_eq!(open.ended_at, None);
    assert_eq!(open.duration_s(), None);
    assert_eq!(open, start);

    assert!(rec.update(
        "gw-1",
        RecordUpdate {
            state: Some(CallState::Ringing),
            ringing_at: Some(ts(1_795_300_000_900)),
            pbx_call_id: Some("pbx-77@127.0.0.1".into()),
            trunk: Some("asterisk".into()),
            ..RecordUpdate::default()
        }
    ));
    assert!(rec.update(
        "gw-1",
        RecordUpdate {
            state: Some(CallState::Accepted),
            answered_at: Some(ts(1_795_300_002_000)),
            ..RecordUpdate::default()
        }
    ));
    assert!(rec.complete(
        "gw-1",
        Completion {
            ended_at: ts(1_795_300_063_456),
            state: CallState::Completed,
            reason: Some(Reason::text("BYE from user")),
            media: media(3072, 528_384, 3070, 528_040, 2),
        }
    ));
    assert!(rec.flush(FLUSH));

    let r = reader.get("gw-1").unwrap().unwrap();
    assert!(!r.open);
    assert_eq!(r.state, CallState::Completed);
    assert_eq!(r.whatsapp_call_id.as_deref(), Some("abc@wa.meta.vc"));
    assert_eq!(r.pbx_call_id.as_deref(), Some("pbx-77@127.0.0.1"));
    assert_eq!(
        r.wacid.as_deref(),
        Some("wacid.HBgLMTU1NTEyMzQ1NjcVAgASGCA")
    );
    assert_eq!(r.trunk.as_deref(), Some("asterisk"));
    assert_eq!(r.business_number, "+15550001111");
    assert_eq!(r.user, "+15551234567");
    assert_eq!(r.started_at, ts(1_795_300_000_123));
    assert_eq!(r.ringing_at, Some(ts(1_795_300_000_900)));
    assert_eq!(r.answered_at, Some(ts(1_795_300_002_000)));
    assert_eq!(r.ended_at, Some(ts(1_795_300_063_456)));
    assert_eq!(r.duration_s(), Some(61.456));
    assert_eq!(r.reason, Some(Reason::text("BYE from user")));
    assert_eq!(r.media, media(3072, 528_384, 3070, 528_040, 2));
    assert_eq!(r.started_at.to_string(), "2026-11-21T22:26:40.123Z");

    let json = serde_json::to_value(r.view()).unwrap();
    assert_eq!(json["duration_s"], 61.456);
    assert_eq!(json["direction"], "user_initiated");
    assert_eq!(json["state"], "Completed");
    assert_eq!(json["media"]["whatsapp_to_pbx"]["bytes"], 528_384);

    // A duplicate start and an update for an unknown call are refused, counted, not fatal.
    assert!(rec.start(start));
    assert!(rec.update("nope", RecordUpdate::default()));
    assert!(rec.flush(FLUSH));
    let st = rec.stats();
    assert_eq!(st.written, 4);
    assert_eq!(st.failed, 2);
    assert_eq!(st.dropped, 0);

    drop(rec);
    writer
        .join_timeout(FLUSH)
        .expect("writer stops after the last Recorder is dropped");
}

#[test]
fn finish_writes_a_whole_record_even_when_its_start_was_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("finish.db");
    let (rec, writer) = Recorder::spawn(Store::open(&path).unwrap(), 16).unwrap();
    let mut r = CallRecord::new(
        "late",
        Direction::UserInitiated,
        "+15550001111",
        "+15551234567",
        ts(1_000),
    );
    r.answered_at = Some(ts(2_000));
    r.ended_at = Some(ts(12_000));
    r.state = CallState::Completed;
    r.open = false;
    r.media = media(1, 2, 3, 4, 0);
    // No start: e.g. it was dropped while the queue was full.
    assert!(rec.finish(r.clone()));
    // And over an existing open record.
    let mut s = CallRecord::new(
        "known",
        Direction::BusinessInitiated,
        "+15550001111",
        "+15557654321",
        ts(5_000),
    );
    assert!(rec.start(s.clone()));
    s.state = CallState::Rejected;
    s.open = false;
    s.ended_at = Some(ts(6_000));
    s.reason = Some(Reason::sip(486, "Busy Here"));
    assert!(rec.finish(s.clone()));
    assert!(rec.flush(FLUSH));
    let reader = Store::open_existing(&path).unwrap();
    assert_eq!(reader.get("late").unwrap().unwrap(), r);
    assert_eq!(
        reader.get("late").unwrap().unwrap().duration_s(),
        Some(10.0)
    );
    assert_eq!(reader.get("known").unwrap().unwrap(), s);
    assert_eq!(rec.stats().failed, 0);
    drop(rec);
    writer
        .join_timeout(FLUSH)
        .expect("writer stops after the last Recorder is dropped");
}

#[test]
fn completion_with_non_final_state_is_recorded_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path().join("x.db")).unwrap();
    let r = CallRecord::new("g", Direction::BusinessInitiated, "+1", "US.1349", ts(0));
    store.insert(&r).unwrap();
    let done = Completion {
        ended_at: ts(5),
        state: CallState::Ringing,
        reason: Some(Reason {
            sip_code: Some(480),
            meta_code: Some(138006),
            text: Some("no permission".into()),
        }),
        media: MediaCounters::default(),
    };
    assert!(store.complete("g", &done).unwrap());
    let got = store.get("g").unwrap().unwrap();
    assert_eq!(got.state, CallState::Failed);
    assert_eq!(got.reason.as_ref().unwrap().meta_code, Some(138006));
    assert_eq!(got.duration_s(), Some(0.0));
    assert!(!store.complete("missing", &done).unwrap());
}

#[test]
fn records_left_open_by_a_crashed_process_are_marked_failed_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("whatsip.db");

    // First gateway process: two calls start, one completes, then the process "dies"
    // (its recorder goes away without completing the second call).
    {
        let (rec, writer) = Recorder::spawn(Store::open(&path).unwrap(), 16).unwrap();
        rec.start(CallRecord::new(
            "done",
            Direction::UserInitiated,
            "+15550001111",
            "+15551234567",
            ts(1_000),
        ));
        rec.start(CallRecord::new(
            "crashed",
            Direction::UserInitiated,
            "+15550001111",
            "+15557654321",
            ts(2_000),
        ));
        rec.update(
            "crashed",
            RecordUpdate {
                state: Some(CallState::Accepted),
                answered_at: Some(ts(2_500)),
                ..RecordUpdate::default()
            },
        );
        rec.complete(
            "done",
            Completion {
                ended_at: ts(9_000),
                state: CallState::Completed,
                reason: None,
                media: MediaCounters::default(),
            },
        );
        assert!(rec.flush(FLUSH));
        drop(rec);
        writer
            .join_timeout(FLUSH)
            .expect("writer stops after the last Recorder is dropped");
    }

    // A reader (the CLI, the API) must not recover: the gateway may still own the record.
    let reader = Store::open_existing(&path).unwrap();
    let before = reader.get("crashed").unwrap().unwrap();
    assert!(before.open);
    assert_eq!(before.state, CallState::Accepted);

    // Second gateway process.
    let (rec, writer) = Recorder::spawn(Store::open(&path).unwrap(), 16).unwrap();
    assert_eq!(rec.stats().recovered, 1);
    let after = reader.get("crashed").unwrap().unwrap();
    assert!(!after.open);
    assert_eq!(after.state, CallState::Failed);
    assert_eq!(after.reason, Some(Reason::text("gateway restarted")));
    assert_eq!(after.ended_at, None);
    assert_eq!(after.answered_at, Some(ts(2_500)));
    // The completed call is untouched.
    let done = reader.get("done").unwrap().unwrap();
    assert_eq!(done.state, CallState::Completed);
    assert_eq!(done.reason, None);
    drop(rec);
    writer
        .join_timeout(FLUSH)
        .expect("writer stops after the last Recorder is dropped");

    // A third start finds nothing left to recover.
    let (rec, writer) = Recorder::spawn(Store::open(&path).unwrap(), 16).unwrap();
    assert_eq!(rec.stats().recovered, 0);
    drop(rec);
    writer
        .join_timeout(FLUSH)
        .expect("writer stops after the last Recorder is dropped");
}

fn seed(store: &mut Store) {
    let rows = [
        (
            "a",
            Direction::UserInitiated,
            "+15551234567",
            1_000,
            CallState::Completed,
        ),
        (
            "b",
            Direction::BusinessInitiated,
            "+15551234567",
            2_000,
            CallState::Rejected,
        ),
        (
            "c",
            Direction::UserInitiated,
            "US.13491208655302741918",
            3_000,
            CallState::Failed,
        ),
        (
            "d",
            Direction::BusinessInitiated,
            "+15557654321",
            4_000,
            CallState::Completed,
        ),
        (
            "e",
            Direction::UserInitiated,
            "+15557654321",
            5_000,
            CallState::Accepted,
        ),
    ];
    for (id, dir, user, t, state) in rows {
        let mut r = CallRecord::new(id, dir, "+15550001111", user, ts(t));
        r.state = state;
        r.open = !state.is_final();
        store.insert(&r).unwrap();
    }
}

fn ids(v: Vec<CallRecord>) -> Vec<String> {
    v.into_iter().map(|r| r.id).collect()
}

#[test]
fn list_filters_and_orders_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path().join("f.db")).unwrap();
    seed(&mut store);
    let all = RecordFilter::default();
    assert_eq!(ids(store.list(&all).unwrap()), ["e", "d", "c", "b", "a"]);
    let f = RecordFilter {
        since: Some(ts(3_000)),
        ..all.clone()
    };
    assert_eq!(ids(store.list(&f).unwrap()), ["e", "d", "c"]);
    // With or without the leading +.
    for n in ["+15551234567", "15551234567"] {
        let f = RecordFilter {
            number: Some(n.into()),
            ..all.clone()
        };
        assert_eq!(ids(store.list(&f).unwrap()), ["b", "a"], "{n}");
    }
    let f = RecordFilter {
        number: Some("US.13491208655302741918".into()),
        ..all.clone()
    };
    assert_eq!(ids(store.list(&f).unwrap()), ["c"]);
    // The business number matches every call.
    let f = RecordFilter {
        number: Some("+15550001111".into()),
        ..all.clone()
    };
    assert_eq!(store.list(&f).unwrap().len(), 5);
    let f = RecordFilter {
        number: Some("+1555000111".into()),
        ..all.clone()
    };
    assert!(store.list(&f).unwrap().is_empty());
    let f = RecordFilter {
        direction: Some(Direction::BusinessInitiated),
        ..all.clone()
    };
    assert_eq!(ids(store.list(&f).unwrap()), ["d", "b"]);
    let f = RecordFilter {
        state: Some(CallState::Completed),
        ..all.clone()
    };
    assert_eq!(ids(store.list(&f).unwrap()), ["d", "a"]);
    let f = RecordFilter {
        limit: Some(2),
        ..all.clone()
    };
    assert_eq!(ids(store.list(&f).unwrap()), ["e", "d"]);
    let f = RecordFilter {
        since: Some(ts(2_000)),
        number: Some("+15557654321".into()),
        direction: Some(Direction::UserInitiated),
        state: Some(CallState::Accepted),
        limit: Some(10),
    };
    assert_eq!(ids(store.list(&f).unwrap()), ["e"]);
    assert!(store.get("zzz").unwrap().is_none());
}

#[test]
fn migrates_an_empty_file_to_the_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let mut store = Store::open_existing(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), schema::CURRENT_VERSION);
    assert_eq!(schema::CURRENT_VERSION, 2);
    store
        .insert(&CallRecord::new(
            "x",
            Direction::UserInitiated,
            "+1",
            "+2",
            ts(1),
        ))
        .unwrap();
    assert_eq!(store.get("x").unwrap().unwrap().user, "+2");
    // WAL mode is on.
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn migrates_a_version_1_database_keeping_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        assert_eq!(schema::migrate_to(&mut conn, 1).unwrap(), (0, 1));
        conn.execute(
            "INSERT INTO call_records (id, direction, business_number, user, started_at, \
             answered_at, ended_at, state, open, reason_sip, reason_text) VALUES \
             ('old', 'business_initiated', '+15550001111', '+15551234567', 1000, 2000, 32000, \
              'Completed', 0, 200, 'normal')",
            [],
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), 2);
    let r = store.get("old").unwrap().unwrap();
    assert_eq!(r.direction, Direction::BusinessInitiated);
    assert_eq!(r.duration_s(), Some(30.0));
    assert_eq!(r.reason.as_ref().unwrap().sip_code, Some(200));
    assert_eq!(r.media, MediaCounters::default());
    drop(store);
    // Opening again is a no-op.
    assert_eq!(Store::open(&path).unwrap().schema_version().unwrap(), 2);
}

#[test]
fn refuses_a_database_newer_than_this_build_and_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    match Store::open(&path) {
        Err(StoreError::TooNew {
            found: 99,
            supported: 2,
            ..
        }) => {}
        other => panic!("expected TooNew, got {other:?}"),
    }
    match Store::open_existing(dir.path().join("nope.db")) {
        Err(StoreError::Missing(_)) => {}
        other => panic!("expected Missing, got {other:?}"),
    }
    assert!(!dir.path().join("nope.db").exists());
}

#[test]
fn recorder_never_blocks_when_the_writer_is_stuck_and_counts_drops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow.db");
    const CAP: usize = 8;
    const SENT: usize = 1_000;
    let (rec, writer) = Recorder::spawn(Store::open(&path).unwrap(), CAP).unwrap();

    // Another connection holds the write lock: the writer thread stalls in its busy handler.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    // Send from another thread; the test waits for it with a bound, so a blocking `start`
    // fails the test instead of hanging it.
    let sender = rec.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut accepted = 0usize;
        for i in 0..SENT {
            let r = CallRecord::new(
                format!("c{i}"),
                Direction::UserInitiated,
                "+1",
                "+2",
                ts(i as i64),
            );
            if sender.start(r) {
                accepted += 1;
            }
        }
        done_tx.send(accepted).unwrap();
    });
    let accepted = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("Recorder::start blocked while the writer was stuck");

    let st = rec.stats();
    assert_eq!(st.dropped as usize + accepted, SENT);
    // The writer can have taken at most one batch out of the channel before it stalled.
    assert!(accepted <= CAP + 512, "accepted {accepted}");
    assert!(st.dropped > 0);
    assert!(accepted >= CAP, "accepted {accepted}");

    // Unstick the writer: everything accepted is written, nothing else.
    blocker.execute_batch("COMMIT").unwrap();
    assert!(rec.flush(FLUSH));
    let reader = Store::open_existing(&path).unwrap();
    let n = reader
        .list(&RecordFilter {
            limit: Some(10_000),
            ..RecordFilter::default()
        })
        .unwrap()
        .len();
    assert_eq!(n, accepted);
    assert_eq!(rec.stats().written as usize, accepted);
    drop(rec);
    writer
        .join_timeout(FLUSH)
        .expect("writer stops after the last Recorder is dropped");
}
