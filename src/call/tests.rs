//! Call state machine scenarios on virtual time: both directions, the answer deadline, the
//! CANCEL/200 race, absorbed re-INVITE/UPDATE/INFO/OPTIONS, Record-Route echo, session
//! timers, permission and error mapping.
use super::state::*;
use crate::config::{SessionTimer, Transport};
use crate::sip::header::HeaderName;
use crate::sip::message::{Framing, Message, Request, Response};
use crate::sip::method::Method;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PBX_OFFER_FROM_US: &str = "v=0\r\no=whatsip 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 101\r\na=sendrecv\r\n";
const WA_OFFER_FROM_US: &str = "v=0\r\no=whatsip 2 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/SAVP 111 126\r\na=sendrecv\r\n";
const WA_ANSWER_FROM_US: &str = "v=0\r\no=whatsip 3 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40002 RTP/SAVP 111 126\r\na=sendrecv\r\n";
const PBX_ANSWER_FROM_US: &str = "v=0\r\no=whatsip 4 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30002 RTP/AVP 0 101\r\na=sendrecv\r\n";
const PEER_SDP: &str = "v=0\r\no=peer 9 9 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=sendrecv\r\n";

struct FakeSdp;

impl SdpPlane for FakeSdp {
    fn pbx_offer(&mut self, _wa_offer: &[u8]) -> Result<Bytes, MediaError> {
        Ok(Bytes::from_static(PBX_OFFER_FROM_US.as_bytes()))
    }
    fn wa_answer(&mut self, _o: &[u8], _a: &[u8]) -> Result<Bytes, MediaError> {
        Ok(Bytes::from_static(WA_ANSWER_FROM_US.as_bytes()))
    }
    fn wa_offer(&mut self, _o: &[u8]) -> Result<Bytes, MediaError> {
        Ok(Bytes::from_static(WA_OFFER_FROM_US.as_bytes()))
    }
    fn pbx_answer(&mut self, _o: &[u8], _a: &[u8]) -> Result<Bytes, MediaError> {
        Ok(Bytes::from_static(PBX_ANSWER_FROM_US.as_bytes()))
    }
}

/// (challenges, method, request URI, previous credentials) per call.
type AuthLog = Vec<(Vec<String>, String, String, Option<String>)>;

/// Records what it was asked and answers with a fixed credentials value.
#[derive(Clone, Default)]
struct FakeAuth(Arc<Mutex<AuthLog>>);

impl ChallengeResponder for FakeAuth {
    fn respond(
        &mut self,
        challenges: &[&str],
        method: &str,
        request_uri: &str,
        previous: Option<&str>,
    ) -> Option<String> {
        let mut log = self.0.lock().unwrap();
        log.push((
            challenges.iter().map(|s| s.to_string()).collect(),
            method.to_owned(),
            request_uri.to_owned(),
            previous.map(str::to_owned),
        ));
        if previous.is_some() {
            return None; // a second challenge to our credentials: wrong password
        }
        Some(format!(
            "Digest username=\"15550001111\", realm=\"wa.meta.vc\", uri=\"{request_uri}\", response=\"x\""
        ))
    }
}

fn cfg(timer: bool) -> CallConfig {
    CallConfig {
        business: "+15550001111".into(),
        public_host: "gw.example.com".into(),
        public_port: 5061,
        edge_host: "wa.meta.vc".into(),
        pbx_host: "127.0.0.1".into(),
        pbx_port: 5060,
        pbx_transport: Transport::Udp,
        local_host: "127.0.0.1".into(),
        local_port: 5080,
        pbx_request_user: "+15550001111".into(),
        session_timer: SessionTimer {
            enabled: timer,
            session_expires_s: 1800,
            min_se_s: 90,
        },
        answer_deadline: Duration::from_secs(60),
        linger: Duration::from_secs(32),
        id_prefix: "x".into(),
    }
}

fn deps(auth: Option<FakeAuth>) -> CallDeps {
    CallDeps {
        sdp: Box::new(FakeSdp),
        wa_auth: auth.map(|a| Box::new(a) as Box<dyn ChallengeResponder>),
        pbx_auth: None,
    }
}

fn parse(text: &str) -> Message {
    let text = text.replace("\r\n", "\n").replace('\n', "\r\n");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let full = format!("{head}\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    Message::parse(full.as_bytes(), Framing::Stream).unwrap()
}

fn req(text: &str) -> Request {
    match parse(text) {
        Message::Request(r) => r,
        _ => panic!("not a request"),
    }
}

fn drain(c: &mut Call) -> Vec<Action> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

/// The response a peer sends to a request of ours: our request plus the Via the endpoint
/// would have added, the peer's To tag, Contact and any extra lines.
fn reply(ours: &Request, status: u16, tag: &str, extra: &[(&str, &str)], body: &str) -> Response {
    let mut r = ours.clone();
    r.headers.push_front(
        HeaderName::Via,
        "SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKtest",
    );
    let mut resp = super::translate::make_response(&r, status, "", Some(tag));
    if status > 100 && status < 300 {
        resp.headers
            .push(HeaderName::Contact, "<sip:peer@10.0.0.9:5060>");
    }
    for (n, v) in extra {
        resp.headers.push(HeaderName::parse(n), *v);
    }
    if !body.is_empty() {
        resp.headers
            .push(HeaderName::ContentType, "application/sdp");
        resp.body = Bytes::copy_from_slice(body.as_bytes());
    }
    resp
}

fn sent_requests(actions: &[Action]) -> Vec<(Leg, ReqId, Request)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendRequest { leg, id, request } => Some((*leg, *id, request.clone())),
            _ => None,
        })
        .collect()
}

fn responses(actions: &[Action]) -> Vec<(Leg, ServerTxn, Response)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendResponse { leg, txn, response } => Some((*leg, *txn, response.clone())),
            _ => None,
        })
        .collect()
}

fn acks(actions: &[Action]) -> Vec<(Leg, Request)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendAck { leg, request } => Some((*leg, request.clone())),
            _ => None,
        })
        .collect()
}

fn touches(actions: &[Action], leg: Leg) -> bool {
    actions.iter().any(|a| match a {
        Action::SendRequest { leg: l, .. }
        | Action::SendAck { leg: l, .. }
        | Action::SendCancel { leg: l, .. }
        | Action::SendResponse { leg: l, .. } => *l == leg,
        _ => false,
    })
}

const META_RR1: &str = "<sip:wa.meta.vc;transport=tls;lr>";
const META_RR2: &str = "<sip:onevc-sip-proxy.fbinfra.net:8191;transport=tls;lr;X-FB-Sip-Smc-Tier=collaboration.sip_gateway.sip.prod>";

fn meta_invite(caller: &str) -> Request {
    req(&format!(
        "INVITE sip:+15550001111;tgrp=wacall@gw.example.com:5061;transport=TLS SIP/2.0
Via: SIP/2.0/TLS 157.240.19.130:5061;branch=z9hG4bKmeta1;alias;rport
Record-Route: {META_RR1}
Record-Route: {META_RR2}
From: \"15551234567\" <sip:{caller}@wa.meta.vc>;tag=metatag
To: <sip:+15550001111@gw.example.com>
Call-ID: outgoing:wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI
CSeq: 101 INVITE
Contact: <sip:{caller}@wa.meta.vc;transport=tls;ob>;isfocus
Allow: INVITE, ACK, BYE, CANCEL, NOTIFY, OPTIONS
x-wa-meta-wacid: wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI
x-wa-meta-user-id: US.13491208655302741918
x-wa-meta-cta-payload: promo=42
Content-Type: application/sdp

{PEER_SDP}"
    ))
}

fn pbx_invite(to_user: &str, extra: &str) -> Request {
    req(&format!(
        "INVITE sip:{to_user}@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKpbx1;rport
From: <sip:100@127.0.0.1>;tag=pbxtag
To: <sip:{to_user}@127.0.0.1:5080>
Call-ID: pbx-call-1
CSeq: 20 INVITE
Contact: <sip:100@127.0.0.1:5060>
{extra}Content-Type: application/sdp

{PEER_SDP}"
    ))
}

const IN: ServerTxn = ServerTxn(1);

/// User-initiated call up to Accepted. Returns (call, PBX INVITE, our 200 to Meta).
fn ui_accepted(
    now: Instant,
    pbx_200_extra: &[(&str, &str)],
    timer: bool,
) -> (Call, Request, Response) {
    let mut c = Call::user_initiated(now, cfg(timer), deps(None), IN, meta_invite("+15551234567"));
    let a = drain(&mut c);
    let (_, id, invite) = sent_requests(&a).remove(0);
    c.handle_event(
        now,
        LegEvent::Response {
            leg: Leg::Pbx,
            id,
            response: reply(&invite, 180, "pbx2", &[], ""),
        },
    );
    drain(&mut c);
    c.handle_event(
        now,
        LegEvent::Response {
            leg: Leg::Pbx,
            id,
            response: reply(&invite, 200, "pbx2", pbx_200_extra, PEER_SDP),
        },
    );
    let a = drain(&mut c);
    let ok = responses(&a)
        .into_iter()
        .find(|(_, _, r)| r.status == 200)
        .unwrap()
        .2;
    (c, invite, ok)
}

