//! The non-blocking front of the call-record store: a cloneable [`Recorder`] handle that the
//! B2BUA calls from its call/packet paths, and one writer thread that owns the database.
//!
//! Guarantees: [`Recorder::start`], [`Recorder::update`] and [`Recorder::complete`] never
//! wait — they `try_send` into a bounded channel and, when it is full (or the writer is gone),
//! drop the event, count it ([`RecorderStats::dropped`]) and log (rate-limited). Every event
//! the channel accepted is written, in order, in batched transactions.
use super::{CallRecord, Completion, RecordUpdate, Store, StoreConfig, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

enum Event {
    Start(Box<CallRecord>),
    Update(String, Box<RecordUpdate>),
    Complete(String, Box<Completion>),
    Finish(Box<CallRecord>),
    Flush(SyncSender<()>),
}

impl Event {
    fn kind(&self) -> &'static str {
        match self {
            Event::Start(_) => "start",
            Event::Update(..) => "update",
            Event::Complete(..) => "complete",
            Event::Finish(_) => "finish",
            Event::Flush(_) => "flush",
        }
    }
}

#[derive(Default)]
struct Stats {
    dropped: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    recovered: AtomicU64,
}

/// Counters of a recorder since it was spawned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecorderStats {
    /// Events dropped because the queue was full or the writer had stopped.
    pub dropped: u64,
    /// Events written to the database.
    pub written: u64,
    /// Events the database refused (e.g. a duplicate id, an update for a record whose start
    /// was dropped).
    pub failed: u64,
    /// Records left open by a previous process, closed as `Failed` at spawn.
    pub recovered: u64,
}

/// Read-only view of a recorder's counters that does not keep the writer alive (for the API).
#[derive(Clone)]
pub struct RecorderMonitor(Arc<Stats>);

impl RecorderMonitor {
    pub fn stats(&self) -> RecorderStats {
        read_stats(&self.0)
    }
}

impl std::fmt::Debug for RecorderMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RecorderMonitor")
            .field(&self.stats())
            .finish()
    }
}

fn read_stats(s: &Stats) -> RecorderStats {
    RecorderStats {
        dropped: s.dropped.load(Ordering::Relaxed),
        written: s.written.load(Ordering::Relaxed),
        failed: s.failed.load(Ordering::Relaxed),
        recovered: s.recovered.load(Ordering::Relaxed),
    }
}

/// Cheap, cloneable, never-blocking handle to the call-record writer.
#[derive(Clone)]
pub struct Recorder {
    tx: SyncSender<Event>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("stats", &self.stats())
            .finish()
    }
}

/// The writer thread. It exits once every [`Recorder`] clone is dropped and the queue is
/// drained; [`WriterHandle::join`] waits for that.
#[derive(Debug)]
pub struct WriterHandle {
    thread: JoinHandle<()>,
}

