//! Fuzzes `Message::parse` (both framings), `Message::parse_prefix` and the typed header views:
//! nothing may panic, and whatever parses must survive serialize → parse unchanged (modulo the
//! Content-Length the serializer computes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use whatsip::sip::header::HeaderName;
use whatsip::sip::message::{Framing, Message};

fuzz_target!(|data: &[u8]| {
    let _ = Message::parse_prefix(data);
    let _ = Message::parse(data, Framing::Stream);
    if let Ok(m) = Message::parse(data, Framing::Datagram) {
        let h = m.headers();
        let _ = h.vias();
        let _ = h.contacts();
        let _ = h.record_route();
        let _ = h.route();
        let _ = h.session_expires();
        let _ = h.min_se();
        let _ = h.content_length();
        let _ = h.wa_meta();
        let _ = h.wa_meta_value("wacid");
        let _ = h.allow();

        let bytes = m.to_bytes();
        let mut want = m.clone();
        let len = want.body().len();
        want.headers_mut().set(HeaderName::ContentLength, len.to_string());
        assert_eq!(Message::parse(&bytes, Framing::Stream), Ok(want));
    }
});
