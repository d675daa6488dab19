//! The sandbox speaks DTLS-SRTP + ICE like Meta. An in-process sandbox edge with its business
//! number switched to `srtp_key_exchange_protocol: "DTLS"`, against a test-side gateway-mode
//! `WebrtcLeg` on a real loopback UDP socket, with SIP from the crate's own transaction layer
//! (`sip::endpoint::Endpoint` + `transport::Transport`) over TLS:
//!
//! - business-initiated (test INVITEs the edge, answers its 407): the sandbox answers with an
//!   ICE-lite `a=setup:passive` SDP mirroring the PTs; DTLS-SRTP connects; the sandbox
//!   reports the test leg as ICE-controlling with regular nomination and the ClientHello from
//!   the gateway; media decrypts both ways (sandbox `rx_packets`, non-silent audio, a DTMF
//!   digit; the test leg hears the sandbox's 440 Hz tone).
//! - user-initiated (`place_call` to the DTLS number): the INVITE carries Meta's offer
//!   (ICE-lite, actpass, two host candidates), the test answers with `answer_offer`, same
//!   checks.
//! - a test leg that never answers ICE/DTLS: the sandbox ends that call with BYE and
//!   `end_reason: "dtls_timeout"`, while a healthy call on the same sandbox keeps going.
//! - an SDES offer to a DTLS number gets 488.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use whatsip::media::webrtc::{LegReport, Output, WebrtcConfig, WebrtcLeg};
use whatsip::sandbox::edge::calls::CallRecord;
use whatsip::sandbox::edge::{EdgeConfig, RouteStyle};
use whatsip::sandbox::media_user::{AudioCodec, LevelMeter, Mode, NON_SILENT_RMS, OpusFrames};
use whatsip::sandbox::runtime::{PlaceCall, RuntimeConfig};
use whatsip::sandbox::{Running, SandboxOptions, SandboxState};
use whatsip::sip::auth::{Algorithm, DigestClient, RandomCnonce};
use whatsip::sip::dialog::Dialog;
use whatsip::sip::endpoint::{
    Destination, Endpoint, EndpointConfig, Event, Source, Target, TransportKind,
};
use whatsip::sip::header::HeaderName;
use whatsip::sip::message::{Framing, Message, Request, Response};
use whatsip::sip::method::Method;
use whatsip::sip::uri::Uri;
use whatsip::transport::{self, ConnId, Outgoing, Transport};

const BUSINESS: &str = "+15550001111";
const USER: &str = "+15551234567";

struct Sandbox {
    running: Running,
    state: SandboxState,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A sandbox whose fixture number uses DTLS, with a short DTLS connect timeout.
async fn sandbox(gateway_port: u16, dtls_timeout: Duration) -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    let state = SandboxState::new(SandboxOptions {
        seed: Some(7),
        gateway_port,
        ..SandboxOptions::default()
    });
    for n in state.lock().numbers.values_mut() {
        n.calling.srtp_key_exchange_protocol = Some("DTLS".into());
    }
    assert_eq!(
        state
            .sip_target(BUSINESS)
            .unwrap()
            .srtp_key_exchange_protocol,
        "DTLS"
    );
    let config = RuntimeConfig {
        edge: "127.0.0.1:0".parse().unwrap(),
        ca_dir: dir.path().join("ca"),
        seed: Some(7),
        edge_config: EdgeConfig {
            algorithm: Algorithm::Sha256,
            route_style: RouteStyle::Meta,
        },
        unanswered_timeout: Duration::from_secs(10),
        dtls_connect_timeout: dtls_timeout,
        ..RuntimeConfig::default()
    };
    let running = whatsip::sandbox::start("127.0.0.1:0".parse().unwrap(), config, state.clone())
        .await
        .unwrap();
    Sandbox {
        running,
        state,
        dir,
    }
}

impl Sandbox {
    fn password(&self) -> String {
        self.state.sip_target(BUSINESS).unwrap().password.unwrap()
    }
    fn call(&self, call_id: &str) -> Option<CallRecord> {
        self.running
            .edge
            .calls
            .list()
            .into_iter()
            .find(|c| c.call_id == call_id)
    }
    fn set_tone(&self) {
        let key = USER.trim_start_matches('+');
        let mut b = self.running.edge.calls.behaviour(key);
        b.media = Mode::Tone;
        self.running.edge.calls.set_user(key, b);
    }
}

