//! Two legs wired together in memory with virtual time: no sockets, no sleeps.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::leg::SeqExtender;
use super::*;

const GW: &str = "127.0.0.1:40000";
const META: &str = "127.0.0.1:3482";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn gw_cfg() -> WebrtcConfig {
    WebrtcConfig::new(addr(GW))
}

fn meta_cfg() -> MetaLikeConfig {
    MetaLikeConfig::new(addr(META))
}

/// What a test lets through on the wire.
type Filter = fn(from_gateway: bool, datagram: &[u8]) -> bool;

fn pass_all(_: bool, _: &[u8]) -> bool {
    true
}

#[derive(Default)]
struct Seen {
    connected: Option<Connected>,
    rtp: Vec<RtpIn>,
    failed: Option<FailReason>,
    destinations: Vec<SocketAddr>,
}

/// Gateway leg `g` and Meta-like leg `m`, a virtual clock and a lossy wire.
struct Net {
    now: Instant,
    start: Instant,
    g: WebrtcLeg,
    m: WebrtcLeg,
    g_seen: Seen,
    m_seen: Seen,
    g_wake: Instant,
    m_wake: Instant,
    filter: Filter,
}

fn drain(leg: &mut WebrtcLeg, now: Instant, seen: &mut Seen) -> (Vec<Transmit>, Instant) {
    let mut tx = Vec::new();
    for _ in 0..100_000 {
        match leg.poll_output(now) {
            Output::Transmit(t) => {
                assert_eq!(
                    t.source,
                    leg.local_addr(),
                    "every transmit leaves from local_addr"
                );
                seen.destinations.push(t.destination);
                tx.push(t);
            }
            Output::Timeout(at) => return (tx, at),
            Output::Connected(c) => {
                assert!(seen.connected.is_none(), "Connected reported twice");
                seen.connected = Some(c);
            }
            Output::Rtp(p) => seen.rtp.push(p),
            Output::Failed(f) => {
                assert!(seen.failed.is_none(), "Failed reported twice");
                seen.failed = Some(f);
            }
        }
    }
    panic!("poll_output never returned a Timeout");
}

impl Net {
    fn new(now: Instant, g: WebrtcLeg, m: WebrtcLeg) -> Net {
        Net {
            now,
            start: now,
            g,
            m,
            g_seen: Seen::default(),
            m_seen: Seen::default(),
            g_wake: now,
            m_wake: now,
            filter: pass_all,
        }
    }

    /// Shuttle datagrams until both legs are quiet (no time passes).
    fn exchange(&mut self) {
        loop {
            let (gt, gw) = drain(&mut self.g, self.now, &mut self.g_seen);
            let (mt, mw) = drain(&mut self.m, self.now, &mut self.m_seen);
            self.g_wake = gw;
            self.m_wake = mw;
            if gt.is_empty() && mt.is_empty() {
                return;
            }
            for t in gt {
                if t.destination == self.m.local_addr() && (self.filter)(true, &t.contents) {
                    self.m
                        .handle_receive(self.now, t.source, t.destination, &t.contents);
                }
            }
            for t in mt {
                if t.destination == self.g.local_addr() && (self.filter)(false, &t.contents) {
                    self.g
                        .handle_receive(self.now, t.source, t.destination, &t.contents);
                }
            }
        }
    }

    /// Advance to `at` (never past it) and fire the timeouts that are due.
    fn advance(&mut self, at: Instant) {
        assert!(at >= self.now, "time goes forward");
        self.now = at;
        if self.g_wake <= at {
            self.g.handle_timeout(at);
        }
        if self.m_wake <= at {
            self.m.handle_timeout(at);
        }
    }

    /// Exchange, then jump to the earliest timeout.
    fn step(&mut self) {
        self.exchange();
        let next = self.g_wake.min(self.m_wake);
        self.advance(next);
    }