impl WriterHandle {
    /// Waits for the writer to drain and exit (drop all `Recorder`s first).
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("call-record writer thread panicked");
        }
    }

    /// As [`WriterHandle::join`], giving up after `timeout` (the handle is returned).
    pub fn join_timeout(self, timeout: Duration) -> Result<(), WriterHandle> {
        let deadline = Instant::now() + timeout;
        while !self.thread.is_finished() {
            if Instant::now() >= deadline {
                return Err(self);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.join();
        Ok(())
    }

    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

const MAX_BATCH: usize = 512;
const COMMIT_ATTEMPTS: u32 = 3;

impl Recorder {
    pub const DEFAULT_CAPACITY: usize = 4096;

    /// Opens the configured database, closes records a previous process left open, and
    /// starts the writer thread.
    pub fn open(cfg: &StoreConfig) -> Result<(Recorder, WriterHandle), StoreError> {
        Recorder::spawn(Store::open(&cfg.path)?, cfg.queue)
    }

    /// Takes ownership of `store` (the gateway's one writer): runs crash recovery
    /// ([`Store::recover_interrupted`]) and starts the writer thread with a queue of
    /// `capacity` events (at least 1).
    pub fn spawn(
        mut store: Store,
        capacity: usize,
    ) -> Result<(Recorder, WriterHandle), StoreError> {
        let recovered = store.recover_interrupted()?;
        let stats = Arc::new(Stats::default());
        stats.recovered.store(
            u64::try_from(recovered).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        let writer_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("whatsip-cdr".into())
            .spawn(move || writer(store, rx, writer_stats))
            .map_err(StoreError::Thread)?;
        Ok((Recorder { tx, stats }, WriterHandle { thread }))
    }

    /// Records a call that has just started (`open`; state usually `Connecting`).
    /// Returns `false` if the event was dropped.
    pub fn start(&self, record: CallRecord) -> bool {
        self.send(Event::Start(Box::new(record)))
    }

    /// Updates an open record (ringing, answered, leg Call-IDs, counters…).
    pub fn update(&self, id: &str, update: RecordUpdate) -> bool {
        self.send(Event::Update(id.to_string(), Box::new(update)))
    }

    /// Closes a record with its final state, reason and counters.
    pub fn complete(&self, id: &str, completion: Completion) -> bool {
        self.send(Event::Complete(id.to_string(), Box::new(completion)))
    }

    /// Writes a finished call's record whole (insert or replace). Unlike
    /// [`Recorder::complete`] this still leaves a full record if the call's `start` event was
    /// dropped; the B2BUA builds it with `ActiveCall::final_record`.
    pub fn finish(&self, record: CallRecord) -> bool {
        self.send(Event::Finish(Box::new(record)))
    }

    pub fn stats(&self) -> RecorderStats {
        read_stats(&self.stats)
    }

    /// A counters-only handle; unlike a `Recorder` clone it does not keep the writer running.
    pub fn monitor(&self) -> RecorderMonitor {
        RecorderMonitor(self.stats.clone())
    }

    /// Waits (at most `timeout`) until every event queued before this call is committed.
    /// For shutdown and tests, never for the call path. Returns whether it got there in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let mut ev = Event::Flush(ack_tx);
        loop {
            match self.tx.try_send(ev) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    ev = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        ack_rx.recv_timeout(left).is_ok()
    }

    fn send(&self, ev: Event) -> bool {
        match self.tx.try_send(ev) {
            Ok(()) => true,
            Err(TrySendError::Full(ev)) => {
                self.dropped(ev.kind(), "queue full");
                false
            }
            Err(TrySendError::Disconnected(ev)) => {
                self.dropped(ev.kind(), "writer stopped");
                false
            }
        }
    }

    fn dropped(&self, kind: &'static str, why: &'static str) {
        let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // Rate-limited: the 1st, 2nd, 4th, 8th… drop.
        if n.is_power_of_two() {
            tracing::warn!(
                event = kind,
                dropped_total = n,
                "call-record event dropped: {why}"
            );
        }
    }
}

fn writer(mut store: Store, rx: Receiver<Event>, stats: Arc<Stats>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        write_batch(&mut store, &mut batch, &stats);
    }
    tracing::debug!("call-record writer stopped");
}

fn write_batch(store: &mut Store, batch: &mut Vec<Event>, stats: &Stats) {
    let mut acks = Vec::new();
    let mut last_err = None;
    for attempt in 1..=COMMIT_ATTEMPTS {
        match apply(store, batch) {
            Ok((written, failed)) => {
                stats.written.fetch_add(written, Ordering::Relaxed);
                stats.failed.fetch_add(failed, Ordering::Relaxed);
                last_err = None;
                break;
            }
            Err(e) => {
                tracing::warn!(attempt, error = %e, "call-record batch not committed");
                last_err = Some(e);
            }
        }
    }
    if let Some(e) = last_err {
        let n = batch
            .iter()
            .filter(|ev| !matches!(ev, Event::Flush(_)))
            .count();
        stats
            .failed
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
        tracing::error!(events = n, error = %e, "call-record batch lost");
    }
    for ev in batch.drain(..) {
        if let Event::Flush(ack) = ev {
            acks.push(ack);
        }
    }
    for ack in acks {
        let _ = ack.try_send(());
    }
}

/// Applies a batch in one transaction. Per-event refusals are logged and counted, not fatal.
fn apply(store: &mut Store, batch: &[Event]) -> Result<(u64, u64), StoreError> {
    let tx = store.conn.transaction()?;
    let (mut written, mut failed) = (0u64, 0u64);
    for ev in batch {
        let res = match ev {
            Event::Start(r) => super::insert(&tx, r, false).map(|()| true),
            Event::Finish(r) => super::insert(&tx, r, true).map(|()| true),
            Event::Update(id, u) => super::update(&tx, id, u),
            Event::Complete(id, c) => super::complete(&tx, id, c),
            Event::Flush(_) => continue,
        };
        let id = match ev {
            Event::Start(r) | Event::Finish(r) => r.id.as_str(),
            Event::Update(id, _) | Event::Complete(id, _) => id.as_str(),
            Event::Flush(_) => "",
        };
        match res {
            Ok(true) => written += 1,
            Ok(false) => {
                failed += 1;
                tracing::warn!(call = id, event = ev.kind(), "call record not found");
            }
            Err(e) => {
                failed += 1;
                tracing::warn!(call = id, event = ev.kind(), error = %e, "call record not written");
            }
        }
    }
    tx.commit()?;
    Ok((written, failed))
}
