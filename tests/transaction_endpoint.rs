//! The transaction layer (`sip::endpoint`) and dialogs (`sip::dialog`) on virtual time: core
//! validation answers (400/416/420/481/482/483), CANCEL/487, the UAS 2xx retransmission rule
//! and its BYE event, response routing with received/rport, UAC forks and early/confirmed
//! dialogs, in-dialog request construction.
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use whatsip::sip::dialog::{Dialog, DialogError, DialogId, DialogState};
use whatsip::sip::endpoint::*;
use whatsip::sip::header::HeaderName;
use whatsip::sip::header::params::Params;
use whatsip::sip::message::{Headers, Message, Request, Response};
use whatsip::sip::method::Method;
use whatsip::sip::uri::{Host, Scheme, SipUri, Uri};

const PEER: &str = "192.0.2.7:5060";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn sip_uri(user: Option<&str>, host: &str, port: Option<u16>) -> Uri {
    Uri::Sip(SipUri {
        scheme: Scheme::Sip,
        user: user.map(str::to_string),
        password: None,
        host: match host.parse() {
            Ok(ip) => Host::Ipv4(ip),
            Err(_) => Host::Domain(host.into()),
        },
        port,
        params: Params::new(),
        headers: vec![],
    })
}

fn udp(addr: &str) -> Source {
    Source {
        transport: TransportKind::Udp,
        remote: addr.parse().unwrap(),
        connection: None,
    }
}

fn endpoint() -> Endpoint {
    Endpoint::new(EndpointConfig::new("127.0.0.1", Some(5080), "ws1"))
}

/// A request from the peer at 192.0.2.7:5060.
fn incoming(method: Method, seq: u32, branch: &str) -> Request {
    let mut h = Headers::new();
    h.push(
        HeaderName::Via,
        format!("SIP/2.0/UDP 192.0.2.7:5060;branch={branch}"),
    );
    h.push(HeaderName::MaxForwards, "70");
    h.push(HeaderName::From, "\"Alice\" <sip:alice@192.0.2.7>;tag=a1");
    h.push(HeaderName::To, "<sip:bob@127.0.0.1:5080>");
    h.push(HeaderName::CallId, "c1@192.0.2.7");
    h.push(HeaderName::CSeq, format!("{seq} {method}"));
    h.push(HeaderName::Contact, "<sip:alice@192.0.2.7:5060>");
    Request {
        method,
        uri: sip_uri(Some("bob"), "127.0.0.1", Some(5080)),
        headers: h,
        body: Bytes::new(),
    }
}

fn transmits(ep: &mut Endpoint) -> Vec<Transmit> {
    std::iter::from_fn(|| ep.poll_transmit()).collect()
}

