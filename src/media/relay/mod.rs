//! The media relay's sans-IO core: one [`RelayCall`] per call joins the WhatsApp leg (SRTP
//! with SDES keys, rtcp-mux) and the PBX leg (RTP or SRTP, RTCP muxed or on port + 1).
//!
//! The shell ([`crate::media::io`]) owns the sockets; it hands every received datagram to
//! [`RelayCall::handle_datagram`] with a scratch output buffer and sends what comes back,
//! sleeps until [`RelayCall::poll_timeout`] and then drains [`RelayCall::handle_timeout`],
//! and reads [`RelayCall::poll_event`].
//!
//! Guarantees:
//! - No allocation, lock or clock read per packet: packets are transformed from the receive
//!   buffer into the caller's output buffer; payload-type maps are 128-entry tables built
//!   when the call starts; counters are relaxed atomics.
//! - Toward Meta: one SSRC, continuous sequence numbers and timestamps ([`stream`]); nothing
//!   is sent before the WhatsApp leg is answered; on answer the first packet goes out at
//!   once (Opus silence), and silence keeps flowing while the PBX is quiet or on hold;
//!   RTCP sender reports every `rtcp_interval`.
//! - Toward the PBX: payload types mapped, Meta's stream passed through; the destination
//!   latches to the source of the PBX's first valid packet (symmetric RTP, NAT-safe) and
//!   re-latches after the PBX's SDP changes.
//! - SRTP/SRTCP authentication and replay failures are counted and dropped; anything that
//!   is not valid RTP/RTCP is dropped; no input panics.
//! - No packet from Meta for `media_timeout` after answer → [`RelayEvent::MediaTimeout`]
//!   (once).

mod counters;
mod spec;
pub mod stream;

pub use counters::{CounterSnapshot, MediaCounters, count_drop};
pub use spec::{Format, LegKeys, LegSpec, RelaySpec, SpecError};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::media::dtmf::{self, DtmfPacket};
use crate::media::opus;
use crate::media::rtcp::{self, SenderInfo};
use crate::media::rtp::{FIXED_HEADER_LEN, RtpPacket};
use crate::media::srtp::SrtpSession;
use crate::media::webrtc::{self, WebrtcLeg};
use counters::bump;
use stream::OutStream;

/// Largest datagram the relay handles (buffers must be at least this long).
pub const MAX_DATAGRAM: usize = 1500;

/// A leg of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    WhatsApp,
    Pbx,
}

/// Which local socket of a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Socket {
    Rtp,
    /// RTCP on port + 1 (only when the leg is not muxed).
    Rtcp,
}

/// A datagram to send: `out[..len]` from the local socket (`side`, `socket`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub side: Side,
    pub socket: Socket,
    pub destination: SocketAddr,
    pub len: usize,
}

/// Something the call core must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// No packet from Meta for the configured time after answer.
    MediaTimeout { silent_for: Duration },
    /// The DTLS+ICE leg toward Meta came up.
    WebrtcConnected {
        dtls_client: bool,
        ice_controlling: bool,
    },
    /// The DTLS+ICE leg toward Meta failed (no connection in time, fatal DTLS error).
    WebrtcFailed { reason: FailText },
}

/// A short failure text (no allocation when events are copied around).
pub type FailText = &'static str;

/// Random starting values of our stream toward Meta (chosen by the shell).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamIds {
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
}

const DROP: u8 = 0xff;
const SILENCE_AFTER: Duration = Duration::from_millis(60);
const FRAME: Duration = Duration::from_millis(20);
const DTMF_VOLUME: u8 = 10;

/// Payload type → payload type table for one direction.
#[derive(Clone)]
struct PtMap([u8; 128]);

impl PtMap {
    fn build(from: &LegSpec, to: &LegSpec) -> PtMap {
        let mut m = [DROP; 128];
        for f in &from.formats {
            if let Some(t) = to.formats.iter().find(|t| t.same_format(f))
                && let Some(slot) = m.get_mut(usize::from(f.pt_in & 0x7f))
            {
                *slot = t.pt_out;
            }
        }
        PtMap(m)
    }

