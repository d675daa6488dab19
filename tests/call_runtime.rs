//! The B2BUA signalling task over real sockets: a user-initiated call from a "Meta" UDP
//! socket through `call::runtime::Runtime` to a "PBX" UDP socket and back, on loopback.
//! (Meta speaks TLS in production; the runtime is transport-agnostic, so UDP keeps this test
//! free of certificates. Every wait is bounded.)
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use whatsip::call::router::{Output, Router};
use whatsip::call::runtime::{Runtime, Side};
use whatsip::call::{CallDeps, CallState, MediaError, Permission, SdpPlane};
use whatsip::sip::endpoint::{Endpoint, EndpointConfig};
use whatsip::sip::header::HeaderName;
use whatsip::sip::message::{Framing, Message, Request, Response};
use whatsip::sip::method::Method;
use whatsip::transport::{Config as TConfig, Kind, Transport};

struct Sdp;
impl SdpPlane for Sdp {
    fn pbx_offer(&mut self, _: &[u8]) -> Result<Bytes, MediaError> {
        Ok(Bytes::from_static(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"))
    }
    fn wa_answer(&mut self, _: &[u8], _: &[u8]) -> Result<Bytes, MediaError> {
        Ok(Bytes::from_static(b"v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\n"))
    }
    fn wa_offer(&mut self, _: &[u8]) -> Result<Bytes, MediaError> {
        Ok(Bytes::from_static(b"v=0\r\no=- 3 1 IN IP4 127.0.0.1\r\n"))
    }
    fn pbx_answer(&mut self, _: &[u8], _: &[u8]) -> Result<Bytes, MediaError> {
        Ok(Bytes::from_static(b"v=0\r\no=- 4 1 IN IP4 127.0.0.1\r\n"))
    }
}

async fn recv(sock: &UdpSocket) -> (Message, SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("message within 5 s")
        .unwrap();
    (Message::parse(&buf[..n], Framing::Datagram).unwrap(), from)
}

const RR: &str = "Record-Route: <sip:wa.meta.vc;transport=tls;lr>\r\nRecord-Route: <sip:onevc-sip-proxy.fbinfra.net:8191;transport=tls;lr>\r\n";

#[tokio::test]
async fn user_initiated_call_over_udp_both_sides() {
    let meta = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let pbx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-profiles");
    let mut config = whatsip::config::load_dir(&dir).expect("shipped profiles");
    config.trunks[0].peer.address.port = pbx.local_addr().unwrap().port();
    // Plumbing only: no qualify OPTIONS to the PBX socket, no digest challenge of "Meta"
    // (both covered by tests/gateway_signalling.rs).
    config.trunks[0].options_ping_s = None;
    config.whatsapp[0].inbound_auth.challenge = false;

    let bind = |a: &str| TConfig {
        udp: vec![a.parse().unwrap()],
        ..TConfig::default()
    };
    let (wa_t, wa_rx) = Transport::bind(bind("127.0.0.1:0")).await.unwrap();
    let (pbx_t, pbx_rx) = Transport::bind(bind("127.0.0.1:0")).await.unwrap();
    let wa_addr = wa_t.local_addr(Kind::Udp).unwrap();
    let pbx_local = pbx_t.local_addr(Kind::Udp).unwrap();
    let router = Router::new(
        Arc::new(config),
        Endpoint::new(EndpointConfig::new("127.0.0.1", Some(wa_addr.port()), "w")),
        Endpoint::new(EndpointConfig::new(
            "127.0.0.1",
            Some(pbx_local.port()),
            "p",
        )),
        Box::new(|_| CallDeps {
            sdp: Box::new(Sdp),
            wa_auth: None,
            pbx_auth: None,
        }),
        Box::new(|_, _| Permission::Unknown.into()),
        "rt",
    );
    let (out_tx, mut out_rx) = mpsc::channel(64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let rt = Runtime::new(
        router,
        Side {
            transport: wa_t,
            events: wa_rx,
            tls_name: Some("wa.meta.vc".into()),
        },
        Side {
            transport: pbx_t,
            events: pbx_rx,
            tls_name: None,
        },
        out_tx,
    );
    let task = tokio::spawn(rt.run(stop_rx));

    let meta_addr = meta.local_addr().unwrap();
    let body = "v=0\r\n";
    let invite = format!(
        "INVITE sip:+15550001111@gateway.whatsip.test:5061;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/UDP {meta_addr};branch=z9hG4bKrt1;rport\r\n\
Max-Forwards: 69\r\n{RR}\
From: \"15551234567\" <sip:US.13491208655302741918@wa.meta.vc>;tag=mt\r\n\
To: <sip:+15550001111@gateway.whatsip.test>\r\n\
Call-ID: outgoing:wacid.RT\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:US.13491208655302741918@{meta_addr}>\r\n\
x-wa-meta-wacid: wacid.RT\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    meta.send_to(invite.as_bytes(), wa_addr).await.unwrap();

    // The PBX gets the INVITE with the WhatsApp headers.
    let (m, from) = recv(&pbx).await;
    let Message::Request(inv) = m else {
        panic!("expected INVITE")
    };
    assert_eq!(inv.method, Method::Invite);
    assert_eq!(from, pbx_local);
    assert_eq!(
        inv.headers.get(&HeaderName::parse("X-WA-Call-Id")),
        Some("wacid.RT")
    );
    assert_eq!(
        inv.headers.get(&HeaderName::parse("X-WA-User-Id")),
        None,
        "no x-wa-meta-user-id was sent"
    );
    assert_eq!(
        inv.headers.from().unwrap().uri.to_string(),
        "sip:US.13491208655302741918@127.0.0.1"
    );

    // 180, then 200 from the PBX.
    let respond = |req: &Request, status: u16| -> Vec<u8> {
        let mut r = Response {
            status,
            reason: if status == 200 { "OK" } else { "Ringing" }.into(),
            headers: Default::default(),
            body: Bytes::new(),
        };
        for h in &req.headers.0 {
            if matches!(
                h.name,
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq
            ) {
                r.headers.0.push(h.clone());
            }
        }
        let to = req.headers.get(&HeaderName::To).unwrap();
        r.headers.push(HeaderName::To, format!("{to};tag=pbxtag"));
        r.headers.push(
            HeaderName::Contact,
            format!("<sip:100@{}>", pbx.local_addr().unwrap()),
        );
        if status == 200 {
            r.headers.push(HeaderName::ContentType, "application/sdp");
            r.body = Bytes::from_static(b"v=0\r\n");
        }
        r.to_bytes()
    };
    pbx.send_to(&respond(&inv, 180), from).await.unwrap();
    pbx.send_to(&respond(&inv, 200), from).await.unwrap();

    // Meta sees 100, 180, 200; the 200 echoes the Record-Route lines.
    let mut statuses = Vec::new();
    let ok = loop {
        let (m, _) = recv(&meta).await;
        let Message::Response(r) = m else { continue };
        statuses.push(r.status);
        if r.status == 200 {
            break r;
        }
    };
    assert!(statuses.contains(&180), "{statuses:?}");
    let wire = String::from_utf8(ok.to_bytes()).unwrap();
    assert!(wire.contains(RR), "{wire}");
    assert!(wire.contains("Contact: <sip:+15550001111@gateway.whatsip.test:5061;transport=tls>"));

    // The PBX gets its ACK.
    let ack = loop {
        let (m, _) = recv(&pbx).await;
        if let Message::Request(r) = m
            && r.method == Method::Ack
        {
            break r;
        }
    };
    assert_eq!(
        ack.headers.call_id().unwrap(),
        inv.headers.call_id().unwrap()
    );

    // The rest of the gateway hears about it.
    let accepted = timeout(Duration::from_secs(5), async {
        while let Some(o) = out_rx.recv().await {
            if matches!(o, Output::State(_, CallState::Accepted)) {
                return true;
            }
        }
        false
    })
    .await
    .expect("state within 5 s");
    assert!(accepted);

    stop_tx.send(true).unwrap();
    timeout(Duration::from_secs(5), task)
        .await
        .expect("runtime stops")
        .unwrap();
}