#[test]
fn user_initiated_invite_toward_pbx_carries_wa_headers() {
    let now = Instant::now();
    let mut c = Call::user_initiated(
        now,
        cfg(true),
        deps(None),
        IN,
        meta_invite("US.13491208655302741918"),
    );
    let a = drain(&mut c);
    assert!(
        matches!(&a[0], Action::Record(RecordUpdate::Started { user, wacid: Some(w), direction: Direction::UserInitiated, .. })
        if user == "US.13491208655302741918" && w.starts_with("wacid."))
    );
    let r = responses(&a);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0, r[0].2.status), (Leg::WhatsApp, 100));
    let reqs = sent_requests(&a);
    assert_eq!(reqs.len(), 1);
    let (leg, _, inv) = &reqs[0];
    assert_eq!(*leg, Leg::Pbx);
    assert_eq!(inv.uri.to_string(), "sip:+15550001111@127.0.0.1:5060");
    let h = &inv.headers;
    assert_eq!(
        h.from().unwrap().uri.to_string(),
        "sip:US.13491208655302741918@127.0.0.1"
    );
    assert_eq!(
        h.get(&"X-WA-Call-Id".into()),
        Some("wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI")
    );
    assert_eq!(
        h.get(&"X-WA-User-Id".into()),
        Some("US.13491208655302741918")
    );
    assert_eq!(h.get(&"X-WA-CTA-Payload".into()), Some("promo=42"));
    assert_eq!(
        h.get(&HeaderName::SessionExpires),
        Some("1800;refresher=uac")
    );
    assert_ne!(
        h.call_id().unwrap(),
        "outgoing:wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI"
    );
    assert_eq!(inv.body, PBX_OFFER_FROM_US.as_bytes());
    assert_eq!(c.state(), &CallState::Connecting);
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(60)));
}

#[test]
fn user_initiated_200_echoes_record_route_byte_exact_and_bye_follows_it() {
    let now = Instant::now();
    let (mut c, _inv, ok) = ui_accepted(now, &[], false);
    // The two Record-Route lines, exactly as received, in order.
    let wire = String::from_utf8(ok.to_bytes()).unwrap();
    let expected = format!("\r\nRecord-Route: {META_RR1}\r\nRecord-Route: {META_RR2}\r\n");
    assert!(wire.contains(&expected), "{wire}");
    assert_eq!(
        ok.headers.get(&HeaderName::Contact),
        Some("<sip:+15550001111@gw.example.com:5061;transport=tls>")
    );
    assert_eq!(ok.body, WA_ANSWER_FROM_US.as_bytes());
    assert!(!wire.contains("Session-Expires") && !wire.contains("Require: timer"));
    assert_eq!(ok.headers.to().unwrap().tag(), Some("xt1"));
    assert_eq!(c.state(), &CallState::Accepted);

    // PBX hangs up: BYE toward Meta follows the route set and Meta's Contact.
    let bye = req("BYE sip:whatsip@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKb1
From: <sip:+15550001111@127.0.0.1:5060>;tag=pbx2
To: <sip:US@127.0.0.1>;tag=xf3
Call-ID: xc2@127.0.0.1
CSeq: 2 BYE

");
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::Pbx,
            txn: ServerTxn(7),
            request: bye,
        },
    );
    let a = drain(&mut c);
    let r = responses(&a);
    assert_eq!(
        (r[0].0, r[0].1, r[0].2.status),
        (Leg::Pbx, ServerTxn(7), 200)
    );
    let reqs = sent_requests(&a);
    assert_eq!(reqs.len(), 1);
    let (leg, _, bye) = &reqs[0];
    assert_eq!(*leg, Leg::WhatsApp);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(
        bye.uri.to_string(),
        "sip:+15551234567@wa.meta.vc;transport=tls;ob"
    );
    let routes: Vec<&str> = bye.headers.get_all(&HeaderName::Route).collect();
    assert_eq!(routes, [META_RR1, META_RR2]);
    assert_eq!(bye.headers.get(&HeaderName::Reason), Some("Q.850;cause=16"));
    assert_eq!(
        bye.headers.call_id().unwrap(),
        "outgoing:wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI"
    );
    assert_eq!(bye.headers.from().unwrap().tag(), Some("xt1"));
    assert_eq!(bye.headers.to().unwrap().tag(), Some("metatag"));
    assert!(matches!(c.state(), CallState::Completed(r) if r.by == Some(Leg::Pbx)));
    assert!(a.contains(&Action::Media(MediaAction::Stop)));
}

#[test]
fn user_initiated_180_relayed_and_ack_sent_to_pbx() {
    let now = Instant::now();
    let mut c = Call::user_initiated(now, cfg(false), deps(None), IN, meta_invite("+15551234567"));
    let a = drain(&mut c);
    let (_, id, invite) = sent_requests(&a).remove(0);
    c.handle_event(
        now,
        LegEvent::Response {
            leg: Leg::Pbx,
            id,
            response: reply(&invite, 100, "", &[], ""),
        },
    );
    assert!(drain(&mut c).is_empty(), "100 is hop-by-hop");
    c.handle_event(
        now,
        LegEvent::Response {
            leg: Leg::Pbx,
            id,
            response: reply(&invite, 183, "p", &[], PEER_SDP),
        },
    );
    let a = drain(&mut c);
    let r = responses(&a);
    assert_eq!((r[0].0, r[0].2.status), (Leg::WhatsApp, 180));
    assert!(r[0].2.body.is_empty(), "no early media toward Meta");
    assert_eq!(c.state(), &CallState::Ringing);
    c.handle_event(
        now,
        LegEvent::Response {
            leg: Leg::Pbx,
            id,
            response: reply(&invite, 200, "p", &[], PEER_SDP),
        },
    );
    let a = drain(&mut c);
    let ack = acks(&a);
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].0, Leg::Pbx);
    assert_eq!(ack[0].1.uri.to_string(), "sip:peer@10.0.0.9:5060");
    assert_eq!(ack[0].1.headers.cseq().unwrap().seq, 1);
    assert!(a.iter().any(|x| matches!(x, Action::Media(MediaAction::Start { early: false, pbx_remote, .. }) if pbx_remote == PEER_SDP.as_bytes())));
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Record(RecordUpdate::Answered { .. })))
    );
    // A 2xx retransmission is ACKed again.
    c.handle_event(
        now,
        LegEvent::Response {
            leg: Leg::Pbx,
            id,
            response: reply(&invite, 200, "p", &[], PEER_SDP),
        },
    );
    assert_eq!(acks(&drain(&mut c)).len(), 1);
}

#[test]
fn answer_deadline_480_at_the_exact_instant_and_cancel_to_pbx() {
    let t0 = Instant::now();
    let mut c = Call::user_initiated(t0, cfg(false), deps(None), IN, meta_invite("+15551234567"));
    let a = drain(&mut c);
    let (_, id, invite) = sent_requests(&a).remove(0);
    c.handle_event(
        t0,
        LegEvent::Response {
            leg: Leg::Pbx,
            id,
            response: reply(&invite, 180, "p", &[], ""),
        },
    );
    drain(&mut c);
    let deadline = t0 + Duration::from_secs(60);
    assert_eq!(c.poll_timeout(), Some(deadline));
    c.handle_timeout(deadline - Duration::from_nanos(1));
    assert!(drain(&mut c).is_empty());
    c.handle_timeout(deadline);
    let a = drain(&mut c);
    let r = responses(&a);
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0, r[0].1, r[0].2.status), (Leg::WhatsApp, IN, 480));
    assert!(
        r[0].2
            .headers
            .get(&HeaderName::Reason)
            .unwrap()
            .starts_with("SIP;cause=480")
    );
    assert!(a.contains(&Action::SendCancel {
        leg: Leg::Pbx,
        invite: id
    }));
    assert!(matches!(c.state(), CallState::Failed(r) if r.sip_status == Some(480)));
    // The PBX answers anyway: ACK, then BYE; nothing toward Meta.
    c.handle_event(
        deadline,
        LegEvent::Response {
            leg: Leg::Pbx,
            id,
            response: reply(&invite, 200, "p", &[], PEER_SDP),
        },
    );
    let a = drain(&mut c);
    assert_eq!(acks(&a).len(), 1);
    let reqs = sent_requests(&a);
    assert_eq!(reqs.len(), 1);
    assert_eq!((reqs[0].0, &reqs[0].2.method), (Leg::Pbx, &Method::Bye));
    assert!(!touches(&a, Leg::WhatsApp));
    assert!(!c.is_done(deadline + Duration::from_secs(31)));
    assert!(c.is_done(deadline + Duration::from_secs(32)));
}

