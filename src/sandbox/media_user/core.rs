//! Sans-IO media endpoint of one sandbox WhatsApp user for one call (SDES mode).
//!
//! [`MediaUser`] is created at the instant the call is answered and driven with
//! `handle_datagram(now, bytes)`, `poll_transmit(now)`, `poll_timeout()` and `poll_event()`.
//!
//! Guarantees:
//! - Every datagram is authenticated and decrypted (SRTP, or SRTCP when RFC 5761 rtcp-mux says
//!   it is RTCP) before anything in it is believed; a packet that fails is counted in
//!   `decrypt_failures` and otherwise ignored (it neither counts as media nor resets a timer).
//! - RFC 4733 digits are reported exactly once each, however many redundant end packets come.
//! - Sending follows WhatsApp's rule that the business sends first: with
//!   `wait_for_first_packet` nothing is sent until one authenticated packet arrived. Then one
//!   packet per 20 ms, from a single SSRC with consecutive sequence numbers and timestamps.
//! - Hang-up like a WhatsApp client: [`HangUpReason::NoMediaAfterAnswer`] exactly
//!   `first_media_timeout` after answer when nothing arrived, [`HangUpReason::NoMediaMidCall`]
//!   exactly `mid_call_timeout` after the last authenticated packet. After a hang-up nothing
//!   more is sent.
//! - Never panics on any input.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

use super::audio::{AudioCodec, G711Tone, LevelMeter, NON_SILENT_RMS, OpusFrames};
use crate::media::dtmf::DtmfReceiver;
use crate::media::opus::SILENCE_20MS;
use crate::media::rtcp::{self, PacketKind, SenderInfo};
use crate::media::rtp::{RtpHeader, RtpPacket};
use crate::media::sdp::{Negotiated, SrtpKeys};
use crate::media::srtp::{SrtpError, SrtpSession};

/// Packet interval (ptime 20).
pub const PTIME: Duration = Duration::from_millis(20);
/// WhatsApp clients hang up when no media arrived this long after answer.
pub const DEFAULT_FIRST_MEDIA_TIMEOUT: Duration = Duration::from_secs(20);
/// WhatsApp clients hang up after this long without media mid-call.
pub const DEFAULT_MID_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval of our RTCP reports.
pub const DEFAULT_RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// Most received frames an echo keeps queued (a 200 ms jitter allowance).
const ECHO_QUEUE: usize = 10;
/// When the sender falls this far behind (a stalled shell), it skips ahead instead of bursting.
const MAX_LAG: Duration = Duration::from_millis(200);

/// What the user sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Real audio: the built-in 440 Hz tone (or the configured frame file).
    Tone,
    /// What it receives, re-sent under its own SSRC/sequence/timestamp (Opus silence when
    /// nothing new arrived).
    Echo,
    /// Nothing at all (the "silence" answer behaviour: the gateway's timers get no help).
    Silent,
}

