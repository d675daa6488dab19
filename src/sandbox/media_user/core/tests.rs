//! MediaUser on virtual time, against a hand-driven "business side" holding the other end of
//! each SRTP key.

use super::*;
use crate::media::dtmf::TelephoneEvent;
use crate::media::srtp::{MasterKey, SrtpProfile};
use crate::sandbox::media_user::audio::LevelMeter;

const OPUS: u8 = 111;
const DTMF: u8 = 126;

fn remote() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

/// The business side: protects toward the user with the user's `remote` key, unprotects what
/// the user sends with the user's `local` key.
struct Business {
    tx: SrtpSession,
    rx: SrtpSession,
    seq: u16,
}

impl Business {
    fn send(&mut self, pt: u8, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut h = RtpHeader::new(pt, self.seq, ts, 0xb0b0_b0b0);
        h.marker = marker;
        self.seq = self.seq.wrapping_add(1);
        let mut pkt = vec![0u8; 12];
        h.write(&[], &mut pkt).unwrap();
        pkt.extend_from_slice(payload);
        self.tx.protect_rtp_vec(&mut pkt).unwrap();
        pkt
    }

    fn open(&mut self, t: &Transmit) -> (u32, u16, u32, Vec<u8>) {
        let mut b = t.payload.clone();
        self.rx
            .unprotect_rtp_vec(&mut b)
            .expect("user's packet authenticates");
        let p = RtpPacket::parse(&b).unwrap();
        (p.ssrc(), p.sequence(), p.timestamp(), p.payload().to_vec())
    }
}

fn config(profile: SrtpProfile, mode: Mode) -> (MediaUserConfig, Business) {
    let local = MasterKey::random(profile);
    let remote_key = MasterKey::random(profile);
    let business = Business {
        tx: SrtpSession::new(&remote_key).unwrap(),
        rx: SrtpSession::new(&local).unwrap(),
        seq: 1000,
    };
    let cfg = MediaUserConfig {
        mode,
        keys: Some(SrtpKeys {
            local,
            remote: remote_key,
            remote_mki: None,
        }),
        remote: remote(),
        codec: AudioCodec::Opus,
        audio_payload_type: OPUS,
        dtmf_payload_type: Some(DTMF),
        ssrc: 0x1234_5678,
        initial_sequence: 65530,
        initial_timestamp: 7,
        wait_for_first_packet: true,
        first_media_timeout: Some(DEFAULT_FIRST_MEDIA_TIMEOUT),
        mid_call_timeout: Some(DEFAULT_MID_CALL_TIMEOUT),
        rtcp_interval: None,
        tone: OpusFrames::tone(),
        cname: "t".into(),
    };
    (cfg, business)
}

fn events(u: &mut MediaUser) -> Vec<MediaEvent> {
    std::iter::from_fn(|| u.poll_event()).collect()
}

#[test]
fn hangs_up_exactly_20s_after_answer_without_media_and_never_sends_first() {
    let t0 = Instant::now();
    let (cfg, _) = config(SrtpProfile::AesCm128HmacSha1_80, Mode::Tone);
    let mut u = MediaUser::new(t0, cfg).unwrap();
    assert_eq!(u.poll_timeout(), Some(t0 + Duration::from_secs(20)));
    let mut t = t0;
    while t < t0 + Duration::from_secs(20) {
        assert_eq!(
            u.poll_transmit(t),
            None,
            "sent before the business side at {t:?}"
        );
        t += Duration::from_millis(500);
    }
    u.handle_timeout(t0 + Duration::from_secs(20) - Duration::from_nanos(1));
    assert_eq!(events(&mut u), vec![]);
    u.handle_timeout(t0 + Duration::from_secs(20));
    assert_eq!(
        events(&mut u),
        vec![MediaEvent::HangUp {
            reason: HangUpReason::NoMediaAfterAnswer
        }]
    );
    assert!(u.is_ended());
    assert_eq!(u.poll_timeout(), None);
    assert_eq!(u.counters().hangup, Some(HangUpReason::NoMediaAfterAnswer));
    assert_eq!(u.counters().tx_packets, 0);
}

#[test]
fn first_media_timeout_is_configurable() {
    let t0 = Instant::now();
    let (mut cfg, _) = config(SrtpProfile::AesCm128HmacSha1_80, Mode::Tone);
    cfg.first_media_timeout = Some(Duration::from_secs(3));
    let mut u = MediaUser::new(t0, cfg).unwrap();
    assert_eq!(u.poll_timeout(), Some(t0 + Duration::from_secs(3)));
    u.handle_timeout(t0 + Duration::from_secs(3));
    assert!(u.is_ended());
}