#[test]
fn answer_deadline_before_any_provisional_cancels_once_one_arrives() {
    let t0 = Instant::now();
    let mut c = Call::user_initiated(t0, cfg(false), deps(None), IN, meta_invite("+15551234567"));
    let a = drain(&mut c);
    let (_, id, invite) = sent_requests(&a).remove(0);
    c.handle_timeout(t0 + Duration::from_secs(60));
    let a = drain(&mut c);
    assert!(
        !a.iter().any(|x| matches!(x, Action::SendCancel { .. })),
        "CANCEL needs a provisional first"
    );
    c.handle_event(
        t0,
        LegEvent::Response {
            leg: Leg::Pbx,
            id,
            response: reply(&invite, 100, "", &[], ""),
        },
    );
    let a = drain(&mut c);
    assert_eq!(
        a,
        vec![Action::SendCancel {
            leg: Leg::Pbx,
            invite: id
        }]
    );
}

#[test]
fn meta_cancel_before_answer() {
    let t0 = Instant::now();
    let mut c = Call::user_initiated(t0, cfg(false), deps(None), IN, meta_invite("+15551234567"));
    let a = drain(&mut c);
    let (_, id, invite) = sent_requests(&a).remove(0);
    c.handle_event(
        t0,
        LegEvent::Response {
            leg: Leg::Pbx,
            id,
            response: reply(&invite, 180, "p", &[], ""),
        },
    );
    drain(&mut c);
    c.handle_event(
        t0,
        LegEvent::Cancelled {
            leg: Leg::WhatsApp,
            txn: IN,
        },
    );
    let a = drain(&mut c);
    assert_eq!(responses(&a)[0].2.status, 487);
    assert!(a.contains(&Action::SendCancel {
        leg: Leg::Pbx,
        invite: id
    }));
    assert!(matches!(c.state(), CallState::Failed(r) if r.sip_status == Some(487)));
    // The PBX's 487 ends it quietly.
    c.handle_event(
        t0,
        LegEvent::Response {
            leg: Leg::Pbx,
            id,
            response: reply(&invite, 487, "p", &[], ""),
        },
    );
    assert!(drain(&mut c).is_empty());
}

#[test]
fn pbx_failures_map_toward_meta() {
    for (pbx, meta, rejected) in [
        (603, 486, true),
        (486, 486, true),
        (404, 480, false),
        (503, 480, false),
    ] {
        let t0 = Instant::now();
        let mut c =
            Call::user_initiated(t0, cfg(false), deps(None), IN, meta_invite("+15551234567"));
        let a = drain(&mut c);
        let (_, id, invite) = sent_requests(&a).remove(0);
        c.handle_event(
            t0,
            LegEvent::Response {
                leg: Leg::Pbx,
                id,
                response: reply(&invite, pbx, "p", &[], ""),
            },
        );
        let a = drain(&mut c);
        let r = responses(&a);
        assert_eq!((r[0].0, r[0].2.status), (Leg::WhatsApp, meta), "PBX {pbx}");
        assert_eq!(
            r[0].2
                .headers
                .get(&HeaderName::Reason)
                .map(|v| v.starts_with(&format!("SIP;cause={pbx};"))),
            Some(true)
        );
        assert_eq!(matches!(c.state(), CallState::Rejected(_)), rejected);
        assert!(c.state().is_terminal());
    }
}

#[test]
fn meta_bye_reads_call_duration_and_byes_pbx() {
    let now = Instant::now();
    let (mut c, _inv, ok) = ui_accepted(now, &[], false);
    let our_tag = ok.headers.to().unwrap().tag().unwrap().to_owned();
    let bye = req(&format!(
        "BYE sip:+15550001111@gw.example.com:5061;transport=tls SIP/2.0
Via: SIP/2.0/TLS 157.240.19.130:5061;branch=z9hG4bKmbye
From: <sip:+15551234567@wa.meta.vc>;tag=metatag
To: <sip:+15550001111@gw.example.com>;tag={our_tag}
Call-ID: outgoing:wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI
CSeq: 102 BYE
x-wa-meta-call-duration: 42
x-wa-meta-wacid: wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI

"
    ));
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::WhatsApp,
            txn: ServerTxn(9),
            request: bye,
        },
    );
    let a = drain(&mut c);
    assert_eq!(responses(&a)[0].2.status, 200);
    assert_eq!(responses(&a)[0].0, Leg::WhatsApp);
    let reqs = sent_requests(&a);
    assert_eq!(reqs.len(), 1);
    assert_eq!((reqs[0].0, &reqs[0].2.method), (Leg::Pbx, &Method::Bye));
    assert_eq!(reqs[0].2.uri.to_string(), "sip:peer@10.0.0.9:5060");
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Record(RecordUpdate::Ended {
            meta_duration_s: Some(42),
            ..
        })
    )));
    assert!(matches!(c.state(), CallState::Completed(r) if r.by == Some(Leg::WhatsApp)));
    // Anything more on the ended dialog: 481.
    let again = req(&format!(
        "INVITE sip:+15550001111@gw.example.com:5061;transport=tls SIP/2.0
Via: SIP/2.0/TLS 157.240.19.130:5061;branch=z9hG4bKmre
From: <sip:+15551234567@wa.meta.vc>;tag=metatag
To: <sip:+15550001111@gw.example.com>;tag={our_tag}
Call-ID: outgoing:wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI
CSeq: 103 INVITE
Contact: <sip:+15551234567@wa.meta.vc>

"
    ));
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::WhatsApp,
            txn: ServerTxn(10),
            request: again,
        },
    );
    let a = drain(&mut c);
    assert_eq!(responses(&a)[0].2.status, 481);
    assert!(sent_requests(&a).is_empty());
}

#[test]
fn request_from_wrong_dialog_gets_481() {
    let now = Instant::now();
    let (mut c, _inv, _ok) = ui_accepted(now, &[], false);
    let bye = req("BYE sip:x@gw.example.com SIP/2.0
Via: SIP/2.0/TLS 157.240.19.130:5061;branch=z9hG4bKz
From: <sip:+15551234567@wa.meta.vc>;tag=other
To: <sip:+15550001111@gw.example.com>;tag=nope
Call-ID: outgoing:wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI
CSeq: 102 BYE

");
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::WhatsApp,
            txn: ServerTxn(9),
            request: bye,
        },
    );
    let a = drain(&mut c);
    assert_eq!(responses(&a)[0].2.status, 481);
    assert_eq!(c.state(), &CallState::Accepted);
}

// ---------------------------------------------------------------- business-initiated

/// Business-initiated call up to Accepted. Returns (call, the Meta INVITE that was answered,
/// the 200 sent to the PBX).
fn bi_accepted(now: Instant, pbx_extra: &str) -> (Call, Request, Response) {
    let mut c = Call::business_initiated(
        now,
        cfg(true),
        deps(None),
        IN,
        pbx_invite("+15551234567", pbx_extra),
        Permission::Allowed,
    );
    let a = drain(&mut c);
    let (_, id, invite) = sent_requests(&a).remove(0);
    c.handle_event(
        now,
        LegEvent::Response {
            leg: Leg::WhatsApp,
            id,
            response: reply(
                &invite,
                200,
                "meta2",
                &[("Record-Route", META_RR2), ("Record-Route", META_RR1)],
                PEER_SDP,
            ),
        },
    );
    let a = drain(&mut c);
    let ok = responses(&a)
        .into_iter()
        .find(|(_, _, r)| r.status == 200)
        .unwrap()
        .2;
    (c, invite, ok)
}

