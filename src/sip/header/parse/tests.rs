//! Unit tests: framing rules, the typed views a B2BUA uses, setters and construction helpers.
use crate::sip::header::{HeaderName, Via};
use crate::sip::message::{Framing, Message, ParseError, Request, Response};
use crate::sip::method::Method;
use crate::sip::uri::{Host, Scheme, SipUri, Uri};

/// A WhatsApp-style INVITE (BSUID user, Meta's Record-Routes, `x-wa-meta-*`).
const WA_INVITE: &str = "INVITE sip:US.13491208655302741918@wa.meta.vc;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS 157.240.0.1:5061;branch=z9hG4bKwa1;alias;rport\r\n\
Via: SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bKinner, SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bKv6\r\n\
Record-Route: <sip:onevc-sip-proxy.fbinfra.net:8191;transport=tls;lr>\r\n\
Record-Route: <sip:wa.meta.vc;transport=tls;lr>\r\n\
Max-Forwards: 69\r\n\
From: \"Alice\" <sip:US.13491208655302741918@wa.meta.vc>;tag=abc\r\n\
To: <sip:+15551234567@pbx.example.com>\r\n\
Call-ID: outgoing:wacid.HBgLMTU1NTEyMzQ1Njc\r\n\
CSeq: 101 INVITE\r\n\
Contact: <sip:US.1349@157.240.0.1:5061;transport=tls;X-FB-Sip-Smc-Tier=collaboration.sip_gateway.sip.prod>;isfocus\r\n\
Allow: INVITE, ACK, BYE, CANCEL, NOTIFY, OPTIONS\r\n\
Supported: timer\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
x-wa-meta-wacid: wacid.HBgLMTU1NTEyMzQ1Njc\r\n\
X-WA_META-Parent-User-Id: US.99\r\n\
Proxy-Authorization: Digest username=\"a\", realm=\"wa.meta.vc\", nonce=\"n\", uri=\"sip:x\", response=\"r\"\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

fn wa() -> Request {
    match Message::parse(WA_INVITE.as_bytes(), Framing::Stream).unwrap() {
        Message::Request(r) => r,
        _ => panic!("not a request"),
    }
}

fn minimal(extra: &str, body: &str) -> String {
    format!(
        "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n\
From: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n{extra}\r\n{body}"
    )
}

#[test]
fn whatsapp_invite_typed_views() {
    let r = wa();
    let u = r.uri.as_sip().unwrap();
    assert_eq!(u.user.as_deref(), Some("US.13491208655302741918"));
    assert_eq!(u.transport(), Some("tls"));
    let h = &r.headers;
    let vias = h.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert!(vias[0].has_alias());
    assert_eq!(vias[0].rport(), Some(None));
    assert!(vias[0].is_rfc3261_branch());
    assert_eq!(vias[2].host, Host::Ipv6("2001:db8::1".parse().unwrap()));
    assert_eq!(h.from().unwrap().tag(), Some("abc"));
    assert_eq!(h.to().unwrap().tag(), None);
    assert_eq!(h.call_id().unwrap(), "outgoing:wacid.HBgLMTU1NTEyMzQ1Njc");
    assert_eq!(h.cseq().unwrap().seq, 101);
    assert_eq!(h.max_forwards().unwrap(), Some(69));
    let c = h.contacts().unwrap();
    assert_eq!(c[0].params.get("isfocus"), Some(None));
    assert_eq!(
        h.record_route_lines(),
        [
            "<sip:onevc-sip-proxy.fbinfra.net:8191;transport=tls;lr>",
            "<sip:wa.meta.vc;transport=tls;lr>"
        ]
    );
    let rr = h.record_route().unwrap();
    assert_eq!(rr[0].uri.as_sip().unwrap().port, Some(8191));
    assert!(rr[1].uri.as_sip().unwrap().is_lr());
    assert_eq!(
        h.allow(),
        [
            Method::Invite,
            Method::Ack,
            Method::Bye,
            Method::Cancel,
            Method::Notify,
            Method::Options
        ]
    );
    assert_eq!(h.supported(), ["timer"]);
    assert_eq!(
        h.session_expires().unwrap(),
        Some((1800, Some("uac".into())))
    );
    assert_eq!(h.min_se().unwrap(), Some(90));
    assert_eq!(h.wa_meta().len(), 2);
    assert_eq!(h.wa_meta_value("WACID"), Some("wacid.HBgLMTU1NTEyMzQ1Njc"));
    assert_eq!(h.wa_meta_value("parent-user-id"), Some("US.99"));
    assert!(h.proxy_authorization()[0].starts_with("Digest username=\"a\""));
    assert_eq!(h.content_type().as_deref(), Some("application/sdp"));
    assert_eq!(&r.body[..], b"v=0\n");
}

