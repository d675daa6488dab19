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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::webrtc::{MetaLikeConfig, WebrtcConfig};
    use crate::sandbox::media_user::{AudioCodec, LevelMeter, Mode, NON_SILENT_RMS, OpusFrames};
    use std::time::Duration;

    const GW: &str = "127.0.0.1:41000";
    const SBX: &str = "127.0.0.1:41002";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn pair(now: Instant, mode: Mode, timeout: Duration) -> (WebrtcLeg, DtlsUser) {
        let (mut gw, offer) = WebrtcLeg::create_offer(now, &WebrtcConfig::new(addr(GW))).unwrap();
        let mut cfg = MetaLikeConfig::new(addr(SBX));
        cfg.leg.connect_timeout = timeout;
        let (leg, answer) = WebrtcLeg::meta_answer(now, &cfg, &offer).unwrap();
        gw.accept_answer(now, &answer).unwrap();
        let pt = leg.report().opus_pt.unwrap();
        let tel = leg.report().telephone_event_pt;
        let user_cfg = MediaUserConfig::unprotected_opus(mode, addr(SBX), pt, tel);
        (gw, DtlsUser::new(now, leg, user_cfg).unwrap())
    }

    #[test]
    fn connects_to_a_gateway_leg_and_carries_tone_both_ways() {
        let t0 = Instant::now();
        let (mut gw, mut user) = pair(t0, Mode::Tone, Duration::from_secs(5));
        let tone = OpusFrames::tone();
        let mut meter = LevelMeter::new(AudioCodec::Opus);
        let (mut heard, mut connected, mut n) = (0u32, false, 0usize);
        let mut next_tx = None;
        let mut t = t0;
        let mut first_from_sandbox = None;
        while t < t0 + Duration::from_secs(4) {
            gw.handle_timeout(t);
            user.handle_timeout(t);
            if let Some(at) = next_tx
                && at <= t
            {
                let pt = gw.report().opus_pt.unwrap();
                gw.write_rtp(t, pt, n as u16, (n * 960) as u32, n == 0, tone.frame(n))
                    .unwrap();
                n += 1;
                next_tx = Some(at + PTIME_TEST);
            }
            for _ in 0..50 {
                let mut moved = false;
                loop {
                    match gw.poll_output(t) {
                        Output::Transmit(x) => {
                            moved = true;
                            assert_eq!(x.destination, addr(SBX));
                            user.handle_datagram(t, addr(GW), addr(SBX), &x.contents);
                        }
                        Output::Connected(_) => {
                            connected = true;
                            next_tx.get_or_insert(t);
                        }
                        Output::Rtp(p) => {
                            if meter
                                .measure(&p.payload)
                                .is_some_and(|l| l >= NON_SILENT_RMS)
                            {
                                heard += 1;
                            }
                        }
                        Output::Failed(f) => panic!("gateway leg failed: {f}"),
                        Output::Timeout(_) => break,
                    }
                }
                while let Some(x) = user.poll_transmit() {
                    moved = true;
                    first_from_sandbox.get_or_insert(gw.report().stun_requests_sent);
                    gw.handle_receive(t, addr(SBX), addr(GW), &x.contents);
                }
                if !moved {
                    break;
                }
            }
            t += Duration::from_millis(5);
        }
        assert!(connected);
        // The sandbox spoke only after the gateway's first check.
        assert!(first_from_sandbox.is_some_and(|s| s > 0));
        let c = user.counters();
        assert!(c.rx_packets > 100, "{c:?}");
        assert!(c.non_silent_rx_packets > 90, "{c:?}");
        assert!(c.tx_packets > 100, "{c:?}");
        assert_eq!(c.decrypt_failures, 0);
        assert!(heard > 90, "gateway heard {heard} tone packets");
        let r = user.report();
        assert!(
            r.remote_ice_controlling_seen && r.regular_nomination_seen,
            "{r:?}"
        );
        assert_eq!(
            r.client_hello_from,
            Some(crate::media::webrtc::Side::Remote)
        );
        assert!(r.srtp_profile.is_some());
        assert_eq!(user.write_errors(), 0);
        let events: Vec<DtlsEvent> = std::iter::from_fn(|| user.poll_event()).collect();
        assert!(events.iter().any(|e| matches!(e, DtlsEvent::Connected(_))));
    }

    const PTIME_TEST: Duration = Duration::from_millis(20);

    #[test]
    fn silent_gateway_fails_the_call_after_the_connect_timeout_and_nothing_is_sent() {
        let t0 = Instant::now();
        let (_gw, mut user) = pair(t0, Mode::Tone, Duration::from_secs(2));
        let mut t = t0;
        let mut failed = None;
        while t < t0 + Duration::from_secs(5) && failed.is_none() {
            user.handle_timeout(t);
            assert!(
                user.poll_transmit().is_none(),
                "the Meta-like user spoke first"
            );
            while let Some(e) = user.poll_event() {
                if let DtlsEvent::Failed(f) = e {
                    failed = Some((t, f));
                }
            }
            t = user
                .poll_timeout()
                .unwrap_or(t + Duration::from_secs(1))
                .max(t + Duration::from_millis(1));
        }
        let (at, why) = failed.expect("the leg fails");
        assert!(matches!(why, FailReason::ConnectTimeout { .. }), "{why:?}");
        assert!(at >= t0 + Duration::from_secs(2) && at < t0 + Duration::from_secs(3));
        assert!(user.is_ended());
        assert_eq!(user.poll_timeout(), None);
        assert_eq!(user.counters().tx_packets, 0);
    }

    #[test]
    fn garbage_never_panics_and_is_not_media() {
        let t0 = Instant::now();
        let (_gw, mut user) = pair(t0, Mode::Echo, Duration::from_secs(2));
        for d in [
            &[][..],
            &[0u8; 3],
            &[0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9],
            &[22u8; 40],
        ] {
            user.handle_datagram(t0, addr(GW), addr(SBX), d);
        }
        assert_eq!(user.counters().rx_packets, 0);
        assert!(user.poll_transmit().is_none());
    }
}