    fn get(&self, pt: u8) -> Option<u8> {
        match self.0[usize::from(pt & 0x7f)] {
            DROP => None,
            p => Some(p),
        }
    }
}

struct Srtp {
    tx: SrtpSession,
    rx: SrtpSession,
}

fn srtp(keys: &Option<LegKeys>) -> Option<Srtp> {
    let k = keys.as_ref()?;
    Some(Srtp {
        tx: SrtpSession::new(&k.local).ok()?,
        rx: SrtpSession::new(&k.remote).ok()?,
    })
}

/// Silence toward Meta in the WhatsApp leg's first audio format: payload, timestamp step.
fn silence_for(f: Option<&Format>) -> (&'static [u8], u32) {
    const PCMU: [u8; 160] = [0xff; 160];
    const PCMA: [u8; 160] = [0xd5; 160];
    match f.map(|f| f.name.as_str()) {
        Some("pcmu") => (&PCMU, 160),
        Some("pcma") => (&PCMA, 160),
        _ => (&opus::SILENCE_20MS, opus::TIMESTAMP_STEP_20MS),
    }
}

/// One relayed call.
pub struct RelayCall {
    spec: RelaySpec,
    wa: Option<Srtp>,
    pbx: Option<Srtp>,
    to_pbx: PtMap,
    to_wa: PtMap,
    out: OutStream,
    silence_pt: Option<u8>,
    silence: (&'static [u8], u32),
    dtmf_pt: Option<u8>,
    dtmf: VecDeque<(Instant, DtmfPacket, u32)>,
    pbx_rtp: SocketAddr,
    pbx_rtcp: SocketAddr,
    latched_rtp: bool,
    latched_rtcp: bool,
    answered_at: Option<Instant>,
    last_wa: Option<Instant>,
    last_pbx_relayed: Option<Instant>,
    timed_out: bool,
    next_rtcp: Option<Instant>,
    on_hold: bool,
    /// Wall clock matching `epoch` (for RTCP NTP timestamps).
    epoch: (Instant, SystemTime),
    counters: Arc<MediaCounters>,
    events: VecDeque<RelayEvent>,
    /// DTLS+ICE toward Meta instead of SDES (`None`: SDES or plain RTP).
    webrtc: Option<Box<WebrtcLeg>>,
    webrtc_connected: bool,
    webrtc_wake: Option<Instant>,
    /// Datagrams the WebRTC leg produced, and PBX-bound RTP from it (DTLS mode only; str0m
    /// hands out owned buffers, so this path allocates per packet).
    queued: VecDeque<(Side, SocketAddr, Vec<u8>)>,
}

impl std::fmt::Debug for RelayCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayCall")
            .field("answered", &self.answered_at.is_some())
            .field("ssrc", &self.out.ssrc)
            .finish_non_exhaustive()
    }
}

impl RelayCall {
    /// A relay for `spec`; `answered`: the WhatsApp leg is answered (else early media:
    /// nothing is sent toward Meta until [`RelayCall::answer`]).
    pub fn new(
        now: Instant,
        wall: SystemTime,
        spec: RelaySpec,
        ids: StreamIds,
        answered: bool,
        counters: Arc<MediaCounters>,
    ) -> RelayCall {
        let clock = spec
            .whatsapp
            .formats
            .first()
            .map_or(48000, |f| f.clock_rate);
        let mut r = RelayCall {
            wa: srtp(&spec.whatsapp.srtp),
            pbx: srtp(&spec.pbx.srtp),
            to_pbx: PtMap::build(&spec.whatsapp, &spec.pbx),
            to_wa: PtMap::build(&spec.pbx, &spec.whatsapp),
            out: OutStream::new(ids.ssrc, ids.seq, ids.ts, clock),
            silence_pt: None,
            silence: silence_for(None),
            dtmf_pt: None,
            dtmf: VecDeque::new(),
            pbx_rtp: spec.pbx.remote_rtp,
            pbx_rtcp: spec.pbx.remote_rtcp,
            latched_rtp: false,
            latched_rtcp: false,
            answered_at: None,
            last_wa: None,
            last_pbx_relayed: None,
            timed_out: false,
            next_rtcp: None,
            on_hold: false,
            epoch: (now, wall),
            counters,
            events: VecDeque::new(),
            webrtc: None,
            webrtc_connected: false,
            webrtc_wake: None,
            queued: VecDeque::new(),
            spec,
        };
        r.derive_formats();
        if answered {
            r.answer(now);
        }
        r
    }

