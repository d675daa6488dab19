//! Issue 5's check: after `whatsip settings push` with a new hostname, a user-initiated
//! sandbox call goes to the new host. Everything runs the real binary (`whatsip sandbox`,
//! `whatsip settings push`) on loopback; the two "gateways" are our own TLS transport
//! listeners presenting certificates issued by the sandbox's CA for their host names.
//!
//! Name resolution: the sandbox CLI maps exactly one name to an address (`--gateway-host` →
//! `--gateway-ip`); every other name goes through the system resolver. So the NEW host
//! `pbx2.whatsip.test` is that mapped name (`--gateway-ip 127.0.0.1`), and the OLD host is
//! `localhost` (resolved by /etc/hosts). The sandbox fixture starts on
//! `pbx2.whatsip.test:5061` (nothing listens there), so the test first pushes the old
//! gateway (`localhost:P1`) and shows a call reaches it and not P2, then pushes
//! `pbx2.whatsip.test:P2` and shows the next call reaches P2 with that Request-URI host.
mod graph_support;

use graph_support::{BUSINESS, PNID, args, free_port, run, text};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::timeout;
use whatsip::sip::message::{Framing, Message, Response};
use whatsip::sip::method::Method;
use whatsip::sip::uri::Host;
use whatsip::transport::{Config, Event, Kind, Outgoing, Transport, tls};

const OLD_HOST: &str = "localhost";
const NEW_HOST: &str = "pbx2.whatsip.test";
const CALLER: &str = "+15551234567";
const WAIT: Duration = Duration::from_secs(15);

