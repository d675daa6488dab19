//! `WWW-Authenticate` / `Proxy-Authenticate` values: parsing never panics, a parsed
//! challenge formats and re-parses to itself, and the client never panics answering it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whatsip::sip::auth::{Challenge, DigestClient, select_challenge};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Challenge::parse(s) {
        let v = c.to_header_value().expect("a parsed challenge formats");
        assert_eq!(Challenge::parse(&v).expect("formatted challenge parses"), c);
    }
    let _ = select_challenge([s, s]);
    let mut client = DigestClient::new("alice", "pw");
    let _ = client.respond([s], "INVITE", "sip:bob@example.org", None, &mut || "c".to_owned());
    let _ = client.authorize("INVITE", "sip:bob@example.org", &mut || "c".to_owned());
});
