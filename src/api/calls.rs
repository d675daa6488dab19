//! The live call registry: which calls are in progress right now, shared between the B2BUA
//! (which updates it) and the HTTP API (`GET /calls`, which reads it).
//!
//! Lock-light: the map of calls sits behind an `RwLock` taken only when a call is added,
//! removed or listed; each call's setup details sit behind their own small `Mutex` (touched on
//! state changes, a few times per call); its media counters are relaxed atomics, so the packet
//! path never takes a lock. Numbers are kept whole (the operator's own API on loopback); log
//! lines use `crate::redact::phone`.
use crate::media::relay;
use crate::metrics::Metrics;
use crate::redact;
use crate::store::{
    CallRecord, CallState, Completion, Direction, Flow, MediaCounters, Reason, RecordUpdate,
    Timestamp,
};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Per-call media counters, updated from the packet path: the relay's own
/// [`relay::MediaCounters`](crate::media::relay::MediaCounters), shared with the media worker
/// that owns the call (relaxed atomics, no lock).
#[derive(Debug, Default, Clone)]
pub struct MediaMeter(Arc<relay::MediaCounters>);

impl MediaMeter {
    /// The counters the relay writes.
    pub fn shared(&self) -> Arc<relay::MediaCounters> {
        self.0.clone()
    }

    /// One packet of `bytes` relayed from the WhatsApp leg to the PBX leg.
    #[inline]
    pub fn whatsapp_to_pbx(&self, bytes: usize) {
        self.0.wa_to_pbx_packets.fetch_add(1, Ordering::Relaxed);
        self.0
            .wa_to_pbx_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// One packet of `bytes` relayed from the PBX leg to the WhatsApp leg.
    #[inline]
    pub fn pbx_to_whatsapp(&self, bytes: usize) {
        self.0.pbx_to_wa_packets.fetch_add(1, Ordering::Relaxed);
        self.0
            .pbx_to_wa_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// One SRTP packet from Meta that failed authentication or decryption.
    #[inline]
    pub fn decrypt_failure(&self) {
        self.0.decrypt_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MediaCounters {
        let s = self.0.snapshot();
        MediaCounters {
            whatsapp_to_pbx: Flow {
                packets: s.wa_to_pbx_packets,
                bytes: s.wa_to_pbx_bytes,
            },
            pbx_to_whatsapp: Flow {
                packets: s.pbx_to_wa_packets,
                bytes: s.pbx_to_wa_bytes,
            },
            decrypt_failures: s.decrypt_failures,
        }
    }
}

/// The parts of an active call that change during setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub state: CallState,
    pub ringing_at: Option<Timestamp>,
    pub answered_at: Option<Timestamp>,
    pub whatsapp_call_id: Option<String>,
    pub pbx_call_id: Option<String>,
    pub wacid: Option<String>,
    pub trunk: Option<String>,
}

/// A call in progress.
#[derive(Debug)]
pub struct ActiveCall {
    pub id: String,
    pub direction: Direction,
    pub business_number: String,
    pub user: String,
    pub started_at: Timestamp,
    info: Mutex<CallInfo>,
    /// Media counters; the relay increments these per packet.
    pub media: MediaMeter,
}

impl ActiveCall {
    fn info(&self) -> MutexGuard<'_, CallInfo> {
        self.info.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the call's setup details.
    pub fn info_snapshot(&self) -> CallInfo {
        self.info().clone()
    }

    pub fn state(&self) -> CallState {
        self.info().state
    }

    /// Moves the call to `state` at `at`, stamping `ringing_at` on the first `Ringing` and
    /// `answered_at` on the first `Accepted`. Returns the matching record update for the
    /// [`Recorder`](crate::store::Recorder).
    pub fn transition(&self, state: CallState, at: Timestamp) -> RecordUpdate {
        let mut i = self.info();
        i.state = state;
        let mut u = RecordUpdate {
            state: Some(state),
            ..RecordUpdate::default()
        };
        if state == CallState::Ringing && i.ringing_at.is_none() {
            i.ringing_at = Some(at);
            u.ringing_at = Some(at);
        }
        if state == CallState::Accepted && i.answered_at.is_none() {
            i.answered_at = Some(at);
            u.answered_at = Some(at);
        }
        tracing::debug!(call = %self.id, state = %state, "call state");
        u
    }

    /// Edits the setup details (leg Call-IDs, wacid, trunk) under the call's lock.
    pub fn update<R>(&self, f: impl FnOnce(&mut CallInfo) -> R) -> R {
        f(&mut self.info())
    }

    /// The call as a fresh (open) record, for [`Recorder::start`](crate::store::Recorder::start).
    pub fn to_record(&self) -> CallRecord {
        let i = self.info();
        CallRecord {
            id: self.id.clone(),
            whatsapp_call_id: i.whatsapp_call_id.clone(),
            pbx_call_id: i.pbx_call_id.clone(),
            wacid: i.wacid.clone(),
            direction: self.direction,
            business_number: self.business_number.clone(),
            user: self.user.clone(),
            trunk: i.trunk.clone(),
            started_at: self.started_at,
            ringing_at: i.ringing_at,
            answered_at: i.answered_at,
            ended_at: None,
            state: i.state,
            open: true,
            reason: None,
            media: self.media.snapshot(),
        }
    }

    /// The completion to record when the call ends now in `state`.
    pub fn completion(
        &self,
        state: CallState,
        reason: Option<Reason>,
        ended_at: Timestamp,
    ) -> Completion {
        Completion {
            ended_at,
            state,
            reason,
            media: self.media.snapshot(),
        }
    }

    /// The call's complete, closed record (for [`Recorder::finish`](crate::store::Recorder::finish)).
    /// A non-final `state` is recorded as `Failed`.
    pub fn final_record(
        &self,
        state: CallState,
        reason: Option<Reason>,
        ended_at: Timestamp,
    ) -> CallRecord {
        let mut r = self.to_record();
        r.state = if state.is_final() {
            state
        } else {
            CallState::Failed
        };
        r.open = false;
        r.ended_at = Some(ended_at);
        r.reason = reason;
        r
    }

    /// A JSON-ready view at `now`.
    pub fn snapshot(&self, now: Timestamp) -> CallSnapshot {
        let i = self.info_snapshot();
        CallSnapshot {
            id: self.id.clone(),
            direction: self.direction,
            state: i.state,
            business_number: self.business_number.clone(),
            user: self.user.clone(),
            trunk: i.trunk,
            whatsapp_call_id: i.whatsapp_call_id,
            pbx_call_id: i.pbx_call_id,
            wacid: i.wacid,
            started_at: self.started_at,
            ringing_at: i.ringing_at,
            answered_at: i.answered_at,
            age_s: now.ms_since(self.started_at).max(0) as f64 / 1000.0,
            talk_s: i
                .answered_at
                .map(|a| now.ms_since(a).max(0) as f64 / 1000.0),
            media: self.media.snapshot(),
        }
    }
}

/// An active call as `GET /calls` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CallSnapshot {
    pub id: String,
    pub direction: Direction,
    pub state: CallState,
    pub business_number: String,
    pub user: String,
    pub trunk: Option<String>,
    pub whatsapp_call_id: Option<String>,
    pub pbx_call_id: Option<String>,
    pub wacid: Option<String>,
    pub started_at: Timestamp,
    pub ringing_at: Option<Timestamp>,
    pub answered_at: Option<Timestamp>,
    /// Seconds since the call started.
    pub age_s: f64,
    /// Seconds since answer, if answered.
    pub talk_s: Option<f64>,
    pub media: MediaCounters,
}

/// What the B2BUA knows when a call begins.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub id: String,
    pub direction: Direction,
    pub business_number: String,
    pub user: String,
    pub started_at: Timestamp,
    pub trunk: Option<String>,
    pub whatsapp_call_id: Option<String>,
    pub pbx_call_id: Option<String>,
    pub wacid: Option<String>,
}