fn events(ep: &mut Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

fn responses(ep: &mut Endpoint) -> Vec<Response> {
    transmits(ep)
        .into_iter()
        .filter_map(|t| match t.message {
            Message::Response(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// Feeds `req` and returns the single response the layer sends itself.
fn rejected(req: Request) -> Response {
    let t0 = Instant::now();
    let mut ep = endpoint();
    ep.handle_incoming(t0, Message::Request(req), udp(PEER));
    assert!(
        events(&mut ep).is_empty(),
        "rejected requests never reach the TU"
    );
    let r = responses(&mut ep);
    assert_eq!(r.len(), 1, "{r:?}");
    r.into_iter().next().unwrap()
}

fn new_request_id(ep: &mut Endpoint) -> (TxnId, Request) {
    match events(ep).into_iter().next() {
        Some(Event::Request { id, request, .. }) => (id, *request),
        other => panic!("expected a request event, got {other:?}"),
    }
}

#[test]
fn max_forwards_zero_gets_483() {
    let mut req = incoming(Method::Options, 1, "z9hG4bKmf");
    req.headers.set(HeaderName::MaxForwards, "0");
    let r = rejected(req);
    assert_eq!(r.status, 483);
    assert!(r.headers.to().unwrap().tag().is_some());
}

#[test]
fn unknown_uri_scheme_gets_416() {
    let mut req = incoming(Method::Invite, 1, "z9hG4bKsch");
    req.uri = Uri::Other {
        scheme: "mailto".into(),
        rest: "bob@example.com".into(),
    };
    assert_eq!(rejected(req).status, 416);
}

#[test]
fn tel_uri_is_accepted() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let mut req = incoming(Method::Invite, 1, "z9hG4bKtel");
    req.uri = Uri::Other {
        scheme: "tel".into(),
        rest: "+15551234567".into(),
    };
    ep.handle_incoming(t0, Message::Request(req), udp(PEER));
    new_request_id(&mut ep);
}

#[test]
fn unknown_require_gets_420_with_unsupported() {
    let mut req = incoming(Method::Invite, 1, "z9hG4bKreq");
    req.headers.push(HeaderName::Require, "timer, foo");
    req.headers.push(HeaderName::Require, "bar");
    let r = rejected(req);
    assert_eq!(r.status, 420);
    assert_eq!(r.headers.get(&HeaderName::Unsupported), Some("foo, bar"));
}

#[test]
fn missing_call_id_gets_400_with_warning() {
    let mut req = incoming(Method::Invite, 1, "z9hG4bKnocid");
    req.headers.remove(&HeaderName::CallId);
    let r = rejected(req);
    assert_eq!(r.status, 400);
    let w = r.headers.get(&HeaderName::Warning).expect("Warning");
    assert!(w.starts_with("399 127.0.0.1 \""), "{w}");
    assert!(w.contains("Call-ID"), "{w}");
}

#[test]
fn cseq_method_mismatch_gets_400() {
    let mut req = incoming(Method::Invite, 1, "z9hG4bKmis");
    req.headers.set(HeaderName::CSeq, "1 OPTIONS");
    let r = rejected(req);
    assert_eq!(r.status, 400);
    assert!(
        r.headers
            .get(&HeaderName::Warning)
            .unwrap()
            .contains("CSeq")
    );
}

#[test]
fn loop_with_our_branch_and_sent_by_gets_482() {
    let mut req = incoming(Method::Invite, 1, "z9hG4bKtop");
    req.headers.push(
        HeaderName::Via,
        "SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKws1x2a;rport",
    );
    assert_eq!(rejected(req).status, 482);
    // The same branch prefix from another host is not a loop.
    let t0 = Instant::now();
    let mut ep = endpoint();
    let mut ok = incoming(Method::Invite, 1, "z9hG4bKtop");
    ok.headers.push(
        HeaderName::Via,
        "SIP/2.0/UDP 10.9.9.9:5080;branch=z9hG4bKws1x2a",
    );
    ep.handle_incoming(t0, Message::Request(ok), udp(PEER));
    new_request_id(&mut ep);
}

#[test]
fn merged_request_gets_482() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    ep.handle_incoming(
        t0,
        Message::Request(incoming(Method::Invite, 1, "z9hG4bKfork1")),
        udp(PEER),
    );
    new_request_id(&mut ep);
    // Same From tag, Call-ID and CSeq, other branch (it took another path): merged.
    ep.handle_incoming(
        t0 + ms(10),
        Message::Request(incoming(Method::Invite, 1, "z9hG4bKfork2")),
        udp("192.0.2.8:5060"),
    );
    assert!(events(&mut ep).is_empty());
    let r = responses(&mut ep);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 482);
    // A retransmission of the first is absorbed, not merged.
    ep.handle_incoming(
        t0 + ms(20),
        Message::Request(incoming(Method::Invite, 1, "z9hG4bKfork1")),
        udp(PEER),
    );
    assert!(events(&mut ep).is_empty());
    assert!(
        responses(&mut ep).is_empty(),
        "no response sent yet → nothing to repeat"
    );
}

#[test]
fn request_outside_any_dialog_gets_481_in_one_line() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let mut bye = incoming(Method::Bye, 2, "z9hG4bKbye");
    bye.headers
        .set(HeaderName::To, "<sip:bob@127.0.0.1:5080>;tag=gone");
    ep.handle_incoming(t0, Message::Request(bye), udp(PEER));
    let (id, req) = new_request_id(&mut ep);
    let dialog = dialog_of(&req).expect("in-dialog request");
    assert_eq!(dialog.local_tag, "gone");
    ep.respond(t0, id, 481).unwrap();
    let r = responses(&mut ep);
    assert_eq!(r[0].status, 481);
    assert_eq!(r[0].reason, "Call/Transaction Does Not Exist");
    assert_eq!(r[0].headers.to().unwrap().tag(), Some("gone"));
}

#[test]
fn received_and_rport_are_stamped_and_used_for_responses() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let mut req = incoming(Method::Options, 1, "z9hG4bKnat");
    req.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKnat;rport",
    );
    ep.handle_incoming(t0, Message::Request(req), udp("203.0.113.9:40123"));
    let (id, req) = new_request_id(&mut ep);
    let via = req.headers.top_via().unwrap();
    assert_eq!(via.received(), Some("203.0.113.9"));
    assert_eq!(via.rport(), Some(Some(40123)));
    ep.respond(t0, id, 200).unwrap();
    let t = transmits(&mut ep);
    assert_eq!(
        t[0].target,
        Target {
            transport: TransportKind::Udp,
            destination: Destination::Addr("203.0.113.9:40123".parse().unwrap()),
            connection: None,
        }
    );
    let Message::Response(r) = &t[0].message else {
        panic!()
    };
    let rv = r.headers.top_via().unwrap();
    assert_eq!(rv.received(), Some("203.0.113.9"));
    assert_eq!(rv.rport(), Some(Some(40123)));
}

