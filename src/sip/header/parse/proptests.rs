//! Property tests: generated messages survive `parse(serialize(m))`, and `parse` never panics
//! on arbitrary or mutated input.
//!
//! Normalisation: generated messages are built in the form the parser produces — canonical
//! header names, values without surrounding whitespace, and a Content-Length header equal to
//! the body length (the serializer always writes a computed one).
use crate::sip::header::HeaderName;
use crate::sip::message::{Framing, Headers, Message, Request, Response};
use crate::sip::method::Method;
use crate::sip::uri::{Host, Scheme, SipUri, Uri};
use bytes::Bytes;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,11}"
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Ack),
        Just(Method::Bye),
        Just(Method::Options),
        Just(Method::Register),
        Just(Method::Update),
        "[A-Z][A-Z!%*_+`'~.-]{0,10}".prop_map(|s| Method::from_token(&s).unwrap()),
    ]
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        "[a-z]([a-z0-9-]{0,6}[a-z0-9])?(\\.[a-z]([a-z0-9-]{0,6}[a-z0-9])?){0,3}"
            .prop_map(Host::Domain),
        any::<u32>().prop_map(|a| Host::Ipv4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| Host::Ipv6(Ipv6Addr::from(a))),
    ]
}

fn escaped_user() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[A-Za-z0-9_.!~*'()&=+$,;?/-]".prop_map(|s| s),
            any::<u8>().prop_map(|b| format!("%{b:02X}")),
        ],
        1..12,
    )
    .prop_map(|v| v.concat())
}

fn sip_uri() -> impl Strategy<Value = SipUri> {
    (
        prop::bool::ANY,
        prop::option::of(escaped_user()),
        prop::option::of("[A-Za-z0-9&=+$,]{0,6}"),
        host(),
        prop::option::of(any::<u16>()),
        prop::collection::vec(
            (
                "[A-Za-z0-9_.!~*'()-]{1,8}",
                prop::option::of("[A-Za-z0-9\\[\\]/:&+$]{1,8}"),
            ),
            0..3,
        ),
    )
        .prop_map(|(sips, user, pw, host, port, params)| SipUri {
            scheme: if sips { Scheme::Sips } else { Scheme::Sip },
            password: user.as_ref().and(pw),
            user,
            host,
            port,
            params: crate::sip::header::Params(params),
            headers: Vec::new(),
        })
}

fn uri() -> impl Strategy<Value = Uri> {
    prop_oneof![
        4 => sip_uri().prop_map(Uri::Sip),
        1 => ("[a-z][a-z0-9+.-]{0,5}", "[A-Za-z0-9;/?:@&=+$,_.!~*'()-]{1,16}")
            .prop_filter("not sip", |(s, _)| !s.eq_ignore_ascii_case("sip") && !s.eq_ignore_ascii_case("sips"))
            .prop_map(|(scheme, rest)| Uri::Other { scheme, rest }),
    ]
}

fn via() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("UDP"), Just("TCP"), Just("TLS"), Just("WS")],
        host(),
        prop::option::of(any::<u16>()),
        "[A-Za-z0-9]{1,10}",
        prop::bool::ANY,
    )
        .prop_map(|(t, h, p, b, rport)| {
            let mut v = crate::sip::header::Via::new(t, h, p, &format!("z9hG4bK{b}"));
            if rport {
                v.params.set("rport", None);
            }
            v.to_string()
        })
}

fn display_name() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        "[A-Za-z0-9 ,<>;:@\u{e9}\u{4e2d}]{0,10}".prop_map(|s| {
            let esc: String = s
                .chars()
                .flat_map(|c| {
                    if c == '"' || c == '\\' {
                        vec!['\\', c]
                    } else {
                        vec![c]
                    }
                })
                .collect();
            format!("\"{esc}\"")
        }),
        "[A-Za-z0-9!%*_+`'~.-]{1,6}( [A-Za-z0-9!%*_+`'~.-]{1,6}){0,2}",
    ])
}