/// `whatsip sandbox` child, killed on drop.
struct Sandbox {
    child: Child,
    port: u16,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sandbox(ca_dir: &Path) -> Sandbox {
    for _ in 0..3 {
        let port = free_port();
        let child = Command::new(graph_support::BIN)
            .args(["sandbox", "--http", &format!("127.0.0.1:{port}")])
            .args(["--seed", "5", "--edge", "127.0.0.1:0", "--ca-dir"])
            .arg(ca_dir)
            .args(["--gateway-host", NEW_HOST, "--gateway-ip", "127.0.0.1"])
            .args(["--unanswered-timeout-s", "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn whatsip sandbox");
        let mut sb = Sandbox { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = sb.child.try_wait() {
                break; // port taken: try another
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return sb;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("whatsip sandbox did not start");
}

/// One INVITE a gateway listener received: the raw bytes and the SNI it came with.
struct Received {
    gateway: &'static str,
    bytes: Vec<u8>,
    sni: Option<String>,
}

/// A TLS listener on 127.0.0.1 (ephemeral port) presenting a certificate for `host` issued by
/// the sandbox CA in `ca_dir`. It reports every INVITE on `tx` and answers it
/// `486 Busy Here`, so each call ends promptly.
async fn gateway(
    name: &'static str,
    host: &str,
    ca_dir: &Path,
    work: &Path,
    tx: mpsc::UnboundedSender<Received>,
) -> (Transport, SocketAddr) {
    let (chain, key) = whatsip::sandbox::ca::issue_gateway_cert_in(ca_dir, host).unwrap();
    let chain_path = work.join(format!("{name}.pem"));
    let key_path = work.join(format!("{name}.key"));
    std::fs::write(&chain_path, chain).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let config = Config {
        tls: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        tls_server: Some(tls::server_config_from_pem_files(&chain_path, &key_path).unwrap()),
        ..Config::default()
    };
    let (transport, mut events) = Transport::bind(config).await.unwrap();
    let addr = transport.local_addr(Kind::Tls).unwrap();
    let t = transport.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            let Event::Message(m) = ev else { continue };
            let Ok(Message::Request(req)) = Message::parse(&m.bytes, Framing::Stream) else {
                continue;
            };
            if req.method != Method::Invite {
                continue;
            }
            let _ = tx.send(Received {
                gateway: name,
                bytes: m.bytes.to_vec(),
                sni: m.tls.as_ref().and_then(|p| p.server_name.clone()),
            });
            let mut resp = Response::from_request(&req, 486, "Busy Here");
            let _ = resp.headers.set_to_tag(name);
            let _ = t.send(Outgoing::reply_to(&m, resp.to_bytes())).await;
        }
    });
    (transport, addr)
}

async fn push(sb_port: u16, host: &str, port: u16) {
    let argv = args(
        &[
            "settings",
            "push",
            BUSINESS,
            "--sip-host",
            host,
            "--sip-port",
            &port.to_string(),
        ],
        &[
            "--graph-url".into(),
            format!("http://127.0.0.1:{sb_port}"),
            "--phone-number-id".into(),
            PNID.into(),
            "--timeout-s".into(),
            "5".into(),
        ],
    );
    let out = tokio::task::spawn_blocking(move || run(&argv, "sandbox"))
        .await
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "push {host}:{port}\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("pushed"), "{stdout}");
}

async fn sip_target(client: &reqwest::Client, sb_port: u16) -> (String, u64) {
    let v: serde_json::Value = client
        .get(format!("http://127.0.0.1:{sb_port}/sandbox/numbers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = v["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["e164"] == BUSINESS)
        .unwrap_or_else(|| panic!("{v:#}"));
    (
        n["hostname"].as_str().unwrap().to_string(),
        n["port"].as_u64().unwrap(),
    )
}

async fn place_call(client: &reqwest::Client, sb_port: u16) -> String {
    let resp = client
        .post(format!("http://127.0.0.1:{sb_port}/sandbox/calls"))
        .json(&serde_json::json!({"from": CALLER, "to": BUSINESS, "duration": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text().await);
    let v: serde_json::Value = resp.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// Polls `GET /sandbox/calls/{id}` until the call is final (bounded).
async fn wait_final(client: &reqwest::Client, sb_port: u16, id: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..150 {
        last = client
            .get(format!("http://127.0.0.1:{sb_port}/sandbox/calls/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if matches!(
            last["state"].as_str(),
            Some("completed" | "rejected" | "failed")
        ) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("call {id} not final after 15 s: {last:#}");
}

/// The Request-URI host and port of an INVITE as our SIP parser reads them.
fn ruri_host(bytes: &[u8]) -> (String, Option<u16>) {
    let msg = Message::parse(bytes, Framing::Stream).expect("INVITE parses");
    let req = msg.as_request().expect("a request");
    assert_eq!(req.method, Method::Invite);
    let uri = req.uri.as_sip().expect("a sip: Request-URI");
    match &uri.host {
        Host::Domain(d) => (d.to_ascii_lowercase(), uri.port),
        other => panic!("Request-URI host is not a name: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_push_new_hostname_sends_user_initiated_calls_to_the_new_host() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let sb = start_sandbox(&ca_dir); // creates the CA before we issue from it
    let client = reqwest::Client::new();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_old, old_addr) = gateway("old", OLD_HOST, &ca_dir, dir.path(), tx.clone()).await;
    let (_new, new_addr) = gateway("new", NEW_HOST, &ca_dir, dir.path(), tx).await;
    let (p1, p2) = (old_addr.port(), new_addr.port());

    // Before: the number points at the old gateway, and a user-initiated call reaches it,
    // not the listener on P2.
    push(sb.port, OLD_HOST, p1).await;
    assert_eq!(
        sip_target(&client, sb.port).await,
        (OLD_HOST.to_string(), u64::from(p1))
    );
    let first = place_call(&client, sb.port).await;
    let got = timeout(WAIT, rx.recv())
        .await
        .expect("first INVITE within 15 s")
        .unwrap();
    assert_eq!(
        got.gateway, "old",
        "the first call went to P2 before the push"
    );
    assert_eq!(ruri_host(&got.bytes), (OLD_HOST.to_string(), Some(p1)));
    assert_eq!(got.sni.as_deref(), Some(OLD_HOST));
    let call = wait_final(&client, sb.port, &first).await;
    assert_eq!(call["status"], 486, "{call:#}");

    // The push under test: new hostname and port.
    push(sb.port, NEW_HOST, p2).await;
    assert_eq!(
        sip_target(&client, sb.port).await,
        (NEW_HOST.to_string(), u64::from(p2))
    );
    let second = place_call(&client, sb.port).await;
    let got = timeout(WAIT, rx.recv())
        .await
        .expect("second INVITE within 15 s")
        .unwrap();
    assert_eq!(
        got.gateway, "new",
        "the call after the push did not reach P2"
    );
    assert_eq!(ruri_host(&got.bytes), (NEW_HOST.to_string(), Some(p2)));
    // the sandbox verified our certificate for the new name (SNI = that name)
    assert_eq!(got.sni.as_deref(), Some(NEW_HOST));
    let text = String::from_utf8_lossy(&got.bytes);
    assert!(
        text.starts_with(&format!("INVITE sip:{BUSINESS}"))
            && text
                .lines()
                .next()
                .unwrap()
                .contains(&format!("@{NEW_HOST}:{p2};transport=tls")),
        "{text}"
    );
    let call = wait_final(&client, sb.port, &second).await;
    assert_eq!(call["status"], 486, "{call:#}");
    assert_eq!(call["direction"], "user_initiated", "{call:#}");
    // nothing else reached either gateway (one INVITE per call, no stray retry)
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "unexpected extra INVITE");
}
