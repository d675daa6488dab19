use super::*;
use crate::media::srtp::{SrtpProfile, SrtpSession};
use proptest::prelude::*;

fn crlf(s: &str) -> String {
    s.lines().map(|l| format!("{}\r\n", l.trim())).collect()
}

/// Meta's user-initiated DTLS offer (seeds/ 002, "Graph API" sample): ice-lite, two host
/// candidates, setup:actpass, mid audio, BUNDLE.
const META_DTLS_OFFER: &str = "v=0
o=- 7602563789789945080 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE audio
a=msid-semantic: WMS 6932bc1c-db1a-4abe-b437-0c4168be8a13
a=ice-lite
m=audio 40012 UDP/TLS/RTP/SAVPF 111 126
c=IN IP4 31.13.65.60
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:1972637320 1 udp 2113937151 31.13.65.60 40012 typ host generation 0 network-cost 50 ufrag 6k2qP1R6kBfI/2
a=candidate:1652262791 1 udp 2113939711 2a03:2880:f211:cf:face:b00c:0:6443 40012 typ host generation 0 network-cost 50 ufrag 6k2qP1R6kBfI/2
a=ice-ufrag:6k2qP1R6kBfI/2
a=ice-pwd:UApvJw3NcwFRDvIMKdM0vWCdlXah25E9
a=fingerprint:sha-256 1B:B6:6B:40:A5:0B:8C:75:0D:8C:CB:90:2F:99:74:1E:26:45:AE:AF:45:C1:51:60:8F:73:C9:2D:10:6D:8A:88
a=setup:actpass
a=mid:audio
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=sendrecv
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:126 telephone-event/8000
a=ssrc:4208138518 cname:gAXq2V9TKltrnapv
a=ssrc:4208138518 msid:6932bc1c-db1a-4abe-b437-0c4168be8a13 audio#R5wfXFcdmT6
a=ssrc:4208138518 mslabel:6932bc1c-db1a-4abe-b437-0c4168be8a13
a=ssrc:4208138518 label:audio#R5wfXFcdmT6
";

/// Business (browser) offer from seeds/ 002: Opus, RED, G722, G.711, two telephone-events.
const BROWSER_DTLS_OFFER: &str = "v=0
o=- 3626166318745852955 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
a=extmap-allow-mixed
a=msid-semantic: WMS d8b26053-4474-4eb7-b3c3-c93d6c8c9b2e
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:4g1c
a=ice-pwd:qY/Bb+jQzg5ICn6X4fhJQetk
a=ice-options:trickle
a=fingerprint:sha-256 35:47:24:24:9F:93:C4:3E:DB:37:7F:BB:ED:F8:20:B5:AD:AC:DC:35:C2:7D:67:EE:6C:35:54:DF:A6:00:5C:4A
a=setup:actpass
a=mid:0
a=sendrecv
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:2220762577 cname:w/zwpg3jXNiTFTdZ
";

/// Meta's SDES 200 OK as described in whatsapp-calling.md §1.3 (Meta masks the key in its
/// sample, so a syntactically valid one stands in; everything else is as documented).
fn meta_sdes_200(key_line: &str) -> String {
    crlf(&format!(
        "v=0
o=- 1731000000 1731000001 IN IP4 157.240.19.130
s=-
c=IN IP4 157.240.19.130
t=0 0
m=audio 3480 RTP/SAVP 107 101
a=rtpmap:107 opus/48000/2
a=fmtp:107 maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1
a=rtpmap:101 telephone-event/8000
a=ptime:20
a=maxptime:20
a=sendrecv
a=rtcp-mux
a=crypto:{key_line}
a=ssrc:2894927376 cname:WhatsAppAudioStream1
"
    ))
}

/// Twilio-style SDES offer (whatsapp-calling.md §1.3): 107 opus, 0, 8, 101.
const TWILIO_OFFER: &str = "v=0
o=root 1716325441 1716325441 IN IP4 54.172.60.1
s=Twilio Media Gateway
c=IN IP4 54.172.60.1
t=0 0
m=audio 13730 RTP/SAVP 107 0 8 101
a=rtpmap:107 opus/48000/2
a=fmtp:107 useinbandfec=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
a=rtcp-mux
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR
";

