//! The server never panics and never accepts arbitrary credentials: the input is sent as an
//! `Authorization` value, once alone and once after a genuine challenge was issued.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use whatsip::sip::auth::{DigestServer, ServerConfig, Verdict};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let t0 = Instant::now();
    let mut srv = DigestServer::new(ServerConfig::new("example.org"), [7; 32], t0).expect("config");
    let users = HashMap::from([("alice".to_owned(), "pw".to_owned())]);
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let _ = srv.challenge(t0);
    for dt in [0, 1, 400] {
        let now = t0 + Duration::from_secs(dt);
        let v = srv.authenticate(now, ip, "INVITE", Some("sip:b@x"), [s], &users);
        assert!(!matches!(v, Verdict::Accepted { .. }), "accepted fuzzed credentials");
    }
});