    fn derive_formats(&mut self) {
        let audio = self
            .spec
            .whatsapp
            .formats
            .iter()
            .find(|f| !f.is_telephone_event());
        self.silence = silence_for(audio);
        self.silence_pt = audio.map(|f| f.pt_out);
        if let Some(a) = audio {
            self.out.set_clock(a.clock_rate);
        }
        self.dtmf_pt = self
            .spec
            .whatsapp
            .formats
            .iter()
            .find(|f| f.is_telephone_event() && f.clock_rate == 8000)
            .or_else(|| {
                self.spec
                    .whatsapp
                    .formats
                    .iter()
                    .find(|f| f.is_telephone_event())
            })
            .map(|f| f.pt_out);
    }

    /// Media toward Meta goes through `leg` (DTLS-SRTP + ICE) instead of SDES keys. Nothing
    /// is sent to Meta before the leg is connected; then our first packet goes out at once.
    pub fn with_webrtc(mut self, now: Instant, leg: Box<WebrtcLeg>) -> RelayCall {
        self.webrtc = Some(leg);
        self.next_rtcp = None; // str0m sends RTCP itself
        self.drain_webrtc(now);
        self
    }

    /// The WebRTC leg's report (DTLS mode).
    pub fn webrtc_report(&self) -> Option<webrtc::LegReport> {
        self.webrtc.as_ref().map(|l| l.report())
    }

    /// Datagrams queued by the DTLS+ICE leg (call after every `handle_*` until `None`).
    pub fn poll_transmit(&mut self, out: &mut [u8]) -> Option<Transmit> {
        let (side, to, bytes) = self.queued.pop_front()?;
        let Some(o) = out.get_mut(..bytes.len()) else {
            bump(&self.counters.dropped, 1);
            return self.poll_transmit(out);
        };
        o.copy_from_slice(&bytes);
        Some(Transmit {
            side,
            socket: Socket::Rtp,
            destination: to,
            len: bytes.len(),
        })
    }

