//! RFC 4733 telephone-events: payload encode/decode, a receiver that turns a packet stream
//! into each digit exactly once, a sender that produces the packet schedule for one digit,
//! and the SIP INFO `application/dtmf-relay` body parser.
//!
//! Guarantees: parsers never panic; the receiver reports a digit once no matter how many
//! redundant updates or end packets arrive (RFC 4733 §2.5.1.4); events are keyed by their
//! RTP timestamp, so a repeated digit is a new event.

use std::collections::VecDeque;

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DtmfError {
    #[error("telephone-event payload shorter than 4 bytes")]
    TooShort,
    #[error("event {0} is not a DTMF digit")]
    NotDtmf(u8),
    #[error("not a DTMF character")]
    BadDigit,
    #[error("duration too long for one event")]
    TooLong,
    #[error("malformed dtmf-relay body")]
    BadBody,
}

/// DTMF character (0-9, *, #, A-D) → RFC 4733 event code.
pub fn digit_to_event(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(c as u8 - b'A' + 12),
        'a'..='d' => Some(c as u8 - b'a' + 12),
        _ => None,
    }
}

/// RFC 4733 event code → DTMF character.
pub fn event_to_digit(e: u8) -> Option<char> {
    match e {
        0..=9 => Some(char::from(b'0' + e)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + e - 12)),
        _ => None,
    }
}

/// RFC 4733 §2.3 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    /// Power level in -dBm0 (0..=63).
    pub volume: u8,
    /// In RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    pub fn parse(p: &[u8]) -> Result<Self, DtmfError> {
        let b = p.get(..4).ok_or(DtmfError::TooShort)?;
        Ok(Self {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    pub fn to_bytes(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }
}

/// A digit detected by [`DtmfReceiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfDigit {
    pub digit: char,
    /// RTP timestamp of the event start.
    pub timestamp: u32,
    /// Duration in RTP timestamp units.
    pub duration: u16,
}

/// Turns received telephone-event packets into digits, each exactly once.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    current: Option<(u32, u8, u16)>,
    last_done: Option<u32>,
    out: VecDeque<DtmfDigit>,
}

impl DtmfReceiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one telephone-event packet (its RTP timestamp and payload).
    pub fn handle_packet(&mut self, timestamp: u32, payload: &[u8]) -> Result<(), DtmfError> {
        let ev = TelephoneEvent::parse(payload)?;
        let digit = event_to_digit(ev.event).ok_or(DtmfError::NotDtmf(ev.event))?;
        if self.last_done == Some(timestamp) {
            return Ok(()); // redundant end packet or late update of a finished event
        }
        if let Some((ts, e, dur)) = self.current
            && ts != timestamp
        {
            // A new event started before we saw the previous end (end packets lost).
            self.emit(ts, e, dur);
        }
        let dur = match self.current {
            Some((ts, _, d)) if ts == timestamp => d.max(ev.duration),
            _ => ev.duration,
        };
        if ev.end {
            self.current = None;
            self.out.push_back(DtmfDigit {
                digit,
                timestamp,
                duration: dur,
            });
            self.last_done = Some(timestamp);
        } else {
            self.current = Some((timestamp, ev.event, dur));
        }
        Ok(())
    }

    fn emit(&mut self, ts: u32, event: u8, duration: u16) {
        if let Some(digit) = event_to_digit(event) {
            self.out.push_back(DtmfDigit {
                digit,
                timestamp: ts,
                duration,
            });
            self.last_done = Some(ts);
        }
        self.current = None;
    }

    /// Report an event whose end never arrived (call when media stops or after a timeout the
    /// caller chooses).
    pub fn flush(&mut self) {
        if let Some((ts, e, d)) = self.current {
            self.emit(ts, e, d);
        }
    }

    pub fn poll_digit(&mut self) -> Option<DtmfDigit> {
        self.out.pop_front()
    }
}

/// One packet of an outgoing digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// Send time relative to the digit start, in milliseconds.
    pub at_ms: u32,
    /// RTP marker bit (set on the first packet of the event only).
    pub marker: bool,
    pub payload: [u8; 4],
}

/// Packet schedule for `digit` lasting `duration_ms` on a `clock_rate` Hz telephone-event
/// stream with packets every `ptime_ms`: a start packet (marker), updates every ptime with
/// growing duration, then the end packet sent three times. All share the event's RTP
/// timestamp (the caller's media timestamp at `at_ms == 0`).
pub fn schedule(
    digit: char,
    duration_ms: u32,
    clock_rate: u32,
    ptime_ms: u32,
    volume: u8,
) -> Result<Vec<DtmfPacket>, DtmfError> {
    let event = digit_to_event(digit).ok_or(DtmfError::BadDigit)?;
    let ptime_ms = ptime_ms.max(1);
    let steps = duration_ms.div_ceil(ptime_ms).max(1);
    let units = |ms: u32| -> Result<u16, DtmfError> {
        u16::try_from(u64::from(ms) * u64::from(clock_rate) / 1000).map_err(|_| DtmfError::TooLong)
    };
    let total = units(steps * ptime_ms)?;
    let mut out = Vec::with_capacity(steps as usize + 3);
    for k in 1..steps {
        out.push(DtmfPacket {
            at_ms: (k - 1) * ptime_ms,
            marker: k == 1,
            payload: TelephoneEvent {
                event,
                end: false,
                volume,
                duration: units(k * ptime_ms)?,
            }
            .to_bytes(),
        });
    }
    for r in 0..3 {
        out.push(DtmfPacket {
            at_ms: (steps - 1 + r) * ptime_ms,
            marker: steps == 1 && r == 0,
            payload: TelephoneEvent {
                event,
                end: true,
                volume,
                duration: total,
            }
            .to_bytes(),
        });
    }
    Ok(out)
}