#[test]
fn serializer_echoes_record_route_and_wa_meta_byte_for_byte() {
    let r = wa();
    let out = String::from_utf8(r.to_bytes()).unwrap();
    assert!(out.contains("\r\nRecord-Route: <sip:onevc-sip-proxy.fbinfra.net:8191;transport=tls;lr>\r\nRecord-Route: <sip:wa.meta.vc;transport=tls;lr>\r\n"));
    assert!(out.contains("\r\nX-WA_META-Parent-User-Id: US.99\r\n"));
    assert!(out.ends_with("Content-Length: 4\r\n\r\nv=0\n"));
    assert_eq!(
        Message::parse(out.as_bytes(), Framing::Stream).unwrap(),
        Message::Request(r)
    );
}

#[test]
fn compact_names_and_folding() {
    let m = "OPTIONS sip:a@example.com SIP/2.0\r\nv: SIP/2.0/UDP h.example.com\r\n ;branch=z9hG4bK1\r\n\
f: <sip:b@example.com>\r\n\t;tag=1\r\nt: <sip:a@example.com>\r\ni: c1\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n";
    let r = Message::parse(m.as_bytes(), Framing::Stream).unwrap();
    let h = r.headers();
    assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK1"));
    assert_eq!(h.get(&HeaderName::From), Some("<sip:b@example.com> ;tag=1"));
    assert_eq!(h.call_id().unwrap(), "c1");
    let out = String::from_utf8(r.to_bytes()).unwrap();
    assert!(out.contains("\r\nVia: SIP/2.0/UDP h.example.com ;branch=z9hG4bK1\r\n"));
    assert!(out.contains("\r\nCall-ID: c1\r\n"));
}

#[test]
fn framing_rules() {
    let ok = minimal("Content-Length: 3\r\n", "abc");
    assert!(Message::parse(ok.as_bytes(), Framing::Stream).is_ok());
    // Stream: missing or different Content-Length.
    let none = minimal("", "abc");
    assert_eq!(
        Message::parse(none.as_bytes(), Framing::Stream),
        Err(ParseError::Missing("Content-Length"))
    );
    let longer = minimal("Content-Length: 2\r\n", "abc");
    assert!(matches!(
        Message::parse(longer.as_bytes(), Framing::Stream),
        Err(ParseError::ContentLength {
            declared: 2,
            actual: 3
        })
    ));
    // Datagram: absent → rest, longer → truncated, shorter → error.
    let m = Message::parse(none.as_bytes(), Framing::Datagram).unwrap();
    assert_eq!(&m.body()[..], b"abc");
    let m = Message::parse(longer.as_bytes(), Framing::Datagram).unwrap();
    assert_eq!(&m.body()[..], b"ab");
    let shorter = minimal("Content-Length: 9\r\n", "abc");
    assert!(Message::parse(shorter.as_bytes(), Framing::Datagram).is_err());
    // Leading CRLFs are ignored.
    let lead = format!("\r\n\r\n{ok}");
    assert!(Message::parse(lead.as_bytes(), Framing::Stream).is_ok());
}