#[test]
fn business_initiated_invite_toward_meta_and_407() {
    let now = Instant::now();
    let auth = FakeAuth::default();
    let mut c = Call::business_initiated(
        now,
        cfg(true),
        deps(Some(auth.clone())),
        IN,
        pbx_invite("15551234567", ""),
        Permission::Allowed,
    );
    let a = drain(&mut c);
    assert_eq!(responses(&a)[0].2.status, 100);
    let reqs = sent_requests(&a);
    assert_eq!(reqs.len(), 1);
    let (leg, id, inv) = reqs[0].clone();
    assert_eq!(leg, Leg::WhatsApp);
    let wire = String::from_utf8(inv.to_bytes()).unwrap();
    assert!(
        wire.starts_with("INVITE sip:+15551234567@wa.meta.vc;transport=tls SIP/2.0\r\n"),
        "{wire}"
    );
    assert_eq!(
        inv.headers.get(&HeaderName::From),
        Some("<sip:+15550001111@gw.example.com>;tag=xf3")
    );
    assert_eq!(
        inv.headers.get(&HeaderName::To),
        Some("<sip:+15551234567@wa.meta.vc>")
    );
    assert!(
        !wire.contains("Session-Expires")
            && !wire.contains("sips:")
            && !wire.contains("pbx-call-1")
    );
    assert_eq!(inv.body, WA_OFFER_FROM_US.as_bytes());

    let challenge =
        "Digest realm=\"wa.meta.vc\",nonce=\"n1\",opaque=\"o\",algorithm=MD5,qop=\"auth\"";
    c.handle_event(
        now,
        LegEvent::Response {
            leg,
            id,
            response: reply(&inv, 407, "m1", &[("Proxy-Authenticate", challenge)], ""),
        },
    );
    let a = drain(&mut c);
    assert!(responses(&a).is_empty(), "the 407 is not relayed");
    let reqs = sent_requests(&a);
    assert_eq!(reqs.len(), 1);
    let (_, id2, inv2) = reqs[0].clone();
    assert_ne!(id2, id);
    assert_eq!(inv2.headers.cseq().unwrap().seq, 2);
    assert_eq!(
        inv2.headers.call_id().unwrap(),
        inv.headers.call_id().unwrap()
    );
    assert_eq!(inv2.headers.from().unwrap().tag(), Some("xf3"));
    assert_eq!(inv2.uri, inv.uri);
    let cred = inv2.headers.get(&HeaderName::ProxyAuthorization).unwrap();
    assert!(cred.contains("uri=\"sip:+15551234567@wa.meta.vc;transport=tls\""));
    let log = auth.0.lock().unwrap().clone();
    assert_eq!(log[0].0, [challenge]);
    assert_eq!(
        (log[0].1.as_str(), log[0].2.as_str(), log[0].3.as_deref()),
        ("INVITE", "sip:+15551234567@wa.meta.vc;transport=tls", None)
    );

    // A second 407 to our credentials: wrong password → 403 to the PBX.
    c.handle_event(
        now,
        LegEvent::Response {
            leg,
            id: id2,
            response: reply(&inv2, 407, "m2", &[("Proxy-Authenticate", challenge)], ""),
        },
    );
    let a = drain(&mut c);
    let r = responses(&a);
    assert_eq!((r[0].0, r[0].2.status), (Leg::Pbx, 403));
    assert!(sent_requests(&a).is_empty());
    assert!(c.state().is_terminal());
}

#[test]
fn business_initiated_to_bsuid_keeps_it() {
    let now = Instant::now();
    let mut c = Call::business_initiated(
        now,
        cfg(true),
        deps(None),
        IN,
        pbx_invite("US.13491208655302741918", ""),
        Permission::Unknown,
    );
    let a = drain(&mut c);
    let (_, _, inv) = sent_requests(&a).remove(0);
    assert_eq!(
        inv.uri.to_string(),
        "sip:US.13491208655302741918@wa.meta.vc;transport=tls"
    );
    assert_eq!(c.wa_user(), "US.13491208655302741918");
}

#[test]
fn business_initiated_not_a_user_gets_404() {
    let now = Instant::now();
    let mut c = Call::business_initiated(
        now,
        cfg(true),
        deps(None),
        IN,
        pbx_invite("alice", ""),
        Permission::Allowed,
    );
    let a = drain(&mut c);
    assert!(sent_requests(&a).is_empty());
    assert_eq!(responses(&a).last().unwrap().2.status, 404);
}

#[test]
fn no_permission_gives_403_with_138006_and_nothing_to_meta() {
    let now = Instant::now();
    let mut c = Call::business_initiated(
        now,
        cfg(true),
        deps(None),
        IN,
        pbx_invite("+15557654321", ""),
        Permission::NoPermission,
    );
    let a = drain(&mut c);
    assert!(!touches(&a, Leg::WhatsApp));
    let r = responses(&a);
    let f = &r.last().unwrap().2;
    assert_eq!(f.status, 403);
    let w = f.headers.get(&HeaderName::Warning).unwrap();
    assert!(w.starts_with("399 127.0.0.1 \"138006 "), "{w}");
    assert!(
        f.headers
            .get(&HeaderName::Reason)
            .unwrap()
            .starts_with("SIP;cause=403;")
    );
    assert!(matches!(c.state(), CallState::Failed(r) if r.meta_code == Some(138006)));
}

#[test]
fn meta_failures_map_toward_pbx_in_the_call() {
    for (meta, pbx, warning) in [
        (
            403,
            403,
            Some("399 wa.meta.vc \"SIP server gw.example.com from INVITE does not match\""),
        ),
        (480, 480, None),
        (486, 486, None),
        (408, 408, None),
        (503, 503, None),
        (500, 502, None),
        (400, 502, None),
    ] {
        let now = Instant::now();
        let mut c = Call::business_initiated(
            now,
            cfg(true),
            deps(None),
            IN,
            pbx_invite("+15551234567", ""),
            Permission::Allowed,
        );
        let a = drain(&mut c);
        let (_, id, inv) = sent_requests(&a).remove(0);
        let extra: Vec<(&str, &str)> = warning.iter().map(|w| ("Warning", *w)).collect();
        c.handle_event(
            now,
            LegEvent::Response {
                leg: Leg::WhatsApp,
                id,
                response: reply(&inv, meta, "m", &extra, ""),
            },
        );
        let a = drain(&mut c);
        let r = responses(&a);
        assert_eq!((r[0].0, r[0].2.status), (Leg::Pbx, pbx), "Meta {meta}");
        let reason = r[0].2.headers.get(&HeaderName::Reason).unwrap();
        assert!(
            reason.starts_with(&format!("SIP;cause={meta};text=")),
            "{reason}"
        );
        if let Some(_w) = warning {
            assert_eq!(
                r[0].2.headers.get(&HeaderName::Warning),
                Some("399 127.0.0.1 \"SIP server gw.example.com from INVITE does not match\"")
            );
        }
        assert_eq!(matches!(c.state(), CallState::Rejected(_)), meta == 486);
    }
}

#[test]
fn meta_invite_timeout_gives_408() {
    let now = Instant::now();
    let mut c = Call::business_initiated(
        now,
        cfg(true),
        deps(None),
        IN,
        pbx_invite("+15551234567", ""),
        Permission::Allowed,
    );
    let a = drain(&mut c);
    let (_, id, _) = sent_requests(&a).remove(0);
    c.handle_event(
        now,
        LegEvent::Timeout {
            leg: Leg::WhatsApp,
            id,
        },
    );
    let r = responses(&drain(&mut c));
    assert_eq!((r[0].0, r[0].2.status), (Leg::Pbx, 408));
}

#[test]
fn business_initiated_answer_acks_via_reversed_route_set() {
    let now = Instant::now();
    let mut c = Call::business_initiated(
        now,
        cfg(true),
        deps(None),
        IN,
        pbx_invite("+15551234567", ""),
        Permission::Allowed,
    );
    let a = drain(&mut c);
    let (_, id, inv) = sent_requests(&a).remove(0);
    c.handle_event(
        now,
        LegEvent::Response {
            leg: Leg::WhatsApp,
            id,
            response: reply(&inv, 180, "meta2", &[], ""),
        },
    );
    let a = drain(&mut c);
    let r = responses(&a);
    assert_eq!((r[0].0, r[0].2.status), (Leg::Pbx, 180));
    assert_eq!(c.state(), &CallState::Ringing);
    c.handle_event(
        now,
        LegEvent::Response {
            leg: Leg::WhatsApp,
            id,
            response: reply(
                &inv,
                200,
                "meta2",
                &[("Record-Route", META_RR2), ("Record-Route", META_RR1)],
                PEER_SDP,
            ),
        },
    );
    let a = drain(&mut c);
    let ack = acks(&a);
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].0, Leg::WhatsApp);
    let routes: Vec<&str> = ack[0].1.headers.get_all(&HeaderName::Route).collect();
    assert_eq!(routes, [META_RR1, META_RR2]);
    let ok = responses(&a)
        .into_iter()
        .find(|(_, _, r)| r.status == 200)
        .unwrap();
    assert_eq!(ok.0, Leg::Pbx);
    assert_eq!(ok.2.body, PBX_ANSWER_FROM_US.as_bytes());
    assert_eq!(
        ok.2.headers.get(&HeaderName::Contact),
        Some("<sip:whatsip@127.0.0.1:5080>")
    );
    assert_eq!(c.state(), &CallState::Accepted);

    // PBX BYE → BYE to Meta with Reason, routed.
    let our_tag = ok.2.headers.to().unwrap().tag().unwrap().to_owned();
    let bye = req(&format!(
        "BYE sip:whatsip@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKpb
From: <sip:100@127.0.0.1>;tag=pbxtag
To: <sip:+15551234567@127.0.0.1:5080>;tag={our_tag}
Call-ID: pbx-call-1
CSeq: 21 BYE

"
    ));
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::Pbx,
            txn: ServerTxn(5),
            request: bye,
        },
    );
    let a = drain(&mut c);
    let reqs = sent_requests(&a);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].0, Leg::WhatsApp);
    assert_eq!(
        reqs[0].2.headers.get(&HeaderName::Reason),
        Some("Q.850;cause=16")
    );
    let routes: Vec<&str> = reqs[0].2.headers.get_all(&HeaderName::Route).collect();
    assert_eq!(routes, [META_RR1, META_RR2]);
    assert!(matches!(c.state(), CallState::Completed(_)));
}

