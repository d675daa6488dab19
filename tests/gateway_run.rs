//! `whatsip run` as a real process: a temp copy of the shipped profiles with free loopback
//! ports, the HTTP API (`/healthz`, `/metrics`), a SIP OPTIONS to the trunk port answered
//! 200 (raw UDP), and SIGTERM → clean exit. Every wait is bounded; the child is killed on
//! every path.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the gateway when the test ends, however it ends.
struct Gateway {
    child: Child,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

struct Ports {
    http: u16,
    trunk: u16,
    wa: u16,
    sandbox_http: u16,
    pbx_peer: u16,
}

fn write_profiles(dir: &Path, p: &Ports) -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-profiles");
    let out = dir.join("sip-profiles");
    std::fs::create_dir_all(&out).unwrap();
    let read = |f: &str| std::fs::read_to_string(shipped.join(f)).unwrap();
    let gw = read("gateway.toml").replace("127.0.0.1:8080", &format!("127.0.0.1:{}", p.http));
    let pbx = read("pbx.toml")
        .replace("127.0.0.1:5080", &format!("127.0.0.1:{}", p.trunk))
        .replace("127.0.0.1:5060", &format!("127.0.0.1:{}", p.pbx_peer));
    let wa = read("whatsapp.toml")
        .replace("127.0.0.1:5061", &format!("127.0.0.1:{}", p.wa))
        .replace("public_port = 5061", &format!("public_port = {}", p.wa))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", p.sandbox_http));
    for (name, text, needle) in [
        ("gateway.toml", &gw, p.http),
        ("pbx.toml", &pbx, p.trunk),
        ("whatsapp.toml", &wa, p.wa),
    ] {
        assert!(
            text.contains(&needle.to_string()),
            "{name}: port not replaced"
        );
        std::fs::write(out.join(name), text).unwrap();
    }
    out
}

