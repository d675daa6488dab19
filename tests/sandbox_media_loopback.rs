//! Two sandbox media users over real loopback UDP: SDES offer/answer with the sandbox SDP
//! helper, SRTP both ways (AES_CM_128_HMAC_SHA1_80 and AEAD_AES_128_GCM), packets counted and
//! decoded non-silent on both sides.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use whatsip::media::sdp::{self as msdp, AudioSession};
use whatsip::media::srtp::SrtpProfile;
use whatsip::sandbox::media_user::{MediaSocket, MediaUserConfig, Mode, sdp};

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn call(profile: SrtpProfile) {
    let a_sock = MediaSocket::bind(loopback()).await.unwrap();
    let b_sock = MediaSocket::bind(loopback()).await.unwrap();

    // A offers only `profile`; B answers with the helper (which would take GCM first).
    let mut local = sdp::local_media(a_sock.local_addr(), false);
    local.srtp_suites = vec![profile];
    let offer = msdp::build_offer(&local);
    let offer_text = offer.sdp.to_sdp();
    assert!(offer_text.contains("RTP/SAVP"), "{offer_text}");
    assert!(offer_text.contains("a=rtcp-mux"));
    let (answer_text, b_neg) =
        sdp::answer(offer_text.as_bytes(), b_sock.local_addr(), false).unwrap();
    let answer = AudioSession::parse(answer_text.as_bytes()).unwrap();
    assert_eq!(answer.crypto.len(), 1);
    assert!(answer_text.contains(profile.sdes_name()), "{answer_text}");
    assert!(
        answer_text.contains("telephone-event/8000"),
        "{answer_text}"
    );
    assert!(answer_text.contains("a=ptime:20"), "{answer_text}");
    let a_neg = sdp::accept(&offer, answer_text.as_bytes()).unwrap();
    assert_eq!(a_neg.codec.payload_type, 111);
    assert_eq!(b_neg.codec.payload_type, 111);

    // A plays the tone and sends first; B echoes and waits for A's first packet.
    let mut a_cfg = MediaUserConfig::from_negotiated(&a_neg, Mode::Tone).unwrap();
    a_cfg.wait_for_first_packet = false;
    let b_cfg = MediaUserConfig::from_negotiated(&b_neg, Mode::Echo).unwrap();
    let now = Instant::now();
    let a = a_sock.start_with(now, a_cfg).unwrap();
    let b = b_sock.start_with(now, b_cfg).unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (ca, cb) = (a.counters(), b.counters());
        if ca.non_silent_rx_packets >= 50 && cb.non_silent_rx_packets >= 50 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{profile:?}: not enough audio in 15 s: a={ca:?} b={cb:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ca = a.stop().await;
    let cb = b.stop().await;
    assert!(ca.tx_packets >= 50 && cb.rx_packets >= 50, "{ca:?} {cb:?}");
    assert!(cb.tx_packets >= 50 && ca.rx_packets >= 50, "{ca:?} {cb:?}");
    assert_eq!((ca.decrypt_failures, cb.decrypt_failures), (0, 0));
    assert!(cb.first_rx_ms.is_some());
    assert!(
        cb.rx_peak_rms > 8000 && ca.rx_peak_rms > 8000,
        "{ca:?} {cb:?}"
    );
    assert_eq!(ca.hangup, None);

    // The counters are what the control API serializes.
    let json = serde_json::to_value(&cb).unwrap();
    for k in [
        "rx_packets",
        "tx_packets",
        "rx_bytes",
        "tx_bytes",
        "decrypt_failures",
        "dtmf",
        "non_silent_rx_packets",
    ] {
        assert!(json.get(k).is_some(), "missing {k} in {json}");
    }
}

#[tokio::test]
async fn loopback_aes_cm_128_hmac_sha1_80() {
    call(SrtpProfile::AesCm128HmacSha1_80).await;
}

#[tokio::test]
async fn loopback_aead_aes_128_gcm() {
    call(SrtpProfile::AeadAes128Gcm).await;
}

#[tokio::test]
async fn silent_peer_makes_the_user_hang_up_after_the_configured_first_media_timeout() {
    let sock = MediaSocket::bind(loopback()).await.unwrap();
    let offer = sdp::offer("127.0.0.1:9".parse().unwrap(), false);
    let (_, neg) = sdp::answer(offer.sdp.to_sdp().as_bytes(), sock.local_addr(), false).unwrap();
    let mut cfg = MediaUserConfig::from_negotiated(&neg, Mode::Tone).unwrap();
    cfg.first_media_timeout = Some(Duration::from_millis(300));
    let h = sock.start_with(Instant::now(), cfg).unwrap();
    let mut w = h.hangup();
    tokio::time::timeout(Duration::from_secs(10), w.wait_for(|r| r.is_some()))
        .await
        .expect("hang-up within 10 s")
        .unwrap();
    let c = h.counters();
    assert_eq!(
        c.hangup,
        Some(whatsip::sandbox::media_user::HangUpReason::NoMediaAfterAnswer)
    );
    assert_eq!(c.tx_packets, 0, "never sends before the business side");
}
