//! The one RTP stream whatsip sends toward Meta: one SSRC for the whole call, sequence
//! numbers and timestamps that continue across PBX SSRC changes (music on hold, re-INVITE,
//! transfers) and across the silence and DTMF packets we generate ourselves.
//!
//! Guarantees: within one PBX source (same SSRC, no generated packet in between) the PBX's
//! own sequence and timestamp spacing is kept (offsets), so loss and reordering stay visible
//! to Meta's jitter buffer. On a new source, or after generated packets, the offsets are
//! recomputed so the sequence continues at the next number and the timestamp advances by
//! the wall-clock time since our last packet (at the stream's clock rate), and the marker
//! bit is set (RFC 3550 §5.1: start of a talkspurt).

use std::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: u32,
    seq_off: u16,
    ts_off: u32,
}

/// Sequence/timestamp state of our stream toward Meta.
#[derive(Debug, Clone)]
pub struct OutStream {
    pub ssrc: u32,
    next_seq: u16,
    last_ts: u32,
    last_at: Option<Instant>,
    clock: u32,
    src: Option<Source>,
    /// For RTCP sender reports.
    pub packets: u32,
    pub octets: u32,
}

/// `a` is newer than `b` in 16-bit serial arithmetic.
fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

fn ts_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

impl OutStream {
    /// `clock`: RTP clock rate of the stream's audio format (48000 for Opus).
    pub fn new(ssrc: u32, first_seq: u16, first_ts: u32, clock: u32) -> OutStream {
        OutStream {
            ssrc,
            next_seq: first_seq,
            last_ts: first_ts,
            last_at: None,
            clock: clock.max(1),
            src: None,
            packets: 0,
            octets: 0,
        }
    }

    pub fn set_clock(&mut self, clock: u32) {
        self.clock = clock.max(1);
    }

    /// When our last packet left.
    pub fn last_at(&self) -> Option<Instant> {
        self.last_at
    }

    /// Timestamp units elapsed since our last packet, at least `min`.
    fn advance(&self, now: Instant, min: u32) -> u32 {
        match self.last_at {
            None => 0,
            Some(t) => {
                let us = now.saturating_duration_since(t).as_micros();
                let units = us * u128::from(self.clock) / 1_000_000;
                u32::try_from(units).unwrap_or(u32::MAX).max(min)
            }
        }
    }

    /// The timestamp "now" in our stream (for DTMF events and sender reports).
    pub fn current_ts(&self, now: Instant) -> u32 {
        self.last_ts.wrapping_add(self.advance(now, 0))
    }

    fn sent(&mut self, now: Instant, seq: u16, ts: u32, len: usize) {
        if seq_newer(seq, self.next_seq.wrapping_sub(1)) {
            self.next_seq = seq.wrapping_add(1);
        }
        if ts_newer(ts, self.last_ts) || self.last_at.is_none() {
            self.last_ts = ts;
        }
        self.last_at = Some(now);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(len as u32);
    }

    /// Maps a PBX packet (its SSRC, sequence, timestamp) into our stream. Returns our
    /// sequence, timestamp and whether this starts a new source (set the marker).
    pub fn relay(
        &mut self,
        now: Instant,
        ssrc: u32,
        seq: u16,
        ts: u32,
        payload_len: usize,
    ) -> (u16, u32, bool) {
        let (src, fresh) = match self.src {
            Some(s) if s.ssrc == ssrc => (s, false),
            _ => {
                let base_ts = if self.last_at.is_none() {
                    self.last_ts
                } else {
                    self.last_ts.wrapping_add(self.advance(now, 1))
                };
                let s = Source {
                    ssrc,
                    seq_off: self.next_seq.wrapping_sub(seq),
                    ts_off: base_ts.wrapping_sub(ts),
                };
                self.src = Some(s);
                (s, true)
            }
        };
        let out_seq = seq.wrapping_add(src.seq_off);
        let out_ts = ts.wrapping_add(src.ts_off);
        self.sent(now, out_seq, out_ts, payload_len);
        (out_seq, out_ts, fresh)
    }

    /// A packet we generate (silence): next sequence number, timestamp advanced by the time
    /// since our last packet (at least `step`). The next PBX packet re-bases.
    pub fn generate(&mut self, now: Instant, step: u32, payload_len: usize) -> (u16, u32) {
        let seq = self.next_seq;
        let ts = if self.last_at.is_none() {
            self.last_ts
        } else {
            self.last_ts.wrapping_add(self.advance(now, step))
        };
        self.src = None;
        self.sent(now, seq, ts, payload_len);
        (seq, ts)
    }

    /// A generated packet with a fixed timestamp (RFC 4733 events share the event's start).
    pub fn generate_at(&mut self, now: Instant, ts: u32, payload_len: usize) -> u16 {
        let seq = self.next_seq;
        self.src = None;
        self.sent(now, seq, ts, payload_len);
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_stream_across_pbx_ssrc_changes_and_generated_packets() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = OutStream::new(0xabcd, 65534, 1000, 48000);
        // First PBX source keeps its spacing (a lost packet stays a gap).
        assert_eq!(s.relay(ms(0), 1, 100, 5000, 10), (65534, 1000, true));
        assert_eq!(s.relay(ms(20), 1, 101, 5960, 10), (65535, 1960, false));
        assert_eq!(s.relay(ms(60), 1, 103, 7880, 10), (1, 3880, false));
        // Reordered late packet maps into the gap without moving the stream back.
        assert_eq!(s.relay(ms(61), 1, 102, 6920, 10), (0, 2920, false));
        // New PBX SSRC 40 ms after our last packet (at 61 ms): next sequence, +40 ms of time.
        let (seq, ts, fresh) = s.relay(ms(101), 2, 9, 123, 10);
        assert_eq!((seq, fresh), (2, true));
        assert_eq!(ts, 3880 + 40 * 48);
        // Silence 20 ms later, then the same PBX source resumes: re-based again.
        let (seq, ts2) = s.generate(ms(121), 960, 3);
        assert_eq!((seq, ts2), (3, ts + 960));
        let (seq, ts3, fresh) = s.relay(ms(141), 2, 10, 1083, 10);
        assert_eq!((seq, ts3, fresh), (4, ts2 + 960, true));
        assert_eq!(s.packets, 7);
    }

    #[test]
    fn first_packet_uses_the_initial_values() {
        let t0 = Instant::now();
        let mut s = OutStream::new(7, 10, 777, 48000);
        assert_eq!(s.generate(t0, 960, 3), (10, 777));
        assert_eq!(
            s.generate(t0 + Duration::from_millis(20), 960, 3),
            (11, 777 + 960)
        );
        // A burst faster than real time still advances by at least one frame.
        assert_eq!(
            s.generate(t0 + Duration::from_millis(21), 960, 3),
            (12, 777 + 1920)
        );
    }
}