/// Parse a SIP INFO `application/dtmf-relay` body (`Signal=5\r\nDuration=160\r\n`).
/// Returns the digit and the duration in milliseconds (default 250 when absent).
pub fn parse_dtmf_relay(body: &str) -> Result<(char, u32), DtmfError> {
    let mut signal = None;
    let mut duration = 250;
    for line in body.lines() {
        let Some((k, v)) = line.split_once('=') else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(DtmfError::BadBody);
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "signal" => {
                let mut ch = v.chars();
                let (Some(c), None) = (ch.next(), ch.next()) else {
                    // Some PBXs send event numbers ("Signal=10" for *, "11" for #).
                    let n: u8 = v.parse().map_err(|_| DtmfError::BadDigit)?;
                    signal = Some(event_to_digit(n).ok_or(DtmfError::BadDigit)?);
                    continue;
                };
                digit_to_event(c).ok_or(DtmfError::BadDigit)?;
                signal = Some(c.to_ascii_uppercase());
            }
            "duration" => duration = v.parse().map_err(|_| DtmfError::BadBody)?,
            _ => {}
        }
    }
    Ok((signal.ok_or(DtmfError::BadBody)?, duration))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn payload_round_trip_and_rfc4733_layout() {
        let e = TelephoneEvent {
            event: 11,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(e.to_bytes(), [11, 0x8a, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&e.to_bytes()).unwrap(), e);
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), Err(DtmfError::TooShort));
    }

    #[test]
    fn schedule_for_whatsapp_500ms_at_8khz() {
        let s = schedule('5', 500, 8000, 20, 10).unwrap();
        assert_eq!(s.len(), 24 + 3);
        assert!(s[0].marker);
        assert!(s[1..].iter().all(|p| !p.marker));
        let first = TelephoneEvent::parse(&s[0].payload).unwrap();
        assert_eq!((first.event, first.end, first.duration), (5, false, 160));
        assert_eq!(s[1].at_ms, 20);
        let ends: Vec<_> = s
            .iter()
            .filter(|p| TelephoneEvent::parse(&p.payload).unwrap().end)
            .collect();
        assert_eq!(ends.len(), 3);
        assert!(
            ends.iter()
                .all(|p| TelephoneEvent::parse(&p.payload).unwrap().duration == 4000)
        );
        assert_eq!(schedule('x', 100, 8000, 20, 10), Err(DtmfError::BadDigit));
        assert_eq!(schedule('1', 10_000, 8000, 20, 10), Err(DtmfError::TooLong));
    }

    #[test]
    fn receiver_reports_each_digit_once() {
        let mut rx = DtmfReceiver::new();
        for (ts, d) in [(1000u32, '1'), (9000, '#'), (17000, '1')] {
            for p in schedule(d, 200, 8000, 20, 10).unwrap() {
                rx.handle_packet(ts, &p.payload).unwrap();
            }
            // Duplicated (network) end packets too.
            let last = schedule(d, 200, 8000, 20, 10).unwrap().pop().unwrap();
            rx.handle_packet(ts, &last.payload).unwrap();
        }
        let got: Vec<_> = std::iter::from_fn(|| rx.poll_digit()).collect();
        assert_eq!(got.iter().map(|d| d.digit).collect::<String>(), "1#1");
        assert!(got.iter().all(|d| d.duration == 1600));
    }

    #[test]
    fn receiver_recovers_when_end_packets_are_lost() {
        let mut rx = DtmfReceiver::new();
        let start = TelephoneEvent {
            event: 7,
            end: false,
            volume: 10,
            duration: 160,
        }
        .to_bytes();
        rx.handle_packet(100, &start).unwrap();
        assert_eq!(rx.poll_digit(), None);
        let next = TelephoneEvent {
            event: 8,
            end: false,
            volume: 10,
            duration: 160,
        }
        .to_bytes();
        rx.handle_packet(5000, &next).unwrap();
        assert_eq!(rx.poll_digit().map(|d| d.digit), Some('7'));
        rx.flush();
        assert_eq!(rx.poll_digit().map(|d| d.digit), Some('8'));
        assert_eq!(rx.poll_digit(), None);
        assert_eq!(
            rx.handle_packet(1, &[200, 0, 0, 0]),
            Err(DtmfError::NotDtmf(200))
        );
    }

    #[test]
    fn dtmf_relay_bodies() {
        assert_eq!(
            parse_dtmf_relay("Signal=5\r\nDuration=160\r\n"),
            Ok(('5', 160))
        );
        assert_eq!(parse_dtmf_relay("signal= #\nduration=100"), Ok(('#', 100)));
        assert_eq!(parse_dtmf_relay("Signal=10\r\n"), Ok(('*', 250)));
        assert_eq!(parse_dtmf_relay("Signal=a"), Ok(('A', 250)));
        assert!(parse_dtmf_relay("Duration=160").is_err());
        assert!(parse_dtmf_relay("Signal=Z").is_err());
        assert!(parse_dtmf_relay("garbage").is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..8), s in ".{0,60}") {
            let _ = TelephoneEvent::parse(&b);
            let mut rx = DtmfReceiver::new();
            let _ = rx.handle_packet(1, &b);
            let _ = parse_dtmf_relay(&s);
        }
    }
}