fn name_addr(tag: bool) -> impl Strategy<Value = String> {
    (display_name(), uri(), prop::option::of(token())).prop_map(move |(d, u, t)| {
        let mut n = crate::sip::header::NameAddr::new(u);
        n.display_name = d;
        if tag && let Some(t) = t {
            n.params.set("tag", Some(&t));
        }
        n.to_string()
    })
}

fn extra_header() -> impl Strategy<Value = (HeaderName, String)> {
    (
        "[Xx]-[A-Za-z0-9!%*_+`'~.-]{1,12}",
        "[ -~\u{e9}\u{4e2d}]{0,30}",
    )
        .prop_map(|(n, v)| {
            (
                HeaderName::parse(&n),
                v.trim_matches([' ', '\t']).to_string(),
            )
        })
}

fn request() -> impl Strategy<Value = Message> {
    (
        method(),
        uri(),
        prop::collection::vec(via(), 1..4),
        name_addr(true),
        name_addr(true),
        "[A-Za-z0-9.!%*_+`'~()<>:/?{}-]{1,20}(@[A-Za-z0-9.-]{1,10})?",
        any::<u32>(),
        prop::collection::vec(extra_header(), 0..4),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(m, u, vias, from, to, cid, seq, extra, body)| {
            let mut h = Headers::new();
            for v in vias {
                h.push(HeaderName::Via, v);
            }
            h.push(HeaderName::From, from);
            h.push(HeaderName::To, to);
            h.push(HeaderName::CallId, cid);
            h.push(HeaderName::CSeq, format!("{seq} {m}"));
            for (n, v) in extra {
                h.push(n, v);
            }
            h.push(HeaderName::ContentLength, body.len().to_string());
            Message::Request(Request {
                method: m,
                uri: u,
                headers: h,
                body: Bytes::from(body),
            })
        })
}

fn response() -> impl Strategy<Value = Message> {
    (request(), 100u16..700, "[ -~\u{e9}]{0,20}").prop_map(|(m, status, reason)| {
        let Message::Request(r) = m else {
            unreachable!()
        };
        let mut resp = Response::from_request(&r, status, &reason);
        resp.headers.push(HeaderName::ContentLength, "0");
        Message::Response(resp)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn serialize_then_parse_is_identity(m in prop_oneof![request(), response()]) {
        let bytes = m.to_bytes();
        let back = Message::parse(&bytes, Framing::Stream);
        prop_assert_eq!(back.as_ref(), Ok(&m), "{}", String::from_utf8_lossy(&bytes));
        let dgram = Message::parse(&bytes, Framing::Datagram);
        prop_assert_eq!(dgram.as_ref(), Ok(&m));
    }

    #[test]
    fn uri_display_parses_back(u in uri()) {
        prop_assert_eq!(Uri::parse(&u.to_string()), Ok(u));
    }

    #[test]
    fn parse_never_panics_on_bytes(b in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::parse(&b, Framing::Datagram);
        let _ = Message::parse(&b, Framing::Stream);
        let _ = Message::parse_prefix(&b);
    }

    #[test]
    fn parse_never_panics_on_mutated_messages(
        m in request(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut b = m.to_bytes();
        for (i, byte, op) in edits {
            if b.is_empty() { break; }
            let at = i.index(b.len());
            match op {
                0 => b[at] = byte,
                1 => b.insert(at, byte),
                _ => { b.remove(at); }
            }
        }
        if let Ok(m) = Message::parse(&b, Framing::Datagram) {
            // Whatever parses must serialize to something that parses to the same message
            // (modulo the Content-Length the serializer computes).
            let mut want = m.clone();
            let len = want.body().len();
            want.headers_mut().set(HeaderName::ContentLength, len.to_string());
            prop_assert_eq!(Message::parse(&m.to_bytes(), Framing::Stream), Ok(want));
        }
    }

    #[test]
    fn typed_parsers_never_panic(s in "\\PC{0,64}") {
        let _ = Uri::parse(&s);
        let _ = super::via(&s);
        let _ = super::name_addr(&s, "To");
        let _ = super::cseq(&s);
        let _ = super::call_id(&s);
        let _ = super::session_expires(&s);
        let _ = super::split_list(&s);
    }
}