#[test]
fn response_target_rules_of_18_2_2() {
    use whatsip::sip::header::Via;
    let via = |s: &str| -> Via {
        let mut h = Headers::new();
        h.push(HeaderName::Via, s);
        h.top_via().unwrap()
    };
    let src = udp("198.51.100.1:7000");
    let addr = |s: &str| Destination::Addr(s.parse::<SocketAddr>().unwrap());
    // received without rport: received IP, sent-by port.
    let mut v = via("SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKx");
    stamp_via(&mut v, src);
    assert_eq!(v.received(), Some("198.51.100.1"));
    assert_eq!(
        response_target(&v, src).destination,
        addr("198.51.100.1:5062")
    );
    // Same IP, no rport: no received, sent-by.
    let mut v = via("SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKx");
    stamp_via(&mut v, src);
    assert_eq!(v.received(), None);
    assert_eq!(
        response_target(&v, src).destination,
        addr("198.51.100.1:5060")
    );
    // maddr wins over received.
    let mut v = via("SIP/2.0/UDP 10.0.0.5:5070;maddr=239.1.1.1;branch=z9hG4bKx");
    stamp_via(&mut v, src);
    assert_eq!(response_target(&v, src).destination, addr("239.1.1.1:5070"));
    // Reliable transport: back over the same connection.
    let tcp = Source {
        transport: TransportKind::Tcp,
        remote: "198.51.100.1:53000".parse().unwrap(),
        connection: Some(7),
    };
    let mut v = via("SIP/2.0/TCP 10.0.0.5:5060;branch=z9hG4bKx");
    stamp_via(&mut v, tcp);
    let t = response_target(&v, tcp);
    assert_eq!(t.transport, TransportKind::Tcp);
    assert_eq!(t.destination, addr("198.51.100.1:53000"));
    assert_eq!(t.connection, Some(7), "same connection");
}

#[test]
fn uas_invite_2xx_is_retransmitted_until_ack() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let invite = incoming(Method::Invite, 1, "z9hG4bKinv");
    ep.handle_incoming(t0, Message::Request(invite.clone()), udp(PEER));
    let (id, _) = new_request_id(&mut ep);
    // 100 Trying after 200 ms of TU silence.
    assert_eq!(ep.poll_timeout(), Some(t0 + ms(200)));
    ep.handle_timeout(t0 + ms(200));
    assert_eq!(responses(&mut ep)[0].status, 100);
    ep.respond(t0 + ms(300), id, 180).unwrap();
    let ringing = responses(&mut ep).remove(0);
    let tag = ringing.headers.to().unwrap().tag().unwrap().to_string();
    let mut ok = ep.make_response(id, 200, "").unwrap();
    ok.headers
        .push(HeaderName::Contact, "<sip:bob@127.0.0.1:5080>");
    let t_ok = t0 + ms(1000);
    ep.send_response(t_ok, id, ok.clone()).unwrap();
    assert_eq!(
        ok.headers.to().unwrap().tag(),
        Some(tag.as_str()),
        "same tag as the 180"
    );
    let mut sends = vec![];
    let mut now = t_ok;
    for _ in 0..5 {
        for t in transmits(&mut ep) {
            assert_eq!(t.message, Message::Response(ok.clone()));
            sends.push(now - t_ok);
        }
        now = ep.poll_timeout().unwrap();
        ep.handle_timeout(now);
    }
    for t in transmits(&mut ep) {
        assert_eq!(t.message, Message::Response(ok.clone()));
        sends.push(now - t_ok);
    }
    assert_eq!(
        sends,
        vec![ms(0), ms(500), ms(1500), ms(3500), ms(7500), ms(11500)]
    );
    // The ACK (new branch, our To tag) stops retransmissions and reaches the TU.
    let mut ack = incoming(Method::Ack, 1, "z9hG4bKack");
    ack.headers.set(
        HeaderName::To,
        format!("<sip:bob@127.0.0.1:5080>;tag={tag}"),
    );
    ep.handle_incoming(now + ms(1), Message::Request(ack), udp(PEER));
    assert!(matches!(&events(&mut ep)[..], [Event::Ack { .. }]));
    let mut later = now;
    while let Some(at) = ep.poll_timeout() {
        later = at;
        ep.handle_timeout(at);
    }
    assert!(transmits(&mut ep).is_empty(), "no 2xx after the ACK");
    assert!(events(&mut ep).is_empty());
    assert_eq!(
        later,
        t_ok + Duration::from_secs(32),
        "Timer L ends the transaction"
    );
    assert!(ep.is_empty());
}

#[test]
fn uas_2xx_without_ack_raises_bye_event_at_64_t1() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    ep.handle_incoming(
        t0,
        Message::Request(incoming(Method::Invite, 1, "z9hG4bKnoack")),
        udp(PEER),
    );
    let (id, _) = new_request_id(&mut ep);
    ep.respond(t0, id, 200).unwrap();
    let mut sends = vec![];
    let mut got = None;
    let mut now = t0;
    loop {
        for _ in transmits(&mut ep) {
            sends.push(now - t0);
        }
        for e in events(&mut ep) {
            if let Event::AckTimeout { id: eid, response } = e {
                assert_eq!(eid, id);
                assert_eq!(response.status, 200);
                got = Some(now - t0);
            }
        }
        if got.is_some() {
            break;
        }
        now = ep.poll_timeout().expect("timer");
        ep.handle_timeout(now);
    }
    assert_eq!(got, Some(ms(32_000)));
    let gaps: Vec<_> = sends.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps,
        vec![
            ms(500),
            ms(1000),
            ms(2000),
            ms(4000),
            ms(4000),
            ms(4000),
            ms(4000),
            ms(4000),
            ms(4000),
            ms(4000)
        ]
    );
}