impl NewCall {
    pub fn new(
        id: impl Into<String>,
        direction: Direction,
        business_number: impl Into<String>,
        user: impl Into<String>,
        started_at: Timestamp,
    ) -> NewCall {
        NewCall {
            id: id.into(),
            direction,
            business_number: business_number.into(),
            user: user.into(),
            started_at,
            trunk: None,
            whatsapp_call_id: None,
            pbx_call_id: None,
            wacid: None,
        }
    }
}

/// The shared registry of active calls. Clone freely (one `Arc` inside).
#[derive(Debug, Clone)]
pub struct CallRegistry {
    calls: Arc<RwLock<HashMap<String, Arc<ActiveCall>>>>,
    metrics: Arc<Metrics>,
}

impl CallRegistry {
    /// A registry that keeps `metrics`' call gauges, outcome counters and media totals.
    pub fn new(metrics: Arc<Metrics>) -> CallRegistry {
        CallRegistry {
            calls: Arc::default(),
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<ActiveCall>>> {
        self.calls.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<ActiveCall>>> {
        self.calls.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a call in `Connecting` and returns its handle (keep it; the packet path counts on
    /// `handle.media`). A call with the same id is replaced (and counted as failed).
    pub fn insert(&self, c: NewCall) -> Arc<ActiveCall> {
        let call = Arc::new(ActiveCall {
            info: Mutex::new(CallInfo {
                state: CallState::Connecting,
                ringing_at: None,
                answered_at: None,
                whatsapp_call_id: c.whatsapp_call_id,
                pbx_call_id: c.pbx_call_id,
                wacid: c.wacid,
                trunk: c.trunk,
            }),
            id: c.id,
            direction: c.direction,
            business_number: c.business_number,
            user: c.user,
            started_at: c.started_at,
            media: MediaMeter::default(),
        });
        tracing::info!(
            call = %call.id,
            direction = %call.direction,
            user = %redact::phone(&call.user),
            business = %redact::phone(&call.business_number),
            "call started"
        );
        self.metrics.call_started(call.direction);
        let old = self.write().insert(call.id.clone(), call.clone());
        if let Some(old) = old {
            tracing::warn!(call = %old.id, "call id reused; previous entry dropped");
            self.account_end(&old, CallState::Failed);
        }
        call
    }

    /// Removes the call, counting its outcome and media in the metrics. Returns it (for the
    /// final record), or `None` if it was not active.
    pub fn finish(&self, id: &str, state: CallState) -> Option<Arc<ActiveCall>> {
        let call = self.write().remove(id)?;
        call.update(|i| i.state = state);
        self.account_end(&call, state);
        tracing::info!(call = %call.id, state = %state, "call ended");
        Some(call)
    }

    fn account_end(&self, call: &ActiveCall, state: CallState) {
        self.metrics.call_ended(call.direction, state);
        self.metrics.add_media(&call.media.snapshot());
    }

    pub fn get(&self, id: &str) -> Option<Arc<ActiveCall>> {
        self.read().get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Every active call at `now`, oldest first.
    pub fn snapshot(&self, now: Timestamp) -> Vec<CallSnapshot> {
        let calls: Vec<Arc<ActiveCall>> = self.read().values().cloned().collect();
        let mut out: Vec<CallSnapshot> = calls.iter().map(|c| c.snapshot(now)).collect();
        out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        out
    }

    /// Sum of the active calls' media counters.
    pub fn live_media(&self) -> MediaCounters {
        let calls: Vec<Arc<ActiveCall>> = self.read().values().cloned().collect();
        let mut m = MediaCounters::default();
        for c in calls {
            let s = c.media.snapshot();
            m.whatsapp_to_pbx.packets += s.whatsapp_to_pbx.packets;
            m.whatsapp_to_pbx.bytes += s.whatsapp_to_pbx.bytes;
            m.pbx_to_whatsapp.packets += s.pbx_to_whatsapp.packets;
            m.pbx_to_whatsapp.bytes += s.pbx_to_whatsapp.bytes;
            m.decrypt_failures += s.decrypt_failures;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Outcome;

    #[test]
    fn lifecycle_updates_state_times_and_metrics() {
        let metrics = Arc::new(Metrics::new());
        let reg = CallRegistry::new(metrics.clone());
        let t0 = Timestamp::from_unix_ms(1_000_000);
        let call = reg.insert(NewCall::new(
            "g1",
            Direction::UserInitiated,
            "+15550001111",
            "+15551234567",
            t0,
        ));
        assert_eq!(metrics.calls_active(Direction::UserInitiated), 1);
        let u = call.transition(CallState::Ringing, Timestamp::from_unix_ms(1_000_500));
        assert_eq!(u.ringing_at, Some(Timestamp::from_unix_ms(1_000_500)));
        call.transition(CallState::Accepted, Timestamp::from_unix_ms(1_002_000));
        // A second Accepted keeps the first answer time.
        let u = call.transition(CallState::Accepted, Timestamp::from_unix_ms(1_003_000));
        assert_eq!(u.answered_at, None);
        call.media.whatsapp_to_pbx(172);
        call.media.whatsapp_to_pbx(172);
        call.media.pbx_to_whatsapp(100);
        call.media.decrypt_failure();
        let snap = reg.snapshot(Timestamp::from_unix_ms(1_012_000));
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].state, CallState::Accepted);
        assert_eq!(snap[0].talk_s, Some(10.0));
        assert_eq!(snap[0].age_s, 12.0);
        assert_eq!(
            snap[0].media.whatsapp_to_pbx,
            Flow {
                packets: 2,
                bytes: 344
            }
        );
        assert_eq!(reg.live_media().decrypt_failures, 1);

        let ended = reg.finish("g1", CallState::Completed).unwrap();
        assert!(reg.is_empty());
        assert!(reg.finish("g1", CallState::Completed).is_none());
        assert_eq!(metrics.calls_active(Direction::UserInitiated), 0);
        assert_eq!(
            metrics.calls_total(Direction::UserInitiated, Outcome::Completed),
            1
        );
        assert_eq!(metrics.media_totals().whatsapp_to_pbx.bytes, 344);
        let c = ended.completion(
            CallState::Completed,
            None,
            Timestamp::from_unix_ms(1_013_000),
        );
        assert_eq!(c.media.pbx_to_whatsapp.packets, 1);
        let r = ended.to_record();
        assert_eq!(r.answered_at, Some(Timestamp::from_unix_ms(1_002_000)));
        assert_eq!(r.ringing_at, Some(Timestamp::from_unix_ms(1_000_500)));
    }
}