#[test]
fn sends_tone_every_20ms_after_first_packet_then_hangs_up_30s_after_last() {
    let t0 = Instant::now();
    let (cfg, mut biz) = config(SrtpProfile::AeadAes128Gcm, Mode::Tone);
    let mut u = MediaUser::new(t0, cfg).unwrap();
    let t1 = t0 + Duration::from_millis(1500);
    let pkt = biz.send(OPUS, 0, true, &SILENCE_20MS);
    u.handle_datagram(t1, &pkt);
    assert_eq!(events(&mut u), vec![MediaEvent::FirstPacket]);
    assert_eq!(u.first_rx(), Some(t1));
    assert_eq!(u.counters().first_rx_ms, Some(1500));
    assert_eq!(u.counters().rx_packets, 1);
    assert_eq!(u.counters().rx_bytes, pkt.len() as u64);

    // One packet at t1, the next exactly 20 ms later; sequence wraps, timestamp steps 960.
    let mut meter = LevelMeter::new(AudioCodec::Opus);
    let mut last: Option<(u16, u32)> = None;
    for k in 0..10u32 {
        let at = t1 + PTIME * k;
        if k > 0 {
            assert_eq!(u.poll_transmit(at - Duration::from_nanos(1)), None);
        }
        let t = u.poll_transmit(at).expect("packet due");
        assert_eq!(u.poll_transmit(at), None, "one packet per 20 ms");
        assert_eq!(t.destination, remote());
        let (ssrc, seq, ts, payload) = biz.open(&t);
        assert_eq!(ssrc, 0x1234_5678);
        if let Some((s, ts0)) = last {
            assert_eq!(seq, s.wrapping_add(1));
            assert_eq!(ts, ts0.wrapping_add(960));
        } else {
            assert_eq!((seq, ts), (65530, 7));
        }
        last = Some((seq, ts));
        let level = meter.measure(&payload).unwrap();
        if k >= 3 {
            assert!(level >= NON_SILENT_RMS, "tone frame {k} rms {level}");
        }
    }
    assert_eq!(u.counters().tx_packets, 10);

    // Mid-call: last media at t1 → hang-up at exactly t1 + 30 s.
    assert!(u.poll_timeout().unwrap() <= t1 + Duration::from_secs(30));
    u.handle_timeout(t1 + Duration::from_secs(30) - Duration::from_nanos(1));
    assert!(!u.is_ended());
    u.handle_timeout(t1 + Duration::from_secs(30));
    assert_eq!(
        events(&mut u),
        vec![MediaEvent::HangUp {
            reason: HangUpReason::NoMediaMidCall
        }]
    );
    assert_eq!(u.poll_transmit(t1 + Duration::from_secs(31)), None);
}

#[test]
fn mid_call_timer_restarts_on_each_packet_and_is_configurable() {
    let t0 = Instant::now();
    let (mut cfg, mut biz) = config(SrtpProfile::AesCm128HmacSha1_80, Mode::Silent);
    cfg.mid_call_timeout = Some(Duration::from_secs(5));
    let mut u = MediaUser::new(t0, cfg).unwrap();
    u.handle_datagram(t0, &biz.send(OPUS, 0, true, &SILENCE_20MS));
    let t2 = t0 + Duration::from_secs(4);
    u.handle_datagram(t2, &biz.send(OPUS, 960, false, &SILENCE_20MS));
    assert_eq!(u.poll_timeout(), Some(t2 + Duration::from_secs(5)));
    u.handle_timeout(t0 + Duration::from_secs(6));
    assert!(!u.is_ended());
    // Silent mode never sends.
    assert_eq!(u.poll_transmit(t0 + Duration::from_secs(6)), None);
    u.handle_timeout(t2 + Duration::from_secs(5));
    assert_eq!(u.counters().hangup, Some(HangUpReason::NoMediaMidCall));
    assert_eq!(u.counters().tx_packets, 0);
}

#[test]
fn sends_at_once_when_not_waiting_for_first_packet() {
    let t0 = Instant::now();
    let (mut cfg, mut biz) = config(SrtpProfile::AesCm128HmacSha1_80, Mode::Tone);
    cfg.wait_for_first_packet = false;
    let mut u = MediaUser::new(t0, cfg).unwrap();
    let t = u.poll_transmit(t0).expect("first packet at answer");
    assert_eq!(biz.open(&t).0, 0x1234_5678);
}

#[test]
fn echo_returns_the_payload_under_our_own_ssrc() {
    let t0 = Instant::now();
    let (cfg, mut biz) = config(SrtpProfile::AeadAes128Gcm, Mode::Echo);
    let mut u = MediaUser::new(t0, cfg).unwrap();
    let tone = OpusFrames::tone();
    let heard = tone.frame(10).to_vec();
    u.handle_datagram(t0, &biz.send(OPUS, 5000, true, &heard));
    let t = u.poll_transmit(t0).unwrap();
    let (ssrc, seq, ts, payload) = biz.open(&t);
    assert_eq!((ssrc, seq, ts), (0x1234_5678, 65530, 7));
    assert_ne!(ssrc, 0xb0b0_b0b0);
    assert_eq!(payload, heard);
    // Nothing new heard: Opus silence keeps the stream going.
    let t = u.poll_transmit(t0 + PTIME).unwrap();
    assert_eq!(biz.open(&t).3, SILENCE_20MS.to_vec());
    assert_eq!(u.counters().decoded_rx_packets, 1);
}