    fn drain_webrtc(&mut self, now: Instant) {
        let Some(leg) = self.webrtc.as_mut() else {
            return;
        };
        loop {
            match leg.poll_output(now) {
                webrtc::Output::Transmit(t) => {
                    self.queued
                        .push_back((Side::WhatsApp, t.destination, t.contents));
                }
                webrtc::Output::Timeout(at) => {
                    self.webrtc_wake = Some(at);
                    break;
                }
                webrtc::Output::Connected(c) => {
                    self.webrtc_connected = true;
                    self.events.push_back(RelayEvent::WebrtcConnected {
                        dtls_client: c.dtls_client,
                        ice_controlling: c.ice_controlling,
                    });
                }
                webrtc::Output::Rtp(p) => {
                    self.last_wa = Some(now);
                    let out_pt = match self.to_pbx.get(p.payload_type) {
                        Some(pt) if self.spec.pbx.send => pt,
                        _ => {
                            bump(&self.counters.dropped, 1);
                            continue;
                        }
                    };
                    let mut v = Vec::with_capacity(FIXED_HEADER_LEN + p.payload.len() + 16);
                    v.push(0x80);
                    v.push((u8::from(p.marker) << 7) | (out_pt & 0x7f));
                    v.extend_from_slice(&p.sequence.to_be_bytes());
                    v.extend_from_slice(&p.timestamp.to_be_bytes());
                    v.extend_from_slice(&p.ssrc.to_be_bytes());
                    v.extend_from_slice(&p.payload);
                    let len = v.len();
                    if let Some(s) = &mut self.pbx {
                        v.resize(len + s.tx.rtp_overhead(), 0);
                        match s.tx.protect_rtp(&mut v, len) {
                            Ok(n) => v.truncate(n),
                            Err(_) => {
                                bump(&self.counters.dropped, 1);
                                continue;
                            }
                        }
                    }
                    bump(&self.counters.wa_to_pbx_packets, 1);
                    bump(&self.counters.wa_to_pbx_bytes, len as u64);
                    self.queued.push_back((Side::Pbx, self.pbx_rtp, v));
                }
                webrtc::Output::Failed(webrtc::FailReason::RemoteClosed) => {
                    // WhatsApp closes DTLS when it hangs up; its BYE ends the call. Should
                    // no BYE come, the media timeout does.
                    tracing::info!("WhatsApp closed DTLS");
                    self.webrtc_wake = None;
                    break;
                }
                webrtc::Output::Failed(why) => {
                    tracing::warn!(reason = %why, "DTLS+ICE leg toward WhatsApp failed");
                    self.events.push_back(RelayEvent::WebrtcFailed {
                        reason: match why {
                            webrtc::FailReason::ConnectTimeout { .. } => {
                                "no DTLS connection with WhatsApp in time"
                            }
                            _ => "DTLS/ICE failure on the WhatsApp leg",
                        },
                    });
                    self.webrtc_wake = None;
                    break;
                }
            }
        }
    }

    pub fn counters(&self) -> &Arc<MediaCounters> {
        &self.counters
    }

    pub fn spec(&self) -> &RelaySpec {
        &self.spec
    }

    /// Our SSRC toward Meta.
    pub fn ssrc(&self) -> u32 {
        self.out.ssrc
    }

    /// The WhatsApp leg is answered: media toward Meta may flow (first packet now).
    pub fn answer(&mut self, now: Instant) {
        if self.answered_at.is_none() {
            self.answered_at = Some(now);
            self.next_rtcp = Some(now + Duration::from_secs(1).min(self.spec.rtcp_interval));
        }
    }

    /// A re-negotiation (new SDP on either leg). SRTP state is kept when the keys did not
    /// change (ROC and replay windows continue); our stream toward Meta always continues.
    pub fn update(&mut self, spec: RelaySpec) {
        if spec.whatsapp.srtp != self.spec.whatsapp.srtp {
            self.wa = srtp(&spec.whatsapp.srtp);
        }
        if spec.pbx.srtp != self.spec.pbx.srtp {
            self.pbx = srtp(&spec.pbx.srtp);
        }
        if spec.pbx.remote_rtp != self.spec.pbx.remote_rtp {
            self.pbx_rtp = spec.pbx.remote_rtp;
            self.latched_rtp = false;
        }
        if spec.pbx.remote_rtcp != self.spec.pbx.remote_rtcp {
            self.pbx_rtcp = spec.pbx.remote_rtcp;
            self.latched_rtcp = false;
        }
        self.to_pbx = PtMap::build(&spec.whatsapp, &spec.pbx);
        self.to_wa = PtMap::build(&spec.pbx, &spec.whatsapp);
        self.spec = spec;
        self.derive_formats();
    }

    /// The PBX put the call on hold (or resumed). Silence fills the gap either way; this is
    /// kept for reporting.
    pub fn set_hold(&mut self, hold: bool) {
        self.on_hold = hold;
    }

    pub fn on_hold(&self) -> bool {
        self.on_hold
    }

    /// Where PBX-bound RTP goes now (the SDP address until latched).
    pub fn pbx_destination(&self) -> SocketAddr {
        self.pbx_rtp
    }