#[test]
fn cancel_is_answered_200_and_tu_sends_487() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let invite = incoming(Method::Invite, 1, "z9hG4bKcan");
    ep.handle_incoming(t0, Message::Request(invite.clone()), udp(PEER));
    let (id, _) = new_request_id(&mut ep);
    ep.respond(t0, id, 180).unwrap();
    responses(&mut ep);
    let cancel = incoming(Method::Cancel, 1, "z9hG4bKcan");
    ep.handle_incoming(t0 + ms(50), Message::Request(cancel), udp(PEER));
    let r = responses(&mut ep);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].headers.cseq().unwrap().method, Method::Cancel);
    assert_eq!(r[0].headers.to().unwrap().tag(), ep.local_tag(id));
    match &events(&mut ep)[..] {
        [Event::Cancelled { invite, .. }] => assert_eq!(*invite, id),
        other => panic!("{other:?}"),
    }
    ep.respond(t0 + ms(60), id, 487).unwrap();
    let r = responses(&mut ep);
    assert_eq!(r[0].status, 487);
    assert_eq!(r[0].headers.cseq().unwrap().method, Method::Invite);
    // ACK for the 487 (same branch) is absorbed by the transaction: no more 487s.
    let mut ack = incoming(Method::Ack, 1, "z9hG4bKcan");
    ack.headers.set(
        HeaderName::To,
        format!("<sip:bob@127.0.0.1:5080>;tag={}", ep.local_tag(id).unwrap()),
    );
    ep.handle_incoming(t0 + ms(70), Message::Request(ack), udp(PEER));
    assert!(events(&mut ep).is_empty());
    ep.handle_timeout(t0 + ms(5000));
    assert!(responses(&mut ep).is_empty());
}

#[test]
fn cancel_for_unknown_invite_gets_481() {
    let r = rejected(incoming(Method::Cancel, 1, "z9hG4bKnobody"));
    assert_eq!(r.status, 481);
}

#[test]
fn unmatched_ack_is_dropped() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let mut ack = incoming(Method::Ack, 1, "z9hG4bKstray");
    ack.headers
        .set(HeaderName::To, "<sip:bob@127.0.0.1>;tag=zz");
    ep.handle_incoming(t0, Message::Request(ack), udp(PEER));
    assert!(transmits(&mut ep).is_empty());
    assert!(events(&mut ep).is_empty());
    assert!(ep.is_empty());
}

fn outgoing_invite(ep: &mut Endpoint) -> Request {
    let mut h = Headers::new();
    h.push(
        HeaderName::From,
        format!("<sip:gw@127.0.0.1:5080>;tag={}", ep.new_tag()),
    );
    h.push(HeaderName::To, "<sip:+15551234567@192.0.2.7>");
    h.push(HeaderName::CallId, "out-1@127.0.0.1");
    h.push(HeaderName::CSeq, "1 INVITE");
    h.push(HeaderName::Contact, "<sip:gw@127.0.0.1:5080>");
    Request {
        method: Method::Invite,
        uri: sip_uri(Some("+15551234567"), "192.0.2.7", None),
        headers: h,
        body: Bytes::new(),
    }
}

fn peer_target() -> Target {
    Target {
        transport: TransportKind::Udp,
        destination: Destination::Addr(PEER.parse().unwrap()),
        connection: None,
    }
}

fn answer(req: &Request, status: u16, tag: &str, rr: &[&str]) -> Response {
    let mut r = whatsip::sip::transaction::response_to(req, status, "");
    add_to_tag(&mut r, tag);
    for x in rr {
        r.headers.push(HeaderName::RecordRoute, *x);
    }
    r.headers.push(
        HeaderName::Contact,
        format!("<sip:uas-{tag}@192.0.2.7:5060>"),
    );
    r
}

#[test]
fn uac_invite_total_loss_through_endpoint() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let inv = outgoing_invite(&mut ep);
    let id = ep.send_request(t0, inv, peer_target()).unwrap();
    let mut sends = 0;
    let mut now = t0;
    let timeout_at = loop {
        sends += transmits(&mut ep).len();
        if let Some(Event::Timeout { id: tid }) = events(&mut ep).pop() {
            assert_eq!(tid, id);
            break now;
        }
        now = ep.poll_timeout().unwrap();
        ep.handle_timeout(now);
    };
    assert_eq!(sends, 7);
    assert_eq!(timeout_at, t0 + Duration::from_secs(32));
    // Non-INVITE: 11 sends.
    let mut opts = outgoing_invite(&mut ep);
    opts.method = Method::Options;
    opts.headers.set(HeaderName::CSeq, "2 OPTIONS");
    ep.send_request(t0, opts, peer_target()).unwrap();
    let mut sends = 0;
    let mut now = t0;
    loop {
        sends += transmits(&mut ep).len();
        if !events(&mut ep).is_empty() {
            break;
        }
        now = ep.poll_timeout().unwrap();
        ep.handle_timeout(now);
    }
    assert_eq!((sends, now), (11, t0 + Duration::from_secs(32)));
}