#[test]
fn not_utf8_too_large_and_bad_lines() {
    let mut b = minimal("X-Bin: a\u{7f}\r\nContent-Length: 0\r\n", "").into_bytes();
    let i = b.iter().position(|&c| c == 0x7f).unwrap();
    b[i] = 0xff;
    assert_eq!(
        Message::parse(&b, Framing::Stream),
        Err(ParseError::NotUtf8)
    );
    let big = minimal(
        &format!("X-Big: {}\r\nContent-Length: 0\r\n", "a".repeat(70_000)),
        "",
    );
    let e = Message::parse(big.as_bytes(), Framing::Stream).unwrap_err();
    assert_eq!((e.clone(), e.sip_status()), (ParseError::TooLarge, 513));
    let body = minimal(
        &format!("Content-Length: {}\r\n", 70_000),
        &"b".repeat(70_000),
    );
    assert_eq!(
        Message::parse(body.as_bytes(), Framing::Stream),
        Err(ParseError::TooLarge)
    );
    for bad in [
        "No Colon Here\r\n",
        "Bad Name: x\r\n",
        "X-Bare-LF: a\nb\r\n",
        " leading: ws\r\n",
    ] {
        let m = if bad.starts_with(' ') {
            format!("OPTIONS sip:a@example.com SIP/2.0\r\n{bad}\r\n")
        } else {
            minimal(bad, "")
        };
        assert!(
            matches!(
                Message::parse(m.as_bytes(), Framing::Datagram),
                Err(ParseError::HeaderLine(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn start_lines() {
    let cases = [
        ("OPTIONS sip:a@example.com SIP/2.1", true),
        ("OPTIONS sip:a@example.com sip/2.0", false),
        ("OPTIONS  sip:a@example.com SIP/2.0", true),
        ("OPT IONS sip:a@example.com SIP/2.0", true),
        ("OPTIONS sip:a@example.com HTTP/1.1", true),
    ];
    for (line, is_err) in cases {
        let m = minimal("", "").replacen("OPTIONS sip:a@example.com SIP/2.0", line, 1);
        assert_eq!(
            Message::parse(m.as_bytes(), Framing::Datagram).is_err(),
            is_err,
            "{line}"
        );
    }
    let resp = |l: &str| {
        format!(
            "{l}\r\nVia: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\nFrom: <sip:b@example.com>;tag=1\r\n\
To: <sip:a@example.com>;tag=2\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let m = Message::parse(resp("SIP/2.0 180 Ringing").as_bytes(), Framing::Stream).unwrap();
    assert!(matches!(m, Message::Response(ref r) if r.status == 180 && r.reason == "Ringing"));
    for bad in [
        "SIP/2.0 18 Ringing",
        "SIP/2.0 099 x",
        "SIP/2.0 200",
        "SIP/3.0 200 OK",
    ] {
        assert!(
            Message::parse(resp(bad).as_bytes(), Framing::Stream).is_err(),
            "{bad}"
        );
    }
    assert_eq!(
        Message::parse(resp("SIP/3.0 200 OK").as_bytes(), Framing::Stream)
            .unwrap_err()
            .sip_status(),
        505
    );
}

#[test]
fn uris() {
    let u = Uri::parse("sips:alice:secret@[2001:db8::1]:5061;transport=tls;lr?subject=x&h=%20")
        .unwrap();
    let s = u.as_sip().unwrap();
    assert_eq!(s.scheme, Scheme::Sips);
    assert_eq!(s.password.as_deref(), Some("secret"));
    assert_eq!(s.port, Some(5061));
    assert!(s.is_lr());
    assert_eq!(s.headers.len(), 2);
    assert_eq!(Uri::parse(&u.to_string()).unwrap(), u);
    assert!(matches!(
        Uri::parse("tel:+15551234567").unwrap(),
        Uri::Other { .. }
    ));
    for bad in [
        "sip:",
        "sip:@host",
        "sip:a@b@c",
        "sip:host:99999",
        "sip:host:",
        "sip:a%2@host",
        "sip:a%zz@host",
        "sip:[2001:db8::1",
        "sip:[::1]x",
        "sip:-bad.example.com",
        "sip:host.123",
        "sip:1.2.3.256",
        "sip:host;=x",
        "sip:host;a=",
        "sip:host?noeq",
        "sip:a b@host",
        "1sip:x",
        "tel:",
        "tel:a b",
    ] {
        assert!(Uri::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn name_addrs_and_lists() {
    use super::{name_addr, split_list};
    let n = name_addr("\"A, \\\"B\\\"\" <sip:x@y.com;lr>;tag=1;q=0.5", "To").unwrap();
    assert_eq!(n.display_name_unquoted().as_deref(), Some("A, \"B\""));
    assert_eq!(n.tag(), Some("1"));
    assert_eq!(
        split_list("\"a,b\" <sip:x@y.com>, <sip:z@y.com;a=b,c>, sip:w@y.com"),
        [
            "\"a,b\" <sip:x@y.com>",
            "<sip:z@y.com;a=b,c>",
            "sip:w@y.com"
        ]
    );
    let bare = name_addr("sip:x@y.com;tag=9", "From").unwrap();
    assert_eq!(bare.tag(), Some("9"));
    assert!(bare.uri.as_sip().unwrap().params.is_empty());
    for bad in [
        "<sip:x@y.com",
        "\"a\" sip:x@y.com",
        "a,b <sip:x@y.com>",
        "<sip:x@y.com>;",
        "<sip:x@y.com> junk",
    ] {
        assert!(name_addr(bad, "To").is_err(), "{bad}");
    }
}

#[test]
fn scalar_parsers() {
    use super::{call_id, cseq, number, session_expires, via};
    assert_eq!(cseq("4294967295 BYE").unwrap().seq, u32::MAX);
    assert!(cseq("4294967296 BYE").is_err());
    assert!(cseq("1BYE").is_err());
    assert!(cseq("1 B Y E").is_err());
    assert_eq!(number("007", "Max-Forwards").unwrap(), 7);
    assert!(number("-1", "Max-Forwards").is_err());
    assert!(number("", "Max-Forwards").is_err());
    assert!(call_id("a b").is_err());
    assert!(call_id("a@b@c").is_err());
    assert_eq!(session_expires("90").unwrap(), (90, None));
    assert!(session_expires("90;refresher=me").is_err());
    assert!(via("SIP/2.0/UDP").is_err());
    assert!(via("SIP/2.0/UDP h;ttl=300").is_err());
    assert!(via("SIP/2.0/UDP h;received=host").is_err());
    assert!(via("SIP/2.0/UDP h;rport=x").is_err());
    let v =
        via("SIP / 2.0 / UDP h.example.com : 5070 ; maddr=224.2.0.1;ttl=16;received=[::1];rport=5")
            .unwrap();
    assert_eq!((v.port, v.rport()), (Some(5070), Some(Some(5))));
    assert_eq!(v.params.value("maddr"), Some("224.2.0.1"));
}

#[test]
fn contact_star() {
    let m = minimal("Contact: *\r\nExpires: 0\r\n", "");
    let r = Message::parse(m.as_bytes(), Framing::Datagram).unwrap();
    assert!(r.headers().contact_is_star());
    assert!(r.headers().contacts().unwrap().is_empty());
    let m = minimal("Contact: *, <sip:x@y.com>\r\n", "");
    assert!(Message::parse(m.as_bytes(), Framing::Datagram).is_err());
}

#[test]
fn b2bua_setters_and_response_from_request() {
    let mut r = wa();
    r.headers
        .set_top_via_param("received", Some("203.0.113.9"))
        .unwrap();
    r.headers.set_top_via_param("rport", Some("40000")).unwrap();
    let top = r.headers.top_via().unwrap();
    assert_eq!(top.received(), Some("203.0.113.9"));
    assert_eq!(top.rport(), Some(Some(40000)));
    // The second and third Via are untouched.
    assert_eq!(r.headers.vias().unwrap().len(), 3);
    let mut v = Via::new(
        "UDP",
        Host::Ipv4("192.0.2.7".parse().unwrap()),
        Some(5060),
        "z9hG4bKours",
    );
    v.set_rport(1234);
    r.headers.push_via(&v);
    assert_eq!(r.headers.top_via().unwrap().branch(), Some("z9hG4bKours"));
    assert_eq!(
        r.headers.pop_top_via().unwrap().branch(),
        Some("z9hG4bKours")
    );
    assert_eq!(r.headers.top_via().unwrap().branch(), Some("z9hG4bKwa1"));

    let mut resp = Response::from_request(&r, 200, "OK");
    resp.headers.set_to_tag("ourtag").unwrap();
    resp.headers
        .copy_from(&r.headers, &[HeaderName::RecordRoute]);
    assert_eq!(resp.headers.to().unwrap().tag(), Some("ourtag"));
    assert_eq!(resp.headers.vias().unwrap().len(), 3);
    assert_eq!(
        resp.headers.record_route_lines(),
        r.headers.record_route_lines()
    );
    assert_eq!(resp.headers.cseq().unwrap(), r.headers.cseq().unwrap());
    let bytes = resp.to_bytes();
    let back = Message::parse(&bytes, Framing::Stream).unwrap();
    assert!(matches!(back, Message::Response(ref x) if x.status == 200));
    // The Via line with two values stays one line with both.
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("Via: SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bKinner, SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bKv6\r\n"));

    let mut req = Request::new(
        Method::Bye,
        Uri::Sip(SipUri::new(Scheme::Sip, Host::Domain("wa.meta.vc".into()))),
    );
    req.headers.push_via(&v);
    req.headers.push(HeaderName::From, "<sip:a@b.com>;tag=1");
    req.headers.push(HeaderName::To, "<sip:c@d.com>;tag=2");
    req.headers.push(HeaderName::CallId, "x@y");
    req.headers.push(HeaderName::CSeq, "2 BYE");
    req.headers.push(HeaderName::MaxForwards, "70");
    req.headers
        .push(HeaderName::Subject, "evil\r\nInjected: yes");
    let text = String::from_utf8(req.to_bytes()).unwrap();
    assert!(!text.contains("\r\nInjected"));
    assert!(Message::parse(text.as_bytes(), Framing::Stream).is_ok());
}