    /// Queue one RFC 4733 digit toward Meta (PBX INFO). `false` when Meta's SDP has no
    /// telephone-event or the digit is invalid.
    pub fn send_dtmf(&mut self, now: Instant, digit: char, duration_ms: u32) -> bool {
        if self.dtmf_pt.is_none() || self.answered_at.is_none() {
            return false;
        }
        let Ok(packets) = dtmf::schedule(digit, duration_ms.clamp(40, 5000), 8000, 20, DTMF_VOLUME)
        else {
            return false;
        };
        // After any event already queued.
        let start = self.dtmf.back().map_or(now, |(at, _, _)| *at + FRAME);
        let ts = self.out.current_ts(start);
        for p in packets {
            let at = start + Duration::from_millis(u64::from(p.at_ms));
            self.dtmf.push_back((at, p, ts));
        }
        true
    }

    /// Something for the call core.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }

    fn silence_due(&self) -> Option<Instant> {
        let answered = self.answered_at?;
        if self.silence_pt.is_none() || !self.spec.whatsapp.send || !self.dtmf.is_empty() {
            return None;
        }
        if self.webrtc.is_some() && !self.webrtc_connected {
            return None;
        }
        match self.out.last_at() {
            // The first packet toward Meta is ours, at answer.
            None => Some(answered),
            Some(_) if !self.spec.silence_keepalive => None,
            Some(last) => {
                let quiet = self
                    .last_pbx_relayed
                    .map_or(answered, |t| t + SILENCE_AFTER);
                Some((last + FRAME).max(quiet))
            }
        }
    }

    fn timeout_due(&self) -> Option<Instant> {
        if self.timed_out {
            return None;
        }
        let answered = self.answered_at?;
        let last = self.last_wa.map_or(answered, |t| t.max(answered));
        Some(last + self.spec.media_timeout)
    }