#[test]
fn meta_183_with_sdp_is_pre_accepted_with_early_media() {
    let now = Instant::now();
    let mut c = Call::business_initiated(
        now,
        cfg(true),
        deps(None),
        IN,
        pbx_invite("+15551234567", ""),
        Permission::Allowed,
    );
    let a = drain(&mut c);
    let (_, id, inv) = sent_requests(&a).remove(0);
    c.handle_event(
        now,
        LegEvent::Response {
            leg: Leg::WhatsApp,
            id,
            response: reply(&inv, 183, "m", &[], PEER_SDP),
        },
    );
    let a = drain(&mut c);
    let r = responses(&a);
    assert_eq!(
        (r[0].2.status, r[0].2.body.as_ref()),
        (183, PBX_ANSWER_FROM_US.as_bytes())
    );
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Media(MediaAction::Start { early: true, .. })))
    );
    assert_eq!(c.state(), &CallState::PreAccepted);
    // 183 without SDP: relayed without SDP.
    let mut c = Call::business_initiated(
        now,
        cfg(true),
        deps(None),
        IN,
        pbx_invite("+15551234567", ""),
        Permission::Allowed,
    );
    let a = drain(&mut c);
    let (_, id, inv) = sent_requests(&a).remove(0);
    c.handle_event(
        now,
        LegEvent::Response {
            leg: Leg::WhatsApp,
            id,
            response: reply(&inv, 183, "m", &[], ""),
        },
    );
    let a = drain(&mut c);
    let r = responses(&a);
    assert_eq!((r[0].2.status, r[0].2.body.len()), (183, 0));
    assert_eq!(c.state(), &CallState::Ringing);
}

#[test]
fn cancel_200_race_acks_then_byes_the_late_200() {
    let now = Instant::now();
    let mut c = Call::business_initiated(
        now,
        cfg(true),
        deps(None),
        IN,
        pbx_invite("+15551234567", ""),
        Permission::Allowed,
    );
    let a = drain(&mut c);
    let (_, id, inv) = sent_requests(&a).remove(0);
    c.handle_event(
        now,
        LegEvent::Response {
            leg: Leg::WhatsApp,
            id,
            response: reply(&inv, 180, "meta2", &[], ""),
        },
    );
    drain(&mut c);
    c.handle_event(
        now,
        LegEvent::Cancelled {
            leg: Leg::Pbx,
            txn: IN,
        },
    );
    let a = drain(&mut c);
    let r = responses(&a);
    assert_eq!((r[0].0, r[0].2.status), (Leg::Pbx, 487));
    assert!(a.contains(&Action::SendCancel {
        leg: Leg::WhatsApp,
        invite: id
    }));
    // Meta's 200 crossed our CANCEL.
    c.handle_event(
        now,
        LegEvent::Response {
            leg: Leg::WhatsApp,
            id,
            response: reply(
                &inv,
                200,
                "meta2",
                &[("Record-Route", META_RR2), ("Record-Route", META_RR1)],
                PEER_SDP,
            ),
        },
    );
    let a = drain(&mut c);
    assert!(responses(&a).is_empty(), "nothing more to the PBX");
    let pos_ack = a
        .iter()
        .position(|x| {
            matches!(
                x,
                Action::SendAck {
                    leg: Leg::WhatsApp,
                    ..
                }
            )
        })
        .expect("ACK");
    let pos_bye = a.iter().position(|x| matches!(x, Action::SendRequest { leg: Leg::WhatsApp, request, .. } if request.method == Method::Bye)).expect("BYE");
    assert!(pos_ack < pos_bye);
    let Action::SendRequest { request: bye, .. } = &a[pos_bye] else {
        unreachable!()
    };
    assert_eq!(bye.headers.get(&HeaderName::Reason), Some("Q.850;cause=16"));
    let routes: Vec<&str> = bye.headers.get_all(&HeaderName::Route).collect();
    assert_eq!(routes, [META_RR1, META_RR2]);
    assert_eq!(bye.headers.cseq().unwrap().seq, 2);
    assert!(matches!(c.state(), CallState::Failed(r) if r.sip_status == Some(487)));
}

#[test]
fn pbx_reinvite_update_info_options_absorbed_never_sent_to_meta() {
    let now = Instant::now();
    let (mut c, _inv, ok) = bi_accepted(now, "");
    let tag = ok.headers.to().unwrap().tag().unwrap().to_owned();
    let hold = PEER_SDP.replace("a=sendrecv", "a=sendonly");
    let mut all = Vec::new();
    let mk = |method: &str, seq: u32, extra: &str, body: &str| {
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!("{extra}\n")
        };
        req(&format!(
            "{method} sip:whatsip@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKr{seq}
From: <sip:100@127.0.0.1>;tag=pbxtag
To: <sip:+15551234567@127.0.0.1:5080>;tag={tag}
Call-ID: pbx-call-1
CSeq: {seq} {method}
Contact: <sip:100@127.0.0.1:5060>
{extra}
{body}"
        ))
    };
    // Hold.
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::Pbx,
            txn: ServerTxn(11),
            request: mk("INVITE", 21, "Content-Type: application/sdp", &hold),
        },
    );
    let a = drain(&mut c);
    let r = responses(&a);
    assert_eq!(
        (r[0].0, r[0].1, r[0].2.status),
        (Leg::Pbx, ServerTxn(11), 200)
    );
    let body = std::str::from_utf8(&r[0].2.body).unwrap();
    assert!(
        body.ends_with("a=recvonly\r\n") && body.contains("o=whatsip 4 2 "),
        "{body}"
    );
    assert!(a.contains(&Action::Media(MediaAction::Hold(true))));
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Media(MediaAction::UpdatePbxRemote { .. })))
    );
    all.extend(a);
    // Unhold.
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::Pbx,
            txn: ServerTxn(12),
            request: mk("INVITE", 22, "Content-Type: application/sdp", PEER_SDP),
        },
    );
    let a = drain(&mut c);
    let body = std::str::from_utf8(&responses(&a)[0].2.body)
        .unwrap()
        .to_owned();
    assert!(
        body.ends_with("a=sendrecv\r\n") && body.contains("o=whatsip 4 3 "),
        "{body}"
    );
    assert!(a.contains(&Action::Media(MediaAction::Hold(false))));
    all.extend(a);
    // Same offer again (refresh): same answer, same version.
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::Pbx,
            txn: ServerTxn(13),
            request: mk("INVITE", 23, "Content-Type: application/sdp", PEER_SDP),
        },
    );
    let a = drain(&mut c);
    assert_eq!(std::str::from_utf8(&responses(&a)[0].2.body).unwrap(), body);
    assert!(!a.iter().any(|x| matches!(x, Action::Media(_))));
    all.extend(a);
    // UPDATE without SDP (session refresh).
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::Pbx,
            txn: ServerTxn(14),
            request: mk("UPDATE", 24, "Session-Expires: 1800;refresher=uac", ""),
        },
    );
    let a = drain(&mut c);
    let r = responses(&a);
    assert_eq!(r[0].2.status, 200);
    assert!(r[0].2.body.is_empty());
    assert_eq!(
        r[0].2.headers.get(&HeaderName::SessionExpires),
        Some("1800;refresher=uac")
    );
    all.extend(a);
    // INFO DTMF.
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::Pbx,
            txn: ServerTxn(15),
            request: mk(
                "INFO",
                25,
                "Content-Type: application/dtmf-relay",
                "Signal=7\r\nDuration=160\r\n",
            ),
        },
    );
    let a = drain(&mut c);
    assert!(a.contains(&Action::Media(MediaAction::SendDtmf {
        digit: '7',
        duration_ms: 160
    })));
    assert_eq!(responses(&a)[0].2.status, 200);
    all.extend(a);
    // OPTIONS.
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::Pbx,
            txn: ServerTxn(16),
            request: mk("OPTIONS", 26, "", ""),
        },
    );
    let a = drain(&mut c);
    assert_eq!(responses(&a)[0].2.status, 200);
    all.extend(a);
    // REFER: not supported, call stays up.
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::Pbx,
            txn: ServerTxn(17),
            request: mk("REFER", 27, "Refer-To: <sip:200@127.0.0.1>", ""),
        },
    );
    let a = drain(&mut c);
    assert_eq!(responses(&a)[0].2.status, 501);
    all.extend(a);
    assert!(
        !touches(&all, Leg::WhatsApp),
        "nothing toward Meta: {all:?}"
    );
    assert_eq!(c.state(), &CallState::Accepted);
    // Out-of-order CSeq is refused by the dialog.
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::Pbx,
            txn: ServerTxn(18),
            request: mk("INFO", 3, "", ""),
        },
    );
    assert_eq!(responses(&drain(&mut c))[0].2.status, 500);
}

