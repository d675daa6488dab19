//! RFC 5118 (IPv6 SIP torture messages), §4, with the outcome the RFC expects per file.
//!
//! The files in `tests/data/rfc5118/` are the RFC's messages with CRLF line ends. The three
//! messages with SDP declare Content-Lengths in the RFC (268, 181, 236) that do not match
//! their bodies (251, 189, 245 octets with CRLF); the files carry the real lengths so each
//! test is about what its section is about — IPv6 references — not about the erratum.
use std::net::Ipv6Addr;
use whatsip::sip::message::{Framing, Message, ParseError, Request};
use whatsip::sip::uri::Host;

fn parse(name: &str) -> Result<Message, ParseError> {
    let path = format!(
        "{}/tests/data/rfc5118/{name}.sip",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    Message::parse(&bytes, Framing::Stream)
}

fn req(name: &str) -> Request {
    match parse(name) {
        Ok(Message::Request(r)) => r,
        other => panic!("{name}: expected a request, got {other:?}"),
    }
}

fn v6(s: &str) -> Host {
    Host::Ipv6(s.parse::<Ipv6Addr>().unwrap())
}

#[rustfmt::skip]
const TABLE: &[(&str, bool, &str)] = &[
    ("ipv6-good",                     true,  "4.1 IPv6 references in Request-URI, Via, Contact"),
    ("ipv6-bad",                      false, "4.2 IPv6 address without [] in the Request-URI"),
    ("port-ambiguous",                true,  "4.3 [2001:db8::10:5070] is an address, no port"),
    ("port-unambiguous",              true,  "4.4 [2001:db8::10]:5070 has port 5070"),
    ("via-received-param-with-delim", true,  "4.5 received=[2001:db8::9:255]"),
    ("via-received-param-no-delim",   true,  "4.5 received=2001:db8::9:255"),
    ("ipv6-in-sdp",                   true,  "4.6 IPv6 in SDP (body is opaque here)"),
    ("mult-ip-in-header",             true,  "4.7 IPv4 and IPv6 mixed in Vias"),
    ("mult-ip-in-sdp",                true,  "4.8 IPv4 and IPv6 mixed in SDP"),
    ("ipv4-mapped-ipv6",              true,  "4.9 IPv4-mapped IPv6 addresses"),
    ("ipv6-bug-abnf-3-colons",        false, "4.10 three colons: invalid IPv6 reference"),
    ("ipv6-correct-abnf-2-colons",    true,  "4.10 two colons before an embedded IPv4"),
];

#[test]
fn every_file_meets_the_rfc_expectation() {
    let dir = format!("{}/tests/data/rfc5118", env!("CARGO_MANIFEST_DIR"));
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), TABLE.len());
    for (name, valid, why) in TABLE {
        let got = parse(name);
        assert_eq!(got.is_ok(), *valid, "{name} ({why}): {got:?}");
        if !valid {
            assert!(matches!(got, Err(ParseError::Uri(_))), "{name}: {got:?}");
        }
    }
}

#[test]
fn ipv6_good() {
    let r = req("ipv6-good");
    assert_eq!(r.uri.as_sip().unwrap().host, v6("2001:db8::10"));
    let via = r.headers.top_via().unwrap();
    assert_eq!(via.host, v6("2001:db8::9:1"));
    assert_eq!(via.port, None);
    let c = &r.headers.contacts().unwrap()[0];
    assert_eq!(c.uri.as_sip().unwrap().host, v6("2001:db8::1"));
}

#[test]
fn port_ambiguity() {
    let u = req("port-ambiguous").uri;
    let u = u.as_sip().unwrap();
    assert_eq!((u.host.clone(), u.port), (v6("2001:db8::10:5070"), None));
    let u = req("port-unambiguous").uri;
    let u = u.as_sip().unwrap();
    assert_eq!((u.host.clone(), u.port), (v6("2001:db8::10"), Some(5070)));
}

#[test]
fn via_received_both_forms() {
    let v = req("via-received-param-with-delim")
        .headers
        .top_via()
        .unwrap();
    assert_eq!(v.received(), Some("[2001:db8::9:255]"));
    assert_eq!(v.branch(), Some("z9hG4bKas3-111"));
    let v = req("via-received-param-no-delim")
        .headers
        .top_via()
        .unwrap();
    assert_eq!(v.received(), Some("2001:db8::9:255"));
    assert_eq!(v.branch(), Some("z9hG4bKas3"));
}

#[test]
fn mixed_vias() {
    let vias = req("mult-ip-in-header").headers.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(
        (vias[0].host.clone(), vias[0].port),
        (v6("2001:db8::9:1"), Some(6050))
    );
    assert_eq!(vias[1].host, Host::Ipv4("192.0.2.1".parse().unwrap()));
    assert_eq!(vias[2].host, v6("2001:db8::9:255"));
    assert_eq!(vias[2].received(), Some("192.0.2.200"));
}

#[test]
fn sdp_bodies_are_kept() {
    for name in ["ipv6-in-sdp", "mult-ip-in-sdp", "ipv4-mapped-ipv6"] {
        let r = req(name);
        assert!(r.body.starts_with(b"v=0\r\n"), "{name}");
        assert_eq!(Some(r.body.len()), r.headers.content_length().unwrap());
    }
}

#[test]
fn ipv4_mapped() {
    let r = req("ipv4-mapped-ipv6");
    let vias = r.headers.vias().unwrap();
    assert_eq!(
        (vias[0].host.clone(), vias[0].port),
        (v6("::ffff:192.0.2.10"), Some(19823))
    );
    assert_eq!(vias[1].host, v6("::ffff:192.0.2.2"));
}

#[test]
fn embedded_ipv4() {
    let r = req("ipv6-correct-abnf-2-colons");
    assert_eq!(r.uri.as_sip().unwrap().host, v6("2001:db8::192.0.2.1"));
}