/// Why the user hung up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HangUpReason {
    NoMediaAfterAnswer,
    NoMediaMidCall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// The first authenticated packet from the business side arrived.
    FirstPacket,
    /// An RFC 4733 digit ended.
    Digit(char),
    /// The user hangs up (the SIP layer sends BYE).
    HangUp { reason: HangUpReason },
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MediaUserError {
    #[error("SDES keys missing: the call was not negotiated as RTP/SAVP")]
    NotSrtp,
    #[error("negotiated codec {0} is not Opus, PCMU or PCMA")]
    UnsupportedCodec(String),
    #[error("SRTP: {0}")]
    Srtp(#[from] SrtpError),
}

/// Everything a [`MediaUser`] needs; see [`MediaUserConfig::from_negotiated`].
#[derive(Debug, Clone)]
pub struct MediaUserConfig {
    pub mode: Mode,
    /// SDES: `local` protects what we send, `remote` unprotects what we receive. `None`:
    /// packets are protected outside (a DTLS-SRTP leg); drive the user with
    /// [`MediaUser::poll_frame`] / [`MediaUser::handle_decrypted_rtp`] then.
    pub keys: Option<SrtpKeys>,
    /// Where our packets go (the business side's RTP address; rtcp-mux).
    pub remote: SocketAddr,
    pub codec: AudioCodec,
    /// Payload type we send audio with (the offerer's number for the codec).
    pub audio_payload_type: u8,
    /// telephone-event payload type (8 kHz), when negotiated.
    pub dtmf_payload_type: Option<u8>,
    pub ssrc: u32,
    pub initial_sequence: u16,
    pub initial_timestamp: u32,
    /// Send nothing until the business side's first packet (Meta's rule; default on).
    pub wait_for_first_packet: bool,
    /// `None` disables the timer.
    pub first_media_timeout: Option<Duration>,
    pub mid_call_timeout: Option<Duration>,
    /// RTCP report interval once we send (`None`: no RTCP).
    pub rtcp_interval: Option<Duration>,
    /// Opus frames for [`Mode::Tone`].
    pub tone: Arc<OpusFrames>,
    pub cname: String,
}

impl MediaUserConfig {
    /// Defaults for a call negotiated as `neg`: WhatsApp timers, wait for the first packet,
    /// random SSRC, sequence and timestamp.
    pub fn from_negotiated(neg: &Negotiated, mode: Mode) -> Result<Self, MediaUserError> {
        let keys = neg.srtp.clone().ok_or(MediaUserError::NotSrtp)?;
        let codec = AudioCodec::from_name(&neg.codec.name)
            .ok_or_else(|| MediaUserError::UnsupportedCodec(neg.codec.name.clone()))?;
        Ok(Self {
            mode,
            keys: Some(keys),
            remote: neg.remote_rtp,
            codec,
            audio_payload_type: neg.codec.payload_type,
            dtmf_payload_type: neg.dtmf.as_ref().map(|d| d.payload_type),
            ssrc: rand::random(),
            initial_sequence: rand::random(),
            initial_timestamp: rand::random(),
            wait_for_first_packet: true,
            first_media_timeout: Some(DEFAULT_FIRST_MEDIA_TIMEOUT),
            mid_call_timeout: Some(DEFAULT_MID_CALL_TIMEOUT),
            // Without rtcp-mux the peer expects RTCP on another port; send none then.
            rtcp_interval: neg.rtcp_mux.then_some(DEFAULT_RTCP_INTERVAL),
            tone: OpusFrames::tone(),
            cname: format!("sandbox-{:08x}", rand::random::<u32>()),
        })
    }
}

impl MediaUserConfig {
    /// Defaults for a DTLS-SRTP call (the leg protects and sends, and runs RTCP): Opus on
    /// `audio_payload_type`, WhatsApp timers, wait for the first packet, no keys, no RTCP.
    /// `remote` is informational (the leg's ICE decides where packets go).
    pub fn unprotected_opus(
        mode: Mode,
        remote: SocketAddr,
        audio_payload_type: u8,
        dtmf_payload_type: Option<u8>,
    ) -> Self {
        Self {
            mode,
            keys: None,
            remote,
            codec: AudioCodec::Opus,
            audio_payload_type,
            dtmf_payload_type,
            ssrc: rand::random(),
            initial_sequence: rand::random(),
            initial_timestamp: rand::random(),
            wait_for_first_packet: true,
            first_media_timeout: Some(DEFAULT_FIRST_MEDIA_TIMEOUT),
            mid_call_timeout: Some(DEFAULT_MID_CALL_TIMEOUT),
            rtcp_interval: None,
            tone: OpusFrames::tone(),
            cname: format!("sandbox-{:08x}", rand::random::<u32>()),
        }
    }
}

/// One unprotected RTP packet to send (DTLS-SRTP mode: the leg protects it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpFrame {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
}

/// What the user received and sent. Serialized as-is by the sandbox control API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MediaCounters {
    /// Authenticated, decrypted SRTP packets received (RTP only).
    pub rx_packets: u64,
    /// Their size on the wire (SRTP datagram bytes).
    pub rx_bytes: u64,
    /// Authenticated SRTCP packets received.
    pub rx_rtcp_packets: u64,
    /// SRTP packets sent (RTP only) and their wire bytes.
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_rtcp_packets: u64,
    /// Datagrams that failed authentication/decryption (or were replays / not RTP at all).
    pub decrypt_failures: u64,
    /// Digits received over RFC 4733, in order, each once.
    pub dtmf: String,
    /// Audio payloads that decoded, and how many of them were louder than -54 dBFS RMS.
    pub decoded_rx_packets: u64,
    pub non_silent_rx_packets: u64,
    /// Audio payloads of the negotiated type that did not decode.
    pub decode_errors: u64,
    /// Loudest decoded frame, RMS in 16-bit sample units (32767 = full scale).
    pub rx_peak_rms: u32,
    /// Milliseconds from answer to the first authenticated packet.
    pub first_rx_ms: Option<u64>,
    /// Set once the user hung up.
    pub hangup: Option<HangUpReason>,
}

