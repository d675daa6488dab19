//! Per-call media counters, shared between the media worker that owns the call (writer) and
//! the API / call records (readers). Relaxed atomics: no lock on the packet path.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one relayed call.
#[derive(Debug, Default)]
pub struct MediaCounters {
    /// RTP relayed Meta → PBX (packets; bytes = RTP header + payload, no SRTP tag).
    pub wa_to_pbx_packets: AtomicU64,
    pub wa_to_pbx_bytes: AtomicU64,
    /// RTP sent toward Meta, relayed from the PBX or generated (silence, DTMF).
    pub pbx_to_wa_packets: AtomicU64,
    pub pbx_to_wa_bytes: AtomicU64,
    /// Generated Opus/G.711 silence packets toward Meta (included in `pbx_to_wa_*`).
    pub silence_packets: AtomicU64,
    /// RFC 4733 packets we generated toward Meta from PBX INFO (included in `pbx_to_wa_*`).
    pub dtmf_packets: AtomicU64,
    /// Packets that failed SRTP/SRTCP authentication or replay checks (either leg).
    pub decrypt_failures: AtomicU64,
    /// Packets dropped: unknown PT, not RTP, direction forbids, before answer.
    pub dropped: AtomicU64,
    /// RTCP packets received (both legs) and sent (our reports).
    pub rtcp_received: AtomicU64,
    pub rtcp_sent: AtomicU64,
}

/// A plain copy of [`MediaCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CounterSnapshot {
    pub wa_to_pbx_packets: u64,
    pub wa_to_pbx_bytes: u64,
    pub pbx_to_wa_packets: u64,
    pub pbx_to_wa_bytes: u64,
    pub silence_packets: u64,
    pub dtmf_packets: u64,
    pub decrypt_failures: u64,
    pub dropped: u64,
    pub rtcp_received: u64,
    pub rtcp_sent: u64,
}

pub(super) fn bump(c: &AtomicU64, by: u64) {
    c.fetch_add(by, Ordering::Relaxed);
}

impl MediaCounters {
    pub fn snapshot(&self) -> CounterSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            wa_to_pbx_packets: g(&self.wa_to_pbx_packets),
            wa_to_pbx_bytes: g(&self.wa_to_pbx_bytes),
            pbx_to_wa_packets: g(&self.pbx_to_wa_packets),
            pbx_to_wa_bytes: g(&self.pbx_to_wa_bytes),
            silence_packets: g(&self.silence_packets),
            dtmf_packets: g(&self.dtmf_packets),
            decrypt_failures: g(&self.decrypt_failures),
            dropped: g(&self.dropped),
            rtcp_received: g(&self.rtcp_received),
            rtcp_sent: g(&self.rtcp_sent),
        }
    }
}

/// One packet dropped by the shell (send would block, no route).
pub fn count_drop(c: &MediaCounters) {
    bump(&c.dropped, 1);
}
