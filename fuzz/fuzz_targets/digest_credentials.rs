//! `Authorization` / `Proxy-Authorization` values: parsing never panics and a parsed
//! credential formats and re-parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whatsip::sip::auth::Credentials;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Credentials::parse(s) {
        let v = c.to_header_value().expect("parsed credentials format");
        assert_eq!(Credentials::parse(&v).expect("formatted credentials parse"), c);
    }
});
