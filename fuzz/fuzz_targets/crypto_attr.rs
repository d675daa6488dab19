//! RFC 4568 `a=crypto` parser: never panics; format∘parse is the identity on parsed values.
#![no_main]
use libfuzzer_sys::fuzz_target;
use whatsip::media::sdes::CryptoAttribute;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = CryptoAttribute::parse(s) {
        let again = CryptoAttribute::parse(&a.to_string()).expect("formatted line parses");
        assert_eq!(again, a);
    }
});
