//! A WhatsApp-side DTLS offer (Meta's SDP, or anything claiming to be it) is answered or
//! refused, never a panic: our SDP pre-processing (candidate tails, mid/BUNDLE, ice-pwd
//! padding) and str0m's parser behind it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::time::Instant;
use whatsip::media::webrtc::{WebrtcConfig, WebrtcLeg};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = WebrtcConfig::new("127.0.0.1:40000".parse().unwrap());
    if let Ok((mut leg, answer)) = WebrtcLeg::answer_offer(Instant::now(), &cfg, text) {
        // We are the DTLS client unless the offerer insists on being it (RFC 5763 §5).
        let want = if text.contains("a=setup:active") && !text.contains("a=setup:actpass") {
            "a=setup:"
        } else {
            "a=setup:active"
        };
        assert!(answer.contains(want), "{answer}");
        leg.handle_timeout(Instant::now());
    }
});
