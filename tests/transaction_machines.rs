//! The four RFC 3261/6026 transaction state machines on virtual time: exact send counts, exact
//! retransmission instants, exact timeouts, ACK construction and the RFC 6026 Accepted states.
//! Messages are struct literals (no parser needed).
use bytes::Bytes;
use std::time::{Duration, Instant};
use whatsip::sip::header::HeaderName;
use whatsip::sip::header::params::Params;
use whatsip::sip::message::{Headers, Request, Response};
use whatsip::sip::method::Method;
use whatsip::sip::transaction::*;
use whatsip::sip::uri::{Host, Scheme, SipUri, Uri};

fn uri(user: &str, host: &str) -> Uri {
    Uri::Sip(SipUri {
        scheme: Scheme::Sip,
        user: Some(user.into()),
        password: None,
        host: Host::Domain(host.into()),
        port: None,
        params: Params::new(),
        headers: vec![],
    })
}

fn request(method: Method, seq: u32) -> Request {
    let mut h = Headers::new();
    h.push(
        HeaderName::Via,
        "SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKtest1;rport",
    );
    h.push(
        HeaderName::Via,
        "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKlower",
    );
    h.push(HeaderName::MaxForwards, "70");
    h.push(HeaderName::From, "<sip:alice@a.example>;tag=fromtag");
    h.push(HeaderName::To, "<sip:bob@b.example>");
    h.push(HeaderName::CallId, "call-1@a.example");
    h.push(HeaderName::CSeq, format!("{seq} {method}"));
    h.push(HeaderName::Route, "<sip:p1.example;lr>");
    h.push(HeaderName::Route, "<sip:p2.example;lr>");
    h.push(HeaderName::Contact, "<sip:alice@127.0.0.1:5080>");
    Request {
        method,
        uri: uri("bob", "b.example"),
        headers: h,
        body: Bytes::new(),
    }
}

fn response(req: &Request, status: u16, to_tag: Option<&str>) -> Response {
    let mut r = response_to(req, status, "");
    if let Some(t) = to_tag {
        r.headers
            .set(HeaderName::To, format!("<sip:bob@b.example>;tag={t}"));
    }
    r
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Drives a client INVITE with no responses until it stops, recording send instants.
fn drive_client_invite(
    t0: Instant,
    txn: &mut ClientInvite,
) -> (Vec<Duration>, Vec<(Duration, ClientEvent)>) {
    let mut sends = vec![];
    let mut events = vec![];
    let mut now = t0;
    loop {
        while let Some(_r) = txn.poll_transmit() {
            sends.push(now - t0);
        }
        while let Some(e) = txn.poll_event() {
            events.push((now - t0, e));
        }
        match txn.poll_timeout() {
            Some(at) => {
                assert!(at >= now, "timer in the past");
                now = at;
                txn.handle_timeout(now);
            }
            None => break,
        }
    }
    (sends, events)
}

#[test]
fn client_invite_total_loss_sends_7_times_and_times_out_at_64_t1() {
    let t0 = Instant::now();
    let mut txn = ClientInvite::new(
        t0,
        request(Method::Invite, 1),
        false,
        TimerConfig::default(),
    );
    let (sends, events) = drive_client_invite(t0, &mut txn);
    assert_eq!(
        sends,
        vec![
            ms(0),
            ms(500),
            ms(1500),
            ms(3500),
            ms(7500),
            ms(15500),
            ms(31500)
        ]
    );
    // Intervals: 0.5, 1, 2, 4, 8, 16 s (Timer A doubling).
    let gaps: Vec<_> = sends.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps,
        vec![ms(500), ms(1000), ms(2000), ms(4000), ms(8000), ms(16000)]
    );
    assert_eq!(events, vec![(ms(32000), ClientEvent::Timeout)]);
    assert_eq!(txn.state(), ClientInviteState::Terminated);
}

#[test]
fn client_invite_reliable_sends_once_and_times_out_at_64_t1() {
    let t0 = Instant::now();
    let mut txn = ClientInvite::new(t0, request(Method::Invite, 1), true, TimerConfig::default());
    let (sends, events) = drive_client_invite(t0, &mut txn);
    assert_eq!(sends, vec![ms(0)]);
    assert_eq!(events, vec![(ms(32000), ClientEvent::Timeout)]);
}