#[test]
fn pbx_late_offer_reinvite_gets_our_sdp_and_ack_carries_answer() {
    let now = Instant::now();
    let (mut c, _inv, ok) = bi_accepted(now, "");
    let tag = ok.headers.to().unwrap().tag().unwrap().to_owned();
    let reinv = req(&format!(
        "INVITE sip:whatsip@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKlate
From: <sip:100@127.0.0.1>;tag=pbxtag
To: <sip:+15551234567@127.0.0.1:5080>;tag={tag}
Call-ID: pbx-call-1
CSeq: 30 INVITE
Contact: <sip:100@127.0.0.1:5060>

"
    ));
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::Pbx,
            txn: ServerTxn(20),
            request: reinv,
        },
    );
    let a = drain(&mut c);
    assert_eq!(responses(&a)[0].2.body, PBX_ANSWER_FROM_US.as_bytes());
    let new_sdp = PEER_SDP.replace("10.0.0.9", "10.0.0.10");
    let ack = req(&format!(
        "ACK sip:whatsip@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKlateack
From: <sip:100@127.0.0.1>;tag=pbxtag
To: <sip:+15551234567@127.0.0.1:5080>;tag={tag}
Call-ID: pbx-call-1
CSeq: 30 ACK
Content-Type: application/sdp

{new_sdp}"
    ));
    c.handle_event(
        now,
        LegEvent::Ack {
            leg: Leg::Pbx,
            request: ack,
        },
    );
    let a = drain(&mut c);
    assert_eq!(
        a,
        vec![Action::Media(MediaAction::UpdatePbxRemote {
            sdp: Bytes::from(new_sdp)
        })]
    );
}

#[test]
fn session_timer_we_refresh_toward_pbx_at_half_interval() {
    let t0 = Instant::now();
    let (mut c, _inv, ok) =
        bi_accepted(t0, "Supported: timer\nSession-Expires: 90;refresher=uas\n");
    assert_eq!(
        ok.headers.get(&HeaderName::SessionExpires),
        Some("90;refresher=uas")
    );
    assert_eq!(ok.headers.get(&HeaderName::Require), Some("timer"));
    let due = t0 + Duration::from_secs(45);
    assert_eq!(c.poll_timeout(), Some(due));
    c.handle_timeout(due - Duration::from_millis(1));
    assert!(drain(&mut c).is_empty());
    c.handle_timeout(due);
    let a = drain(&mut c);
    let reqs = sent_requests(&a);
    assert_eq!(reqs.len(), 1);
    let (leg, id, refresh) = reqs[0].clone();
    assert_eq!((leg, &refresh.method), (Leg::Pbx, &Method::Invite));
    assert_eq!(refresh.uri.to_string(), "sip:100@127.0.0.1:5060");
    assert_eq!(refresh.body, PBX_ANSWER_FROM_US.as_bytes());
    assert_eq!(
        refresh.headers.get(&HeaderName::SessionExpires),
        Some("90;refresher=uac")
    );
    assert!(!touches(&a, Leg::WhatsApp));
    c.handle_event(
        due,
        LegEvent::Response {
            leg: Leg::Pbx,
            id,
            response: reply(
                &refresh,
                200,
                "pbxtag",
                &[("Session-Expires", "90;refresher=uac")],
                PEER_SDP,
            ),
        },
    );
    let a = drain(&mut c);
    assert_eq!(acks(&a).len(), 1);
    assert_eq!(acks(&a)[0].0, Leg::Pbx);
    assert_eq!(c.poll_timeout(), Some(due + Duration::from_secs(45)));
}

#[test]
fn session_expires_without_refresh_tears_down_both_legs() {
    let t0 = Instant::now();
    let (mut c, _inv, ok) = bi_accepted(t0, "Supported: timer\nSession-Expires: 90\n");
    assert_eq!(
        ok.headers.get(&HeaderName::SessionExpires),
        Some("90;refresher=uac")
    );
    // RFC 4028 §10: BYE at SE − min(32, SE/3) = 60 s.
    let expiry = t0 + Duration::from_secs(60);
    assert_eq!(c.poll_timeout(), Some(expiry));
    c.handle_timeout(expiry);
    let a = drain(&mut c);
    let reqs = sent_requests(&a);
    let legs: Vec<(Leg, Method)> = reqs
        .iter()
        .map(|(l, _, r)| (*l, r.method.clone()))
        .collect();
    assert_eq!(
        legs,
        [(Leg::WhatsApp, Method::Bye), (Leg::Pbx, Method::Bye)]
    );
    assert!(matches!(c.state(), CallState::Completed(r) if r.text.contains("session expired")));
}

#[test]
fn session_expires_below_min_se_gets_422() {
    let now = Instant::now();
    let mut c = Call::business_initiated(
        now,
        cfg(true),
        deps(None),
        IN,
        pbx_invite("+15551234567", "Session-Expires: 30\n"),
        Permission::Allowed,
    );
    let a = drain(&mut c);
    assert!(!touches(&a, Leg::WhatsApp));
    let f = responses(&a).pop().unwrap().2;
    assert_eq!(f.status, 422);
    assert_eq!(f.headers.get(&HeaderName::MinSe), Some("90"));
}

#[test]
fn pbx_422_retried_with_its_min_se() {
    let now = Instant::now();
    let mut c = Call::user_initiated(now, cfg(true), deps(None), IN, meta_invite("+15551234567"));
    let a = drain(&mut c);
    let (_, id, invite) = sent_requests(&a).remove(0);
    c.handle_event(
        now,
        LegEvent::Response {
            leg: Leg::Pbx,
            id,
            response: reply(&invite, 422, "p", &[("Min-SE", "3600")], ""),
        },
    );
    let a = drain(&mut c);
    assert!(responses(&a).is_empty());
    let (_, _, again) = sent_requests(&a).remove(0);
    assert_eq!(
        again.headers.get(&HeaderName::SessionExpires),
        Some("3600;refresher=uac")
    );
    assert_eq!(again.headers.cseq().unwrap().seq, 2);
}

#[test]
fn media_timeout_and_ack_timeout_end_the_call() {
    let now = Instant::now();
    let (mut c, _, _) = ui_accepted(now, &[], false);
    c.handle_event(now, LegEvent::MediaTimeout);
    let a = drain(&mut c);
    assert_eq!(sent_requests(&a).len(), 2);
    assert!(matches!(c.state(), CallState::Completed(r) if r.text == "media timeout"));
    let (mut c, _, _) = ui_accepted(now, &[], false);
    c.handle_event(now, LegEvent::AckTimeout { leg: Leg::WhatsApp });
    assert!(c.state().is_terminal());
}

#[test]
fn a_failed_dtls_leg_ends_the_call_with_its_reason_on_both_legs() {
    let now = Instant::now();
    let (mut c, _, _) = ui_accepted(now, &[], false);
    c.handle_event(
        now,
        LegEvent::MediaFailed {
            reason: "no DTLS connection with WhatsApp in time".into(),
        },
    );
    let a = drain(&mut c);
    let byes = sent_requests(&a);
    assert_eq!(byes.len(), 2);
    let pbx_bye = byes.iter().find(|(leg, _, _)| *leg == Leg::Pbx).unwrap();
    assert_eq!(
        pbx_bye.2.headers.get(&HeaderName::Reason),
        Some("Q.850;cause=41;text=\"no DTLS connection with WhatsApp in time\"")
    );
    assert!(
        matches!(c.state(), CallState::Completed(r) if r.text.contains("DTLS")),
        "{:?}",
        c.state()
    );
}