/// Meta's SDES offer for a user-initiated call (§1.4): `RTP/SAVP 111 126`, no ICE; the
/// ice-pwd with `==` padding from the 2026-10-02 capture is included at session level.
const META_SDES_OFFER: &str = "v=0
o=- 1731000000 1 IN IP4 157.240.19.130
s=-
c=IN IP4 157.240.19.130
t=0 0
a=ice-pwd:Zm9vYmFyYmF6cXV4cXV1eA==
m=audio 3480 RTP/SAVP 111 126
a=rtpmap:111 opus/48000/2
a=fmtp:111 maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1
a=rtpmap:126 telephone-event/8000
a=ptime:20
a=maxptime:20
a=sendrecv
a=rtcp-mux
a=crypto:1 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==
a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^31
a=ssrc:1234 cname:WhatsAppAudioStream1
";

// Real PBX SDPs from /work/shared/traces (exact bodies).
const ASTERISK11_ZOIPER: &str = "v=0
o=Z 0 2 IN IP4 172.16.98.145
s=Z
c=IN IP4 172.16.98.145
t=0 0
m=audio 8000 RTP/AVP 0 3 110 8 97 101
a=rtpmap:110 speex/8000
a=rtpmap:97 iLBC/8000
a=fmtp:97 mode=30
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendrecv
";
const ASTERISK16_200: &str = "v=0
o=root 136222639 136222639 IN IP4 192.168.10.40
s=Asterisk PBX 1.6.0.6
c=IN IP4 192.168.10.40
t=0 0
m=audio 49848 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=silenceSupp:off - - - -
a=ptime:20
a=sendrecv
";
const FREESWITCH_SENDONLY_200: &str = "v=0
o=FreeSWITCH 1480144037 1480144038 IN IP4 10.0.2.15
s=FreeSWITCH
c=IN IP4 10.0.2.15
t=0 0
m=audio 27942 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendonly
a=ptime:20
";
const LINPHONE_REJECTED: &str = "v=0
o=8801 559 2101 IN IP4 192.168.8.183
s=Talk
c=IN IP4 0.0.0.0
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 0 RTP/AVP 0
a=inactive
";
const RFC2543_HOLD: &str = "v=0
o=root 555055307 555055309 IN IP4 172.16.98.1
s=Asterisk PBX 11.7.0~dfsg-1ubuntu1
c=IN IP4 0.0.0.0
t=0 0
m=audio 8000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=ptime:20
a=sendrecv
";

fn parse(s: &str) -> AudioSession {
    AudioSession::parse(crlf(s).as_bytes()).unwrap_or_else(|e| panic!("{e}\n{s}"))
}

fn gw() -> IpAddr {
    "203.0.113.5".parse().unwrap()
}

fn round_trips(a: &AudioSession) {
    let text = a.to_string();
    let back = AudioSession::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(&back, a, "{text}");
}

#[test]
fn meta_dtls_offer_keeps_ice_and_dtls() {
    let a = parse(META_DTLS_OFFER);
    assert_eq!(a.proto, Proto::UdpTlsRtpSavpf);
    assert_eq!(a.rtp_addr(), "31.13.65.60:40012".parse().unwrap());
    assert!(a.rtcp_mux);
    assert_eq!(a.rtcp_addr(), a.rtp_addr());
    let d = &a.ice_dtls;
    assert!(d.ice_lite);
    assert_eq!(d.candidates.len(), 2);
    assert!(d.candidates[1].contains("2a03:2880:f211:cf:face:b00c:0:6443 40012 typ host"));
    assert_eq!(d.ice_ufrag.as_deref(), Some("6k2qP1R6kBfI/2"));
    assert_eq!(
        d.ice_pwd.as_deref(),
        Some("UApvJw3NcwFRDvIMKdM0vWCdlXah25E9")
    );
    assert!(
        d.fingerprint
            .as_deref()
            .unwrap()
            .starts_with("sha-256 1B:B6")
    );
    assert_eq!(d.setup.as_deref(), Some("actpass"));
    assert_eq!(d.mid.as_deref(), Some("audio"));
    assert_eq!(d.bundle, Some(vec!["audio".to_owned()]));
    assert_eq!(a.codecs.len(), 2);
    assert!(a.codecs[0].same_format(&Codec::opus(0)));
    assert_eq!(a.codecs[0].rtcp_fb, vec!["transport-cc"]);
    assert_eq!(a.telephone_event(8000).map(|c| c.payload_type), Some(126));
    assert_eq!(a.ssrcs.len(), 4);
    assert_eq!(a.ssrcs[0].value.as_deref(), Some("gAXq2V9TKltrnapv"));
    round_trips(&a);
    // DTLS is a later issue: SDES-only answering refuses with 488.
    let err = build_answer(&a, &LocalMedia::whatsapp(gw(), 4000, false)).unwrap_err();
    assert_eq!(err, SdpError::DtlsRequired);
    assert_eq!(err.sip_status(), 488);
}