/// A protected datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

/// The media user of one call.
#[derive(Debug)]
pub struct MediaUser {
    cfg: MediaUserConfig,
    /// `None` without keys (DTLS-SRTP: protection happens in the leg).
    tx: Option<SrtpSession>,
    rx: Option<SrtpSession>,
    answered_at: Instant,
    first_rx: Option<Instant>,
    last_rx: Option<Instant>,
    next_tx: Option<Instant>,
    next_rtcp: Option<Instant>,
    seq: u16,
    ts: u32,
    tone_pos: usize,
    g711_tone: Option<G711Tone>,
    echo: VecDeque<Vec<u8>>,
    dtmf: DtmfReceiver,
    meter: LevelMeter,
    counters: MediaCounters,
    events: VecDeque<MediaEvent>,
    ended: bool,
}

impl MediaUser {
    /// A user whose call was answered at `answered_at`.
    pub fn new(answered_at: Instant, cfg: MediaUserConfig) -> Result<Self, MediaUserError> {
        let (tx, rx) = match &cfg.keys {
            Some(keys) => {
                let tx = SrtpSession::new(&keys.local)?;
                let rx = match keys.remote_mki {
                    Some(m) => SrtpSession::with_mki(&keys.remote, Some(m))?,
                    None => SrtpSession::new(&keys.remote)?,
                };
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let next_tx =
            (!cfg.wait_for_first_packet && cfg.mode != Mode::Silent).then_some(answered_at);
        let g711_tone = match cfg.codec {
            AudioCodec::G711(law) => Some(G711Tone::new(law)),
            AudioCodec::Opus => None,
        };
        Ok(Self {
            tx,
            rx,
            answered_at,
            first_rx: None,
            last_rx: None,
            next_tx,
            next_rtcp: None,
            seq: cfg.initial_sequence,
            ts: cfg.initial_timestamp,
            tone_pos: 0,
            g711_tone,
            echo: VecDeque::new(),
            dtmf: DtmfReceiver::new(),
            meter: LevelMeter::new(cfg.codec),
            counters: MediaCounters::default(),
            events: VecDeque::new(),
            ended: false,
            cfg,
        })
    }

    pub fn config(&self) -> &MediaUserConfig {
        &self.cfg
    }

    pub fn counters(&self) -> &MediaCounters {
        &self.counters
    }

    /// When the business side's first authenticated packet arrived.
    pub fn first_rx(&self) -> Option<Instant> {
        self.first_rx
    }

    /// True once the user hung up or [`stop`](Self::stop) was called.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// End the media (the call ended by signalling): no more packets, events or timers.
    pub fn stop(&mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.ended = true;
        self.next_tx = None;
        self.next_rtcp = None;
        self.dtmf.flush();
        self.drain_digits();
    }

    /// One datagram from the network. Without SDES keys nothing can be authenticated: every
    /// datagram counts as a decrypt failure (use [`Self::handle_decrypted_rtp`]).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.handle_timeout(now);
        if self.ended {
            return;
        }
        let Some(rx) = self.rx.as_mut() else {
            self.counters.decrypt_failures += 1;
            return;
        };
        let mut buf = datagram.to_vec();
        match rtcp::classify(&buf) {
            PacketKind::Rtp => match rx.unprotect_rtp(&mut buf) {
                Ok(n) => {
                    self.counters.rx_packets += 1;
                    self.counters.rx_bytes += datagram.len() as u64;
                    self.media_arrived(now);
                    if let Some(rtp) = buf.get(..n).and_then(|b| RtpPacket::parse(b).ok()) {
                        self.handle_rtp(rtp.payload_type(), rtp.timestamp(), rtp.payload());
                    }
                }
                Err(_) => self.counters.decrypt_failures += 1,
            },
            PacketKind::Rtcp => match rx.unprotect_rtcp(&mut buf) {
                Ok(_) => {
                    self.counters.rx_rtcp_packets += 1;
                    self.media_arrived(now);
                }
                Err(_) => self.counters.decrypt_failures += 1,
            },
            _ => self.counters.decrypt_failures += 1,
        }
    }

    /// One RTP packet already authenticated and decrypted elsewhere (a DTLS-SRTP leg):
    /// counted like an SRTP packet (`wire_len` goes to `rx_bytes`), restarts the no-media
    /// timer, feeds digits, the level meter and the echo.
    pub fn handle_decrypted_rtp(
        &mut self,
        now: Instant,
        wire_len: usize,
        payload_type: u8,
        timestamp: u32,
        payload: &[u8],
    ) {
        self.handle_timeout(now);
        if self.ended {
            return;
        }
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += wire_len as u64;
        self.media_arrived(now);
        self.handle_rtp(payload_type, timestamp, payload);
    }

    fn media_arrived(&mut self, now: Instant) {
        if self.first_rx.is_none() {
            self.first_rx = Some(now);
            let ms = now.saturating_duration_since(self.answered_at).as_millis();
            self.counters.first_rx_ms = Some(u64::try_from(ms).unwrap_or(u64::MAX));
            self.events.push_back(MediaEvent::FirstPacket);
            if self.cfg.mode != Mode::Silent && self.next_tx.is_none() {
                self.next_tx = Some(now);
            }
        }
        self.last_rx = Some(now);
    }

    fn handle_rtp(&mut self, pt: u8, timestamp: u32, payload: &[u8]) {
        if Some(pt) == self.cfg.dtmf_payload_type {
            // A malformed or non-digit event is ignored (counted nowhere: it authenticated).
            let _ = self.dtmf.handle_packet(timestamp, payload);
            self.drain_digits();
        } else if pt == self.cfg.audio_payload_type {
            match self.meter.measure(payload) {
                Some(level) => {
                    self.counters.decoded_rx_packets += 1;
                    if level >= NON_SILENT_RMS {
                        self.counters.non_silent_rx_packets += 1;
                    }
                    self.counters.rx_peak_rms = self.counters.rx_peak_rms.max(level);
                }
                None => self.counters.decode_errors += 1,
            }
            if self.cfg.mode == Mode::Echo && !payload.is_empty() {
                if self.echo.len() >= ECHO_QUEUE {
                    self.echo.pop_front();
                }
                self.echo.push_back(payload.to_vec());
            }
        }
    }

    fn drain_digits(&mut self) {
        while let Some(d) = self.dtmf.poll_digit() {
            self.counters.dtmf.push(d.digit);
            self.events.push_back(MediaEvent::Digit(d.digit));
        }
    }

    /// Fire timers due at `now` (also done by every other `handle_*`/`poll_transmit` call).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        let reason = match self.last_rx {
            None => self
                .cfg
                .first_media_timeout
                .filter(|t| now >= self.answered_at + *t)
                .map(|_| HangUpReason::NoMediaAfterAnswer),
            Some(last) => self
                .cfg
                .mid_call_timeout
                .filter(|t| now >= last + *t)
                .map(|_| HangUpReason::NoMediaMidCall),
        };
        if let Some(reason) = reason {
            self.counters.hangup = Some(reason);
            self.end();
            self.events.push_back(MediaEvent::HangUp { reason });
        }
    }

    /// The next protected packet due at `now`, if any. Call until it returns `None`.
    /// Without SDES keys always `None` (use [`Self::poll_frame`]).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.handle_timeout(now);
        if self.ended || self.tx.is_none() {
            return None;
        }
        if let Some(at) = self.next_rtcp
            && now >= at
        {
            self.next_rtcp = self.cfg.rtcp_interval.map(|i| at + i);
            if let Some(t) = self.rtcp_report() {
                return Some(t);
            }
        }
        let frame = self.next_frame(now)?;
        let tx = self.tx.as_mut()?;
        let mut header = RtpHeader::new(
            frame.payload_type,
            frame.sequence,
            frame.timestamp,
            self.cfg.ssrc,
        );
        header.marker = frame.marker;
        let payload = &frame.payload;
        let mut pkt = vec![0u8; header.len(0) + payload.len() + tx.rtp_overhead()];
        let hl = header.write(&[], &mut pkt).ok()?;
        pkt.get_mut(hl..hl + payload.len())?
            .copy_from_slice(payload);
        let n = tx.protect_rtp(&mut pkt, hl + payload.len()).ok()?;
        pkt.truncate(n);
        self.counters.tx_packets += 1;
        self.counters.tx_bytes += n as u64;
        Some(Transmit {
            destination: self.cfg.remote,
            payload: pkt,
        })
    }

    /// The next unprotected RTP packet due at `now` (DTLS-SRTP mode: hand it to the leg).
    /// Same pacing, sequence/timestamp and first-packet rule as [`Self::poll_transmit`];
    /// counted as sent (`tx_bytes`: RTP header + payload). Call until it returns `None`.
    pub fn poll_frame(&mut self, now: Instant) -> Option<RtpFrame> {
        self.handle_timeout(now);
        if self.ended {
            return None;
        }
        let frame = self.next_frame(now)?;
        self.counters.tx_packets += 1;
        self.counters.tx_bytes += (12 + frame.payload.len()) as u64;
        Some(frame)
    }

    /// Advances the sender by one packet if one is due.
    fn next_frame(&mut self, now: Instant) -> Option<RtpFrame> {
        let at = self.next_tx?;
        if now < at {
            return None;
        }
        // Skip ahead rather than burst after a long stall; the timestamp keeps real time.
        let mut due = at;
        while now.saturating_duration_since(due) > MAX_LAG {
            due += PTIME;
            self.ts = self.ts.wrapping_add(self.cfg.codec.timestamp_step());
            self.tone_pos += 1;
        }
        self.next_tx = Some(due + PTIME);
        if self.next_rtcp.is_none() {
            self.next_rtcp = self.cfg.rtcp_interval.map(|i| due + i);
        }
        let payload = self.next_payload();
        let frame = RtpFrame {
            payload_type: self.cfg.audio_payload_type,
            sequence: self.seq,
            timestamp: self.ts,
            marker: self.counters.tx_packets == 0,
            payload,
        };
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(self.cfg.codec.timestamp_step());
        Some(frame)
    }

    fn next_payload(&mut self) -> Vec<u8> {
        match (self.cfg.mode, self.cfg.codec) {
            (Mode::Echo, codec) => match self.echo.pop_front() {
                Some(p) => p,
                // Nothing new heard: silence in the negotiated codec keeps the stream going.
                None => match codec {
                    AudioCodec::Opus => SILENCE_20MS.to_vec(),
                    AudioCodec::G711(law) => vec![law.encode(0); 160],
                },
            },
            (_, AudioCodec::Opus) => {
                let f = self.cfg.tone.frame(self.tone_pos).to_vec();
                self.tone_pos = self.tone_pos.wrapping_add(1);
                f
            }
            (_, AudioCodec::G711(law)) => match &mut self.g711_tone {
                Some(t) => t.next_frame(),
                None => vec![law.encode(0); 160],
            },
        }
    }

    fn rtcp_report(&mut self) -> Option<Transmit> {
        let info = SenderInfo {
            ntp_timestamp: 0,
            rtp_timestamp: self.ts,
            packet_count: self.counters.tx_packets as u32,
            octet_count: self.counters.tx_bytes as u32,
        };
        let mut buf = vec![0u8; 128];
        let n = rtcp::write_keepalive(
            &mut buf,
            self.cfg.ssrc,
            Some(&info),
            self.cfg.cname.as_bytes(),
        )
        .ok()?;
        buf.truncate(n);
        self.tx.as_mut()?.protect_rtcp_vec(&mut buf).ok()?;
        self.counters.tx_rtcp_packets += 1;
        Some(Transmit {
            destination: self.cfg.remote,
            payload: buf,
        })
    }

    /// The next instant something is due (a packet or a hang-up timer).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        let hangup = match self.last_rx {
            None => self.cfg.first_media_timeout.map(|t| self.answered_at + t),
            Some(last) => self.cfg.mid_call_timeout.map(|t| last + t),
        };
        [hangup, self.next_tx, self.next_rtcp]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests;