#[test]
fn user_initiated_without_contact_is_400() {
    let now = Instant::now();
    let mut inv = meta_invite("+15551234567");
    inv.headers.remove(&HeaderName::Contact);
    let mut c = Call::user_initiated(now, cfg(false), deps(None), IN, inv);
    let a = drain(&mut c);
    assert!(sent_requests(&a).is_empty());
    assert_eq!(responses(&a).last().unwrap().2.status, 400);
    assert!(c.state().is_terminal());
}

#[test]
fn shipped_profiles_route_meta_invite_and_build_call_config() {
    use super::translate::{RouteError, route_inbound};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-profiles");
    let mut config = crate::config::load_dir(&dir).expect("shipped profiles load");
    let uri =
        crate::sip::uri::Uri::parse("sip:+15550001111@gateway.whatsip.test:5061;transport=tls")
            .unwrap();
    let route = route_inbound(&config, &uri).unwrap();
    assert_eq!(route.trunk, "pbx");
    assert_eq!(route.business, "+15550001111");
    assert_eq!(route.request_user, "+15550001111");
    let wa = &config.whatsapp[route.profile];
    let number = &wa.numbers[route.number];
    let trunk = config.trunk(&route.trunk).unwrap();
    let c = CallConfig::from_profiles(wa, number, trunk, "p");
    assert_eq!(
        (c.public_host.as_str(), c.public_port),
        ("gateway.whatsip.test", 5061)
    );
    assert_eq!(
        (c.pbx_host.as_str(), c.pbx_port, c.pbx_transport),
        ("127.0.0.1", 5060, Transport::Udp)
    );
    assert_eq!((c.local_host.as_str(), c.local_port), ("127.0.0.1", 5080));
    assert_eq!(c.edge_host, "wa.meta.vc");
    assert_eq!(c.answer_deadline, Duration::from_secs(60));

    let unknown = crate::sip::uri::Uri::parse("sip:+15559999999@gateway.whatsip.test").unwrap();
    assert_eq!(
        route_inbound(&config, &unknown),
        Err(RouteError::UnknownNumber)
    );
    let bsuid = crate::sip::uri::Uri::parse("sip:US.1234@gateway.whatsip.test").unwrap();
    assert_eq!(
        route_inbound(&config, &bsuid),
        Err(RouteError::UnknownNumber)
    );

    // With request_uri_user_params configured, Meta's user params must be present.
    config.whatsapp[0].numbers[0]
        .request_uri_user_params
        .insert("tgrp".into(), "wacall".into());
    assert_eq!(route_inbound(&config, &uri), Err(RouteError::UserParams));
    let with = crate::sip::uri::Uri::parse(
        "sip:+15550001111;tgrp=wacall;trunk-context=x@gateway.whatsip.test;transport=tls",
    )
    .unwrap();
    assert_eq!(
        route_inbound(&config, &with).unwrap().business,
        "+15550001111"
    );
}

mod never_panics {
    use super::*;
    use crate::call::meta_rules::{WaMetaInfo, WaUser, user_params};
    use crate::call::translate::{
        SdpDirection, info_dtmf, sdp_direction, sdp_is_hold, sdp_with_direction, sip_reason,
        warning_header, warning_text,
    };
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pure_rules_total(s in ".{0,200}", b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = WaUser::parse(&s).map(|u| u.masked());
            let _ = user_params(&s);
            let _ = warning_text(&s);
            let _ = sip_reason(400, &s);
            let _ = warning_header("h", &s);
            let _ = info_dtmf(Some("application/dtmf-relay"), &b);
            let _ = info_dtmf(Some("application/dtmf"), &b);
            let _ = sdp_direction(&b);
            let _ = sdp_is_hold(&b);
            let out = sdp_with_direction(&b, SdpDirection::SendOnly);
            if std::str::from_utf8(&b).is_ok() {
                prop_assert_eq!(sdp_direction(&out), SdpDirection::SendOnly);
            }
            let mut h = crate::sip::message::Headers::new();
            h.push(HeaderName::parse("x-wa-meta-call-duration"), s.clone());
            h.push(HeaderName::parse("x-wa-meta-cta-payload"), s.clone());
            let i = WaMetaInfo::from_headers(&h);
            for (_, v) in i.pbx_headers(&s, &s) {
                prop_assert!(v.len() <= 512 && !v.chars().any(char::is_control));
            }
        }

        /// Arbitrary final/provisional statuses, bodies and header values from either leg
        /// never panic a call, and a terminal call stays terminal.
        #[test]
        fn call_survives_arbitrary_responses(
            steps in proptest::collection::vec((100u16..700, any::<bool>(), ".{0,40}", any::<bool>()), 1..8),
            bi in any::<bool>(),
        ) {
            let now = Instant::now();
            let mut c = if bi {
                Call::business_initiated(now, cfg(true), deps(Some(FakeAuth::default())), IN, pbx_invite("+15551234567", ""), Permission::Allowed)
            } else {
                Call::user_initiated(now, cfg(true), deps(None), IN, meta_invite("+15551234567"))
            };
            let mut reqs: Vec<(Leg, ReqId, Request)> = sent_requests(&drain(&mut c));
            let mut was_terminal = c.state().is_terminal();
            for (status, with_sdp, junk, cancel) in steps {
                let Some((leg, id, r)) = reqs.last().cloned() else { break };
                let resp = reply(&r, status, "peer", &[("Session-Expires", junk.as_str()), ("Min-SE", junk.as_str()), ("Warning", junk.as_str())], if with_sdp { PEER_SDP } else { "" });
                c.handle_event(now, LegEvent::Response { leg, id, response: resp });
                if cancel {
                    c.handle_event(now, LegEvent::Cancelled { leg: leg.other(), txn: IN });
                }
                c.handle_timeout(now + Duration::from_secs(3600));
                reqs.extend(sent_requests(&drain(&mut c)));
                prop_assert!(!was_terminal || c.state().is_terminal());
                was_terminal = c.state().is_terminal();
            }
        }
    }
}

#[test]
fn user_initiated_pbx_hold_reinvite_absorbed_and_dtmf_info() {
    let now = Instant::now();
    let (mut c, _inv, _ok) = ui_accepted(now, &[], false);
    let hold = PEER_SDP.replace("a=sendrecv", "a=inactive");
    let reinv = req(&format!(
        "INVITE sip:whatsip@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKh1
From: <sip:+15550001111@127.0.0.1:5060>;tag=pbx2
To: <sip:+15551234567@127.0.0.1>;tag=xf3
Call-ID: xc2@127.0.0.1
CSeq: 2 INVITE
Contact: <sip:peer@10.0.0.9:5060>
Content-Type: application/sdp

{hold}"
    ));
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::Pbx,
            txn: ServerTxn(30),
            request: reinv,
        },
    );
    let a = drain(&mut c);
    let r = responses(&a);
    assert_eq!((r[0].0, r[0].2.status), (Leg::Pbx, 200));
    assert_eq!(
        r[0].2.headers.get(&HeaderName::Contact),
        Some("<sip:whatsip@127.0.0.1:5080>")
    );
    assert!(
        std::str::from_utf8(&r[0].2.body)
            .unwrap()
            .ends_with("a=inactive\r\n")
    );
    assert!(a.contains(&Action::Media(MediaAction::Hold(true))));
    assert!(!touches(&a, Leg::WhatsApp));
    let info = req("INFO sip:whatsip@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKh2
From: <sip:+15550001111@127.0.0.1:5060>;tag=pbx2
To: <sip:+15551234567@127.0.0.1>;tag=xf3
Call-ID: xc2@127.0.0.1
CSeq: 3 INFO
Content-Type: application/dtmf

#");
    c.handle_event(
        now,
        LegEvent::Request {
            leg: Leg::Pbx,
            txn: ServerTxn(31),
            request: info,
        },
    );
    let a = drain(&mut c);
    assert!(a.contains(&Action::Media(MediaAction::SendDtmf {
        digit: '#',
        duration_ms: 250
    })));
    assert!(!touches(&a, Leg::WhatsApp));
    assert_eq!(c.state(), &CallState::Accepted);
}

