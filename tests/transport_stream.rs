//! Transport over real TCP and UDP sockets on 127.0.0.1: framing across split writes, keepalive
//! ping/pong, the 400-then-close path, connection reuse in both directions, aliases, idle
//! close, and a UDP round trip.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;
use whatsip::sip::framing::FramingErrorKind;
use whatsip::transport::{
    CloseReason, Config, Event, Incoming, Kind, Outgoing, Target, Timing, Transport, TransportError,
};

const WAIT: Duration = Duration::from_secs(10);

fn lo() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn request(call: &str, body: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK{call};alias\r\nCall-ID: {call}\r\nCSeq: 1 OPTIONS\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn next_event(rx: &mut Receiver<Event>) -> Event {
    timeout(WAIT, rx.recv())
        .await
        .expect("event within bound")
        .expect("transport alive")
}

async fn next_message(rx: &mut Receiver<Event>) -> Incoming {
    match next_event(rx).await {
        Event::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Read from `s` until `want` appears in what was read; returns everything read.
async fn read_until(s: &mut TcpStream, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(want.len()).any(|w| w == want) {
        let n = timeout(WAIT, s.read(&mut buf))
            .await
            .expect("data within bound")
            .expect("read");
        assert!(
            n > 0,
            "peer closed before {:?} arrived; got {:?}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    got
}

async fn tcp_transport(timing: Timing) -> (Transport, Receiver<Event>, SocketAddr) {
    let (t, rx) = Transport::bind(Config {
        tcp: vec![lo()],
        udp: vec![lo()],
        timing,
        ..Config::default()
    })
    .await
    .unwrap();
    let addr = t.local_addr(Kind::Tcp).unwrap();
    (t, rx, addr)
}

#[tokio::test]
async fn tcp_split_writes_ping_pong_and_reuse() {
    let (t, mut rx, addr) = tcp_transport(Timing::default()).await;
    let mut peer = TcpStream::connect(addr).await.unwrap();
    peer.set_nodelay(true).unwrap();
    let peer_addr = peer.local_addr().unwrap();

    let mut stream = b"\r\n\r\n".to_vec();
    stream.extend(request("a1", "hello body"));
    stream.extend(request("a2", ""));
    // Write in awkward pieces: through the CRLFCRLF, the Content-Length value and the body.
    for piece in stream.chunks(7) {
        peer.write_all(piece).await.unwrap();
        peer.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The ping is answered with a single CRLF.
    let mut pong = [0u8; 2];
    timeout(WAIT, peer.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"\r\n");

    let m1 = next_message(&mut rx).await;
    let m2 = next_message(&mut rx).await;
    assert_eq!(&m1.bytes[..], &request("a1", "hello body")[..]);
    assert_eq!(&m2.bytes[..], &request("a2", "")[..]);
    assert_eq!(m1.source, peer_addr);
    assert_eq!(m1.local, addr);
    assert_eq!(m1.transport, Kind::Tcp);
    let conn = m1.conn.expect("stream messages carry their connection");
    assert_eq!(m2.conn, Some(conn));

    // A send to the peer's address (no conn given) reuses the inbound connection.
    let sent = t
        .send(Outgoing::new(
            &b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
            Target::new(Kind::Tcp, peer_addr),
        ))
        .await
        .unwrap();
    assert_eq!(sent.conn, Some(conn));
    read_until(&mut peer, b"SIP/2.0 200 OK").await;

    // An alias (RFC 5923, the Via sent-by) reaches the same connection.
    let via: SocketAddr = "127.0.0.1:5999".parse().unwrap();
    t.alias(conn, via).unwrap();
    let sent = t
        .send(Outgoing::new(
            request("a3", ""),
            Target::new(Kind::Tcp, via),
        ))
        .await
        .unwrap();
    assert_eq!(sent.conn, Some(conn));
    read_until(&mut peer, b"Call-ID: a3").await;
    assert_eq!(t.stats().connected, 0, "no new connection was opened");
    assert_eq!(t.stats().accepted, 1);
    assert_eq!(t.connection(conn).unwrap().aliases, vec![via]);
}

#[tokio::test]
async fn missing_content_length_gives_400_event_then_close() {
    let (t, mut rx, addr) = tcp_transport(Timing::default()).await;
    let mut peer = TcpStream::connect(addr).await.unwrap();
    let bad = b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKbad\r\nCall-ID: bad\r\n\r\n";
    peer.write_all(bad).await.unwrap();
    let m = match next_event(&mut rx).await {
        Event::Malformed(m) => m,
        other => panic!("expected Malformed, got {other:?}"),
    };
    assert_eq!(m.error.kind, FramingErrorKind::MissingContentLength);
    assert_eq!(m.error.sip_status(), Some(400));
    assert_eq!(&m.error.header[..], &bad[..]);
    assert_eq!(m.transport, Kind::Tcp);
    let conn = m.conn.unwrap();
    // The upper layer answers on the same connection; the transport then closes it.
    let answer = b"SIP/2.0 400 Bad Request\r\nCall-ID: bad\r\nContent-Length: 0\r\n\r\n";
    t.send(Outgoing {
        bytes: answer[..].into(),
        target: Target::new(Kind::Tcp, m.source),
        conn: Some(conn),
        local: None,
    })
    .await
    .unwrap();
    let mut got = Vec::new();
    timeout(WAIT, peer.read_to_end(&mut got))
        .await
        .expect("closed within bound")
        .unwrap();
    assert_eq!(&got[..], &answer[..]);
    match next_event(&mut rx).await {
        Event::Closed {
            conn: c, reason, ..
        } => {
            assert_eq!(c, conn);
            assert_eq!(reason, CloseReason::FramingError);
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(t.connection(conn).is_none());
    assert_eq!(t.stats().framing_errors, 1);
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let timing = Timing {
        idle_timeout: Some(Duration::from_millis(200)),
        ..Timing::default()
    };
    let (t, mut rx, addr) = tcp_transport(timing).await;
    let mut peer = TcpStream::connect(addr).await.unwrap();
    peer.write_all(&request("idle", "")).await.unwrap();
    let conn = next_message(&mut rx).await.conn.unwrap();
    let mut rest = Vec::new();
    timeout(WAIT, peer.read_to_end(&mut rest))
        .await
        .expect("idle close within bound")
        .unwrap();
    assert!(rest.is_empty());
    match next_event(&mut rx).await {
        Event::Closed {
            conn: c, reason, ..
        } => {
            assert_eq!((c, reason), (conn, CloseReason::Idle));
        }
        other => panic!("expected Closed, got {other:?}"),
    }
    // Gone from the table: a send to it now opens a new connection, which fails (peer's
    // ephemeral port is not listening) with a 503-class error.
    let err = t
        .send(Outgoing::new(
            request("x", ""),
            Target::new(Kind::Tcp, peer.local_addr().unwrap()),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }), "{err:?}");
    assert_eq!(err.sip_status(), 503);
}

#[tokio::test]
async fn outbound_tcp_connection_is_reused_for_peer_requests_and_pings() {
    let timing = Timing {
        keepalive_interval: Some(Duration::from_millis(100)),
        ..Timing::default()
    };
    let (t, mut rx, _) = tcp_transport(timing).await;
    let listener = TcpListener::bind(lo()).await.unwrap();
    let target = Target::new(Kind::Tcp, listener.local_addr().unwrap());
    let sent = t
        .send(Outgoing::new(request("out1", "x"), target.clone()))
        .await
        .unwrap();
    let (mut peer, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    read_until(&mut peer, b"\r\n\r\nx").await;
    // Our client connection pings; the peer answers with a pong.
    read_until(&mut peer, b"\r\n\r\n").await;
    peer.write_all(b"\r\n").await.unwrap();
    // A second send reuses the connection.
    let again = t
        .send(Outgoing::new(request("out2", ""), target))
        .await
        .unwrap();
    assert_eq!(again.conn, sent.conn);
    read_until(&mut peer, b"Call-ID: out2").await;
    // The peer's own request comes in on our outbound connection.
    peer.write_all(&request("in1", "")).await.unwrap();
    let m = next_message(&mut rx).await;
    assert_eq!(m.conn, sent.conn);
    assert_eq!(m.source, listener.local_addr().unwrap());
    assert_eq!(t.stats().connected, 1);
    // A refused connect is a typed 503.
    drop(listener);
    let dead = TcpListener::bind(lo()).await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let err = t
        .send(Outgoing::new(
            request("y", ""),
            Target::new(Kind::Tcp, dead_addr),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.sip_status(), 503);
}

#[tokio::test]
async fn udp_round_trip_truncation_and_size_limit() {
    let (t, mut rx, _) = tcp_transport(Timing::default()).await;
    let udp_addr = t.local_addr(Kind::Udp).unwrap();
    let peer = UdpSocket::bind(lo()).await.unwrap();
    // A STUN keepalive (RFC 5626 §4.4.2) and a CRLF keepalive are not SIP: no event.
    let mut stun = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    stun.extend_from_slice(&[9; 12]);
    peer.send_to(&stun, udp_addr).await.unwrap();
    peer.send_to(b"\r\n\r\n", udp_addr).await.unwrap();
    // Body longer than Content-Length: truncated (RFC 3261 §18.3).
    let mut dgram = request("u1", "abc");
    dgram.extend_from_slice(b"JUNK");
    peer.send_to(&dgram, udp_addr).await.unwrap();
    let m = next_message(&mut rx).await;
    assert_eq!(&m.bytes[..], &request("u1", "abc")[..]);
    assert_eq!(m.transport, Kind::Udp);
    assert_eq!(m.conn, None);
    assert_eq!(m.source, peer.local_addr().unwrap());
    assert_eq!(m.local, udp_addr);
    assert_eq!(t.stats().stun_ignored, 1);
    let reply = b"SIP/2.0 200 OK\r\nCall-ID: u1\r\nContent-Length: 0\r\n\r\n";
    let sent = t.send(Outgoing::reply_to(&m, &reply[..])).await.unwrap();
    assert_eq!(sent.local, udp_addr);
    let mut buf = [0u8; 2048];
    let (n, from) = timeout(WAIT, peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], &reply[..]);
    assert_eq!(from, udp_addr);

    // Body shorter than Content-Length: Malformed with 400.
    let mut short = request("u2", "abcdef");
    short.truncate(short.len() - 2);
    peer.send_to(&short, udp_addr).await.unwrap();
    match next_event(&mut rx).await {
        Event::Malformed(m) => {
            assert_eq!(m.error.sip_status(), Some(400));
            assert_eq!(m.conn, None);
        }
        other => panic!("expected Malformed, got {other:?}"),
    }

    // Too large for UDP: a typed error, not a silent drop.
    let big = vec![b'x'; 70_000];
    let err = t
        .send(Outgoing::new(
            big,
            Target::new(Kind::Udp, peer.local_addr().unwrap()),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::MessageTooLarge { len: 70_000, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn concurrent_sends_share_one_connection_and_cap_is_enforced() {
    let (t, _rx) = Transport::bind(Config {
        tcp: vec![lo()],
        max_connections: 1,
        ..Config::default()
    })
    .await
    .unwrap();
    let listener = TcpListener::bind(lo()).await.unwrap();
    let target = Target::new(Kind::Tcp, listener.local_addr().unwrap());
    let (a, b) = tokio::join!(
        t.send(Outgoing::new(request("k1", ""), target.clone())),
        t.send(Outgoing::new(request("k2", ""), target.clone())),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.conn, b.conn);
    assert_eq!(t.stats().connected, 1);
    let (mut peer, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    read_until(&mut peer, b"Call-ID: k2").await;

    // The table is full: an inbound connection is dropped, an outbound one refused.
    let mut extra = TcpStream::connect(t.local_addr(Kind::Tcp).unwrap())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = timeout(WAIT, extra.read_to_end(&mut buf))
        .await
        .expect("dropped within bound");
    assert!(closed.is_err() || buf.is_empty());
    assert_eq!(t.stats().connections_rejected, 1);
    let other = TcpListener::bind(lo()).await.unwrap();
    let err = t
        .send(Outgoing::new(
            request("k3", ""),
            Target::new(Kind::Tcp, other.local_addr().unwrap()),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::TooManyConnections(1)),
        "{err:?}"
    );
    assert_eq!(err.sip_status(), 503);
}

#[tokio::test]
async fn send_completes_while_event_queue_is_full() {
    let (t, mut rx) = Transport::bind(Config {
        tcp: vec![lo()],
        event_capacity: 1,
        ..Config::default()
    })
    .await
    .unwrap();
    let mut peer = TcpStream::connect(t.local_addr(Kind::Tcp).unwrap())
        .await
        .unwrap();
    let mut burst = Vec::new();
    for i in 0..5 {
        burst.extend(request(&format!("q{i}"), ""));
    }
    peer.write_all(&burst).await.unwrap();
    let first = next_message(&mut rx).await;
    // Do not drain: the connection task is now blocked on a full queue; our send must still
    // go out on that connection.
    let sent = timeout(
        WAIT,
        t.send(Outgoing::reply_to(
            &first,
            &b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
        )),
    )
    .await
    .expect("send not blocked by the full event queue")
    .unwrap();
    assert_eq!(sent.conn, first.conn);
    read_until(&mut peer, b"200 OK").await;
    for i in 1..5 {
        let m = next_message(&mut rx).await;
        let want = format!("Call-ID: q{i}\r\n");
        assert!(m.bytes.windows(want.len()).any(|w| w == want.as_bytes()));
    }
}
