//! RTCP compound walker and port demux: never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use whatsip::media::rtcp;

fuzz_target!(|data: &[u8]| {
    let _ = rtcp::classify(data);
    let _ = rtcp::is_rtcp(data);
    for p in rtcp::walk(data) {
        if p.is_err() {
            break;
        }
    }
});