#[test]
fn uac_forks_early_dialogs_then_confirmed_and_ack() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let inv = outgoing_invite(&mut ep);
    let id = ep.send_request(t0, inv, peer_target()).unwrap();
    let sent = match transmits(&mut ep).remove(0).message {
        Message::Request(r) => r,
        _ => panic!(),
    };
    let via = sent.headers.top_via().unwrap();
    assert!(via.branch().unwrap().starts_with("z9hG4bKws1x"));
    assert_eq!(via.rport(), Some(None));
    assert_eq!(sent.headers.get(&HeaderName::MaxForwards), Some("70"));
    let rr = ["<sip:p2.example;lr>", "<sip:p1.example;lr>"];
    ep.handle_incoming(
        t0 + ms(100),
        Message::Response(answer(&sent, 180, "f1", &rr)),
        udp(PEER),
    );
    ep.handle_incoming(
        t0 + ms(110),
        Message::Response(answer(&sent, 183, "f2", &rr)),
        udp(PEER),
    );
    let mut dialogs = vec![];
    for e in events(&mut ep) {
        let Event::Response { id: rid, response } = e else {
            panic!()
        };
        assert_eq!(rid, id);
        dialogs.push(Dialog::uac(&sent, &response).unwrap());
    }
    assert_eq!(dialogs.len(), 2);
    assert_ne!(dialogs[0].id, dialogs[1].id, "one early dialog per fork");
    assert!(dialogs.iter().all(|d| d.state == DialogState::Early));
    // UAC route set is the Record-Route reversed.
    assert_eq!(dialogs[0].route_set[0].raw, "<sip:p1.example;lr>");
    let ok = answer(&sent, 200, "f2", &rr);
    ep.handle_incoming(t0 + ms(500), Message::Response(ok.clone()), udp(PEER));
    let Some(Event::Response { response, .. }) = ep.poll_event() else {
        panic!()
    };
    let d = dialogs
        .iter_mut()
        .find(|d| Some(&d.id) == DialogId::of_incoming_response(&response).unwrap().as_ref())
        .unwrap();
    d.handle_response(&response).unwrap();
    assert_eq!(d.state, DialogState::Confirmed);
    let ack = d.ack(1);
    assert_eq!(ack.headers.get(&HeaderName::CSeq), Some("1 ACK"));
    assert_eq!(ack.uri.to_string(), "sip:uas-f2@192.0.2.7:5060");
    assert_eq!(
        ack.headers.get_all(&HeaderName::Route).collect::<Vec<_>>(),
        vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    );
    ep.send_ack(t0 + ms(501), ack, peer_target()).unwrap();
    let t = transmits(&mut ep);
    let Message::Request(sent_ack) = &t[0].message else {
        panic!()
    };
    assert_ne!(
        sent_ack.headers.top_via().unwrap().branch(),
        via.branch(),
        "2xx ACK is a new transaction"
    );
    // A retransmitted 2xx is passed up again (Accepted) for the TU to re-ACK.
    ep.handle_incoming(t0 + ms(1000), Message::Response(ok), udp(PEER));
    assert!(
        matches!(&events(&mut ep)[..], [Event::Response { response, .. }] if response.status == 200)
    );
    // BYE inside the dialog.
    let bye = d.new_request(Method::Bye);
    assert_eq!(bye.headers.cseq().unwrap().seq, 2);
    assert_eq!(bye.headers.to().unwrap().tag(), Some("f2"));
}

#[test]
fn uac_non_2xx_gets_ack_from_transaction() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let inv = outgoing_invite(&mut ep);
    ep.send_request(t0, inv, peer_target()).unwrap();
    let Message::Request(sent) = transmits(&mut ep).remove(0).message else {
        panic!()
    };
    ep.handle_incoming(
        t0 + ms(50),
        Message::Response(answer(&sent, 486, "busy", &[])),
        udp(PEER),
    );
    let t = transmits(&mut ep);
    let Message::Request(ack) = &t[0].message else {
        panic!()
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(
        ack.headers.top_via().unwrap().branch(),
        sent.headers.top_via().unwrap().branch()
    );
    assert_eq!(ack.headers.to().unwrap().tag(), Some("busy"));
    assert_eq!(ack.headers.get(&HeaderName::CSeq), Some("1 ACK"));
    assert!(
        matches!(&events(&mut ep)[..], [Event::Response { response, .. }] if response.status == 486)
    );
}

#[test]
fn uac_cancel_after_provisional() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let inv = outgoing_invite(&mut ep);
    let id = ep.send_request(t0, inv, peer_target()).unwrap();
    assert_eq!(ep.send_cancel(t0, id), Err(EndpointError::InvalidState));
    let Message::Request(sent) = transmits(&mut ep).remove(0).message else {
        panic!()
    };
    ep.handle_incoming(
        t0 + ms(50),
        Message::Response(answer(&sent, 180, "r", &[])),
        udp(PEER),
    );
    events(&mut ep);
    ep.send_cancel(t0 + ms(60), id).unwrap();
    let Message::Request(cancel) = transmits(&mut ep).remove(0).message else {
        panic!()
    };
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(cancel.uri, sent.uri);
    assert_eq!(
        cancel.headers.top_via().unwrap(),
        sent.headers.top_via().unwrap()
    );
    assert_eq!(cancel.headers.get(&HeaderName::CSeq), Some("1 CANCEL"));
    assert_eq!(cancel.headers.to().unwrap().tag(), None);
}