#[test]
fn dtmf_digits_exactly_once_with_redundant_end_packets() {
    let t0 = Instant::now();
    let (cfg, mut biz) = config(SrtpProfile::AesCm128HmacSha1_80, Mode::Silent);
    let mut u = MediaUser::new(t0, cfg).unwrap();
    let mut now = t0;
    for (digit, ts) in [(5u8, 8000u32), (11, 16000), (5, 24000)] {
        for (k, end) in [
            (1u16, false),
            (2, false),
            (3, false),
            (4, true),
            (4, true),
            (4, true),
        ] {
            let ev = TelephoneEvent {
                event: digit,
                end,
                volume: 10,
                duration: 160 * k,
            };
            now += PTIME;
            u.handle_datagram(now, &biz.send(DTMF, ts, k == 1 && !end, &ev.to_bytes()));
        }
    }
    assert_eq!(u.counters().dtmf, "5#5");
    let digits: Vec<MediaEvent> = events(&mut u)
        .into_iter()
        .filter(|e| matches!(e, MediaEvent::Digit(_)))
        .collect();
    assert_eq!(
        digits,
        vec![
            MediaEvent::Digit('5'),
            MediaEvent::Digit('#'),
            MediaEvent::Digit('5')
        ]
    );
    assert_eq!(u.counters().rx_packets, 18);
    assert_eq!(u.counters().decoded_rx_packets, 0);
}

#[test]
fn tampered_and_foreign_packets_count_as_decrypt_failures_not_media() {
    let t0 = Instant::now();
    for profile in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        let (cfg, mut biz) = config(profile, Mode::Tone);
        let mut u = MediaUser::new(t0, cfg).unwrap();
        let mut pkt = biz.send(OPUS, 0, true, &SILENCE_20MS);
        let last = pkt.len() - 1;
        pkt[last] ^= 1;
        u.handle_datagram(t0, &pkt);
        u.handle_datagram(t0, b"\x00\x01garbage");
        // Right key material, wrong key: a packet from someone else.
        let mut other = Business {
            tx: SrtpSession::new(&MasterKey::random(profile)).unwrap(),
            rx: SrtpSession::new(&MasterKey::random(profile)).unwrap(),
            seq: 1,
        };
        u.handle_datagram(t0, &other.send(OPUS, 0, true, &SILENCE_20MS));
        let c = u.counters();
        assert_eq!((c.decrypt_failures, c.rx_packets), (3, 0), "{profile:?}");
        assert_eq!(u.first_rx(), None);
        assert_eq!(u.poll_transmit(t0 + Duration::from_secs(1)), None);
        // A replay of a good packet is rejected too.
        let good = biz.send(OPUS, 960, false, &SILENCE_20MS);
        u.handle_datagram(t0, &good);
        u.handle_datagram(t0, &good);
        assert_eq!(
            (u.counters().rx_packets, u.counters().decrypt_failures),
            (1, 4)
        );
    }
}

#[test]
fn rtcp_mux_srtcp_counts_as_media_and_reports_go_out() {
    let t0 = Instant::now();
    let (mut cfg, mut biz) = config(SrtpProfile::AesCm128HmacSha1_80, Mode::Tone);
    cfg.rtcp_interval = Some(Duration::from_secs(5));
    let mut u = MediaUser::new(t0, cfg).unwrap();
    let mut rr = vec![0u8; 64];
    let n = rtcp::write_keepalive(&mut rr, 0xb0b0_b0b0, None, b"biz").unwrap();
    rr.truncate(n);
    biz.tx.protect_rtcp_vec(&mut rr).unwrap();
    u.handle_datagram(t0, &rr);
    assert_eq!(u.counters().rx_rtcp_packets, 1);
    assert_eq!(u.first_rx(), Some(t0));
    let mut rtcp_out = 0;
    let mut t = t0;
    while t <= t0 + Duration::from_millis(5000) {
        while let Some(tx) = u.poll_transmit(t) {
            if rtcp::is_rtcp(&tx.payload) {
                let mut b = tx.payload.clone();
                biz.rx
                    .unprotect_rtcp_vec(&mut b)
                    .expect("our SRTCP authenticates");
                rtcp_out += 1;
            }
        }
        t += PTIME;
    }
    assert_eq!(rtcp_out, 1);
    assert_eq!(u.counters().tx_rtcp_packets, 1);
    assert_eq!(u.counters().tx_packets, 251);
}