// ---------------------------------------------------------------------------- SIP side

/// The crate's endpoint on its own TLS transport; every request goes to the edge (SNI
/// `wa.meta.vc`), responses go back on their connection.
struct Ua {
    ep: Endpoint,
    tr: Transport,
    rx: mpsc::Receiver<transport::Event>,
    edge: SocketAddr,
}

impl Ua {
    async fn new(sb: &Sandbox, listen: Option<SocketAddr>) -> Ua {
        let ca = std::fs::read(&sb.running.edge.ca_path).unwrap();
        let client = transport::tls::client_config(&transport::tls::Roots::CaPem(ca)).unwrap();
        let mut cfg = transport::Config {
            tls_client: Some(client),
            ..transport::Config::default()
        };
        if let Some(addr) = listen {
            let (chain, key) = whatsip::sandbox::ca::issue_gateway_cert_in(
                &sb.dir.path().join("ca"),
                "gateway.whatsip.test",
            )
            .unwrap();
            use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
            let chain = CertificateDer::pem_slice_iter(chain.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            cfg.tls = vec![addr];
            cfg.tls_server = Some(transport::tls::server_config(chain, key).unwrap());
        }
        let (tr, rx) = Transport::bind(cfg).await.unwrap();
        let port = listen.map_or(5061, |a| a.port());
        // A prefix per UA: tags, branches and Call-IDs must differ between UAs.
        static UAS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = UAS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ep = Endpoint::new(EndpointConfig::new(
            "127.0.0.1".to_string(),
            Some(port),
            format!("gw{n}"),
        ));
        Ua {
            ep,
            tr,
            rx,
            edge: sb.running.edge.edge_addr,
        }
    }

    async fn flush(&mut self) {
        while let Some(t) = self.ep.poll_transmit() {
            let addr = match &t.target.destination {
                Destination::Addr(a) if t.target.connection.is_some() => *a,
                _ => self.edge,
            };
            let mut out = Outgoing::new(
                t.message.to_bytes(),
                transport::Target::tls(addr, "wa.meta.vc"),
            );
            out.conn = t.target.connection.map(ConnId);
            if let Err(e) = self.tr.send(out).await
                && let Some(id) = t.txn
            {
                eprintln!("send failed: {e}");
                self.ep.handle_transport_error(Instant::now(), id);
            }
        }
    }

    /// The next endpoint event, or `None` at `deadline`.
    async fn next(&mut self, deadline: Instant) -> Option<Event> {
        loop {
            self.flush().await;
            if let Some(e) = self.ep.poll_event() {
                return Some(e);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            if self.ep.poll_timeout().is_some_and(|t| t <= now) {
                self.ep.handle_timeout(now);
                continue;
            }
            let wake = self.ep.poll_timeout().map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                ev = self.rx.recv() => match ev {
                    Some(transport::Event::Message(m)) => {
                        let source = Source {
                            transport: TransportKind::Tls,
                            remote: m.source,
                            connection: m.conn.map(|c| c.0),
                        };
                        match Message::parse(&m.bytes, Framing::Stream) {
                            Ok(msg) => self.ep.handle_incoming(Instant::now(), msg, source),
                            Err(e) => panic!("edge sent an unparsable message: {e}"),
                        }
                    }
                    Some(_) => {}
                    None => return None,
                },
                () = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    /// Answers in-dialog requests (the edge's BYE) 200 until `deadline`; returns the
    /// methods received.
    async fn serve(&mut self, deadline: Instant) -> Vec<Method> {
        let mut got = Vec::new();
        while let Some(ev) = self.next(deadline).await {
            if let Event::Request { id, request, .. } = ev {
                got.push(request.method.clone());
                let _ = self.ep.respond(Instant::now(), id, 200);
            }
        }
        self.flush().await;
        got
    }
}

fn edge_target() -> Target {
    Target {
        transport: TransportKind::Tls,
        destination: Destination::Name {
            host: "wa.meta.vc".into(),
            port: 5061,
        },
        connection: None,
    }
}

/// Business-initiated call setup: INVITE with `offer`, answer the 407, ACK the 200.
/// Returns the Call-ID and the final response.
async fn business_invite(ua: &mut Ua, password: &str, offer: &str) -> (String, Response) {
    let ruri = Uri::parse(&format!("sip:{USER}@wa.meta.vc;transport=tls")).unwrap();
    let tag = ua.ep.new_tag();
    let call_id = format!("dtls-{}@gw", ua.ep.new_tag());
    let mut inv = Request::new(Method::Invite, ruri.clone());
    inv.headers.push(
        HeaderName::From,
        format!("<sip:{BUSINESS}@gateway.whatsip.test>;tag={tag}"),
    );
    inv.headers
        .push(HeaderName::To, format!("<sip:{USER}@wa.meta.vc>"));
    inv.headers.push(HeaderName::CallId, call_id.clone());
    inv.headers.push(HeaderName::CSeq, "1 INVITE");
    inv.headers.push(
        HeaderName::Contact,
        format!("<sip:{BUSINESS}@127.0.0.1:5061;transport=tls>"),
    );
    inv.headers.push(HeaderName::ContentType, "application/sdp");
    inv.body = offer.as_bytes().to_vec().into();
    let mut txn = ua
        .ep
        .send_request(Instant::now(), inv.clone(), edge_target())
        .unwrap();
    let mut digest = DigestClient::new(BUSINESS.trim_start_matches('+'), password);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut rounds = 0;
    loop {
        let ev = ua.next(deadline).await.expect("final answer to the INVITE");
        let Event::Response { id, response } = ev else {
            continue;
        };
        if id != txn {
            continue;
        }
        match response.status {
            100..=199 => {}
            407 if rounds == 0 => {
                rounds += 1;
                let value = digest
                    .respond(
                        response.headers.proxy_authenticate(),
                        "INVITE",
                        &ruri.to_string(),
                        None,
                        &mut RandomCnonce,
                    )
                    .unwrap();
                inv.headers.set(HeaderName::ProxyAuthorization, value);
                inv.headers.set(HeaderName::CSeq, "2 INVITE");
                txn = ua
                    .ep
                    .send_request(Instant::now(), inv.clone(), edge_target())
                    .unwrap();
            }
            200..=299 => {
                let with_via = ua.ep.client_request(txn).cloned().unwrap();
                let dialog = Dialog::uac(&with_via, &response).unwrap();
                let ack = dialog.ack(2);
                let conn = None;
                let target = Target {
                    connection: conn,
                    ..edge_target()
                };
                ua.ep.send_ack(Instant::now(), ack, target).unwrap();
                ua.flush().await;
                return (call_id, *response);
            }
            _ => {
                ua.flush().await;
                return (call_id, *response);
            }
        }
    }
}

// ---------------------------------------------------------------------------- media side

#[derive(Debug, Default, Clone)]
struct GwStats {
    connected: bool,
    dtls_client: bool,
    ice_controlling: bool,
    rx_packets: u64,
    rx_non_silent: u64,
    tx_packets: u64,
    failed: Option<String>,
    report: Option<LegReport>,
}

/// Drives a gateway-mode leg on `sock` like the relay does: sends the first SRTP packet at
/// once when connected (Opus 440 Hz tone, 20 ms), then one DTMF digit `7` at packet 60.
fn drive(mut leg: WebrtcLeg, sock: UdpSocket) -> Arc<Mutex<GwStats>> {
    let stats = Arc::new(Mutex::new(GwStats::default()));
    let out = stats.clone();
    tokio::spawn(async move {
        let local = sock.local_addr().unwrap();
        let tone = OpusFrames::tone();
        let mut meter = LevelMeter::new(AudioCodec::Opus);
        let mut buf = vec![0u8; 2048];
        let mut next_tx: Option<Instant> = None;
        let (mut seq, mut ts, mut n) = (100u16, 5000u32, 0usize);
        let mut last_report = Instant::now();
        loop {
            let now = Instant::now();
            if let Some(at) = next_tx
                && at <= now
            {
                let r = leg.report();
                let opus = r.opus_pt.unwrap();
                let dtmf = r.telephone_event_pt.unwrap();
                if (60..66).contains(&n) {
                    // RFC 4733: digit 7, volume 10, growing duration, 3 end packets.
                    let k = (n - 60) as u16;
                    let end = k >= 3;
                    let dur = 160 * (k + 1);
                    let p = [
                        7u8,
                        if end { 0x80 | 10 } else { 10 },
                        (dur >> 8) as u8,
                        dur as u8,
                    ];
                    let _ = leg.write_rtp(now, dtmf, seq, 5000 + 960 * 60, k == 0, &p);
                } else {
                    let _ = leg.write_rtp(now, opus, seq, ts, n == 0, tone.frame(n));
                }
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(960);
                n += 1;
                out.lock().unwrap().tx_packets += 1;
                next_tx = Some(at + Duration::from_millis(20));
            }
            let mut wake;
            loop {
                match leg.poll_output(now) {
                    Output::Transmit(t) => {
                        let _ = sock.send_to(&t.contents, t.destination).await;
                    }
                    Output::Timeout(at) => {
                        wake = at;
                        break;
                    }
                    Output::Connected(c) => {
                        let mut s = out.lock().unwrap();
                        s.connected = true;
                        s.dtls_client = c.dtls_client;
                        s.ice_controlling = c.ice_controlling;
                        next_tx = Some(now);
                    }
                    Output::Rtp(p) => {
                        let mut s = out.lock().unwrap();
                        s.rx_packets += 1;
                        if meter
                            .measure(&p.payload)
                            .is_some_and(|l| l >= NON_SILENT_RMS)
                        {
                            s.rx_non_silent += 1;
                        }
                    }
                    Output::Failed(why) => {
                        let mut s = out.lock().unwrap();
                        s.failed = Some(why.to_string());
                        s.report = Some(leg.report());
                        return;
                    }
                }
            }
            if now >= last_report {
                out.lock().unwrap().report = Some(leg.report());
                last_report = now + Duration::from_millis(100);
            }
            if let Some(t) = next_tx {
                wake = wake.min(t);
            }
            tokio::select! {
                r = sock.recv_from(&mut buf) => {
                    if let Ok((len, from)) = r {
                        leg.handle_receive(Instant::now(), from, local, &buf[..len]);
                    }
                }
                () = tokio::time::sleep_until(wake.max(now).into()) => {
                    leg.handle_timeout(Instant::now());
                }
            }
        }
    });
    stats
}

async fn wait_for(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> bool,
    dump: impl Fn() -> String,
) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "{what} within {limit:?}: {}", dump());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The checks both directions share, once media flowed.
async fn assert_media_both_ways(sb: &Sandbox, call_id: &str, gw: &Arc<Mutex<GwStats>>) {
    let dump = || {
        format!(
            "sandbox={:?}\ngateway={:?}",
            sb.call(call_id).map(|c| c.media),
            gw.lock().unwrap()
        )
    };
    wait_for(
        "DTLS-SRTP up on the test leg",
        Duration::from_secs(10),
        || gw.lock().unwrap().connected,
        dump,
    )
    .await;
    wait_for(
        "audio both ways and the digit",
        Duration::from_secs(10),
        || {
            let m = sb.call(call_id).unwrap().media;
            let g = gw.lock().unwrap();
            m.rx_packets >= 60
                && m.non_silent_rx_packets.unwrap_or(0) >= 20
                && m.dtmf == "7"
                && g.rx_non_silent >= 20
        },
        dump,
    )
    .await;
    let rec = sb.call(call_id).unwrap();
    let m = &rec.media;
    assert_eq!(m.key_exchange.as_deref(), Some("dtls"), "{m:?}");
    assert_eq!(
        m.dtls.ice_role_seen.as_deref(),
        Some("controlling"),
        "{m:?}"
    );
    assert_eq!(m.dtls.regular_nomination_seen, Some(true), "{m:?}");
    assert_eq!(
        m.dtls.client_hello_from.as_deref(),
        Some("gateway"),
        "{m:?}"
    );
    assert!(m.dtls.srtp_profile.is_some(), "{m:?}");
    assert_eq!(m.dtls.dtls_state.as_deref(), Some("connected"), "{m:?}");
    assert_eq!(m.decrypt_failures, 0, "{m:?}");
    assert!(m.tx_packets > 0, "{m:?}");
    assert!(rec.violations.is_empty(), "{:?}", rec.violations);
    let g = gw.lock().unwrap().clone();
    assert!(g.dtls_client && g.ice_controlling, "{g:?}");
    let r = g.report.unwrap();
    assert_eq!(r.rtp_not_decrypted, 0, "{r:?}");
    // The control API serializes the DTLS facts inside `media`.
    let json = serde_json::to_value(&rec).unwrap();
    let media = &json["media"];
    for k in [
        "key_exchange",
        "ice_role_seen",
        "regular_nomination_seen",
        "client_hello_from",
        "srtp_profile",
        "rx_packets",
    ] {
        assert!(!media[k].is_null(), "{k} missing in {media}");
    }
}

async fn gateway_socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

// ---------------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_initiated_dtls_call_connects_and_carries_media_both_ways() {
    let sb = sandbox(free_port(), Duration::from_secs(10)).await;
    sb.set_tone();
    let mut ua = Ua::new(&sb, None).await;
    let sock = gateway_socket().await;
    let now = Instant::now();
    let (mut leg, offer) =
        WebrtcLeg::create_offer(now, &WebrtcConfig::new(sock.local_addr().unwrap())).unwrap();
    let (call_id, resp) = business_invite(&mut ua, &sb.password(), &offer).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    let answer = String::from_utf8_lossy(&resp.body).into_owned();
    // Meta-like answer: ICE-lite, passive (never the first DTLS packet), PTs mirrored, two
    // host candidates.
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(answer.contains("a=setup:passive"), "{answer}");
    assert!(answer.contains("UDP/TLS/RTP/SAVPF"), "{answer}");
    assert!(answer.contains("a=rtpmap:111 opus/48000/2"), "{answer}");
    assert_eq!(answer.matches("typ host").count(), 2, "{answer}");
    leg.accept_answer(Instant::now(), &answer).unwrap();
    let gw = drive(leg, sock);
    let serve = tokio::spawn(async move {
        ua.serve(Instant::now() + Duration::from_secs(30)).await;
    });
    assert_media_both_ways(&sb, &call_id, &gw).await;
    serve.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_initiated_dtls_call_offers_meta_sdp_and_carries_media_both_ways() {
    let gw_port = free_port();
    let sb = sandbox(gw_port, Duration::from_secs(10)).await;
    let mut ua = Ua::new(&sb, Some(SocketAddr::from(([127, 0, 0, 1], gw_port)))).await;
    let id = sb
        .running
        .edge
        .place_call(PlaceCall {
            from: USER.into(),
            to: BUSINESS.into(),
            media: Some(Mode::Tone),
            ..PlaceCall::default()
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (gw, call_id) = loop {
        let ev = ua.next(deadline).await.expect("the sandbox's INVITE");
        let Event::Request { id, request, .. } = ev else {
            continue;
        };
        assert_eq!(request.method, Method::Invite);
        let offer = String::from_utf8_lossy(&request.body).into_owned();
        assert!(offer.contains("a=ice-lite"), "{offer}");
        assert!(offer.contains("a=setup:actpass"), "{offer}");
        assert!(offer.contains("UDP/TLS/RTP/SAVPF"), "{offer}");
        assert_eq!(offer.matches("typ host").count(), 2, "{offer}");
        let sock = gateway_socket().await;
        let (leg, answer) = WebrtcLeg::answer_offer(
            Instant::now(),
            &WebrtcConfig::new(sock.local_addr().unwrap()),
            &offer,
        )
        .unwrap();
        assert!(answer.contains("a=setup:active"), "{answer}");
        let mut ok = ua.ep.make_response(id, 200, "OK").unwrap();
        ok.headers.push(
            HeaderName::Contact,
            format!("<sip:{BUSINESS}@127.0.0.1:{gw_port};transport=tls>"),
        );
        ok.headers.push(HeaderName::ContentType, "application/sdp");
        ok.body = answer.into_bytes().into();
        ua.ep.send_response(Instant::now(), id, ok).unwrap();
        let cid = request.headers.call_id().unwrap().to_string();
        break (drive(leg, sock), cid);
    };
    let serve = tokio::spawn(async move {
        ua.serve(Instant::now() + Duration::from_secs(30)).await;
    });
    assert_media_both_ways(&sb, &call_id, &gw).await;
    assert_eq!(sb.call(&call_id).unwrap().id, id);
    serve.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_timeout_ends_only_that_call_with_bye_and_a_reason() {
    let sb = sandbox(free_port(), Duration::from_secs(2)).await;
    sb.set_tone();
    // A healthy call first, kept running.
    let mut ua_ok = Ua::new(&sb, None).await;
    let sock_ok = gateway_socket().await;
    let (mut leg_ok, offer_ok) = WebrtcLeg::create_offer(
        Instant::now(),
        &WebrtcConfig::new(sock_ok.local_addr().unwrap()),
    )
    .unwrap();
    let (cid_ok, resp) = business_invite(&mut ua_ok, &sb.password(), &offer_ok).await;
    assert_eq!(resp.status, 200);
    leg_ok
        .accept_answer(Instant::now(), &String::from_utf8_lossy(&resp.body))
        .unwrap();
    let gw_ok = drive(leg_ok, sock_ok);
    let serve_ok =
        tokio::spawn(async move { ua_ok.serve(Instant::now() + Duration::from_secs(30)).await });

    // The dead call: a valid offer whose leg is never driven (no ICE check, no ClientHello).
    let mut ua = Ua::new(&sb, None).await;
    let dead_sock = gateway_socket().await;
    let (_dead_leg, offer) = WebrtcLeg::create_offer(
        Instant::now(),
        &WebrtcConfig::new(dead_sock.local_addr().unwrap()),
    )
    .unwrap();
    let (cid, resp) = business_invite(&mut ua, &sb.password(), &offer).await;
    assert_eq!(resp.status, 200);
    let answered = Instant::now();
    let got = ua.serve(Instant::now() + Duration::from_secs(8)).await;
    assert!(got.contains(&Method::Bye), "the sandbox hangs up: {got:?}");
    let rec = sb.call(&cid).unwrap();
    assert_eq!(rec.end_reason.as_deref(), Some("dtls_timeout"), "{rec:?}");
    assert_eq!(rec.media.dtls.dtls_state.as_deref(), Some("failed"));
    assert!(
        rec.media
            .dtls
            .dtls_failure
            .as_deref()
            .is_some_and(|f| f.contains("no DTLS connection")),
        "{:?}",
        rec.media
    );
    assert_eq!(rec.media.tx_packets, 0, "never the first media packet");
    assert!(answered.elapsed() >= Duration::from_millis(1500));
    assert!(
        rec.sip
            .iter()
            .any(|e| e.dir == "sent" && e.first_line.starts_with("BYE ")),
        "BYE in the transcript"
    );
    // Nothing sent to the dead leg's socket at all: Meta never speaks first.
    let mut b = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(10), dead_sock.recv_from(&mut b))
            .await
            .is_err(),
        "the sandbox sent a datagram first"
    );

    // The healthy call is untouched.
    assert_media_both_ways(&sb, &cid_ok, &gw_ok).await;
    let ok = sb.call(&cid_ok).unwrap();
    assert_eq!(ok.end_reason, None, "{ok:?}");
    serve_ok.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdes_offer_to_a_dtls_number_gets_488() {
    let sb = sandbox(free_port(), Duration::from_secs(10)).await;
    let mut ua = Ua::new(&sb, None).await;
    let offer = whatsip::sandbox::media_user::sdp::offer("127.0.0.1:40000".parse().unwrap(), false)
        .sdp
        .to_sdp();
    let (_, resp) = business_invite(&mut ua, &sb.password(), &offer).await;
    assert_eq!(resp.status, 488, "{resp:?}");
    let warning = resp.headers.get(&HeaderName::Warning).unwrap_or_default();
    assert!(warning.contains("DTLS"), "{warning}");
}