    /// The earliest time [`RelayCall::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.silence_due(),
            self.timeout_due(),
            self.dtmf.front().map(|(at, _, _)| *at),
            self.next_rtcp,
            self.webrtc_wake,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs what is due at `now`; returns at most one datagram (in `out`). Call until `None`.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        if let Some(at) = self.webrtc_wake
            && at <= now
            && let Some(leg) = self.webrtc.as_mut()
        {
            self.webrtc_wake = None;
            leg.handle_timeout(now);
            self.drain_webrtc(now);
        }
        if let Some(tx) = self.poll_transmit(out) {
            return Some(tx);
        }
        if let Some(t) = self.timeout_due()
            && t <= now
        {
            self.timed_out = true;
            let since = self.last_wa.or(self.answered_at).unwrap_or(now);
            self.events.push_back(RelayEvent::MediaTimeout {
                silent_for: now.saturating_duration_since(since),
            });
        }
        if let Some((at, _, _)) = self.dtmf.front()
            && *at <= now
            && let Some((_, p, ts)) = self.dtmf.pop_front()
        {
            let pt = self.dtmf_pt?;
            let seq = self.out.generate_at(now, ts, p.payload.len());
            let tx = self.write_to_wa(now, out, pt, seq, ts, p.marker, &p.payload);
            if tx.is_some() {
                bump(&self.counters.dtmf_packets, 1);
            }
            return tx.or_else(|| self.handle_timeout(now, out));
        }
        if let Some(t) = self.silence_due()
            && t <= now
            && let Some(pt) = self.silence_pt
        {
            let (payload, step) = self.silence;
            let (seq, ts) = self.out.generate(now, step, payload.len());
            let tx = self.write_to_wa(now, out, pt, seq, ts, false, payload);
            if tx.is_some() {
                bump(&self.counters.silence_packets, 1);
            }
            return tx;
        }
        if let Some(t) = self.next_rtcp
            && t <= now
        {
            self.next_rtcp = Some(now + self.spec.rtcp_interval);
            return self.sender_report(now, out);
        }
        None
    }

    fn ntp(&self, now: Instant) -> u64 {
        let wall = self.epoch.1 + now.saturating_duration_since(self.epoch.0);
        let d = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs().wrapping_add(2_208_988_800);
        let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
        (secs << 32) | frac
    }

    fn sender_report(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        let info = SenderInfo {
            ntp_timestamp: self.ntp(now),
            rtp_timestamp: self.out.current_ts(now),
            packet_count: self.out.packets,
            octet_count: self.out.octets,
        };
        let n = rtcp::write_keepalive(out, self.out.ssrc, Some(&info), b"whatsip").ok()?;
        let n = match &mut self.wa {
            Some(s) => s.tx.protect_rtcp(out, n).ok()?,
            None => n,
        };
        bump(&self.counters.rtcp_sent, 1);
        Some(Transmit {
            side: Side::WhatsApp,
            socket: Socket::Rtp,
            destination: self.spec.whatsapp.remote_rtcp,
            len: n,
        })
    }

    /// Writes an RTP packet with our SSRC into `out`, protects it, and counts it.
    #[allow(clippy::too_many_arguments)]
    fn write_to_wa(
        &mut self,
        now: Instant,
        out: &mut [u8],
        pt: u8,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
    ) -> Option<Transmit> {
        let len = FIXED_HEADER_LEN + payload.len();
        if let Some(leg) = self.webrtc.as_mut() {
            if leg.write_rtp(now, pt, seq, ts, marker, payload).is_err() {
                bump(&self.counters.dropped, 1);
                return None;
            }
            bump(&self.counters.pbx_to_wa_packets, 1);
            bump(&self.counters.pbx_to_wa_bytes, len as u64);
            self.drain_webrtc(now);
            return self.poll_transmit(out);
        }
        let overhead = self.wa.as_ref().map_or(0, |s| s.tx.rtp_overhead());
        if out.len() < len + overhead {
            bump(&self.counters.dropped, 1);
            return None;
        }
        out[0] = 0x80;
        out[1] = (u8::from(marker) << 7) | (pt & 0x7f);
        out[2..4].copy_from_slice(&seq.to_be_bytes());
        out[4..8].copy_from_slice(&ts.to_be_bytes());
        out[8..12].copy_from_slice(&self.out.ssrc.to_be_bytes());
        out[FIXED_HEADER_LEN..len].copy_from_slice(payload);
        let n = match &mut self.wa {
            Some(s) => match s.tx.protect_rtp(out, len) {
                Ok(n) => n,
                Err(_) => {
                    bump(&self.counters.dropped, 1);
                    return None;
                }
            },
            None => len,
        };
        bump(&self.counters.pbx_to_wa_packets, 1);
        bump(&self.counters.pbx_to_wa_bytes, len as u64);
        Some(Transmit {
            side: Side::WhatsApp,
            socket: Socket::Rtp,
            destination: self.spec.whatsapp.remote_rtp,
            len: n,
        })
    }

    /// A datagram arrived on (`side`, `socket`) from `from`; `data` is the received bytes
    /// (unprotected in place). Returns what to send, written into `out`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        side: Side,
        socket: Socket,
        from: SocketAddr,
        data: &mut [u8],
        out: &mut [u8],
    ) -> Option<Transmit> {
        if side == Side::WhatsApp
            && let Some(leg) = self.webrtc.as_mut()
        {
            leg.handle_receive(now, from, self.spec.whatsapp.local, data);
            self.drain_webrtc(now);
            return self.poll_transmit(out);
        }
        let is_rtcp = socket == Socket::Rtcp || rtcp::is_rtcp(data);
        match (side, is_rtcp) {
            (Side::WhatsApp, true) => {
                self.rtcp_in(side, data);
                None
            }
            (Side::WhatsApp, false) => self.relay_from_whatsapp(now, data, out),
            (Side::Pbx, true) => {
                if self.rtcp_in(side, data) && !self.latched_rtcp {
                    self.latched_rtcp = true;
                    self.pbx_rtcp = from;
                }
                None
            }
            (Side::Pbx, false) => self.relay_from_pbx(now, from, data, out),
        }
    }

    /// Authenticates an RTCP packet (we terminate RTCP per leg). `true` when valid.
    fn rtcp_in(&mut self, side: Side, data: &mut [u8]) -> bool {
        let session = match side {
            Side::WhatsApp => self.wa.as_mut(),
            Side::Pbx => self.pbx.as_mut(),
        };
        let ok = match session {
            Some(s) => s.rx.unprotect_rtcp(data).is_ok(),
            None => rtcp::is_rtcp(data),
        };
        if ok {
            bump(&self.counters.rtcp_received, 1);
        } else {
            bump(&self.counters.decrypt_failures, 1);
        }
        ok
    }

    fn unprotect(&mut self, side: Side, data: &mut [u8]) -> Option<usize> {
        let session = match side {
            Side::WhatsApp => self.wa.as_mut(),
            Side::Pbx => self.pbx.as_mut(),
        };
        match session {
            Some(s) => match s.rx.unprotect_rtp(data) {
                Ok(n) => Some(n),
                Err(_) => {
                    bump(&self.counters.decrypt_failures, 1);
                    None
                }
            },
            None => Some(data.len()),
        }
    }

    fn relay_from_whatsapp(
        &mut self,
        now: Instant,
        data: &mut [u8],
        out: &mut [u8],
    ) -> Option<Transmit> {
        let len = self.unprotect(Side::WhatsApp, data)?;
        let Ok(pkt) = RtpPacket::parse(&data[..len]) else {
            bump(&self.counters.dropped, 1);
            return None;
        };
        self.last_wa = Some(now);
        let pt = pkt.payload_type();
        let (Some(out_pt), true) = (self.to_pbx.get(pt), self.spec.pbx.send) else {
            bump(&self.counters.dropped, 1);
            return None;
        };
        let overhead = self.pbx.as_ref().map_or(0, |s| s.tx.rtp_overhead());
        if out.len() < len + overhead {
            bump(&self.counters.dropped, 1);
            return None;
        }
        out[..len].copy_from_slice(&data[..len]);
        out[1] = (out[1] & 0x80) | (out_pt & 0x7f);
        let n = match &mut self.pbx {
            Some(s) => s.tx.protect_rtp(out, len).ok()?,
            None => len,
        };
        bump(&self.counters.wa_to_pbx_packets, 1);
        bump(&self.counters.wa_to_pbx_bytes, len as u64);
        Some(Transmit {
            side: Side::Pbx,
            socket: Socket::Rtp,
            destination: self.pbx_rtp,
            len: n,
        })
    }

    fn relay_from_pbx(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &mut [u8],
        out: &mut [u8],
    ) -> Option<Transmit> {
        let len = self.unprotect(Side::Pbx, data)?;
        let Ok(pkt) = RtpPacket::parse(&data[..len]) else {
            bump(&self.counters.dropped, 1);
            return None;
        };
        if !self.latched_rtp {
            self.latched_rtp = true;
            self.pbx_rtp = from;
            if self.spec.pbx.rtcp_mux {
                self.pbx_rtcp = from;
                self.latched_rtcp = true;
            }
        }
        let out_pt = match (self.answered_at, self.to_wa.get(pkt.payload_type())) {
            (Some(_), Some(p)) if self.spec.whatsapp.send => p,
            _ => {
                bump(&self.counters.dropped, 1);
                return None;
            }
        };
        let (seq, ts, fresh) = self.out.relay(
            now,
            pkt.ssrc(),
            pkt.sequence(),
            pkt.timestamp(),
            pkt.payload().len(),
        );
        self.last_pbx_relayed = Some(now);
        let marker = pkt.marker() || fresh;
        // `pkt` borrows `data`; the payload is copied into `out` by `write_to_wa`.
        let payload_range = pkt.header_len()..pkt.header_len() + pkt.payload().len();
        let payload = &data[payload_range];
        self.write_to_wa(now, out, out_pt, seq, ts, marker, payload)
    }
}

#[cfg(test)]
mod tests;