/// Two users wired back to back on virtual time: a tone sender and an echo; both decode
/// non-silent audio, for both SDES suites the sandbox must support.
#[test]
fn tone_user_and_echo_user_hear_each_other() {
    for profile in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        let t0 = Instant::now();
        let (mut a_cfg, _) = config(profile, Mode::Tone);
        a_cfg.wait_for_first_packet = false;
        let mut b_cfg = a_cfg.clone();
        b_cfg.mode = Mode::Echo;
        b_cfg.wait_for_first_packet = true;
        b_cfg.ssrc = 0x0bad_cafe;
        let a_keys = a_cfg.keys.clone().unwrap();
        b_cfg.keys = Some(SrtpKeys {
            local: a_keys.remote,
            remote: a_keys.local,
            remote_mki: None,
        });
        let mut a = MediaUser::new(t0, a_cfg).unwrap();
        let mut b = MediaUser::new(t0, b_cfg).unwrap();
        let mut t = t0;
        while t < t0 + Duration::from_secs(2) {
            while let Some(p) = a.poll_transmit(t) {
                b.handle_datagram(t, &p.payload);
            }
            while let Some(p) = b.poll_transmit(t) {
                a.handle_datagram(t, &p.payload);
            }
            t += Duration::from_millis(5);
        }
        let (ca, cb) = (a.counters(), b.counters());
        assert_eq!(ca.tx_packets, 100, "{profile:?}");
        assert_eq!(cb.rx_packets, 100);
        assert_eq!(cb.tx_packets, 100);
        assert_eq!(ca.rx_packets, 100);
        assert_eq!((ca.decrypt_failures, cb.decrypt_failures), (0, 0));
        assert!(cb.non_silent_rx_packets >= 95, "{cb:?}");
        assert!(ca.non_silent_rx_packets >= 95, "{ca:?}");
        assert!(cb.rx_peak_rms > 8000);
    }
}

/// G.711 calls (Meta's `additional_codecs`): the tone and the level meter work in PCMU/PCMA.
#[test]
fn g711_tone_is_heard_as_non_silent() {
    use crate::sandbox::media_user::audio::G711;
    for (law, pt) in [(G711::Pcmu, 0u8), (G711::Pcma, 8)] {
        let t0 = Instant::now();
        let (mut a_cfg, _) = config(SrtpProfile::AesCm128HmacSha1_80, Mode::Tone);
        a_cfg.codec = AudioCodec::G711(law);
        a_cfg.audio_payload_type = pt;
        a_cfg.wait_for_first_packet = false;
        let mut b_cfg = a_cfg.clone();
        b_cfg.mode = Mode::Silent;
        let a_keys = a_cfg.keys.clone().unwrap();
        b_cfg.keys = Some(SrtpKeys {
            local: a_keys.remote,
            remote: a_keys.local,
            remote_mki: None,
        });
        let mut a = MediaUser::new(t0, a_cfg).unwrap();
        let mut b = MediaUser::new(t0, b_cfg).unwrap();
        for k in 0..50u32 {
            let t = t0 + PTIME * k;
            while let Some(p) = a.poll_transmit(t) {
                assert_eq!(RtpPacket::parse(&p.payload).unwrap().payload_type(), pt);
                b.handle_datagram(t, &p.payload);
            }
        }
        let c = b.counters();
        assert_eq!((c.rx_packets, c.non_silent_rx_packets), (50, 50), "{law:?}");
        assert!(c.rx_peak_rms > 10_000, "{law:?} {c:?}");
        assert_eq!(b.counters().tx_packets, 0);
    }
}

proptest::proptest! {
    /// Hostile datagrams (random bytes, or random bytes behind a valid RTP/RTCP first byte)
    /// never panic, never count as media and never make the user send.
    #[test]
    fn hostile_datagrams_are_only_decrypt_failures(
        packets in proptest::collection::vec(
            (proptest::prelude::any::<bool>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)),
            1..20,
        )
    ) {
        let t0 = Instant::now();
        let (cfg, _) = config(SrtpProfile::AeadAes128Gcm, Mode::Echo);
        let mut u = MediaUser::new(t0, cfg).unwrap();
        let n = packets.len() as u64;
        for (rtp_like, mut p) in packets {
            if rtp_like && p.len() >= 2 {
                p[0] = 0x80;
            }
            u.handle_datagram(t0, &p);
        }
        proptest::prop_assert_eq!(u.counters().decrypt_failures, n);
        proptest::prop_assert_eq!(u.counters().rx_packets, 0);
        proptest::prop_assert!(u.poll_transmit(t0 + Duration::from_secs(1)).is_none());
    }
}
