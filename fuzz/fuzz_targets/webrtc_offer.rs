//! A WhatsApp-side DTLS offer (Meta's SDP, or anything claiming to be it) is answered or
//! refused, never a panic: our SDP pre-processing (candidate tails, mid/BUNDLE, ice-pwd
//! padding) and str0m's parser behind it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::time::Instant;
use whatsip::media::webrtc::sdp::setup_of;
use whatsip::media::webrtc::{Setup, WebrtcConfig, WebrtcLeg};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = WebrtcConfig::new("127.0.0.1:40000".parse().unwrap());
    if let Ok((mut leg, answer)) = WebrtcLeg::answer_offer(Instant::now(), &cfg, text) {
        // We are the DTLS client whenever the offer lets us (actpass, as Meta sends, or
        // passive); an offer that is `active` or names no valid role (RFC 4145's default:
        // active) gets `passive`.
        let want = match setup_of(text) {
            Some(Setup::ActPass) | Some(Setup::Passive) => "a=setup:active",
            _ => "a=setup:passive",
        };
        assert!(answer.contains(want), "{answer}");
        leg.handle_timeout(Instant::now());
    }
});