#[test]
fn client_invite_custom_t1_scales_timers() {
    let t0 = Instant::now();
    let cfg = TimerConfig {
        t1: ms(100),
        ..TimerConfig::default()
    };
    let mut txn = ClientInvite::new(t0, request(Method::Invite, 1), false, cfg);
    let (sends, events) = drive_client_invite(t0, &mut txn);
    assert_eq!(sends.len(), 7);
    assert_eq!(events, vec![(ms(6400), ClientEvent::Timeout)]);
}

#[test]
fn client_invite_provisional_stops_retransmissions_and_timer_b() {
    let t0 = Instant::now();
    let req = request(Method::Invite, 1);
    let mut txn = ClientInvite::new(t0, req.clone(), false, TimerConfig::default());
    assert!(txn.poll_transmit().is_some());
    txn.handle_timeout(t0 + ms(500));
    assert!(txn.poll_transmit().is_some());
    txn.handle_response(t0 + ms(700), response(&req, 180, Some("b1")));
    assert_eq!(txn.state(), ClientInviteState::Proceeding);
    assert!(matches!(txn.poll_event(), Some(ClientEvent::Response(r)) if r.status == 180));
    assert_eq!(txn.poll_timeout(), None);
    txn.handle_timeout(t0 + Duration::from_secs(100));
    assert!(txn.poll_transmit().is_none());
    assert!(txn.poll_event().is_none());
}

