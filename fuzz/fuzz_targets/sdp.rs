//! Audio SDP parser: never panics; what parses serializes and parses again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use whatsip::media::sdp::AudioSession;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = AudioSession::parse(data) {
        let _ = AudioSession::parse(s.to_string().as_bytes());
    }
});
