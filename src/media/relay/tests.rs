//! The relay on virtual time: SDPs negotiated with `media::sdp` exactly as the gateway does,
//! "Meta" and "the PBX" played by independent SRTP sessions built from the SDP keys.

use super::*;
use crate::media::sdp::{self, AudioSession, Codec, LocalMedia};
use std::net::IpAddr;

const META: &str = "157.240.19.130:3480";
const PBX: &str = "127.0.0.1:20000";

fn meta_offer() -> String {
    "v=0\r\no=- 1731000000 1 IN IP4 157.240.19.130\r\ns=-\r\nc=IN IP4 157.240.19.130\r\nt=0 0\r\nm=audio 3480 RTP/SAVP 111 126\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:126 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\na=rtcp-mux\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n".to_owned()
}

fn pbx_sdp(port: u16, dir: &str) -> String {
    format!(
        "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 111 101\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na={dir}\r\n"
    )
}

/// A user-initiated call: Meta offered, we answered; we offered the PBX, it answered.
struct Fixture {
    relay: RelayCall,
    /// Meta's view: protects with its key, unprotects with ours.
    meta_tx: SrtpSession,
    meta_rx: SrtpSession,
    wa_local: String,
    pbx_local: String,
    t0: Instant,
}

fn fixture(answered: bool) -> Fixture {
    let lo = IpAddr::from([127, 0, 0, 1]);
    let wa_offer = AudioSession::parse(meta_offer().as_bytes()).unwrap();
    let (wa_answer, wa_neg) =
        sdp::build_answer(&wa_offer, &LocalMedia::whatsapp(lo, 40000, false)).unwrap();
    let pbx_offer = sdp::build_offer(&LocalMedia::pbx(lo, 30000, vec![Codec::opus(111)]));
    let wa_local = wa_answer.to_sdp();
    let pbx_local = pbx_offer.sdp.to_sdp();
    let spec = RelaySpec::from_sdps(
        wa_local.as_bytes(),
        meta_offer().as_bytes(),
        pbx_local.as_bytes(),
        pbx_sdp(20000, "sendrecv").as_bytes(),
    )
    .unwrap();
    let keys = wa_neg.srtp.unwrap();
    let t0 = Instant::now();
    let ids = StreamIds {
        ssrc: 0x5157_0001,
        seq: 65530,
        ts: 1_000_000,
    };
    Fixture {
        relay: RelayCall::new(
            t0,
            SystemTime::UNIX_EPOCH,
            spec,
            ids,
            answered,
            Arc::new(MediaCounters::default()),
        ),
        meta_tx: SrtpSession::new(&keys.remote).unwrap(),
        meta_rx: SrtpSession::new(&keys.local).unwrap(),
        wa_local,
        pbx_local,
        t0,
    }
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    v[2..4].copy_from_slice(&seq.to_be_bytes());
    v[4..8].copy_from_slice(&ts.to_be_bytes());
    v[8..12].copy_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn at(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

/// Feeds a PBX packet; returns what Meta decrypts (or `None`).
fn pbx_to_meta(f: &mut Fixture, now: Instant, pkt: &[u8]) -> Option<Vec<u8>> {
    let mut data = pkt.to_vec();
    let mut out = [0u8; MAX_DATAGRAM];
    let tx = f.relay.handle_datagram(
        now,
        Side::Pbx,
        Socket::Rtp,
        PBX.parse().unwrap(),
        &mut data,
        &mut out,
    )?;
    assert_eq!(tx.side, Side::WhatsApp);
    assert_eq!(tx.destination, META.parse().unwrap());
    let mut got = out[..tx.len].to_vec();
    f.meta_rx
        .unprotect_rtp_vec(&mut got)
        .expect("Meta decrypts");
    Some(got)
}

/// Drains timers at `now`; returns the RTP packets Meta decrypts (RTCP skipped).
fn timers(f: &mut Fixture, now: Instant) -> Vec<Vec<u8>> {
    let mut got = vec![];
    let mut out = [0u8; MAX_DATAGRAM];
    while let Some(tx) = f.relay.handle_timeout(now, &mut out) {
        let mut p = out[..tx.len].to_vec();
        if rtcp::is_rtcp(&p) {
            f.meta_rx
                .unprotect_rtcp_vec(&mut p)
                .expect("SRTCP from us decrypts");
            continue;
        }
        f.meta_rx.unprotect_rtp_vec(&mut p).expect("Meta decrypts");
        got.push(p);
    }
    got
}

fn hdr(p: &[u8]) -> (bool, u8, u16, u32, u32) {
    let r = RtpPacket::parse(p).unwrap();
    (
        r.marker(),
        r.payload_type(),
        r.sequence(),
        r.timestamp(),
        r.ssrc(),
    )
}

#[test]
fn first_packet_toward_meta_is_ours_at_answer_then_silence_while_the_pbx_is_quiet() {
    let mut f = fixture(true);
    let t0 = f.t0;
    assert_eq!(f.relay.poll_timeout(), Some(t0));
    let first = timers(&mut f, t0);
    assert_eq!(first.len(), 1);
    assert_eq!(hdr(&first[0]), (false, 111, 65530, 1_000_000, 0x5157_0001));
    assert_eq!(&first[0][12..], &opus::SILENCE_20MS);
    // Every 20 ms after that: silence, consecutive sequence numbers through the rollover.
    let mut seqs = vec![];
    for k in 1..=10 {
        let now = at(t0, 20 * k);
        assert!(f.relay.poll_timeout().unwrap() <= now);
        for p in timers(&mut f, now) {
            let (_, pt, seq, ts, ssrc) = hdr(&p);
            assert_eq!((pt, ssrc), (111, 0x5157_0001));
            assert_eq!(ts, 1_000_000 + 960 * k as u32);
            seqs.push(seq);
        }
    }
    assert_eq!(seqs, vec![65531, 65532, 65533, 65534, 65535, 0, 1, 2, 3, 4]);
    let c = f.relay.counters().snapshot();
    assert_eq!(c.silence_packets, 11);
    assert_eq!(c.pbx_to_wa_packets, 11);
}

#[test]
fn nothing_goes_to_meta_before_answer() {
    let mut f = fixture(false);
    let t0 = f.t0;
    assert_eq!(f.relay.poll_timeout(), None);
    assert!(pbx_to_meta(&mut f, t0, &rtp(111, 1, 0, 9, b"early")).is_none());
    assert_eq!(f.relay.counters().snapshot().dropped, 1);
    f.relay.answer(at(t0, 100));
    assert_eq!(timers(&mut f, at(t0, 100)).len(), 1);
}

#[test]
fn pbx_audio_reaches_meta_under_one_ssrc_across_pbx_ssrc_changes() {
    let mut f = fixture(true);
    let t0 = f.t0;
    timers(&mut f, t0); // our first packet (silence)
    let a = pbx_to_meta(&mut f, at(t0, 10), &rtp(111, 500, 48_000, 0xaaaa, b"hello")).unwrap();
    // 10 ms after our silence packet: next sequence, +480 timestamp units, marker (new source).
    assert_eq!(hdr(&a), (true, 111, 65531, 1_000_480, 0x5157_0001));
    assert_eq!(&a[12..], b"hello");
    let b = pbx_to_meta(&mut f, at(t0, 30), &rtp(111, 501, 48_960, 0xaaaa, b"world")).unwrap();
    assert_eq!(hdr(&b), (false, 111, 65532, 1_001_440, 0x5157_0001));
    // Music on hold from another SSRC with unrelated numbering.
    let c = pbx_to_meta(&mut f, at(t0, 50), &rtp(111, 7, 3, 0xbbbb, b"moh")).unwrap();
    assert_eq!(hdr(&c), (true, 111, 65533, 1_002_400, 0x5157_0001));
    // No silence while the PBX talks.
    assert!(timers(&mut f, at(t0, 60)).is_empty());
    let s = f.relay.counters().snapshot();
    assert_eq!((s.pbx_to_wa_packets, s.silence_packets), (4, 1));
    assert_eq!(s.pbx_to_wa_bytes, 4 * 12 + 3 + 5 + 5 + 3);
}

#[test]
fn meta_audio_reaches_the_pbx_at_its_latched_address_and_bad_srtp_is_counted() {
    let mut f = fixture(true);
    let t0 = f.t0;
    let mut out = [0u8; MAX_DATAGRAM];
    // Before the PBX sends anything: its SDP address.
    let mut p = rtp(111, 10, 960, 0x3e7a, b"from-meta");
    f.meta_tx.protect_rtp_vec(&mut p).unwrap();
    let meta: SocketAddr = META.parse().unwrap();
    let tx = f
        .relay
        .handle_datagram(
            at(t0, 1),
            Side::WhatsApp,
            Socket::Rtp,
            meta,
            &mut p,
            &mut out,
        )
        .unwrap();
    assert_eq!((tx.side, tx.destination), (Side::Pbx, PBX.parse().unwrap()));
    assert_eq!(hdr(&out[..tx.len]), (false, 111, 10, 960, 0x3e7a));
    assert_eq!(&out[12..tx.len], b"from-meta");
    // The PBX's packets come from another port (NAT): we latch to it.
    let nat: SocketAddr = "127.0.0.1:20222".parse().unwrap();
    let mut q = rtp(111, 1, 0, 9, b"x");
    f.relay
        .handle_datagram(at(t0, 2), Side::Pbx, Socket::Rtp, nat, &mut q, &mut out)
        .unwrap();
    let mut p = rtp(111, 11, 1920, 0x3e7a, b"again");
    f.meta_tx.protect_rtp_vec(&mut p).unwrap();
    let tx = f
        .relay
        .handle_datagram(
            at(t0, 3),
            Side::WhatsApp,
            Socket::Rtp,
            meta,
            &mut p,
            &mut out,
        )
        .unwrap();
    assert_eq!(tx.destination, nat);
    // A replayed and a tampered packet are dropped and counted.
    let mut replay = rtp(111, 11, 1920, 0x3e7a, b"again");
    let mut fresh =
        SrtpSession::new(&f.relay.spec().whatsapp.srtp.clone().unwrap().remote).unwrap();
    fresh.protect_rtp_vec(&mut replay).unwrap();
    assert!(
        f.relay
            .handle_datagram(
                at(t0, 4),
                Side::WhatsApp,
                Socket::Rtp,
                meta,
                &mut replay,
                &mut out
            )
            .is_none()
    );
    let mut bad = rtp(111, 12, 2880, 0x3e7a, b"tampered");
    f.meta_tx.protect_rtp_vec(&mut bad).unwrap();
    bad[14] ^= 1;
    assert!(
        f.relay
            .handle_datagram(
                at(t0, 5),
                Side::WhatsApp,
                Socket::Rtp,
                meta,
                &mut bad,
                &mut out
            )
            .is_none()
    );
    let s = f.relay.counters().snapshot();
    assert_eq!((s.wa_to_pbx_packets, s.decrypt_failures), (2, 2));
}

#[test]
fn media_timeout_fires_once_after_meta_goes_quiet() {
    let mut f = fixture(true);
    let t0 = f.t0;
    let meta: SocketAddr = META.parse().unwrap();
    let mut out = [0u8; MAX_DATAGRAM];
    let mut p = rtp(111, 1, 0, 0x3e7a, b"a");
    f.meta_tx.protect_rtp_vec(&mut p).unwrap();
    f.relay.handle_datagram(
        at(t0, 5_000),
        Side::WhatsApp,
        Socket::Rtp,
        meta,
        &mut p,
        &mut out,
    );
    // Drive every timer up to 24.9 s: silence flows, no timeout yet.
    let mut now = t0;
    while now < at(t0, 24_999) {
        timers(&mut f, now);
        assert_eq!(f.relay.poll_event(), None);
        now = f.relay.poll_timeout().unwrap();
    }
    assert_eq!(now, at(t0, 25_000));
    timers(&mut f, now);
    assert_eq!(
        f.relay.poll_event(),
        Some(RelayEvent::MediaTimeout {
            silent_for: Duration::from_secs(20)
        })
    );
    timers(&mut f, at(t0, 60_000));
    assert_eq!(f.relay.poll_event(), None);
}

#[test]
fn info_digits_become_rfc4733_events_toward_meta() {
    let mut f = fixture(true);
    let t0 = f.t0;
    timers(&mut f, t0);
    assert!(f.relay.send_dtmf(at(t0, 5), '7', 100));
    let mut events = vec![];
    let mut now = at(t0, 5);
    while now <= at(t0, 400) {
        for p in timers(&mut f, now) {
            let (m, pt, _, ts, ssrc) = hdr(&p);
            assert_eq!(ssrc, 0x5157_0001);
            if pt == 126 {
                let e = dtmf::TelephoneEvent::parse(&p[12..]).unwrap();
                events.push((m, ts, e.event, e.end, e.duration));
            }
        }
        now = f
            .relay
            .poll_timeout()
            .unwrap()
            .max(now + Duration::from_millis(1));
    }
    assert!(events.len() >= 7, "{events:?}");
    assert!(events[0].0, "first event packet has the marker");
    assert!(events.iter().all(|e| e.1 == events[0].1 && e.2 == 7));
    assert_eq!(
        events.iter().filter(|e| e.3).count(),
        3,
        "end sent three times"
    );
    assert_eq!(events.last().unwrap().4, 800);
    assert!(!f.relay.send_dtmf(now, 'x', 100));
}

#[test]
fn a_new_pbx_sdp_keeps_our_stream_and_relatches() {
    let mut f = fixture(true);
    let t0 = f.t0;
    timers(&mut f, t0);
    let a = pbx_to_meta(&mut f, at(t0, 20), &rtp(111, 1, 0, 1, b"a")).unwrap();
    let spec = RelaySpec::from_sdps(
        f.wa_local.as_bytes(),
        meta_offer().as_bytes(),
        f.pbx_local.as_bytes(),
        pbx_sdp(20400, "sendonly").as_bytes(),
    )
    .unwrap();
    f.relay.update(spec);
    f.relay.set_hold(true);
    assert_eq!(
        f.relay.pbx_destination(),
        "127.0.0.1:20400".parse().unwrap()
    );
    // On hold (sendonly): Meta's audio is not sent to the PBX, silence keeps Meta fed.
    let meta: SocketAddr = META.parse().unwrap();
    let mut p = rtp(111, 1, 0, 0x3e7a, b"a");
    f.meta_tx.protect_rtp_vec(&mut p).unwrap();
    let mut out = [0u8; MAX_DATAGRAM];
    assert!(
        f.relay
            .handle_datagram(
                at(t0, 30),
                Side::WhatsApp,
                Socket::Rtp,
                meta,
                &mut p,
                &mut out
            )
            .is_none()
    );
    let s = timers(&mut f, at(t0, 100));
    assert_eq!(s.len(), 1);
    assert_eq!(hdr(&s[0]).2, hdr(&a).2.wrapping_add(1));
}

#[test]
fn garbage_never_panics() {
    let mut f = fixture(true);
    let t0 = f.t0;
    let mut out = [0u8; MAX_DATAGRAM];
    let from: SocketAddr = PBX.parse().unwrap();
    for n in 0..64usize {
        for side in [Side::WhatsApp, Side::Pbx] {
            for sock in [Socket::Rtp, Socket::Rtcp] {
                let mut g: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
                f.relay
                    .handle_datagram(t0, side, sock, from, &mut g, &mut out);
                let mut g = vec![0x80u8; n];
                f.relay
                    .handle_datagram(t0, side, sock, from, &mut g, &mut out);
            }
        }
    }
    // A too-small output buffer is a drop, not a panic.
    let mut small = [0u8; 8];
    let mut p = rtp(111, 1, 0, 1, b"abc");
    assert!(
        f.relay
            .handle_datagram(t0, Side::Pbx, Socket::Rtp, from, &mut p, &mut small)
            .is_none()
    );
}

#[test]
fn spec_maps_payload_types_and_refuses_srtp_without_a_key_pair() {
    let f = fixture(true);
    let s = f.relay.spec();
    assert_eq!(s.whatsapp.formats[0].name, "opus");
    assert_eq!(s.whatsapp.formats.last().unwrap().pt_out, 126);
    assert!(s.whatsapp.rtcp_mux && !s.pbx.rtcp_mux);
    assert_eq!(s.pbx.remote_rtcp, "127.0.0.1:20001".parse().unwrap());
    let no_crypto = meta_offer().replace("a=crypto:1", "a=x-crypto:1");
    assert!(matches!(
        RelaySpec::from_sdps(
            f.wa_local.as_bytes(),
            no_crypto.as_bytes(),
            f.pbx_local.as_bytes(),
            pbx_sdp(2, "sendrecv").as_bytes()
        ),
        Err(SpecError::NoCryptoPair(_))
    ));
}

mod dtls {
    //! The relay with a DTLS+ICE WhatsApp leg against the Meta-like str0m peer, on virtual
    //! time and in memory: same relay behaviour as SDES (first packet ours once connected,
    //! one SSRC, PT mapping both ways).
    use super::*;
    use crate::media::webrtc::{self, MetaLikeConfig, WebrtcConfig, WebrtcLeg};

    const GW: &str = "127.0.0.1:40000";
    const META_ADDR: &str = "127.0.0.2:3480";

    /// A relay whose WhatsApp leg is a gateway-mode DTLS leg that offered to a Meta-like
    /// peer and accepted its answer; returns the relay and the peer.
    fn dtls_relay(now: Instant, connect_timeout: Duration) -> (RelayCall, WebrtcLeg) {
        let gw: SocketAddr = GW.parse().unwrap();
        let mut cfg = WebrtcConfig::new(gw);
        cfg.connect_timeout = connect_timeout;
        let (mut leg, offer) = WebrtcLeg::create_offer(now, &cfg).unwrap();
        let (meta, answer) = WebrtcLeg::meta_answer(
            now,
            &MetaLikeConfig::new(META_ADDR.parse().unwrap()),
            &offer,
        )
        .unwrap();
        leg.accept_answer(now, &answer).unwrap();
        let lo = IpAddr::from([127, 0, 0, 1]);
        let pbx_offer = sdp::build_offer(&LocalMedia::pbx(lo, 30000, vec![Codec::opus(111)]));
        let spec = RelaySpec::from_sdps(
            offer.as_bytes(),
            answer.as_bytes(),
            pbx_offer.sdp.to_sdp().as_bytes(),
            pbx_sdp(20000, "sendrecv").as_bytes(),
        )
        .unwrap();
        let ids = StreamIds {
            ssrc: 5,
            seq: 65500,
            ts: 0,
        };
        let relay = RelayCall::new(
            now,
            SystemTime::UNIX_EPOCH,
            spec,
            ids,
            true,
            Arc::new(MediaCounters::default()),
        )
        .with_webrtc(now, Box::new(leg));
        (relay, meta)
    }

    struct Net {
        relay: RelayCall,
        meta: WebrtcLeg,
        meta_wake: Instant,
        now: Instant,
        meta_rx: Vec<(u8, u32, Vec<u8>)>,
        meta_connected: bool,
        pbx_rx: Vec<Vec<u8>>,
    }

    impl Net {
        fn new() -> Net {
            let now = Instant::now();
            let (relay, meta) = dtls_relay(now, Duration::from_secs(5));
            Net {
                relay,
                meta,
                meta_wake: now,
                now,
                meta_rx: vec![],
                meta_connected: false,
                pbx_rx: vec![],
            }
        }

        fn deliver(&mut self, tx: Transmit, out: &[u8]) {
            match tx.side {
                Side::WhatsApp => self.meta.handle_receive(
                    self.now,
                    GW.parse().unwrap(),
                    META_ADDR.parse().unwrap(),
                    &out[..tx.len],
                ),
                Side::Pbx => self.pbx_rx.push(out[..tx.len].to_vec()),
            }
        }

        /// Delivers everything in flight, then advances to the next deadline (≤ 20 ms).
        fn step(&mut self) {
            let mut out = [0u8; MAX_DATAGRAM];
            for _ in 0..1000 {
                let mut moved = false;
                while let Some(tx) = self.relay.poll_transmit(&mut out) {
                    self.deliver(tx, &out);
                    moved = true;
                }
                loop {
                    match self.meta.poll_output(self.now) {
                        webrtc::Output::Transmit(t) => {
                            let mut d = t.contents.clone();
                            if let Some(tx) = self.relay.handle_datagram(
                                self.now,
                                Side::WhatsApp,
                                Socket::Rtp,
                                META_ADDR.parse().unwrap(),
                                &mut d,
                                &mut out,
                            ) {
                                self.deliver(tx, &out);
                            }
                            moved = true;
                        }
                        webrtc::Output::Timeout(at) => {
                            self.meta_wake = at;
                            break;
                        }
                        webrtc::Output::Connected(_) => self.meta_connected = true,
                        webrtc::Output::Rtp(p) => {
                            self.meta_rx
                                .push((p.payload_type, p.ssrc, p.payload.to_vec()))
                        }
                        webrtc::Output::Failed(f) => panic!("meta leg failed: {f}"),
                    }
                }
                if !moved {
                    break;
                }
            }
            let next = [self.relay.poll_timeout(), Some(self.meta_wake)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(self.now)
                .min(self.now + Duration::from_millis(20))
                .max(self.now);
            self.now = next;
            while let Some(tx) = self.relay.handle_timeout(self.now, &mut out) {
                self.deliver(tx, &out);
            }
            self.meta.handle_timeout(self.now);
        }
    }

    #[test]
    fn a_dtls_leg_that_never_connects_fails_the_call_after_the_timeout() {
        let now = Instant::now();
        let (mut relay, _meta) = dtls_relay(now, Duration::from_secs(3));
        // Meta never answers a single packet: nothing but ICE checks leave, then the leg fails.
        let mut out = [0u8; MAX_DATAGRAM];
        let mut t = now;
        let mut failed_at = None;
        while t < now + Duration::from_secs(10) && failed_at.is_none() {
            while let Some(tx) = relay.handle_timeout(t, &mut out) {
                assert_eq!(tx.side, Side::WhatsApp);
                assert!(
                    !rtcp::is_rtcp(&out[..tx.len]) && (out[0] >> 6) != 2,
                    "no media before DTLS"
                );
            }
            while let Some(ev) = relay.poll_event() {
                if let RelayEvent::WebrtcFailed { reason } = ev {
                    assert!(reason.contains("DTLS"), "{reason}");
                    failed_at = Some(t);
                }
            }
            t = relay
                .poll_timeout()
                .unwrap_or(t + Duration::from_millis(50))
                .max(t + Duration::from_millis(1));
        }
        let at = failed_at.expect("the leg failed");
        assert!(
            at >= now + Duration::from_secs(3) && at < now + Duration::from_secs(4),
            "{:?}",
            at - now
        );
        assert_eq!(relay.counters().snapshot().pbx_to_wa_packets, 0);
    }

    #[test]
    fn dtls_leg_relays_like_sdes_and_speaks_first() {
        let mut n = Net::new();
        let start = n.now;
        while !n.meta_connected || n.meta_rx.is_empty() {
            assert!(
                n.now - start < Duration::from_secs(5),
                "no connection / first packet"
            );
            n.step();
        }
        // Our first packet is Opus silence under our one SSRC; Meta never spoke first.
        let (pt, ssrc, payload) = n.meta_rx[0].clone();
        assert_eq!((pt, payload.as_slice()), (111, &opus::SILENCE_20MS[..]));
        let r = n.meta.report();
        assert!(
            r.remote_ice_controlling_seen && r.regular_nomination_seen,
            "{r:?}"
        );
        assert_eq!(r.client_hello_from, Some(webrtc::Side::Remote), "{r:?}");
        assert!(matches!(
            n.relay.poll_event(),
            Some(RelayEvent::WebrtcConnected {
                dtls_client: true,
                ice_controlling: true
            })
        ));
        // PBX → Meta: relayed under the same SSRC, payload intact.
        let mut out = [0u8; MAX_DATAGRAM];
        let mut pkt = rtp(111, 7, 700, 0xabc, b"from-the-pbx");
        let now = n.now;
        if let Some(tx) = n.relay.handle_datagram(
            now,
            Side::Pbx,
            Socket::Rtp,
            PBX.parse().unwrap(),
            &mut pkt,
            &mut out,
        ) {
            n.deliver(tx, &out);
        }
        for _ in 0..5 {
            n.step();
        }
        assert!(
            n.meta_rx
                .iter()
                .any(|(pt, s, p)| *pt == 111 && *s == ssrc && p == b"from-the-pbx"),
            "{:?}",
            n.meta_rx.len()
        );
        // Meta → PBX: plain RTP with the PBX's PT.
        let now = n.now;
        n.meta
            .write_rtp(now, 111, 1, 960, false, b"from-meta")
            .unwrap();
        for _ in 0..5 {
            n.step();
        }
        let got = n
            .pbx_rx
            .iter()
            .find(|p| p.ends_with(b"from-meta"))
            .expect("Meta's packet reached the PBX");
        assert_eq!(hdr(got).1, 111);
        let c = n.relay.counters().snapshot();
        assert!(
            c.wa_to_pbx_packets >= 1 && c.pbx_to_wa_packets >= 2,
            "{c:?}"
        );
    }
}