#[test]
fn browser_offer_codecs_with_red_and_two_dtmf_clocks() {
    let a = parse(BROWSER_DTLS_OFFER);
    let pts: Vec<u8> = a.codecs.iter().map(|c| c.payload_type).collect();
    assert_eq!(pts, vec![111, 63, 9, 0, 8, 110, 126]);
    assert_eq!(a.codecs[1].fmtp.as_deref(), Some("111/111"));
    assert_eq!(a.telephone_event(48000).unwrap().payload_type, 110);
    assert_eq!(a.ice_dtls.ice_options.as_deref(), Some("trickle"));
    assert!(a.connection.is_unspecified());
    assert_eq!(a.rtcp, Some((9, Some("0.0.0.0".parse().unwrap()))));
    round_trips(&a);
}

#[test]
fn twilio_offer_answered_with_mirrored_pts_and_fresh_key() {
    let offer = parse(TWILIO_OFFER);
    let local = LocalMedia::whatsapp(gw(), 4000, true);
    let (ans, neg) = build_answer(&offer, &local).unwrap();
    // Mirrors 107 (not 111) and 101, in our preference order; PCMA/PCMU follow.
    let pts: Vec<u8> = ans.codecs.iter().map(|c| c.payload_type).collect();
    assert_eq!(pts, vec![107, 8, 0, 101]);
    assert_eq!(neg.codec.payload_type, 107);
    assert_eq!(neg.dtmf.as_ref().unwrap().payload_type, 101);
    assert_eq!(neg.remote_rtp, "54.172.60.1:13730".parse().unwrap());
    assert_eq!(ans.proto, Proto::RtpSavp);
    assert_eq!(ans.ptime, Some(20));
    assert!(ans.rtcp_mux);
    assert_eq!(ans.crypto.len(), 1);
    assert_eq!(ans.crypto[0].tag, 1);
    let keys = neg.srtp.as_ref().unwrap();
    assert_eq!(keys.remote, offer.crypto[0].master_key().unwrap().0);
    assert_ne!(keys.local, keys.remote);
    assert_ne!(
        ans.crypto[0].keys[0].key_salt,
        offer.crypto[0].keys[0].key_salt
    );
    let text = ans.to_string();
    assert_eq!(text.matches("m=").count(), 1);
    assert!(text.contains("m=audio 4000 RTP/SAVP 107 8 0 101\r\n"));
    assert!(!text.contains(" 111"));
    round_trips(&ans);
}

#[test]
fn meta_sdes_offer_answered_and_keys_work_both_ways() {
    let offer = parse(META_SDES_OFFER);
    assert_eq!(offer.crypto.len(), 2);
    assert_eq!(offer.ptime, Some(20));
    assert_eq!(offer.maxptime, Some(20));
    assert_eq!(
        offer.ice_dtls.ice_pwd.as_deref(),
        Some("Zm9vYmFyYmF6cXV4cXV1eA==")
    );
    let mut local = LocalMedia::whatsapp(gw(), 4000, false);
    local.ssrc = Some((0x1111, "whatsip".into()));
    let (ans, neg) = build_answer(&offer, &local).unwrap();
    assert_eq!(
        ans.codecs
            .iter()
            .map(|c| c.payload_type)
            .collect::<Vec<_>>(),
        vec![111, 126]
    );
    // Our preference puts AES_CM_128_HMAC_SHA1_80 first: tag 2 is chosen.
    assert_eq!(ans.crypto[0].tag, 2);
    assert_eq!(neg.remote_ssrcs, vec![1234]);
    assert_eq!(ans.ssrcs.len(), 1);
    // The offerer (Meta) and we can now talk SRTP with the agreed keys.
    let keys = neg.srtp.unwrap();
    let mut ours = SrtpSession::new(&keys.local).unwrap();
    let (meta_key, _) = ans.crypto[0].master_key().unwrap();
    let mut metas = SrtpSession::new(&meta_key).unwrap();
    let mut pkt = vec![
        0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0x11, 0x11, 0xf8, 0xff, 0xfe,
    ];
    let plain = pkt.clone();
    ours.protect_rtp_vec(&mut pkt).unwrap();
    metas.unprotect_rtp_vec(&mut pkt).unwrap();
    assert_eq!(pkt, plain);
}