#[test]
fn uas_dialog_route_set_cseq_and_requests() {
    let mut invite = incoming(Method::Invite, 5, "z9hG4bKd");
    invite.headers.push(
        HeaderName::RecordRoute,
        "<sip:edge1.example;lr;ftag=a1>, <sip:edge2.example;lr>",
    );
    let mut d = Dialog::uas(&invite, "me", sip_uri(Some("bob"), "127.0.0.1", Some(5080))).unwrap();
    assert_eq!(d.state, DialogState::Early);
    d.confirm();
    assert_eq!(
        d.id,
        DialogId {
            call_id: "c1@192.0.2.7".into(),
            local_tag: "me".into(),
            remote_tag: "a1".into()
        }
    );
    let bye = d.new_request(Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:alice@192.0.2.7:5060");
    assert_eq!(
        bye.headers.get_all(&HeaderName::Route).collect::<Vec<_>>(),
        vec!["<sip:edge1.example;lr;ftag=a1>", "<sip:edge2.example;lr>"],
        "UAS keeps Record-Route order, verbatim"
    );
    assert_eq!(bye.headers.from().unwrap().tag(), Some("me"));
    assert_eq!(bye.headers.to().unwrap().tag(), Some("a1"));
    // In-dialog request with lower CSeq → 500.
    let mut late = incoming(Method::Info, 4, "z9hG4bKi");
    late.headers
        .set(HeaderName::To, "<sip:bob@127.0.0.1:5080>;tag=me");
    let err = d.handle_request(&late).unwrap_err();
    assert_eq!(err, DialogError::CSeqOutOfOrder { got: 4, last: 5 });
    assert_eq!(err.sip_status(), 500);
    // re-INVITE refreshes the target.
    let mut reinv = incoming(Method::Invite, 6, "z9hG4bKre");
    reinv
        .headers
        .set(HeaderName::To, "<sip:bob@127.0.0.1:5080>;tag=me");
    reinv
        .headers
        .set(HeaderName::Contact, "<sip:alice@198.51.100.3:5070>");
    d.handle_request(&reinv).unwrap();
    assert_eq!(d.remote_target.to_string(), "sip:alice@198.51.100.3:5070");
    // Another dialog's request does not match.
    let mut other = reinv.clone();
    other
        .headers
        .set(HeaderName::To, "<sip:bob@127.0.0.1:5080>;tag=nope");
    assert_eq!(d.handle_request(&other).unwrap_err().sip_status(), 481);
}

#[test]
fn strict_route_becomes_request_uri() {
    let mut invite = incoming(Method::Invite, 1, "z9hG4bKs");
    invite.headers.push(
        HeaderName::RecordRoute,
        "<sip:strict.example>, <sip:loose.example;lr>",
    );
    let mut d = Dialog::uas(&invite, "me", sip_uri(Some("bob"), "127.0.0.1", None)).unwrap();
    let bye = d.new_request(Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:strict.example");
    assert_eq!(
        bye.headers.get_all(&HeaderName::Route).collect::<Vec<_>>(),
        vec!["<sip:loose.example;lr>", "<sip:alice@192.0.2.7:5060>"]
    );
}

#[test]
fn non_invite_retransmission_gets_the_last_response_again() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let opts = incoming(Method::Options, 1, "z9hG4bKopt");
    ep.handle_incoming(t0, Message::Request(opts.clone()), udp(PEER));
    let (id, _) = new_request_id(&mut ep);
    ep.respond(t0 + ms(5), id, 200).unwrap();
    let first = responses(&mut ep);
    ep.handle_incoming(t0 + ms(500), Message::Request(opts.clone()), udp(PEER));
    assert!(
        events(&mut ep).is_empty(),
        "retransmission not passed to the TU"
    );
    assert_eq!(responses(&mut ep), first);
    // Timer J (64·T1) ends it; afterwards the same request would be new.
    ep.handle_timeout(t0 + ms(5) + Duration::from_secs(32));
    assert!(ep.is_empty());
}

#[test]
fn reliable_transport_no_response_retransmissions() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let mut inv = incoming(Method::Invite, 1, "z9hG4bKtcp");
    inv.headers.set(
        HeaderName::Via,
        "SIP/2.0/TCP 192.0.2.7:5060;branch=z9hG4bKtcp",
    );
    let src = Source {
        transport: TransportKind::Tcp,
        remote: "192.0.2.7:40000".parse().unwrap(),
        connection: Some(3),
    };
    ep.handle_incoming(t0, Message::Request(inv), src);
    let (id, _) = new_request_id(&mut ep);
    ep.respond(t0, id, 486).unwrap();
    let t = transmits(&mut ep);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].target.connection, Some(3));
    let mut sent = 0;
    let mut timeout_at = None;
    while let Some(at) = ep.poll_timeout() {
        ep.handle_timeout(at);
        sent += transmits(&mut ep).len();
        if events(&mut ep).contains(&Event::Timeout { id }) {
            timeout_at = Some(at);
        }
    }
    assert_eq!(sent, 0, "no Timer G over TCP");
    assert_eq!(
        timeout_at,
        Some(t0 + Duration::from_secs(32)),
        "Timer H still runs"
    );
}