    fn run_until(&mut self, limit: Duration, done: impl Fn(&Net) -> bool) -> bool {
        while self.now - self.start < limit {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    fn connect(&mut self) {
        let ok = self.run_until(Duration::from_secs(10), |n| {
            n.g_seen.connected.is_some() && n.m_seen.connected.is_some()
        });
        assert!(
            ok,
            "not connected: gateway {:?} / meta {:?}",
            self.g.report(),
            self.m.report()
        );
    }

    /// Advance 20 ms of virtual time, delivering everything in flight.
    fn tick(&mut self) {
        let until = self.now + Duration::from_millis(20);
        loop {
            self.exchange();
            let next = self.g_wake.min(self.m_wake);
            if next > until {
                self.advance(until);
                self.g.handle_timeout(until);
                self.m.handle_timeout(until);
                self.exchange();
                return;
            }
            self.advance(next);
        }
    }

    fn step_no_advance(&mut self) {
        self.exchange();
    }
}

/// User-initiated: the Meta-like peer offers, the gateway answers.
fn user_initiated(now: Instant) -> (Net, String, String) {
    let (m, offer) = WebrtcLeg::meta_offer(now, &meta_cfg()).expect("meta offer");
    let (g, answer) = WebrtcLeg::answer_offer(now, &gw_cfg(), &offer).expect("gateway answer");
    let mut m = m;
    m.accept_answer(now, &answer).expect("meta accepts answer");
    (Net::new(now, g, m), offer, answer)
}

/// Business-initiated: the gateway offers, the Meta-like peer answers.
fn business_initiated(
    now: Instant,
    gw: &WebrtcConfig,
    meta: &MetaLikeConfig,
) -> (Net, String, String) {
    let (mut g, offer) = WebrtcLeg::create_offer(now, gw).expect("gateway offer");
    let (m, answer) = WebrtcLeg::meta_answer(now, meta, &offer).expect("meta answer");
    g.accept_answer(now, &answer)
        .expect("gateway accepts answer");
    (Net::new(now, g, m), offer, answer)
}

fn payload(i: u32) -> Vec<u8> {
    // distinct, non-trivial payloads (Opus-frame sized)
    (0..80u32).map(|k| (i.wrapping_mul(31) ^ k) as u8).collect()
}

/// Gateway speaks first, then the peer answers back; both directions decode to the
/// same bytes with the same RTP fields.
fn media_both_ways(net: &mut Net, first_seq: u16, n: u16) {
    let opus = net.g.report().opus_pt.expect("negotiated opus");
    assert_eq!(
        net.m
            .write_rtp(net.now, opus, 1, 0, false, &payload(0))
            .unwrap_err(),
        WebrtcError::PeerSpeaksSecond,
        "Meta-like peer must not send the first media packet"
    );
    // No added latency: a written packet is a Transmit in the very next drain.
    let (tx, _) = drain(&mut net.m, net.now, &mut net.m_seen);
    assert!(
        tx.iter()
            .all(|t| !matches!(t.contents.first(), Some(128..=191)))
    );
    let m_before = net.m_seen.rtp.len();
    let g_before = net.g_seen.rtp.len();
    for i in 0..n {
        let seq = first_seq.wrapping_add(i);
        let ts = 960u32.wrapping_mul(u32::from(i)).wrapping_add(12345);
        net.g
            .write_rtp(net.now, opus, seq, ts, i == 0, &payload(u32::from(i)))
            .expect("gateway write");
        let (tx, _) = drain(&mut net.g, net.now, &mut net.g_seen);
        let rtp: Vec<&Transmit> = tx
            .iter()
            .filter(|t| matches!(t.contents.get(1), Some(b) if b & 0x7f == opus))
            .collect();
        assert_eq!(rtp.len(), 1, "packet {i} left at once");
        for t in tx {
            net.m
                .handle_receive(net.now, t.source, t.destination, &t.contents);
        }
        net.tick();
        net.m
            .write_rtp(
                net.now,
                opus,
                7000u16.wrapping_add(i),
                ts,
                false,
                &payload(u32::from(i) + 1000),
            )
            .expect("meta write after it received RTP");
        net.tick();
    }
    let got_m = &net.m_seen.rtp[m_before..];
    let got_g = &net.g_seen.rtp[g_before..];
    assert_eq!(
        got_m.len(),
        usize::from(n),
        "peer got every gateway packet: {:?} {:?}",
        got_m.iter().map(|p| p.sequence).collect::<Vec<_>>(),
        net.m.report()
    );
    assert_eq!(got_g.len(), usize::from(n), "gateway got every peer packet");
    let g_ssrc = net.g.report().local_ssrc.expect("ssrc");
    for (i, p) in got_m.iter().enumerate() {
        let i16_ = u16::try_from(i).expect("small");
        assert_eq!(p.sequence, first_seq.wrapping_add(i16_));
        assert_eq!(p.payload_type, opus);
        assert_eq!(&p.payload[..], &payload(i as u32)[..]);
        assert_eq!(p.ssrc, g_ssrc, "one SSRC toward Meta");
        assert_eq!(p.marker, i == 0);
        assert_eq!(
            p.timestamp,
            960u32.wrapping_mul(i as u32).wrapping_add(12345)
        );
    }
    for (i, p) in got_g.iter().enumerate() {
        assert_eq!(&p.payload[..], &payload(i as u32 + 1000)[..]);
        assert_eq!(p.sequence, 7000u16.wrapping_add(i as u16));
    }
}

fn assert_gateway_roles(net: &Net) {
    let c = net.g_seen.connected.as_ref().expect("gateway connected");
    assert!(c.ice_controlling, "gateway must be ICE controlling: {c:?}");
    assert!(c.dtls_client, "gateway must be DTLS client: {c:?}");
    assert!(
        c.srtp_profile.is_some(),
        "SRTP profile read from ServerHello"
    );
    assert_eq!(c.remote, addr(META));
    let mc = net.m_seen.connected.as_ref().expect("meta connected");
    assert!(!mc.ice_controlling && !mc.dtls_client);
    assert_eq!(mc.srtp_profile, c.srtp_profile);
    assert_eq!(mc.remote, addr(GW));

    let mr = net.m.report();
    assert!(mr.ice_lite);
    assert_eq!(mr.stun_requests_sent, 0, "an ICE-lite peer sends no checks");
    assert!(
        mr.remote_ice_controlling_seen,
        "checks carried ICE-CONTROLLING"
    );
    assert!(mr.use_candidate_seen);
    assert!(
        mr.regular_nomination_seen,
        "USE-CANDIDATE only after a plain check"
    );
    assert_eq!(mr.client_hello_from, Some(Side::Remote));
    let gr = net.g.report();
    assert_eq!(gr.client_hello_from, Some(Side::Local));
    assert_eq!(gr.ice_controlling, Some(true));
    // Meta's IPv6 candidate is never tried.
    assert!(net.g_seen.destinations.iter().all(|d| *d == addr(META)));
}

#[test]
fn user_initiated_gateway_answers_active_and_controls() {
    let now = Instant::now();
    let (mut net, offer, answer) = user_initiated(now);
    assert!(offer.contains("a=ice-lite"), "{offer}");
    assert!(offer.contains("a=setup:actpass"), "{offer}");
    assert!(
        offer.contains("2001:db8::1"),
        "two host candidates: {offer}"
    );
    assert!(answer.contains("a=setup:active"), "{answer}");
    assert!(!answer.contains("a=ice-lite"));
    assert_eq!(
        answer.matches("a=candidate:").count(),
        1,
        "one local candidate"
    );
    assert_eq!(
        net.g.report().remote_candidates_ignored,
        1,
        "IPv6 candidate ignored"
    );
    net.connect();
    assert_gateway_roles(&net);
    media_both_ways(&mut net, 100, 40);
    let (g, m) = (net.g.report(), net.m.report());
    assert_eq!(g.rtp_packets_sent, 40);
    assert_eq!(m.rtp_packets_received, 40);
    assert_eq!(m.rtp_not_decrypted, 0);
    assert_eq!(g.rtp_packets_received, 40);
    assert_eq!(g.rtp_bytes_sent, 40 * 80);
}

#[test]
fn business_initiated_gateway_offers_active_and_is_client() {
    let now = Instant::now();
    let (mut net, offer, answer) = business_initiated(now, &gw_cfg(), &meta_cfg());
    assert!(offer.contains("a=setup:active"), "{offer}");
    assert!(answer.contains("a=setup:passive"), "{answer}");
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert_eq!(net.g.report().remote_setup, Some(Setup::Passive));
    net.connect();
    assert_gateway_roles(&net);
    media_both_ways(&mut net, 65000, 20);
}

#[test]
fn business_initiated_actpass_offer_is_answered_passive_by_meta_like() {
    let now = Instant::now();
    let mut cfg = gw_cfg();
    cfg.offer_setup = OfferSetup::ActPass;
    let (mut net, offer, answer) = business_initiated(now, &cfg, &meta_cfg());
    assert!(offer.contains("a=setup:actpass"));
    assert!(answer.contains("a=setup:passive"));
    net.connect();
    assert_gateway_roles(&net);
}

#[test]
fn business_initiated_meta_answers_active_as_in_its_sample() {
    // Meta's published answer says setup:active: then Meta must send the ClientHello and
    // the gateway is the DTLS server. Still ICE controlling.
    let now = Instant::now();
    let mut meta = meta_cfg();
    meta.answer_setup = Setup::Active;
    let (mut net, _offer, answer) = business_initiated(now, &gw_cfg(), &meta);
    assert!(answer.contains("a=setup:active"), "{answer}");
    net.connect();
    let c = net.g_seen.connected.clone().expect("connected");
    assert!(c.ice_controlling);
    assert!(!c.dtls_client, "gateway follows the answer: DTLS server");
    assert_eq!(net.g.report().client_hello_from, Some(Side::Remote));
    assert_eq!(net.m.report().client_hello_from, Some(Side::Local));
    media_both_ways(&mut net, 1, 5);
}

#[test]
fn sequence_rollover_keeps_flowing() {
    let now = Instant::now();
    let (mut net, _, _) = user_initiated(now);
    net.connect();
    // 65530 … 65535, 0 … 33: SRTP's ROC must follow or the peer fails authentication.
    media_both_ways(&mut net, 65530, 40);
    let m = net.m.report();
    assert_eq!(m.rtp_packets_received, 40);
    assert_eq!(m.rtp_not_decrypted, 0);
    let seqs: Vec<u16> = net.m_seen.rtp.iter().map(|p| p.sequence).collect();
    assert!(seqs.contains(&65535) && seqs.contains(&0) && seqs.contains(&33));
}

#[test]
fn seq_extender_rolls_over_and_handles_reordering() {
    let mut s = SeqExtender::default();
    assert_eq!(s.extend(65534), 65534);
    assert_eq!(s.extend(65535), 65535);
    assert_eq!(s.extend(0), 65536);
    assert_eq!(s.extend(65535), 65535, "late packet from before the wrap");
    assert_eq!(s.extend(1), 65537);
    for k in 2..=u16::MAX {
        assert_eq!(s.extend(k), 65536 + u64::from(k));
    }
    assert_eq!(s.extend(0), 2 * 65536);
}

#[test]
fn dtls_timeout_fails_the_leg_when_peer_never_answers() {
    let now = Instant::now();
    let (_m, offer) = WebrtcLeg::meta_offer(now, &meta_cfg()).expect("offer");
    let mut cfg = gw_cfg();
    cfg.connect_timeout = Duration::from_secs(3);
    let (mut g, _answer) = WebrtcLeg::answer_offer(now, &cfg, &offer).expect("answer");
    let mut seen = Seen::default();
    let mut t = now;
    let mut transmits = 0;
    loop {
        let (tx, wake) = drain(&mut g, t, &mut seen);
        transmits += tx.len(); // nobody answers
        if seen.failed.is_some() || t - now > Duration::from_secs(30) {
            break;
        }
        t = wake.max(t);
        g.handle_timeout(t);
    }
    assert!(transmits > 0, "the gateway did start ICE");
    match seen.failed {
        Some(FailReason::ConnectTimeout {
            after,
            ice_ok,
            client_hello_seen,
        }) => {
            assert_eq!(after, Duration::from_secs(3));
            assert!(!ice_ok && !client_hello_seen);
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    assert_eq!(
        t - now,
        Duration::from_secs(3),
        "fails exactly at the deadline"
    );
    assert_eq!(g.state(), LegState::Failed);
    assert!(seen.connected.is_none());
    assert_eq!(
        g.write_rtp(t, 111, 1, 1, false, b"x").unwrap_err(),
        WebrtcError::Failed
    );
    // A dead leg stays quiet and never reports Failed twice.
    assert!(matches!(g.poll_output(t), Output::Timeout(_)));
}

fn is_dtls(d: &[u8]) -> bool {
    matches!(d.first(), Some(20..=63))
}

#[test]
fn dtls_timeout_when_only_dtls_is_lost() {
    // ICE works, but Meta never sees (or never answers) the ClientHello: the FreeSWITCH
    // failure. The leg must say so clearly.
    let now = Instant::now();
    let (mut net, _, _) = user_initiated(now);
    net.filter = |from_gw, d| !(from_gw && is_dtls(d));
    let failed = net.run_until(Duration::from_secs(20), |n| n.g_seen.failed.is_some());
    assert!(failed, "no failure reported");
    match net.g_seen.failed.clone() {
        Some(FailReason::ConnectTimeout {
            ice_ok,
            client_hello_seen,
            ..
        }) => assert!(ice_ok && client_hello_seen),
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    assert!(net.g_seen.connected.is_none());
    let text = net.g.failure().expect("failure").to_string();
    assert!(text.contains("no DTLS connection within 5000 ms"), "{text}");
}

#[test]
fn garbage_datagrams_neither_panic_nor_kill_the_leg() {
    let now = Instant::now();
    let (mut net, _, _) = user_initiated(now);
    net.connect();
    let meta = addr(META);
    let stranger = addr("127.0.0.1:9");
    let gw = addr(GW);
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42],
        vec![22; 5],
        vec![22, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, 9, 0, 3, 1, 2, 3],
        vec![23, 0xFE, 0xFD, 0, 1, 0, 0, 0, 0, 0, 9, 0, 40],
        vec![0x80, 111, 0, 1],
        vec![0x80, 200, 0, 1, 0, 0, 0, 0],
        vec![255; 1500],
    ];
    // An SRTP-looking packet with a wrong auth tag, and a few random-ish datagrams.
    let mut fake = vec![0x80, 111, 0x12, 0x34, 0, 0, 0, 1, 0xDE, 0xAD, 0xBE, 0xEF];
    fake.extend_from_slice(&[0x55; 100]);
    junk.push(fake);
    let mut x: u32 = 0x1234_5678;
    for len in [1usize, 13, 20, 100, 400] {
        let d: Vec<u8> = (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        junk.push(d);
    }
    for d in &junk {
        for src in [meta, stranger] {
            net.g.handle_receive(net.now, src, gw, d);
            net.m.handle_receive(net.now, src, addr(META), d);
        }
        net.step_no_advance();
    }
    assert_eq!(net.g.state(), LegState::Connected, "{:?}", net.g.failure());
    assert_eq!(net.m.state(), LegState::Connected, "{:?}", net.m.failure());
    assert!(
        net.g.report().datagrams_ignored > 0,
        "strangers and unparseable datagrams"
    );
    assert!(net.m.report().datagrams_ignored > 0);
    media_both_ways(&mut net, 500, 5);
    let g = net.g.report();
    assert!(
        g.rtp_not_decrypted >= 1,
        "the forged SRTP packet was not decrypted: {g:?}"
    );
    assert_eq!(g.rtp_packets_received, 5);
}

#[test]
fn payload_types_mirror_the_offer() {
    let now = Instant::now();
    let mut meta = meta_cfg();
    meta.leg.opus_pt = 109;
    meta.leg.telephone_event_pt = 101;
    let (mut m, offer) = WebrtcLeg::meta_offer(now, &meta).expect("offer");
    assert!(offer.contains("a=rtpmap:109 opus/48000/2"), "{offer}");
    let (g, answer) = WebrtcLeg::answer_offer(now, &gw_cfg(), &offer).expect("answer");
    assert!(answer.contains("a=rtpmap:109 opus/48000/2"), "{answer}");
    assert!(
        answer.contains("a=rtpmap:101 telephone-event/8000"),
        "{answer}"
    );
    assert!(!answer.contains(" 111"), "{answer}");
    assert_eq!(g.report().opus_pt, Some(109));
    assert_eq!(g.report().telephone_event_pt, Some(101));
    m.accept_answer(now, &answer).expect("accept");
    let mut net = Net::new(now, g, m);
    net.connect();
    assert_eq!(
        net.g
            .write_rtp(net.now, 111, 1, 1, false, b"x")
            .unwrap_err(),
        WebrtcError::UnknownPayloadType(111)
    );
    media_both_ways(&mut net, 9, 3);
    // DTMF on the negotiated telephone-event PT
    net.g
        .write_rtp(net.now, 101, 12, 5000, true, &[5, 0x0A, 0, 160])
        .expect("dtmf");
    net.tick();
    let last = net.m_seen.rtp.last().expect("dtmf arrived");
    assert_eq!(
        (last.payload_type, &last.payload[..]),
        (101, &[5u8, 0x0A, 0, 160][..])
    );
}

#[test]
fn legs_are_independent_and_certificates_shared() {
    // One failed leg does not disturb another built from the same process-wide cert.
    let now = Instant::now();
    let (_m1, offer1) = WebrtcLeg::meta_offer(now, &meta_cfg()).expect("offer");
    let mut cfg = gw_cfg();
    cfg.connect_timeout = Duration::from_millis(500);
    let (mut dead, _) = WebrtcLeg::answer_offer(now, &cfg, &offer1).expect("answer");
    let (mut net, _, _) = user_initiated(now);
    net.connect();
    dead.handle_timeout(net.now);
    let mut seen = Seen::default();
    drain(&mut dead, net.now, &mut seen);
    assert!(matches!(
        seen.failed,
        Some(FailReason::ConnectTimeout { .. })
    ));
    media_both_ways(&mut net, 1, 3);
    assert!(shared_certificate().is_some());
    let fp = |s: &str| {
        s.lines()
            .find(|l| l.starts_with("a=fingerprint:"))
            .map(str::to_string)
    };
    let (_, a1) = WebrtcLeg::create_offer(now, &gw_cfg()).expect("o1");
    let (_, a2) = WebrtcLeg::create_offer(now, &gw_cfg()).expect("o2");
    assert_eq!(fp(&a1), fp(&a2), "shared certificate");
    let mut own = gw_cfg();
    own.certificate = new_certificate();
    let (_, a3) = WebrtcLeg::create_offer(now, &own).expect("o3");
    assert_ne!(fp(&a1), fp(&a3), "own certificate");
}

#[test]
fn accept_answer_is_checked() {
    let now = Instant::now();
    let (mut g, _offer) = WebrtcLeg::create_offer(now, &gw_cfg()).expect("offer");
    assert!(matches!(
        g.accept_answer(now, "v=0\r\ngarbage\r\n"),
        Err(WebrtcError::Sdp(_))
    ));
    // still awaiting a proper answer
    assert_eq!(g.state(), LegState::AwaitingAnswer);
    let (_m, offer) = WebrtcLeg::meta_offer(now, &meta_cfg()).expect("meta offer");
    let (mut answered, _) = WebrtcLeg::answer_offer(now, &gw_cfg(), &offer).expect("answer");
    assert!(matches!(
        answered.accept_answer(now, &offer),
        Err(WebrtcError::State(_))
    ));
    assert!(matches!(
        WebrtcLeg::answer_offer(now, &gw_cfg(), "v=0\r\n"),
        Err(WebrtcError::NoCommonCodec)
    ));
    let no_opus = SEED_USER_OFFER.replace("opus/48000/2", "speex/48000");
    assert!(matches!(
        WebrtcLeg::answer_offer(now, &gw_cfg(), &no_opus),
        Err(WebrtcError::NoCommonCodec)
    ));
    // Not a panic, an error, for every prefix of a real offer.
    for n in (0..SEED_USER_OFFER.len()).step_by(37) {
        let _ = WebrtcLeg::answer_offer(now, &gw_cfg(), &SEED_USER_OFFER[..n]);
    }
}

// ---- Meta's sample SDPs (/work/shared/seeds/002_3de74274b50b9dec.txt) ----

/// User-initiated call: Meta's offer (ICE-lite, actpass, IPv4 + IPv6 host candidates,
/// `network-cost`, ufrag with `/`, mid "audio").
const SEED_USER_OFFER: &str = "v=0\r
o=- 7602563789789945080 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE audio\r
a=msid-semantic: WMS 6932bc1c-db1a-4abe-b437-0c4168be8a13\r
a=ice-lite\r
m=audio 40012 UDP/TLS/RTP/SAVPF 111 126\r
c=IN IP4 31.13.65.60\r
a=rtcp:9 IN IP4 0.0.0.0\r
a=candidate:1972637320 1 udp 2113937151 31.13.65.60 40012 typ host generation 0 network-cost 50 ufrag 6k2qP1R6kBfI/2\r
a=candidate:1652262791 1 udp 2113939711 2a03:2880:f211:cf:face:b00c:0:6443 40012 typ host generation 0 network-cost 50 ufrag 6k2qP1R6kBfI/2\r
a=ice-ufrag:6k2qP1R6kBfI/2\r
a=ice-pwd:UApvJw3NcwFRDvIMKdM0vWCdlXah25E9\r
a=fingerprint:sha-256 1B:B6:6B:40:A5:0B:8C:75:0D:8C:CB:90:2F:99:74:1E:26:45:AE:AF:45:C1:51:60:8F:73:C9:2D:10:6D:8A:88\r
a=setup:actpass\r
a=mid:audio\r
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
a=sendrecv\r
a=rtcp-mux\r
a=rtpmap:111 opus/48000/2\r
a=rtcp-fb:111 transport-cc\r
a=fmtp:111 minptime=10;useinbandfec=1\r
a=rtpmap:126 telephone-event/8000\r
a=ssrc:4208138518 cname:gAXq2V9TKltrnapv\r
a=ssrc:4208138518 msid:6932bc1c-db1a-4abe-b437-0c4168be8a13 audio#R5wfXFcdmT6\r
a=ssrc:4208138518 mslabel:6932bc1c-db1a-4abe-b437-0c4168be8a13\r
a=ssrc:4208138518 label:audio#R5wfXFcdmT6\r
";

/// Business-initiated call: Meta's answer (ICE-lite, setup:active, mid "0").
const SEED_META_ANSWER: &str = "v=0\r
o=- 741807839102053725 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0\r
a=extmap-allow-mixed\r
a=msid-semantic: WMS 798a9670-c0d6-47a8-925e-5f082ef4d8a0\r
a=ice-lite\r
m=audio 3482 UDP/TLS/RTP/SAVPF 111 9 0 8 110 126\r
c=IN IP4 31.13.65.130\r
a=rtcp:9 IN IP4 0.0.0.0\r
a=candidate:2754936280 1 udp 2113937151 31.13.65.130 3482 typ host generation 0 network-cost 50 ufrag JHqAXFH4HcAY/8\r
a=candidate:1581496399 1 udp 2113939711 2a03:2880:f211:d1:face:b00c:0:699c 3482 typ host generation 0 network-cost 50 ufrag JHqAXFH4HcAY/8\r
a=ice-ufrag:JHqAXFH4HcAY/8\r
a=ice-pwd:dNNMmR8wUcGezvfBZOO0Qgcwl2m86GP/\r
a=ice-options:trickle\r
a=fingerprint:sha-256 9C:97:5C:4C:A9:BE:9E:2F:06:94:F5:BB:38:2C:A1:29:B5:69:B8:FA:94:10:56:1D:0B:5D:80:28:C1:FD:F0:F6\r
a=setup:active\r
a=mid:0\r
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
a=sendrecv\r
a=rtcp-mux\r
a=rtpmap:111 opus/48000/2\r
a=rtcp-fb:111 transport-cc\r
a=fmtp:111 minptime=10;useinbandfec=1\r
a=rtpmap:9 G722/8000\r
a=rtpmap:0 PCMU/8000\r
a=rtpmap:8 PCMA/8000\r
a=rtpmap:110 telephone-event/48000\r
a=rtpmap:126 telephone-event/8000\r
a=ssrc:3407645770 cname:bg8KQDoIk2UJa6sf\r
a=ssrc:3407645770 msid:798a9670-c0d6-47a8-925e-5f082ef4d8a0 audio#nuxVMf9EAJX\r
a=ssrc:3407645770 mslabel:798a9670-c0d6-47a8-925e-5f082ef4d8a0\r
a=ssrc:3407645770 label:audio#nuxVMf9EAJX\r
";

/// Graph API webhook: Meta's answer in JSON (same shape; other ufrag/pwd/fingerprint).
const SEED_META_ANSWER_WEBHOOK: &str = "v=0\r\no=- 8076734947255960322 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS 68a296ba-41cc-41db-8edb-3ddf4dbbb483\r\na=ice-lite\r\nm=audio 3482 UDP/TLS/RTP/SAVPF 111 9 0 8 110 126\r\nc=IN IP4 31.13.65.130\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=candidate:2754936280 1 udp 2113937151 31.13.65.130 3482 typ host generation 0 network-cost 50 ufrag kv6Jn8vBmEds/8\r\na=candidate:1581496399 1 udp 2113939711 2a03:2880:f211:d1:face:b00c:0:699c 3482 typ host generation 0 network-cost 50 ufrag kv6Jn8vBmEds/8\r\na=ice-ufrag:kv6Jn8vBmEds/8\r\na=ice-pwd:OhY8sT7v6PJe3bbs0Yx2TC/oPb5oatnK\r\na=ice-options:trickle\r\na=fingerprint:sha-256 46:14:2B:31:B1:9D:AF:15:81:E2:EF:45:B1:2B:96:3D:64:0E:63:F1:CC:9A:BD:88:D6:32:8F:E9:2A:13:3A:38\r\na=setup:active\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\na=ssrc:433528572 cname:VBDcSNi/cg1Wg6D3\r\na=ssrc:433528572 msid:68a296ba-41cc-41db-8edb-3ddf4dbbb483 audio#wx3mq6BITjB\r\na=ssrc:433528572 mslabel:68a296ba-41cc-41db-8edb-3ddf4dbbb483\r\na=ssrc:433528572 label:audio#wx3mq6BITjB\r\n";

/// Graph API: the business's (browser's) offer as Meta documents it (not ICE-lite,
/// setup:active, no candidates, RED + G.711 + two telephone-events).
const SEED_BUSINESS_OFFER: &str = "v=0\r\no=- 6314352886888624490 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS ccd3f422-8d7d-49c9-936c-a152979ee4fa\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 110 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:/PSS\r\na=ice-pwd:buBIz+JlbmakiCT7JdJIq/j0\r\na=ice-options:trickle\r\na=fingerprint:sha-256 43:08:34:16:67:E3:D9:A2:F5:AA:6A:AE:03:97:C8:D5:B8:F2:4B:40:79:C8:1A:44:53:69:4B:9C:89:88:D7:22\r\na=setup:active\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\na=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendrecv\r\na=msid:ccd3f422-8d7d-49c9-936c-a152979ee4fa 4e58b2a9-c864-4752-8f4f-23f9ced35971\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\na=ssrc:3354317731 cname:zgqSj/r4rlErlW23\r\na=ssrc:3354317731 msid:ccd3f422-8d7d-49c9-936c-a152979ee4fa 4e58b2a9-c864-4752-8f4f-23f9ced35971\r\n";

fn answer_line_count(sdp: &str, prefix: &str) -> usize {
    sdp.lines().filter(|l| l.starts_with(prefix)).count()
}

#[test]
fn seed_user_offer_is_answered_active_with_meta_pts() {
    let now = Instant::now();
    for (name, offer) in [
        ("as published", SEED_USER_OFFER.to_string()),
        (
            "ice-pwd with = padding",
            SEED_USER_OFFER.replace(
                "a=ice-pwd:UApvJw3NcwFRDvIMKdM0vWCdlXah25E9",
                "a=ice-pwd:dNNMmR8wUcGezvfBZOO0Qg==",
            ),
        ),
        ("LF line endings", SEED_USER_OFFER.replace("\r\n", "\n")),
    ] {
        let (g, answer) = WebrtcLeg::answer_offer(now, &gw_cfg(), &offer)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(answer.contains("a=setup:active"), "{name}: {answer}");
        assert!(answer.contains("a=mid:audio"), "{name}");
        assert!(answer.contains("a=group:BUNDLE audio"), "{name}");
        assert!(answer.contains("a=rtcp-mux"), "{name}");
        assert!(answer.contains("a=rtpmap:111 opus/48000/2"), "{name}");
        assert!(
            answer.contains("a=rtpmap:126 telephone-event/8000"),
            "{name}"
        );
        assert!(answer.contains("a=fingerprint:sha-256 "), "{name}");
        assert_eq!(answer_line_count(&answer, "a=candidate:"), 1, "{name}");
        assert!(
            answer.contains(&format!("{} typ host", GW.replace(':', " "))),
            "{name}"
        );
        let r = g.report();
        assert_eq!(r.remote_setup, Some(Setup::ActPass));
        assert_eq!(r.local_setup, Some(Setup::Active));
        assert_eq!(r.remote_candidates_ignored, 1, "{name}: the IPv6 candidate");
        assert_eq!((r.opus_pt, r.telephone_event_pt), (Some(111), Some(126)));
        assert_eq!(g.state(), LegState::Connecting);
    }
}

#[test]
fn padded_ice_pwd_connects_end_to_end() {
    // The Meta-like peer uses Meta-style credentials: ufrag with '/', pwd with '=' padding.
    // STUN integrity (keyed with the pwd) only verifies if nobody trims the padding.
    let now = Instant::now();
    let mut meta = meta_cfg();
    meta.ice_credentials = Some((
        "JHqAXFH4HcAY/8".to_string(),
        "dNNMmR8wUcGezvfBZOO0Qg==".to_string(),
    ));
    let (mut m, offer) = WebrtcLeg::meta_offer(now, &meta).expect("offer");
    assert!(
        offer.contains("a=ice-pwd:dNNMmR8wUcGezvfBZOO0Qg==\r\n"),
        "{offer}"
    );
    let (g, answer) = WebrtcLeg::answer_offer(now, &gw_cfg(), &offer).expect("answer");
    m.accept_answer(now, &answer).expect("accept");
    let mut net = Net::new(now, g, m);
    net.connect();
    assert_gateway_roles(&net);

    // Control: the same offer with the padding stripped must NOT pass STUN integrity.
    let (m2, offer2) = WebrtcLeg::meta_offer(now, &meta).expect("offer");
    let stripped = offer2.replace(
        "a=ice-pwd:dNNMmR8wUcGezvfBZOO0Qg==",
        "a=ice-pwd:dNNMmR8wUcGezvfBZOO0Qg",
    );
    let (g2, _) = WebrtcLeg::answer_offer(now, &gw_cfg(), &stripped).expect("answer");
    let mut net2 = Net::new(now, g2, m2);
    let _ = net2.run_until(Duration::from_secs(2), |n| n.g_seen.connected.is_some());
    assert!(net2.g_seen.connected.is_none());
    assert!(!net2.m.report().use_candidate_seen);
}

#[test]
fn seed_meta_answers_are_accepted() {
    let now = Instant::now();
    for (name, answer) in [
        ("SIP sample", SEED_META_ANSWER),
        ("webhook sample", SEED_META_ANSWER_WEBHOOK),
    ] {
        // Meta's real (public) candidate; our side a documentation address.
        let cfg = WebrtcConfig::new(addr("192.0.2.10:40000"));
        let (mut g, offer) = WebrtcLeg::create_offer(now, &cfg).expect("offer");
        assert!(offer.contains("a=setup:active"));
        let mid = sdp::first_audio_mid(&offer).expect("our mid");
        // Meta echoes our mid; its sample was answering a browser whose mid was "0".
        let answer = answer
            .replace("a=group:BUNDLE 0", &format!("a=group:BUNDLE {mid}"))
            .replace("a=mid:0", &format!("a=mid:{mid}"));
        g.accept_answer(now, &answer)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = g.report();
        assert_eq!(g.state(), LegState::Connecting, "{name}");
        assert_eq!(r.remote_setup, Some(Setup::Active), "{name}");
        assert_eq!(r.remote_candidates_ignored, 1, "{name}");
        assert_eq!(
            (r.opus_pt, r.telephone_event_pt),
            (Some(111), Some(126)),
            "{name}"
        );
        // The gateway starts ICE toward Meta's IPv4 candidate only.
        let mut seen = Seen::default();
        let mut t = now;
        let mut sent = 0;
        while t - now < Duration::from_secs(1) {
            let (tx, wake) = drain(&mut g, t, &mut seen);
            sent += tx.len();
            t = wake.max(t + Duration::from_millis(1));
            g.handle_timeout(t);
        }
        assert!(sent > 0, "{name}: no ICE checks: {:?}", g.report());
        assert!(
            seen.destinations.iter().all(|d| d.ip().is_ipv4()),
            "{name}: {:?}",
            seen.destinations
        );
        assert!(g.report().stun_requests_sent > 0 && g.report().ice_controlling == Some(true));
    }
}

#[test]
fn seed_business_offer_is_answered() {
    // Meta documents this browser offer (setup:active, full ICE, no candidates): we answer
    // passive and it stays a valid, Opus-only answer.
    let now = Instant::now();
    let (g, answer) = WebrtcLeg::answer_offer(now, &gw_cfg(), SEED_BUSINESS_OFFER).expect("answer");
    assert!(answer.contains("a=setup:passive"), "{answer}");
    assert!(answer.contains("a=rtpmap:111 opus/48000/2"));
    assert!(!answer.contains("PCMU"));
    assert_eq!(g.report().remote_candidates_ignored, 0);
}

/// baresip 1.0's offer (`mediaenc=dtls_srtp`, `medianat=ice`), as captured by
/// `tests/gateway_dtls_baresip.rs`: RFC 5763 style — no `a=mid`, no BUNDLE, no `a=rtcp-mux`
/// (RTCP on port+1 with its own candidates), session-level setup/fingerprint/ICE
/// credentials, full ICE.
const BARESIP_OFFER: &str = "v=0\r\no=- 3457839760 868128833 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\na=tool:baresip 1.0.0\r\na=ice-ufrag:SRaVPkS\r\na=ice-pwd:LtMxHVmNuVGRH89ykvDqxY4q4d2E8YF\r\na=setup:actpass\r\na=fingerprint:SHA-256 6C:EB:26:C6:EB:35:00:2E:8C:F7:E1:D9:4A:C0:4A:B4:2F:E8:6F:24:64:38:E8:FC:57:17:E9:89:B2:91:1C:6C\r\nm=audio 28612 UDP/TLS/RTP/SAVPF 96 101\r\nc=IN IP4 192.0.2.2\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 stereo=1;sprop-stereo=1\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=rtcp:28613 IN IP4 192.0.2.2\r\na=sendrecv\r\na=label:1\r\na=rtcp-rsize\r\na=ssrc:4189603487 cname:sip:+15551234567@127.0.0.1\r\na=minptime:20\r\na=ptime:20\r\na=candidate:c0000202 1 UDP 2113929471 192.0.2.2 28612 typ host\r\na=candidate:c0000202 2 UDP 2113929470 192.0.2.2 28613 typ host\r\na=candidate:020000fd 1 UDP 2113929471 fd00::2 28612 typ host\r\na=candidate:020000fd 2 UDP 2113929470 fd00::2 28613 typ host\r\n";

#[test]
fn baresip_offer_without_mid_is_answered_active() {
    // str0m wants a mid on every m-line; the leg adds one when the offer has none
    // (before the fix: "remote SDP has no m=audio section with a=mid", 488).
    let now = Instant::now();
    let (g, answer) = WebrtcLeg::answer_offer(now, &gw_cfg(), BARESIP_OFFER)
        .unwrap_or_else(|e| panic!("baresip's offer: {e}"));
    assert!(answer.contains("a=setup:active"), "{answer}");
    assert!(answer.contains("a=rtpmap:96 opus/48000/2"), "{answer}");
    assert!(
        answer.contains("a=rtpmap:101 telephone-event/8000"),
        "{answer}"
    );
    assert_eq!(answer_line_count(&answer, "a=candidate:"), 1, "{answer}");
    let r = g.report();
    assert_eq!(r.remote_setup, Some(Setup::ActPass));
    assert_eq!(r.local_setup, Some(Setup::Active));
    assert_eq!((r.opus_pt, r.telephone_event_pt), (Some(96), Some(101)));
    assert_eq!(r.remote_candidates_ignored, 2, "the IPv6 candidates");
    assert_eq!(g.state(), LegState::Connecting);
}
