//! Transport over TLS against OpenSSL as the independent peer: our listener verified by
//! `openssl s_client -verify_hostname`, connection reuse on it, our client toward
//! `openssl s_server -alpn sip` (no ALPN offered, SNI sent, certificate verified), and
//! verification failures as typed errors. Certificates come from a test CA made with rcgen.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;
use whatsip::transport::{
    Config, Event, Incoming, Kind, Outgoing, Roots, Target, Transport, TransportError, tls,
};

const WAIT: Duration = Duration::from_secs(10);

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA and leaf certificates for `names` (each `<name>.pem` / `<name>.key`).
    fn new(names: &[&str]) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "whatsip test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        for name in names {
            let mut p = CertificateParams::new(vec![(*name).to_owned()]).unwrap();
            p.distinguished_name.push(DnType::CommonName, *name);
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

fn lo() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn request(call: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:gw.test SIP/2.0\r\nVia: SIP/2.0/TLS wa.test;branch=z9hG4bK{call};alias;rport\r\nCall-ID: {call}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

async fn next_message(rx: &mut Receiver<Event>) -> Incoming {
    match timeout(WAIT, rx.recv())
        .await
        .expect("event within bound")
        .unwrap()
    {
        Event::Message(m) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Read a child's pipe until `want` appears; returns all text read.
async fn read_until(pipe: &mut (impl AsyncRead + Unpin), want: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(want) {
        let n = timeout(WAIT, pipe.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{want:?} within bound; got {}",
                    String::from_utf8_lossy(&got)
                )
            })
            .unwrap();
        assert!(
            n > 0,
            "pipe closed before {want:?}; got {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn s_client(port: u16, verify_name: &str, ca: &Path) -> Child {
    Command::new("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-servername",
            "gw.test",
            "-verify_hostname",
            verify_name,
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl installed")
}

async fn tls_listener(pki: &Pki) -> (Transport, Receiver<Event>, SocketAddr) {
    let server =
        tls::server_config_from_pem_files(&pki.path("gw.test.pem"), &pki.path("gw.test.key"))
            .unwrap();
    let (t, rx) = Transport::bind(Config {
        tls: vec![lo()],
        tls_server: Some(server),
        ..Config::default()
    })
    .await
    .unwrap();
    let addr = t.local_addr(Kind::Tls).unwrap();
    (t, rx, addr)
}

#[tokio::test]
async fn openssl_client_verifies_our_certificate_and_connection_is_reused() {
    let pki = Pki::new(&["gw.test"]);
    let (t, mut rx, addr) = tls_listener(&pki).await;
    let mut client = s_client(addr.port(), "gw.test", &pki.path("ca.pem"));
    let mut stdin = client.stdin.take().unwrap();
    let mut stdout = client.stdout.take().unwrap();
    stdin.write_all(&request("tls1")).await.unwrap();
    stdin.flush().await.unwrap();

    let m = next_message(&mut rx).await;
    assert_eq!(&m.bytes[..], &request("tls1")[..]);
    assert_eq!(m.transport, Kind::Tls);
    assert_eq!(m.local, addr);
    assert!(m.source.ip().is_loopback());
    let info = m.tls.as_ref().expect("TLS details");
    assert_eq!(info.server_name.as_deref(), Some("gw.test"));
    assert!(
        info.peer_certificates.is_empty(),
        "we never ask for a client certificate"
    );
    assert_eq!(info.alpn, None);
    let conn = m.conn.unwrap();

    // Reply addressed only by the peer's source address: reuses the accepted connection.
    let reply = "SIP/2.0 200 OK\r\nCall-ID: tls1\r\nContent-Length: 0\r\n\r\n";
    let sent = t
        .send(Outgoing::new(
            reply.as_bytes().to_vec(),
            Target::new(Kind::Tls, m.source),
        ))
        .await
        .unwrap();
    assert_eq!(sent.conn, Some(conn));
    read_until(&mut stdout, "Call-ID: tls1").await;
    assert_eq!(t.stats().accepted, 1);
    assert_eq!(t.stats().connected, 0);
}

#[tokio::test]
async fn openssl_client_rejects_wrong_hostname() {
    // Control for the test above: the same client with another expected name must fail.
    let pki = Pki::new(&["gw.test"]);
    let (_t, mut rx, addr) = tls_listener(&pki).await;
    let mut client = s_client(addr.port(), "other.test", &pki.path("ca.pem"));
    let mut stdin = client.stdin.take().unwrap();
    let _ = stdin.write_all(&request("tls2")).await;
    let status = timeout(WAIT, client.wait())
        .await
        .expect("s_client exits")
        .unwrap();
    assert!(!status.success());
    let mut err = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert!(err.contains("verify") || err.contains("Verify"), "{err}");
    assert!(
        timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "no message may arrive over a rejected handshake"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn s_server(port: u16, pki: &Pki, name: &str) -> Child {
    Command::new("openssl")
        .args([
            "s_server", "-naccept", "1", "-alpn", "sip", "-trace", "-accept",
        ])
        .arg(port.to_string())
        .arg("-cert")
        .arg(pki.path(&format!("{name}.pem")))
        .arg("-key")
        .arg(pki.path(&format!("{name}.key")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl installed")
}

async fn client_transport(pki: &Pki) -> (Transport, Receiver<Event>) {
    let client = tls::client_config(&Roots::CaFile(pki.path("ca.pem"))).unwrap();
    Transport::bind(Config {
        tls_client: Some(client),
        ..Config::default()
    })
    .await
    .unwrap()
}

/// Send to `s_server` until it listens (it starts asynchronously), bounded.
async fn send_when_up(
    t: &Transport,
    out: Outgoing,
) -> Result<whatsip::transport::Sent, TransportError> {
    let start = tokio::time::Instant::now();
    loop {
        match t.send(out.clone()).await {
            Err(TransportError::Connect { .. }) if start.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => return r,
        }
    }
}

#[tokio::test]
async fn our_client_sends_sni_no_alpn_and_receives_on_same_connection() {
    let pki = Pki::new(&["gw.test"]);
    let port = free_port();
    let mut server = s_server(port, &pki, "gw.test");
    let mut stdout = server.stdout.take().unwrap();
    let mut stdin = server.stdin.take().unwrap();
    let (t, mut rx) = client_transport(&pki).await;
    let target = Target::tls(SocketAddr::from(([127, 0, 0, 1], port)), "gw.test");
    let sent = send_when_up(&t, Outgoing::new(request("c1"), target))
        .await
        .unwrap();
    let conn = sent.conn.unwrap();
    let out = read_until(&mut stdout, "Call-ID: c1").await;
    // The ClientHello as OpenSSL traced it: SNI is our host name, no ALPN extension.
    let hello = out.split("ServerHello").next().unwrap();
    assert!(hello.contains("ClientHello"), "{out}");
    assert!(hello.contains("extension_type=server_name"), "{hello}");
    assert!(hello.contains("gw.test"), "{hello}");
    assert!(
        !hello.contains("application_layer_protocol_negotiation"),
        "we must not offer ALPN: {hello}"
    );
    let info = t.connection(conn).unwrap();
    assert!(info.outbound);
    let tls = info.tls.unwrap();
    assert_eq!(tls.alpn, None);
    assert_eq!(tls.server_name.as_deref(), Some("gw.test"));
    assert!(!tls.peer_certificates.is_empty());

    // The peer's request arrives on our outbound connection.
    stdin.write_all(&request("s1")).await.unwrap();
    stdin.flush().await.unwrap();
    let m = next_message(&mut rx).await;
    assert_eq!(&m.bytes[..], &request("s1")[..]);
    assert_eq!(m.conn, Some(conn));
    assert_eq!(m.transport, Kind::Tls);
}

#[tokio::test]
async fn wrong_hostname_or_unknown_ca_is_a_typed_error() {
    let pki = Pki::new(&["other.test"]);
    let port = free_port();
    let _server = s_server(port, &pki, "other.test");
    let (t, _rx) = client_transport(&pki).await;
    let target = Target::tls(SocketAddr::from(([127, 0, 0, 1], port)), "gw.test");
    let err = send_when_up(&t, Outgoing::new(request("w1"), target))
        .await
        .unwrap_err();
    match &err {
        TransportError::CertificateInvalid { host, reason, .. } => {
            assert_eq!(host, "gw.test");
            assert!(reason.contains("NotValidForName"), "{reason}");
        }
        other => panic!("expected CertificateInvalid, got {other:?}"),
    }
    assert_eq!(err.sip_status(), 503);
    assert!(t.connections().is_empty());

    // A server whose CA we do not trust.
    let stranger = Pki::new(&["gw.test"]);
    let port = free_port();
    let _server = s_server(port, &stranger, "gw.test");
    let target = Target::tls(SocketAddr::from(([127, 0, 0, 1], port)), "gw.test");
    let err = send_when_up(&t, Outgoing::new(request("w2"), target))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::CertificateInvalid { .. }),
        "{err:?}"
    );
}