/// RFC 2543 peers: branch without the magic cookie → §17.2.3 fallback matching.
#[test]
fn rfc2543_fallback_matches_retransmission_ack_and_cancel() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let inv = incoming(Method::Invite, 1, "old2543");
    ep.handle_incoming(t0, Message::Request(inv.clone()), udp(PEER));
    let (id, _) = new_request_id(&mut ep);
    ep.respond(t0, id, 180).unwrap();
    responses(&mut ep);
    // Retransmission → last provisional again, no new TU request.
    ep.handle_incoming(t0 + ms(500), Message::Request(inv.clone()), udp(PEER));
    assert!(events(&mut ep).is_empty());
    assert_eq!(responses(&mut ep)[0].status, 180);
    // CANCEL with the same Request-URI, From tag, Call-ID, CSeq number and top Via.
    ep.handle_incoming(
        t0 + ms(600),
        Message::Request(incoming(Method::Cancel, 1, "old2543")),
        udp(PEER),
    );
    assert_eq!(responses(&mut ep)[0].status, 200);
    assert!(matches!(&events(&mut ep)[..], [Event::Cancelled { invite, .. }] if *invite == id));
    ep.respond(t0 + ms(610), id, 487).unwrap();
    responses(&mut ep);
    // ACK carrying our To tag matches the INVITE transaction: the 487 stops.
    let mut ack = incoming(Method::Ack, 1, "old2543");
    ack.headers.set(
        HeaderName::To,
        format!("<sip:bob@127.0.0.1:5080>;tag={}", ep.local_tag(id).unwrap()),
    );
    ep.handle_incoming(t0 + ms(700), Message::Request(ack), udp(PEER));
    ep.handle_timeout(t0 + Duration::from_secs(10));
    assert!(responses(&mut ep).is_empty(), "Confirmed: no more 487");
}

#[test]
fn wire_invite_through_endpoint_and_back() {
    let raw = "INVITE sip:service@127.0.0.1:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bK-1-0\r\n\
v: SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bKlower\r\n\
From: sipp <sip:sipp@127.0.0.1:6000>;tag=1SIPpTag001\r\n\
To: sut <sip:service@127.0.0.1:5080>\r\n\
Call-ID: 1-1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: sip:sipp@127.0.0.1:6000\r\n\
Record-Route: <sip:proxy.example;lr>\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";
    let msg = Message::parse(raw.as_bytes(), whatsip::sip::message::Framing::Datagram).unwrap();
    let t0 = Instant::now();
    let mut ep = endpoint();
    ep.handle_incoming(t0, msg, udp("127.0.0.1:6000"));
    let (id, req) = new_request_id(&mut ep);
    let mut d = Dialog::uas(
        &req,
        ep.local_tag(id).unwrap(),
        sip_uri(Some("gw"), "127.0.0.1", Some(5080)),
    )
    .unwrap();
    ep.respond(t0, id, 200).unwrap();
    d.confirm();
    let t = transmits(&mut ep);
    assert_eq!(
        t[0].target.destination,
        Destination::Addr("127.0.0.1:6000".parse().unwrap())
    );
    let bytes = t[0].message.to_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
    let back = Message::parse(&bytes, whatsip::sip::message::Framing::Stream).unwrap();
    let Message::Response(back) = back else {
        panic!()
    };
    assert_eq!(back.headers.vias().unwrap().len(), 2);
    assert_eq!(
        back.headers.record_route().unwrap().len(),
        1,
        "Record-Route echoed in 2xx"
    );
    assert_eq!(
        back.headers.get(&HeaderName::RecordRoute),
        Some("<sip:proxy.example;lr>"),
        "verbatim"
    );
    assert_eq!(back.headers.to().unwrap().tag(), ep.local_tag(id));
    // The BYE we would send routes through the proxy to SIPp's Contact.
    let bye = d.new_request(Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:sipp@127.0.0.1:6000");
    assert_eq!(
        bye.headers.get(&HeaderName::Route),
        Some("<sip:proxy.example;lr>")
    );
    let bye_text = String::from_utf8(bye.to_bytes()).unwrap();
    assert!(bye_text.contains("CSeq: 1 BYE\r\n"), "{bye_text}");
}

#[test]
fn unparsable_request_gets_stateless_400_with_warning() {
    use whatsip::sip::message::Framing;
    let raw = "OPTIONS sip:service@127.0.0.1:5080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:6000;branch=z9hG4bKbad;rport\r\n\
From: <sip:sipp@127.0.0.1>;tag=x1\r\n\
To: <sip:service@127.0.0.1>\r\n\
Call-ID: bad-1\r\n\
CSeq: 1 OPTIONS\r\n\
This line has no colon\r\n\
Content-Length: 0\r\n\r\n";
    let err = Message::parse(raw.as_bytes(), Framing::Datagram).unwrap_err();
    let t0 = Instant::now();
    let mut ep = endpoint();
    ep.handle_malformed(t0, raw.as_bytes(), &err, udp("198.51.100.4:6001"));
    let t = transmits(&mut ep);
    assert_eq!(t.len(), 1);
    assert_eq!(
        t[0].target.destination,
        Destination::Addr("198.51.100.4:6001".parse().unwrap()),
        "rport/received rules apply"
    );
    let Message::Response(r) = &t[0].message else {
        panic!()
    };
    assert_eq!(r.status, 400);
    assert_eq!(r.headers.get(&HeaderName::CallId), Some("bad-1"));
    assert!(r.headers.to().unwrap().tag().is_some());
    assert!(
        r.headers
            .get(&HeaderName::Warning)
            .unwrap()
            .starts_with("399 127.0.0.1 \"")
    );
    // A malformed ACK or response is dropped.
    let ack = raw.replacen("OPTIONS sip", "ACK sip", 1);
    ep.handle_malformed(t0, ack.as_bytes(), &err, udp("198.51.100.4:6001"));
    let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4\r\n\r\n";
    ep.handle_malformed(t0, resp.as_bytes(), &err, udp("198.51.100.4:6001"));
    assert!(transmits(&mut ep).is_empty());
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn header_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ -~]{0,40}",
            Just(String::new()),
            Just("<sip:x@y>;tag=".to_string()),
            Just("SIP/2.0/UDP [::1]:0;branch=z9hG4bK;rport=99999".to_string()),
            Just("4294967296 INVITE".to_string()),
            Just("1 ACK".to_string()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any header values, any method, any order of input: the endpoint answers or drops,
        /// never panics, and its timers run out.
        #[test]
        fn endpoint_survives_arbitrary_headers(
            method in prop_oneof![Just(Method::Invite), Just(Method::Ack), Just(Method::Cancel), Just(Method::Bye), Just(Method::Options)],
            values in proptest::collection::vec((0usize..7, header_value()), 0..8),
            status in 100u16..700,
            respond in any::<bool>(),
        ) {
            let names = [HeaderName::Via, HeaderName::From, HeaderName::To, HeaderName::CallId,
                         HeaderName::CSeq, HeaderName::MaxForwards, HeaderName::Require];
            let t0 = Instant::now();
            let mut ep = endpoint();
            let mut req = incoming(method.clone(), 1, "z9hG4bKprop");
            for (i, v) in &values {
                req.headers.set(names[*i].clone(), v.clone());
            }
            ep.handle_incoming(t0, Message::Request(req.clone()), udp(PEER));
            ep.handle_incoming(t0 + ms(1), Message::Request(req.clone()), udp(PEER));
            let mut resp = whatsip::sip::transaction::response_to(&req, status, "");
            resp.headers.push(HeaderName::Contact, "<sip:x@192.0.2.7>");
            ep.handle_incoming(t0 + ms(2), Message::Response(resp.clone()), udp(PEER));
            let _ = Dialog::uas(&req, "t", sip_uri(None, "127.0.0.1", None));
            let _ = Dialog::uac(&req, &resp);
            for e in events(&mut ep) {
                if let Event::Request { id, .. } = e && respond {
                    let _ = ep.respond(t0 + ms(3), id, status);
                }
            }
            let mut n = 0;
            while let Some(at) = ep.poll_timeout() {
                ep.handle_timeout(at);
                transmits(&mut ep);
                events(&mut ep);
                n += 1;
                prop_assert!(n < 10_000, "timers never run out");
            }
        }
    }
}