#[test]
fn our_offer_and_metas_sdes_200_ok() {
    let local = LocalMedia::whatsapp(gw(), 4000, false);
    let mut offer = build_offer(&local);
    // Emulate the Twilio PT choice: rewrite our offer's opus PT to 107 and DTMF to 101.
    offer.sdp.codecs[0].payload_type = 107;
    offer.sdp.codecs[1].payload_type = 101;
    let text = offer.sdp.to_string();
    assert!(text.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
    let meta_key = MasterKey::random(SrtpProfile::AesCm128HmacSha1_80);
    let line = CryptoAttribute::new(1, &meta_key).to_string();
    let answer = AudioSession::parse(meta_sdes_200(&line).as_bytes()).unwrap();
    assert_eq!(
        answer.ssrcs[0].value.as_deref(),
        Some("WhatsAppAudioStream1")
    );
    let neg = accept_answer(&offer, &answer).unwrap();
    assert_eq!(neg.codec.payload_type, 107);
    assert!(
        neg.codec
            .fmtp
            .as_deref()
            .unwrap()
            .contains("maxplaybackrate=16000")
    );
    assert_eq!(neg.dtmf.unwrap().payload_type, 101);
    assert_eq!(neg.remote_rtp, "157.240.19.130:3480".parse().unwrap());
    assert!(neg.rtcp_mux);
    let keys = neg.srtp.unwrap();
    assert_eq!(keys.remote, meta_key);
    assert_eq!(keys.local, offer.keys[0].1);
    round_trips(&answer);
    // An answer echoing our own key is refused.
    let echo = CryptoAttribute::new(1, &offer.keys[0].1).to_string();
    let bad = AudioSession::parse(meta_sdes_200(&echo).as_bytes()).unwrap();
    assert!(accept_answer(&offer, &bad).is_err());
}

#[test]
fn asterisk_offer_with_static_pts_answered_by_g711_trunk() {
    let offer = parse(ASTERISK11_ZOIPER);
    let gsm = offer.codecs.iter().find(|c| c.payload_type == 3).unwrap();
    assert_eq!((gsm.name.as_str(), gsm.clock_rate), ("GSM", 8000));
    assert!(!gsm.has_rtpmap);
    let local = LocalMedia::pbx(gw(), 5004, vec![Codec::pcma(), Codec::pcmu()]);
    let (ans, neg) = build_answer(&offer, &local).unwrap();
    assert_eq!(
        ans.codecs
            .iter()
            .map(|c| c.payload_type)
            .collect::<Vec<_>>(),
        vec![8, 0, 101]
    );
    assert_eq!(neg.codec.name, "PCMA");
    assert!(neg.srtp.is_none());
    assert!(ans.crypto.is_empty());
    assert_eq!(neg.remote_rtcp, "172.16.98.145:8001".parse().unwrap());
    round_trips(&offer);
    round_trips(&ans);
}

#[test]
fn asterisk_16_answer_to_our_pbx_offer() {
    let local = LocalMedia::pbx(
        gw(),
        5004,
        vec![Codec::opus(96), Codec::pcmu(), Codec::pcma()],
    );
    let offer = build_offer(&local);
    let neg = accept_answer(&offer, &parse(ASTERISK16_200)).unwrap();
    assert_eq!(neg.codec.name, "PCMU");
    assert_eq!(neg.dtmf.unwrap().payload_type, 101);
    assert_eq!(neg.ptime, Some(20));
    let a = parse(ASTERISK16_200);
    assert!(
        a.other_attributes
            .contains(&("silenceSupp".to_owned(), Some("off - - - -".to_owned())))
    );
    round_trips(&a);
}

#[test]
fn hold_sdps() {
    let fs = parse(FREESWITCH_SENDONLY_200);
    assert!(fs.is_hold());
    assert_eq!(fs.direction, Direction::SendOnly);
    let local = LocalMedia::pbx(gw(), 5004, vec![Codec::pcmu()]);
    let (ans, neg) = build_answer(&fs, &local).unwrap();
    assert_eq!(ans.direction, Direction::RecvOnly);
    assert!(!neg.direction.sends());

    let old = parse(RFC2543_HOLD);
    assert!(old.is_hold());
    let (ans, neg) = build_answer(&old, &local).unwrap();
    assert_eq!(neg.direction, Direction::RecvOnly);
    assert_eq!(ans.connection, gw());
    round_trips(&old);
}

#[test]
fn rejected_stream_is_488() {
    let a = parse(LINPHONE_REJECTED);
    assert_eq!(a.port, 0);
    assert_eq!(a.direction, Direction::Inactive);
    let err = build_answer(&a, &LocalMedia::pbx(gw(), 5004, vec![Codec::pcmu()])).unwrap_err();
    assert_eq!(err, SdpError::Rejected);
    assert_eq!(err.sip_status(), 488);
    let err = build_answer(
        &parse(ASTERISK16_200),
        &LocalMedia::pbx(gw(), 1, vec![Codec::new(9, "G722", 8000, None)]),
    )
    .unwrap_err();
    assert_eq!(err, SdpError::NoCommonCodec);
}

#[test]
fn extra_media_lines_are_answered_with_port_zero() {
    let sdp = format!(
        "{}m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n",
        crlf(ASTERISK16_200)
    );
    let offer = AudioSession::parse(sdp.as_bytes()).unwrap();
    assert_eq!(offer.other_media.len(), 1);
    let (ans, _) = build_answer(&offer, &LocalMedia::pbx(gw(), 5004, vec![Codec::pcmu()])).unwrap();
    let text = ans.to_string();
    assert!(text.contains("m=video 0 RTP/AVP 96\r\n"));
    assert!(text.find("m=audio").unwrap() < text.find("m=video").unwrap());
}

#[test]
fn malformed_sdp_is_a_typed_error() {
    assert!(matches!(
        AudioSession::parse(b"garbage"),
        Err(SdpError::Syntax(_))
    ));
    let no_audio =
        crlf("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\nm=video 5 RTP/AVP 96\n");
    assert_eq!(
        AudioSession::parse(no_audio.as_bytes()),
        Err(SdpError::NoAudio)
    );
    let bad_pt =
        crlf("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 1.2.3.4\nt=0 0\nm=audio 5 RTP/AVP 300\n");
    assert!(matches!(
        AudioSession::parse(bad_pt.as_bytes()),
        Err(SdpError::BadPayloadType(_))
    ));
    let no_c = crlf("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nm=audio 5 RTP/AVP 0\n");
    assert_eq!(
        AudioSession::parse(no_c.as_bytes()),
        Err(SdpError::NoConnection)
    );
    let bad_crypto = format!(
        "{}a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:short\r\n",
        crlf(ASTERISK16_200)
    );
    assert!(matches!(
        AudioSession::parse(bad_crypto.as_bytes()),
        Err(SdpError::Crypto(_))
    ));
}

proptest! {
    #[test]
    fn parse_never_panics(s in "(v=0\r\n)?([a-z]=[ -~]{0,40}\r\n){0,12}") {
        let _ = AudioSession::parse(s.as_bytes());
    }

    #[test]
    fn parse_never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = AudioSession::parse(&b);
    }

    #[test]
    fn mutated_samples_never_panic(idx in 0usize..5, cut in 0usize..2000, byte in any::<u8>()) {
        let sample = [META_DTLS_OFFER, TWILIO_OFFER, META_SDES_OFFER, ASTERISK11_ZOIPER, BROWSER_DTLS_OFFER][idx];
        let mut b = crlf(sample).into_bytes();
        let at = cut % b.len();
        b[at] = byte;
        let _ = AudioSession::parse(&b);
        b.truncate(at);
        let _ = AudioSession::parse(&b);
    }

    #[test]
    fn write_parse_round_trip(
        port in 1u16.., ip in any::<[u8; 4]>(), ptime in proptest::option::of(1u32..200),
        dir in 0usize..4, mux in any::<bool>(),
        codecs in proptest::collection::btree_map(0u8..128, ("[A-Za-z][A-Za-z0-9-]{0,10}", 1u32..200_000, proptest::option::of(1u8..9), proptest::option::of("[a-z0-9=;-]{1,20}")), 1..6),
        ssrc in proptest::option::of((any::<u32>(), "[A-Za-z0-9]{1,16}")),
    ) {
        let mut local = LocalMedia::pbx(IpAddr::from(ip), port, Vec::new());
        local.ptime = ptime;
        local.direction = [Direction::SendRecv, Direction::SendOnly, Direction::RecvOnly, Direction::Inactive][dir];
        local.rtcp_mux = mux;
        local.dtmf_clock_rates.clear();
        local.ssrc = ssrc;
        local.codecs = codecs.into_iter().map(|(pt, (name, rate, ch, fmtp))| {
            let mut c = Codec::new(pt, &name, rate, ch);
            c.fmtp = fmtp;
            c
        }).collect();
        let offer = build_offer(&local);
        let text = offer.sdp.to_string();
        let back = AudioSession::parse(text.as_bytes()).unwrap();
        prop_assert_eq!(back, offer.sdp);
    }
}