fn start(dir: &Path, profiles: &Path) -> Gateway {
    let child = Command::new(env!("CARGO_BIN_EXE_whatsip"))
        .arg("run")
        .arg("--profiles")
        .arg(profiles)
        .current_dir(dir)
        .env("RUST_LOG", "whatsip=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("whatsip binary runs");
    Gateway { child }
}

/// One HTTP/1.1 GET with `Connection: close`; `None` while the server is not up.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

fn wait_http(gw: &mut Gateway, port: u16, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = http_get(port, path) {
            return r;
        }
        if let Ok(Some(status)) = gw.child.try_wait() {
            let mut err = String::new();
            if let Some(e) = gw.child.stderr.as_mut() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("whatsip run exited early ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "HTTP API not up within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn options(port: u16, call_id: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{{me}};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=t{call_id}\r\n\
         To: <sip:127.0.0.1:{port}>\r\n\
         Call-ID: {call_id}@probe\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn sigterm(gw: &mut Gateway) -> std::process::ExitStatus {
    let pid = gw.child.id().to_string();
    let ok = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "whatsip run did not exit within 15 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_serves_api_and_answers_trunk_options_then_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports {
        http: free_port(),
        trunk: free_port(),
        wa: free_port(),
        sandbox_http: free_port(),
        pbx_peer: free_port(),
    };
    let profiles = write_profiles(dir.path(), &ports);
    let mut gw = start(dir.path(), &profiles);

    let (status, body) = wait_http(&mut gw, ports.http, "/healthz");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("healthz is JSON");
    assert_eq!(health["status"], "ok", "{body}");
    for c in ["records", "sip_whatsapp", "sip_trunks", "sandbox"] {
        assert_eq!(health["components"][c], "ready", "{c}: {body}");
    }

    let (status, metrics) = http_get(ports.http, "/metrics").expect("metrics answer");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("whatsip_build_info{"),
        "no build info in:\n{metrics}"
    );

    // The in-process sandbox's Graph twin answers on its own port (401 without a token is
    // still an answer from the twin, not a refused connection).
    let (status, _) = http_get(ports.sandbox_http, "/v23.0/106540352242922/settings")
        .expect("sandbox HTTP answers");
    assert!((200..500).contains(&status), "sandbox status {status}");

    // Raw UDP OPTIONS to the trunk port: 200 with our Call-ID back.
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let me = probe.local_addr().unwrap().port();
    let req = String::from_utf8(options(ports.trunk, "opt1"))
        .unwrap()
        .replace("{me}", &me.to_string());
    probe
        .send_to(req.as_bytes(), ("127.0.0.1", ports.trunk))
        .unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = probe
        .recv_from(&mut buf)
        .expect("OPTIONS answered within 5 s");
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(resp.starts_with("SIP/2.0 200"), "{resp}");
    assert!(resp.contains("opt1@probe"), "{resp}");

    // SIPp (a real peer) sends OPTIONS over UDP and over TCP: both answered 200.
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/options.xml");
    for transport in ["u1", "t1"] {
        let out = Command::new("sipp")
            .arg("-sf")
            .arg(&scenario)
            .args(["-t", transport, "-i", "127.0.0.1", "-p", "0"])
            .args(["-m", "1", "-timeout", "10s", "-timeout_error", "-nostdin"])
            .arg(format!("127.0.0.1:{}", ports.trunk))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("sipp (sip-tester) installed");
        assert!(
            out.status.success(),
            "sipp OPTIONS over {transport}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // SIGTERM: graceful exit, records database left behind.
    let status = sigterm(&mut gw);
    assert!(status.success(), "exit status {status}");
    assert!(dir.path().join("var/whatsip.db").is_file());
    assert!(dir.path().join("var/sandbox/ca.pem").is_file());
}

#[test]
fn run_refuses_a_broken_profile() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports {
        http: free_port(),
        trunk: free_port(),
        wa: free_port(),
        sandbox_http: free_port(),
        pbx_peer: free_port(),
    };
    let profiles = write_profiles(dir.path(), &ports);
    let pbx = profiles.join("pbx.toml");
    let text = std::fs::read_to_string(&pbx).unwrap();
    std::fs::write(&pbx, text.replace("kind = \"trunk\"", "kind = \"trunkk\"")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_whatsip"))
        .arg("run")
        .arg("--profiles")
        .arg(&profiles)
        .current_dir(dir.path())
        .output()
        .expect("whatsip runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        http_get(ports.http, "/healthz").is_none(),
        "API must not start"
    );
}

/// A business-initiated INVITE from the PBX side runs through the whole path: SDP offer
/// toward Meta built, TLS connect to `meta.connect` (nothing listens there: the sandbox's SIP
/// edge is not part of `whatsip run` yet), a final failure back to the PBX, the call record
/// written and the outcome counted.
#[test]
fn business_initiated_invite_gets_a_final_answer_and_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports {
        http: free_port(),
        trunk: free_port(),
        wa: free_port(),
        sandbox_http: free_port(),
        pbx_peer: free_port(),
    };
    let profiles = write_profiles(dir.path(), &ports);
    // Meta's edge: a port with nothing listening.
    let edge = free_port();
    let wa = profiles.join("whatsapp.toml");
    let text = std::fs::read_to_string(&wa).unwrap();
    std::fs::write(
        &wa,
        text.replace("127.0.0.1:5062", &format!("127.0.0.1:{edge}")),
    )
    .unwrap();
    let mut gw = start(dir.path(), &profiles);
    wait_http(&mut gw, ports.http, "/healthz");

    let pbx = UdpSocket::bind("127.0.0.1:0").unwrap();
    pbx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let me = pbx.local_addr().unwrap().port();
    let sdp = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let t = ports.trunk;
    let invite = format!(
        "INVITE sip:+15551234567@127.0.0.1:{t} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-bi1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:100@127.0.0.1>;tag=pbx1\r\n\
         To: <sip:+15551234567@127.0.0.1>\r\n\
         Call-ID: bi1@pbx\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:100@127.0.0.1:{me}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    pbx.send_to(invite.as_bytes(), ("127.0.0.1", t)).unwrap();
    let mut buf = [0u8; 65536];
    let final_response = loop {
        let (n, _) = pbx.recv_from(&mut buf).expect("answer within 10 s");
        let r = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(r.starts_with("SIP/2.0 "), "{r}");
        if !r.starts_with("SIP/2.0 1") {
            break r;
        }
    };
    let status: u16 = final_response[8..11].parse().unwrap();
    assert!(status >= 400, "{final_response}");
    assert!(final_response.contains("bi1@pbx"), "{final_response}");
    let to_tag = final_response
        .lines()
        .find(|l| l.starts_with("To:"))
        .unwrap()
        .to_owned();
    let ack = format!(
        "ACK sip:+15551234567@127.0.0.1:{t} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-bi1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:100@127.0.0.1>;tag=pbx1\r\n\
         {to_tag}\r\n\
         Call-ID: bi1@pbx\r\n\
         CSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    pbx.send_to(ack.as_bytes(), ("127.0.0.1", t)).unwrap();

    // The record and the metrics show the failed business-initiated call (bounded poll: the
    // recorder writes on its own thread).
    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        let (status, body) = http_get(ports.http, "/records").expect("records answer");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(r) = v.as_array().and_then(|a| a.first()).cloned() {
            break r;
        }
        assert!(Instant::now() < deadline, "no record within 10 s: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(record["direction"], "business_initiated", "{record}");
    assert_eq!(record["business_number"], "+15550001111", "{record}");
    assert_eq!(record["user"], "+15551234567", "{record}");
    assert_eq!(record["trunk"], "pbx", "{record}");
    assert_eq!(record["open"], false, "{record}");
    assert_eq!(record["state"], "Failed", "{record}");
    let (_, metrics) = http_get(ports.http, "/metrics").unwrap();
    assert!(
        metrics
            .contains("whatsip_calls_total{direction=\"business_initiated\",outcome=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(sigterm(&mut gw).success());
}