#[test]
fn client_invite_non_2xx_builds_ack_in_transaction() {
    let t0 = Instant::now();
    let req = request(Method::Invite, 7);
    let mut txn = ClientInvite::new(t0, req.clone(), false, TimerConfig::default());
    txn.poll_transmit();
    let resp = response(&req, 486, Some("busy-tag"));
    txn.handle_response(t0 + ms(300), resp.clone());
    assert_eq!(txn.state(), ClientInviteState::Completed);
    assert!(matches!(txn.poll_event(), Some(ClientEvent::Response(r)) if r.status == 486));
    let ack = txn.poll_transmit().expect("ACK");
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, req.uri);
    let h = &ack.headers;
    assert_eq!(
        h.get_all(&HeaderName::Via).collect::<Vec<_>>(),
        vec!["SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKtest1;rport"]
    );
    assert_eq!(
        h.get(&HeaderName::To),
        Some("<sip:bob@b.example>;tag=busy-tag")
    );
    assert_eq!(
        h.get(&HeaderName::From),
        Some("<sip:alice@a.example>;tag=fromtag")
    );
    assert_eq!(h.get(&HeaderName::CallId), Some("call-1@a.example"));
    assert_eq!(h.get(&HeaderName::CSeq), Some("7 ACK"));
    assert_eq!(
        h.get_all(&HeaderName::Route).collect::<Vec<_>>(),
        vec!["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    );
    assert_eq!(h.get(&HeaderName::MaxForwards), Some("70"));
    assert!(!h.contains(&HeaderName::Contact));
    // Retransmitted 486 → ACK again, not passed up.
    txn.handle_response(t0 + ms(800), resp.clone());
    assert_eq!(txn.poll_transmit(), Some(ack.clone()));
    assert!(txn.poll_event().is_none());
    // Timer D = 32 s after the 486.
    assert_eq!(
        txn.poll_timeout(),
        Some(t0 + ms(300) + Duration::from_secs(32))
    );
    txn.handle_timeout(t0 + ms(300) + Duration::from_secs(32));
    assert!(txn.is_terminated());
}

#[test]
fn client_invite_reliable_non_2xx_acks_once_and_terminates() {
    let t0 = Instant::now();
    let req = request(Method::Invite, 1);
    let mut txn = ClientInvite::new(t0, req.clone(), true, TimerConfig::default());
    txn.poll_transmit();
    txn.handle_response(t0 + ms(10), response(&req, 603, Some("x")));
    assert_eq!(txn.poll_transmit().map(|a| a.method), Some(Method::Ack));
    assert!(txn.is_terminated());
}

#[test]
fn client_invite_accepted_passes_2xx_retransmissions_up_until_timer_m() {
    let t0 = Instant::now();
    let req = request(Method::Invite, 1);
    let mut txn = ClientInvite::new(t0, req.clone(), false, TimerConfig::default());
    txn.poll_transmit();
    let ok = response(&req, 200, Some("u1"));
    txn.handle_response(t0 + ms(100), ok.clone());
    assert_eq!(txn.state(), ClientInviteState::Accepted);
    assert_eq!(txn.poll_event(), Some(ClientEvent::Response(ok.clone())));
    // No ACK from the transaction for a 2xx (the TU sends it end to end).
    assert!(txn.poll_transmit().is_none());
    // Retransmission and a second fork's 2xx are both passed up.
    txn.handle_response(t0 + ms(600), ok.clone());
    let fork = response(&req, 200, Some("u2"));
    txn.handle_response(t0 + ms(700), fork.clone());
    assert_eq!(txn.poll_event(), Some(ClientEvent::Response(ok)));
    assert_eq!(txn.poll_event(), Some(ClientEvent::Response(fork)));
    assert!(txn.poll_transmit().is_none());
    // Timer M = 64·T1 after entering Accepted.
    assert_eq!(
        txn.poll_timeout(),
        Some(t0 + ms(100) + Duration::from_secs(32))
    );
    txn.handle_timeout(t0 + ms(100) + Duration::from_secs(32));
    assert!(txn.is_terminated());
}

#[test]
fn client_invite_transport_error_is_reported() {
    let t0 = Instant::now();
    let mut txn = ClientInvite::new(
        t0,
        request(Method::Invite, 1),
        false,
        TimerConfig::default(),
    );
    txn.handle_transport_error(t0);
    assert_eq!(txn.poll_event(), Some(ClientEvent::TransportError));
    assert!(txn.is_terminated());
    assert_eq!(txn.poll_timeout(), None);
}

fn drive_client_non_invite(
    t0: Instant,
    txn: &mut ClientNonInvite,
) -> (Vec<Duration>, Vec<(Duration, ClientEvent)>) {
    let mut sends = vec![];
    let mut events = vec![];
    let mut now = t0;
    loop {
        while txn.poll_transmit().is_some() {
            sends.push(now - t0);
        }
        while let Some(e) = txn.poll_event() {
            events.push((now - t0, e));
        }
        match txn.poll_timeout() {
            Some(at) => {
                now = at;
                txn.handle_timeout(now);
            }
            None => break,
        }
    }
    (sends, events)
}

#[test]
fn client_non_invite_total_loss_sends_11_times_and_times_out_at_64_t1() {
    let t0 = Instant::now();
    let mut txn = ClientNonInvite::new(
        t0,
        request(Method::Options, 1),
        false,
        TimerConfig::default(),
    );
    let (sends, events) = drive_client_non_invite(t0, &mut txn);
    assert_eq!(sends.len(), 11);
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
    assert_eq!(events, vec![(ms(32000), ClientEvent::Timeout)]);
    assert!(txn.is_terminated());
}

#[test]
fn client_non_invite_reliable_sends_once() {
    let t0 = Instant::now();
    let mut txn = ClientNonInvite::new(t0, request(Method::Bye, 2), true, TimerConfig::default());
    let (sends, events) = drive_client_non_invite(t0, &mut txn);
    assert_eq!(sends, vec![ms(0)]);
    assert_eq!(events, vec![(ms(32000), ClientEvent::Timeout)]);
}

#[test]
fn client_non_invite_proceeding_retransmits_at_t2() {
    let t0 = Instant::now();
    let req = request(Method::Bye, 2);
    let mut txn = ClientNonInvite::new(t0, req.clone(), false, TimerConfig::default());
    txn.poll_transmit();
    txn.handle_response(t0 + ms(100), response(&req, 100, None));
    assert_eq!(txn.state(), ClientNonInviteState::Proceeding);
    assert!(matches!(txn.poll_event(), Some(ClientEvent::Response(r)) if r.status == 100));
    // E still due at 0.5 s; from then on every T2.
    assert_eq!(txn.poll_timeout(), Some(t0 + ms(500)));
    txn.handle_timeout(t0 + ms(500));
    assert!(txn.poll_transmit().is_some());
    assert_eq!(txn.poll_timeout(), Some(t0 + ms(4500)));
    txn.handle_timeout(t0 + ms(4500));
    assert!(txn.poll_transmit().is_some());
    assert_eq!(txn.poll_timeout(), Some(t0 + ms(8500)));
}

#[test]
fn client_non_invite_final_then_timer_k() {
    let t0 = Instant::now();
    let req = request(Method::Bye, 2);
    let mut txn = ClientNonInvite::new(t0, req.clone(), false, TimerConfig::default());
    txn.poll_transmit();
    let ok = response(&req, 200, Some("t"));
    txn.handle_response(t0 + ms(200), ok.clone());
    assert_eq!(txn.poll_event(), Some(ClientEvent::Response(ok.clone())));
    txn.handle_response(t0 + ms(300), ok);
    assert!(txn.poll_event().is_none(), "retransmitted final absorbed");
    assert_eq!(
        txn.poll_timeout(),
        Some(t0 + ms(200) + Duration::from_secs(5))
    );
    txn.handle_timeout(t0 + ms(200) + Duration::from_secs(5));
    assert!(txn.is_terminated());
    // Reliable: K = 0 → terminated at once.
    let mut r = ClientNonInvite::new(t0, req.clone(), true, TimerConfig::default());
    r.handle_response(t0, response(&req, 404, Some("t")));
    assert!(r.is_terminated());
}

#[test]
fn server_invite_sends_100_trying_after_200ms_when_tu_is_silent() {
    let t0 = Instant::now();
    let req = request(Method::Invite, 1);
    let mut txn = ServerInvite::new(t0, req.clone(), false, TimerConfig::default());
    assert_eq!(txn.poll_timeout(), Some(t0 + ms(200)));
    txn.handle_timeout(t0 + ms(199));
    assert!(txn.poll_transmit().is_none());
    txn.handle_timeout(t0 + ms(200));
    let trying = txn.poll_transmit().expect("100");
    assert_eq!(trying.status, 100);
    assert_eq!(trying.headers.get_all(&HeaderName::Via).count(), 2);
    assert_eq!(
        trying.headers.get(&HeaderName::To),
        Some("<sip:bob@b.example>")
    );
    // A retransmitted INVITE gets the 100 again.
    txn.handle_request(t0 + ms(500), req.clone());
    assert_eq!(txn.poll_transmit().map(|r| r.status), Some(100));
}

#[test]
fn server_invite_no_100_when_tu_answers_first() {
    let t0 = Instant::now();
    let req = request(Method::Invite, 1);
    let mut txn = ServerInvite::new(t0, req.clone(), false, TimerConfig::default());
    assert!(txn.send_response(t0 + ms(50), response(&req, 180, Some("me"))));
    assert_eq!(txn.poll_transmit().map(|r| r.status), Some(180));
    txn.handle_timeout(t0 + ms(300));
    assert!(txn.poll_transmit().is_none());
    // Retransmitted INVITE → last provisional re-sent.
    txn.handle_request(t0 + ms(500), req);
    assert_eq!(txn.poll_transmit().map(|r| r.status), Some(180));
}

#[test]
fn server_invite_non_2xx_retransmitted_with_timer_g_until_ack() {
    let t0 = Instant::now();
    let req = request(Method::Invite, 1);
    let mut txn = ServerInvite::new(t0, req.clone(), false, TimerConfig::default());
    txn.send_response(t0, response(&req, 486, Some("me")));
    let mut sends = vec![];
    let mut now = t0;
    while now < t0 + ms(20_000) {
        while let Some(r) = txn.poll_transmit() {
            assert_eq!(r.status, 486);
            sends.push(now - t0);
        }
        now = txn.poll_timeout().unwrap();
        txn.handle_timeout(now);
    }
    // G: 0.5, 1, 2, 4, 4, 4 … (capped at T2).
    assert_eq!(
        sends,
        vec![
            ms(0),
            ms(500),
            ms(1500),
            ms(3500),
            ms(7500),
            ms(11500),
            ms(15500),
            ms(19500)
        ]
    );
    let mut ack = request(Method::Ack, 1);
    ack.headers
        .set(HeaderName::To, "<sip:bob@b.example>;tag=me");
    txn.handle_request(now, ack);
    assert_eq!(txn.state(), ServerInviteState::Confirmed);
    assert_eq!(
        txn.poll_timeout(),
        Some(now + Duration::from_secs(5)),
        "Timer I = T4"
    );
    txn.handle_timeout(now + Duration::from_secs(5));
    assert!(txn.is_terminated());
    assert!(txn.poll_event().is_none());
}

#[test]
fn server_invite_timer_h_reports_missing_ack_at_64_t1() {
    let t0 = Instant::now();
    let req = request(Method::Invite, 1);
    let mut txn = ServerInvite::new(t0, req.clone(), false, TimerConfig::default());
    txn.send_response(t0 + ms(1000), response(&req, 404, Some("me")));
    let mut now = t0;
    let mut count = 0;
    while let Some(at) = txn.poll_timeout() {
        while txn.poll_transmit().is_some() {
            count += 1;
        }
        now = at;
        txn.handle_timeout(now);
        if let Some(e) = txn.poll_event() {
            assert_eq!(e, ServerEvent::Timeout);
            break;
        }
    }
    assert_eq!(now, t0 + ms(1000) + Duration::from_secs(32));
    assert_eq!(
        count, 11,
        "404 sent once + 10 Timer G retransmissions before H"
    );
    assert!(txn.is_terminated());
}

#[test]
fn server_invite_reliable_no_retransmission_and_i_zero() {
    let t0 = Instant::now();
    let req = request(Method::Invite, 1);
    let mut txn = ServerInvite::new(t0, req.clone(), true, TimerConfig::default());
    txn.send_response(t0, response(&req, 486, Some("me")));
    assert!(txn.poll_transmit().is_some());
    assert_eq!(
        txn.poll_timeout(),
        Some(t0 + Duration::from_secs(32)),
        "only H"
    );
    txn.handle_request(t0 + ms(5), request(Method::Ack, 1));
    assert!(txn.is_terminated());
}

#[test]
fn server_invite_accepted_absorbs_invites_passes_acks_timer_l() {
    let t0 = Instant::now();
    let req = request(Method::Invite, 1);
    let mut txn = ServerInvite::new(t0, req.clone(), false, TimerConfig::default());
    let ok = response(&req, 200, Some("me"));
    assert!(txn.send_response(t0 + ms(10), ok.clone()));
    assert_eq!(txn.state(), ServerInviteState::Accepted);
    assert_eq!(txn.poll_transmit(), Some(ok.clone()));
    txn.handle_request(t0 + ms(500), req.clone());
    assert!(
        txn.poll_transmit().is_none(),
        "INVITE retransmission absorbed"
    );
    // The core's 2xx retransmission goes through.
    assert!(txn.send_response(t0 + ms(510), ok.clone()));
    assert_eq!(txn.poll_transmit(), Some(ok));
    // A final non-2xx is refused now.
    assert!(!txn.send_response(t0 + ms(520), response(&req, 500, Some("me"))));
    let ack = request(Method::Ack, 1);
    txn.handle_request(t0 + ms(600), ack.clone());
    assert_eq!(txn.poll_event(), Some(ServerEvent::Ack(Box::new(ack))));
    assert_eq!(
        txn.poll_timeout(),
        Some(t0 + ms(10) + Duration::from_secs(32))
    );
    txn.handle_timeout(t0 + ms(10) + Duration::from_secs(32));
    assert!(txn.is_terminated());
}

#[test]
fn server_non_invite_lifecycle_and_timer_j() {
    let t0 = Instant::now();
    let req = request(Method::Bye, 2);
    let mut txn = ServerNonInvite::new(t0, req.clone(), false, TimerConfig::default());
    txn.handle_request(t0 + ms(500), req.clone());
    assert!(
        txn.poll_transmit().is_none(),
        "Trying absorbs retransmissions"
    );
    assert!(txn.send_response(t0 + ms(600), response(&req, 100, None)));
    assert_eq!(txn.state(), ServerNonInviteState::Proceeding);
    txn.poll_transmit();
    txn.handle_request(t0 + ms(700), req.clone());
    assert_eq!(txn.poll_transmit().map(|r| r.status), Some(100));
    assert!(txn.send_response(t0 + ms(800), response(&req, 200, Some("me"))));
    assert_eq!(txn.state(), ServerNonInviteState::Completed);
    assert_eq!(txn.poll_transmit().map(|r| r.status), Some(200));
    txn.handle_request(t0 + ms(900), req.clone());
    assert_eq!(txn.poll_transmit().map(|r| r.status), Some(200));
    assert!(!txn.send_response(t0 + ms(950), response(&req, 500, Some("me"))));
    assert_eq!(
        txn.poll_timeout(),
        Some(t0 + ms(800) + Duration::from_secs(32))
    );
    txn.handle_timeout(t0 + ms(800) + Duration::from_secs(32));
    assert!(txn.is_terminated());
    let mut rel = ServerNonInvite::new(t0, req.clone(), true, TimerConfig::default());
    rel.send_response(t0, response(&req, 200, Some("me")));
    assert!(rel.is_terminated(), "J = 0 over reliable transports");
}
