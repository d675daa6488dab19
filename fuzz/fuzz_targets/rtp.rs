//! RTP header parser: never panics; what parses re-serializes to the same header bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use whatsip::media::rtp::{RtpPacket, header_len};

fuzz_target!(|data: &[u8]| {
    let _ = header_len(data);
    if let Ok(p) = RtpPacket::parse(data) {
        let h = p.header();
        let ext = p.extension().map(|e| e.data).unwrap_or(&[]);
        let mut out = vec![0u8; p.header_len()];
        let n = h.write(ext, &mut out).expect("a parsed header re-serializes");
        assert_eq!(&out[..n], &data[..p.header_len()]);
    }
});