#[test]
fn user_initiated_session_timer_follows_pbx_200() {
    let t0 = Instant::now();
    // PBX says we (the UAC) refresh: re-INVITE toward the PBX at SE/2 with our SDP.
    let (mut c, _inv, _ok) = ui_accepted(t0, &[("Session-Expires", "120;refresher=uac")], true);
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    c.handle_timeout(t0 + Duration::from_secs(60));
    let a = drain(&mut c);
    let reqs = sent_requests(&a);
    assert_eq!(reqs.len(), 1);
    assert_eq!((reqs[0].0, &reqs[0].2.method), (Leg::Pbx, &Method::Invite));
    assert_eq!(reqs[0].2.body, PBX_OFFER_FROM_US.as_bytes());
    assert_eq!(reqs[0].2.headers.cseq().unwrap().seq, 2);
    assert!(!touches(&a, Leg::WhatsApp));
    // PBX refreshes: we BYE both legs at SE − min(32, SE/3) = 88 s without one.
    let (mut c, _inv, _ok) = ui_accepted(t0, &[("Session-Expires", "120;refresher=uas")], true);
    assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(88)));
    // A PBX UPDATE refresh at 50 s re-arms it.
    let upd = req("UPDATE sip:whatsip@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKu9
From: <sip:+15550001111@127.0.0.1:5060>;tag=pbx2
To: <sip:+15551234567@127.0.0.1>;tag=xf3
Call-ID: xc2@127.0.0.1
CSeq: 2 UPDATE
Contact: <sip:peer@10.0.0.9:5060>
Session-Expires: 120;refresher=uac

");
    let t50 = t0 + Duration::from_secs(50);
    c.handle_event(
        t50,
        LegEvent::Request {
            leg: Leg::Pbx,
            txn: ServerTxn(40),
            request: upd,
        },
    );
    let a = drain(&mut c);
    assert_eq!(responses(&a)[0].2.status, 200);
    assert_eq!(c.poll_timeout(), Some(t50 + Duration::from_secs(88)));
    c.handle_timeout(t0 + Duration::from_secs(88));
    assert!(drain(&mut c).is_empty());
    assert_eq!(c.state(), &CallState::Accepted);
}

// ------------------------------------------------------------------ records, parking, shutdown

fn records(actions: &[Action]) -> Vec<RecordUpdate> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn records_carry_both_call_ids_answer_time_and_the_end_reason() {
    let t0 = Instant::now();
    let mut c = Call::user_initiated(t0, cfg(false), deps(None), IN, meta_invite("+15551234567"));
    let a = drain(&mut c);
    let (_, id, invite) = sent_requests(&a).remove(0);
    let ids = records(&a);
    let pbx_cid = invite.headers.call_id().unwrap().to_owned();
    assert!(ids.contains(&RecordUpdate::CallIds {
        whatsapp_call_id: Some("outgoing:wacid.HBgLMTU1NTEyMzQ1NjcVAgARGBI".into()),
        pbx_call_id: Some(pbx_cid),
    }));
    // The answer time is the far leg's 200, not the call start.
    let t1 = t0 + Duration::from_secs(7);
    c.handle_event(
        t1,
        LegEvent::Response {
            leg: Leg::Pbx,
            id,
            response: reply(&invite, 200, "pbx2", &[], PEER_SDP),
        },
    );
    let a = drain(&mut c);
    assert!(records(&a).contains(&RecordUpdate::Answered { at: t1 }));
    // A business-initiated failure from Meta keeps the status and Meta's code.
    let mut b = Call::business_initiated(
        t0,
        cfg(false),
        deps(None),
        IN,
        pbx_invite("+15557654321", ""),
        Permission::Unknown,
    );
    let a = drain(&mut b);
    let (_, id, invite) = sent_requests(&a).remove(0);
    b.handle_event(
        t0,
        LegEvent::Response {
            leg: Leg::WhatsApp,
            id,
            response: reply(
                &invite,
                403,
                "m",
                &[(
                    "Warning",
                    "399 wa.meta.vc \"138006 No approved call permission\"",
                )],
                "",
            ),
        },
    );
    let a = drain(&mut b);
    let ended = records(&a)
        .into_iter()
        .find_map(|r| match r {
            RecordUpdate::Ended { state, .. } => Some(state),
            _ => None,
        })
        .unwrap();
    assert!(
        matches!(&ended, CallState::Failed(r) if r.sip_status == Some(403) && r.meta_code == Some(138006) && r.text.contains("138006")),
        "{ended:?}"
    );
}

#[test]
fn parked_business_initiated_call_waits_for_the_permission() {
    let now = Instant::now();
    let deadline = now + Duration::from_secs(2);
    // NoPermission arrives in time: 403 + 138006, nothing toward Meta.
    let mut c = Call::business_initiated_waiting(
        now,
        cfg(false),
        deps(None),
        IN,
        pbx_invite("+15557654321", ""),
        deadline,
    );
    let a = drain(&mut c);
    assert!(!touches(&a, Leg::WhatsApp), "parked: no INVITE to Meta yet");
    assert_eq!(responses(&a).last().unwrap().2.status, 100);
    assert!(c.waiting_for_permission());
    assert_eq!(c.poll_timeout(), Some(deadline));
    c.handle_permission(now + Duration::from_millis(300), Permission::NoPermission);
    let a = drain(&mut c);
    assert!(!touches(&a, Leg::WhatsApp));
    let f = responses(&a).pop().unwrap().2;
    assert_eq!(f.status, 403);
    assert!(
        f.headers
            .get(&HeaderName::Warning)
            .unwrap()
            .contains("138006")
    );
    // A late second answer changes nothing.
    c.handle_permission(now + Duration::from_millis(400), Permission::Allowed);
    assert!(drain(&mut c).is_empty());

    // No answer by the deadline: proceeds as Unknown (Meta decides) — at the deadline, not before.
    let mut c = Call::business_initiated_waiting(
        now,
        cfg(false),
        deps(None),
        IN,
        pbx_invite("+15551234567", ""),
        deadline,
    );
    drain(&mut c);
    c.handle_timeout(deadline - Duration::from_millis(1));
    assert!(!touches(&drain(&mut c), Leg::WhatsApp));
    c.handle_timeout(deadline);
    let a = drain(&mut c);
    let reqs = sent_requests(&a);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].0, Leg::WhatsApp);
    assert!(!c.waiting_for_permission());

    // CANCELled while parked: 487, and the permission answer afterwards sends nothing.
    let mut c = Call::business_initiated_waiting(
        now,
        cfg(false),
        deps(None),
        IN,
        pbx_invite("+15551234567", ""),
        deadline,
    );
    drain(&mut c);
    c.handle_event(
        now,
        LegEvent::Cancelled {
            leg: Leg::Pbx,
            txn: IN,
        },
    );
    let a = drain(&mut c);
    assert_eq!(responses(&a).pop().unwrap().2.status, 487);
    c.handle_permission(now, Permission::Allowed);
    assert!(!touches(&drain(&mut c), Leg::WhatsApp));
    assert!(c.is_settled());
}

#[test]
fn shutdown_byes_confirmed_legs_cancels_pending_and_503s_unanswered() {
    let now = Instant::now();
    // Accepted: BYE on both legs (Meta's with the Q.850 Reason), record completed.
    let (mut c, _inv, _ok) = ui_accepted(now, &[], false);
    c.shutdown(now);
    let a = drain(&mut c);
    let byes: Vec<_> = sent_requests(&a)
        .into_iter()
        .filter(|(_, _, r)| r.method == Method::Bye)
        .collect();
    assert_eq!(byes.len(), 2, "{a:?}");
    assert!(byes.iter().any(|(l, _, _)| *l == Leg::WhatsApp));
    assert!(byes.iter().any(|(l, _, _)| *l == Leg::Pbx));
    assert!(matches!(c.state(), CallState::Completed(r) if r.text == "gateway shutting down"));
    assert!(records(&a).iter().any(|r| matches!(
        r,
        RecordUpdate::Ended {
            state: CallState::Completed(_),
            ..
        }
    )));
    assert!(!c.is_settled(), "BYEs unanswered yet");
    for (leg, id, bye) in byes {
        c.handle_event(
            now,
            LegEvent::Response {
                leg,
                id,
                response: reply(&bye, 200, "x", &[], ""),
            },
        );
    }
    assert!(c.is_settled());

    // Ringing (PBX sent 180): 503 to Meta, CANCEL to the PBX.
    let mut c = Call::user_initiated(now, cfg(false), deps(None), IN, meta_invite("+15551234567"));
    let a = drain(&mut c);
    let (_, id, invite) = sent_requests(&a).remove(0);
    c.handle_event(
        now,
        LegEvent::Response {
            leg: Leg::Pbx,
            id,
            response: reply(&invite, 180, "pbx2", &[], ""),
        },
    );
    drain(&mut c);
    c.shutdown(now);
    let a = drain(&mut c);
    let r = responses(&a);
    assert_eq!((r[0].0, r[0].2.status), (Leg::WhatsApp, 503));
    assert!(r[0].2.headers.get(&HeaderName::Reason).is_some());
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::SendCancel { leg: Leg::Pbx, invite } if *invite == id))
    );
    assert!(matches!(c.state(), CallState::Failed(r) if r.sip_status == Some(503)));
    // An ended call ignores a second shutdown.
    c.shutdown(now);
    assert!(drain(&mut c).is_empty());
}