#[test]
fn transport_error_reaches_the_tu_and_ends_the_transaction() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let inv = outgoing_invite(&mut ep);
    let id = ep.send_request(t0, inv, peer_target()).unwrap();
    let t = transmits(&mut ep);
    assert_eq!(t[0].txn, Some(id));
    ep.handle_transport_error(t0 + ms(1), t[0].txn.unwrap());
    assert_eq!(events(&mut ep), vec![Event::TransportError { id }]);
    assert!(ep.is_empty());
    ep.handle_timeout(t0 + Duration::from_secs(40));
    assert!(
        transmits(&mut ep).is_empty(),
        "no retransmission after the error"
    );
}

/// RFC 3261 §18.1.1: a request larger than MTU − 200 bytes bound for UDP goes over TCP, and its
/// Via says TCP; smaller requests stay on UDP; `path_mtu: None` never switches.
#[test]
fn large_udp_request_switches_to_tcp() {
    let t0 = Instant::now();
    let big_body = Bytes::from(vec![b'a'; 1400]);
    let sent = |ep: &mut Endpoint, body: Bytes| {
        let mut inv = outgoing_invite(ep);
        inv.headers.push(HeaderName::ContentType, "application/sdp");
        inv.body = body;
        ep.send_request(t0, inv, peer_target()).unwrap();
        let tx = transmits(ep);
        assert_eq!(tx.len(), 1);
        let t = tx.into_iter().next().unwrap();
        let via = t.message.headers().top_via().unwrap();
        (t.target.transport, via.transport)
    };
    let mut ep = endpoint();
    assert_eq!(
        sent(&mut ep, big_body.clone()),
        (TransportKind::Tcp, "TCP".to_string())
    );
    assert_eq!(
        sent(&mut ep, Bytes::from_static(b"v=0\r\n")),
        (TransportKind::Udp, "UDP".to_string())
    );
    let mut cfg = EndpointConfig::new("127.0.0.1", Some(5080), "ws2");
    cfg.path_mtu = None;
    let mut ep = Endpoint::new(cfg);
    assert_eq!(
        sent(&mut ep, big_body),
        (TransportKind::Udp, "UDP".to_string())
    );
}
