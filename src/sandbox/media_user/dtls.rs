//! Sans-IO media endpoint of one sandbox WhatsApp user in DTLS-SRTP + ICE mode: a Meta-like
//! [`WebrtcLeg`] (ICE-lite, never the first DTLS or media packet) carrying a [`MediaUser`]
//! without keys (tone / echo / silent, RFC 4733 digits, level meter, WhatsApp's no-media
//! timers).
//!
//! Driven like the leg: `handle_datagram(now, source, local, bytes)`, `handle_timeout(now)`,
//! then `poll_transmit()` until `None`, `poll_event()` until `None`, and sleep until
//! `poll_timeout()`.
//!
//! Guarantees:
//! - Nothing is sent but what the leg produces: STUN answers to the gateway's checks, DTLS
//!   records answering the gateway's, and SRTP only after the gateway's first authenticated
//!   RTP packet (the user waits for it; the leg refuses anything earlier).
//! - A fatal leg failure (no DTLS within its connect timeout, a DTLS alert, ICE consent lost)
//!   is reported once as [`DtlsEvent::Failed`]; the user then stops; nothing panics.
//! - Counters are the [`MediaUser`]'s (`rx_packets` = RTP packets the leg decrypted), with
//!   `decrypt_failures` = the leg's SRTP datagrams that did not decrypt.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use crate::media::webrtc::{
    Connected, FailReason, LegReport, LegState, Output, Transmit, WebrtcLeg,
};

use super::core::{
    HangUpReason, MediaCounters, MediaEvent, MediaUser, MediaUserConfig, MediaUserError,
};

/// What a [`DtlsUser`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsEvent {
    /// DTLS-SRTP is up.
    Connected(Connected),
    /// The media user's own events (first packet, digit, no-media hang-up).
    Media(MediaEvent),
    /// The leg died: the call must end.
    Failed(FailReason),
}

/// One sandbox user's DTLS-SRTP media for one call.
pub struct DtlsUser {
    leg: WebrtcLeg,
    user: MediaUser,
    out: VecDeque<Transmit>,
    events: VecDeque<DtlsEvent>,
    leg_wake: Option<Instant>,
    /// Frames the leg refused (not connected yet, unknown PT): never expected.
    write_errors: u64,
    ended: bool,
}

impl std::fmt::Debug for DtlsUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsUser")
            .field("state", &self.leg.state())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl DtlsUser {
    /// `leg` is the Meta-like leg of the call (from `meta_answer`, or `meta_offer` +
    /// `accept_answer`); `cfg` has no keys (see [`MediaUserConfig::unprotected_opus`]).
    pub fn new(
        answered_at: Instant,
        leg: WebrtcLeg,
        cfg: MediaUserConfig,
    ) -> Result<Self, MediaUserError> {
        let mut cfg = cfg;
        cfg.keys = None;
        cfg.rtcp_interval = None;
        let user = MediaUser::new(answered_at, cfg)?;
        let mut me = DtlsUser {
            leg,
            user,
            out: VecDeque::new(),
            events: VecDeque::new(),
            leg_wake: None,
            write_errors: 0,
            ended: false,
        };
        me.pump(answered_at);
        Ok(me)
    }

    /// One datagram received on the call's socket (`local` = the socket's address).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        local: SocketAddr,
        datagram: &[u8],
    ) {
        if self.ended {
            return;
        }
        self.leg.handle_receive(now, source, local, datagram);
        self.pump(now);
    }

    /// Fire whatever is due at `now` (leg timers, packets to send, no-media timers).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if self.leg_wake.is_none_or(|w| w <= now) {
            self.leg.handle_timeout(now);
        }
        self.pump(now);
    }

    fn pump(&mut self, now: Instant) {
        for _ in 0..64 {
            self.drain_leg(now);
            if self.ended {
                return;
            }
            let mut wrote = false;
            while let Some(f) = self.user.poll_frame(now) {
                match self.leg.write_rtp(
                    now,
                    f.payload_type,
                    f.sequence,
                    f.timestamp,
                    f.marker,
                    &f.payload,
                ) {
                    Ok(()) => wrote = true,
                    Err(e) => {
                        self.write_errors += 1;
                        tracing::debug!(error = %e, "sandbox DTLS user: frame not sent");
                    }
                }
            }
            while let Some(ev) = self.user.poll_event() {
                if let MediaEvent::HangUp { .. } = ev {
                    self.ended = true;
                }
                self.events.push_back(DtlsEvent::Media(ev));
            }
            if !wrote || self.ended {
                self.drain_leg(now);
                return;
            }
        }
    }

    fn drain_leg(&mut self, now: Instant) {
        // Bounded: str0m hands out a finite queue per input; the cap guards a bug there.
        for _ in 0..10_000 {
            match self.leg.poll_output(now) {
                Output::Transmit(t) => self.out.push_back(t),
                Output::Timeout(at) => {
                    self.leg_wake = Some(at);
                    return;
                }
                Output::Connected(c) => self.events.push_back(DtlsEvent::Connected(c)),
                Output::Rtp(p) => {
                    // Header (12) + payload: the RTP bytes the leg decrypted.
                    let len = 12 + p.payload.len();
                    self.user.handle_decrypted_rtp(
                        now,
                        len,
                        p.payload_type,
                        p.timestamp,
                        &p.payload,
                    );
                }
                Output::Failed(why) => {
                    self.user.stop();
                    self.ended = true;
                    self.events.push_back(DtlsEvent::Failed(why));
                    self.leg_wake = None;
                    return;
                }
            }
        }
        self.leg_wake = Some(now);
    }

    /// The next datagram to send (from the call's socket).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    /// When to call [`Self::handle_timeout`] next (`None` once ended).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        [self.leg_wake, self.user.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// True once the leg failed, the user hung up, or [`Self::stop`] was called.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The call ended by signalling: close DTLS (queue close_notify; drain `poll_transmit`).
    pub fn stop(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.user.stop();
        self.leg.close();
        for _ in 0..64 {
            match self.leg.poll_output(now) {
                Output::Transmit(t) => self.out.push_back(t),
                _ => break,
            }
        }
    }

    /// The media counters, `decrypt_failures` from the leg.
    pub fn counters(&self) -> MediaCounters {
        let mut c = self.user.counters().clone();
        c.decrypt_failures = self.leg.report().rtp_not_decrypted;
        c
    }

    /// Why the user hung up on a media timer, if it did.
    pub fn hangup(&self) -> Option<HangUpReason> {
        self.user.counters().hangup
    }

    /// The leg's facts (ICE role seen, nomination, ClientHello, SRTP profile, counters).
    pub fn report(&self) -> LegReport {
        self.leg.report()
    }

    pub fn leg_state(&self) -> LegState {
        self.leg.state()
    }

    /// Frames the leg refused to send (should stay 0).
    pub fn write_errors(&self) -> u64 {
        self.write_errors
    }
}
