//! `whatsip run` signalling against real peers: the in-process sandbox answering the gateway's
//! digest challenge, SIPp answering a trunk's `[inbound_auth]` (and failing it), trunk OPTIONS
//! qualify against a SIPp peer that is killed and restarted, the first call to a user without
//! permission refused by the gateway itself, and SIGTERM hanging up a connected call on both
//! legs with its record completed. Every wait is bounded; children are killed on every path.
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod gateway_support;
use gateway_support::{
    Ports, Proc, eventually, free_port, header, read_stream_message, sipp_errors, write_profiles,
};

struct Gateway {
    proc: Proc,
    dir: tempfile::TempDir,
    ports: Ports,
}

fn start(edit: impl Fn(&str, String) -> String) -> Gateway {
    start_on(Ports::fresh(), edit)
}

fn start_on(ports: Ports, edit: impl Fn(&str, String) -> String) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let profiles = write_profiles(dir.path(), &ports, edit);
    let child = Command::new(env!("CARGO_BIN_EXE_whatsip"))
        .arg("run")
        .arg("--profiles")
        .arg(&profiles)
        .current_dir(dir.path())
        .env("RUST_LOG", "whatsip=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("whatsip binary runs");
    let mut gw = Gateway {
        proc: Proc(child),
        dir,
        ports,
    };
    // Up once every component is ready (trunks may already be down: not waited for).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((_, body)) = http_get(gw.ports.http, "/healthz")
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
            && v["components"]
                .as_object()
                .is_some_and(|c| c.len() >= 4 && c.values().all(|r| r == "ready"))
        {
            return gw;
        }
        if let Ok(Some(status)) = gw.proc.0.try_wait() {
            panic!("whatsip run exited early ({status})");
        }
        assert!(Instant::now() < deadline, "gateway not ready within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let (head, mut rest) = text.split_once("\r\n\r\n")?;
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some((status, rest.to_owned()));
    }
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 || after.len() < n {
            break;
        }
        body += &after[..n];
        rest = after[n..].trim_start_matches("\r\n");
    }
    Some((status, body))
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http(port, "GET", path, "")
}

fn json(port: u16, path: &str) -> serde_json::Value {
    let (_, body) = http_get(port, path).expect("HTTP answers");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// The first closed record.
fn closed_record(port: u16) -> serde_json::Value {
    eventually(10, "closed record", || {
        json(port, "/records")
            .as_array()
            .and_then(|a| a.first().cloned())
            .filter(|r| r["open"] == false)
    })
}

fn trunk_state(port: u16) -> String {
    json(port, "/healthz")["trunks"]["pbx"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A plain UDP PBX: answers INVITE with 180 then 200 (PCMU), BYE and OPTIONS with 200; logs
/// every message it receives.
struct Pbx {
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Pbx {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reply(req: &str, status: &str, extra: &str, body: &str) -> String {
    let mut r = format!("SIP/2.0 {status}\r\n");
    for l in req.lines() {
        if let Some((n, _)) = l.split_once(':') {
            let n = n.trim().to_ascii_lowercase();
            if ["via", "v", "from", "f", "call-id", "i", "cseq"].contains(&n.as_str()) {
                r += l;
                r += "\r\n";
            }
        }
    }
    let to = header(req, "To").unwrap_or_default();
    if to.contains("tag=") {
        r += &format!("To: {to}\r\n");
    } else {
        r += &format!("To: {to};tag=pbxtag\r\n");
    }
    r += extra;
    if body.is_empty() {
        r += "Content-Length: 0\r\n\r\n";
    } else {
        r += &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
    r
}

fn pbx(port: u16) -> Pbx {
    let sock = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (l, s) = (log.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        let sdp = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
        let contact = format!("Contact: <sip:100@127.0.0.1:{port}>\r\n");
        let mut buf = [0u8; 65536];
        while !s.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            l.lock().unwrap().push(m.clone());
            let out: Vec<String> = if m.starts_with("INVITE ") {
                vec![
                    reply(&m, "180 Ringing", &contact, ""),
                    reply(&m, "200 OK", &contact, sdp),
                ]
            } else if m.starts_with("BYE ") || m.starts_with("OPTIONS ") {
                vec![reply(&m, "200 OK", "", "")]
            } else {
                vec![]
            };
            for o in out {
                let _ = sock.send_to(o.as_bytes(), from);
            }
        }
    });
    Pbx {
        log,
        stop,
        thread: Some(thread),
    }
}

impl Pbx {
    fn received(&self, method: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.starts_with(&format!("{method} ")))
            .cloned()
            .collect()
    }
}

fn sandbox_call(gw: &Gateway, from: &str, duration: u32) -> serde_json::Value {
    let body = format!(r#"{{"from":"{from}","to":"+15550001111","duration":{duration}}}"#);
    let (status, text) = http(gw.ports.sandbox_http, "POST", "/sandbox/calls", &body).unwrap();
    assert_eq!(status, 201, "{text}");
    let id = serde_json::from_str::<serde_json::Value>(&text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually(25, "sandbox call final", || {
        let c = json(gw.ports.sandbox_http, &format!("/sandbox/calls/{id}"));
        matches!(
            c["state"].as_str(),
            Some("completed" | "rejected" | "failed")
        )
        .then_some(c)
    })
}

fn transcript(call: &serde_json::Value, dir: &str) -> Vec<String> {
    call["sip"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["dir"] == dir)
        .map(|e| e["first_line"].as_str().unwrap().to_owned())
        .collect()
}

/// The sandbox user calls the business number; the gateway (shipped profile: `[inbound_auth]
/// challenge = true`) answers 407, the sandbox answers with the number's SIP password, the
/// call reaches the PBX, connects, and the user hangs up. The record has both leg Call-IDs,
/// the ringing and answer times and the end reason.
#[test]
fn sandbox_call_passes_the_gateway_challenge_and_is_recorded_in_full() {
    let ports = Ports::fresh();
    let pbx = pbx(ports.pbx_peer);
    let gw = start_on(ports, |_, t| t);
    let call = sandbox_call(&gw, "+15551234567", 1);
    assert_eq!(call["state"], "completed", "{call:#}");
    let received = transcript(&call, "received");
    assert!(
        received.iter().any(|l| l.starts_with("SIP/2.0 407")),
        "{received:?}"
    );
    let sent = transcript(&call, "sent");
    assert_eq!(
        sent.iter().filter(|l| l.starts_with("INVITE ")).count(),
        2,
        "{sent:?}"
    );
    assert_eq!(
        call["violations"].as_array().map(Vec::len),
        Some(0),
        "{call:#}"
    );
    let invites = pbx.received("INVITE");
    assert_eq!(invites.len(), 1, "one INVITE at the PBX");
    let pbx_cid = header(&invites[0], "Call-ID").unwrap().to_owned();

    let r = closed_record(gw.ports.http);
    assert_eq!(r["state"], "Completed", "{r:#}");
    assert_eq!(r["pbx_call_id"], pbx_cid.as_str(), "{r:#}");
    let wa_cid = r["whatsapp_call_id"].as_str().expect("whatsapp_call_id");
    assert!(
        call["sip"][0]["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("call-id") && h[1] == wa_cid),
        "{wa_cid} is the sandbox's Call-ID"
    );
    assert!(r["ringing_at"].is_string(), "{r:#}");
    assert!(r["answered_at"].is_string(), "{r:#}");
    assert!(
        r["reason"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("WhatsApp user")),
        "{r:#}"
    );
    // `whatsip cdr` reads the same record.
    let out = Command::new(env!("CARGO_BIN_EXE_whatsip"))
        .args(["cdr", "--json", "--db"])
        .arg(gw.dir.path().join("var/whatsip.db"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let cdr = String::from_utf8_lossy(&out.stdout);
    assert!(cdr.contains(&pbx_cid) && cdr.contains(wa_cid), "{cdr}");
}

fn sipp(dir: &Path, scenario: &str, extra: &[&str]) -> std::process::Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(scenario);
    Command::new("sipp")
        .arg("-sf")
        .arg(path)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &free_port().to_string(),
            "-t",
            "u1",
        ])
        .args(["-m", "1", "-timeout", "30s", "-timeout_error", "-nostdin"])
        .args(["-trace_err"])
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("sipp runs")
}

/// A trunk with `[inbound_auth]`: SIPp's INVITE gets 401, its retry with the right
/// credentials connects to the sandbox user; the wrong password gets 403.
#[test]
fn sipp_passes_the_trunk_challenge_and_a_wrong_password_gets_403() {
    let gw = start(|name, t| {
        if name == "pbx.toml" {
            t + "\n[inbound_auth]\nrealm = \"whatsip\"\nusername = \"pbx\"\npassword = { literal = \"pbxpw\" }\n"
        } else {
            t
        }
    });
    let work = tempfile::tempdir().unwrap();
    let target = format!("127.0.0.1:{}", gw.ports.trunk);
    let ok = sipp(
        work.path(),
        "trunk_auth_call.xml",
        &["-s", "+15551234567", "-au", "pbx", "-ap", "pbxpw", &target],
    );
    assert!(
        ok.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&ok.stderr),
        sipp_errors(work.path())
    );
    let calls = json(gw.ports.sandbox_http, "/sandbox/calls");
    let calls = calls.as_array().unwrap();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0]["state"], "completed", "{:#}", calls[0]);

    let bad = sipp(
        work.path(),
        "trunk_auth_refused.xml",
        &["-s", "+15551234567", "-au", "pbx", "-ap", "wrong", &target],
    );
    assert!(
        bad.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&bad.stderr),
        sipp_errors(work.path())
    );
    assert_eq!(
        json(gw.ports.sandbox_http, "/sandbox/calls")
            .as_array()
            .unwrap()
            .len(),
        1,
        "the refused call never reached Meta's edge"
    );
    let (_, metrics) = http_get(gw.ports.http, "/metrics").unwrap();
    assert!(
        metrics.contains("whatsip_sip_auth_failures_total{leg=\"pbx\"} 1"),
        "{metrics}"
    );
}

fn options_peer(dir: &Path, port: u16) -> Proc {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/options_uas.xml");
    Proc(
        Command::new("sipp")
            .arg("-sf")
            .arg(path)
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-t", "u1"])
            .args(["-nostdin"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp runs"),
    )
}

/// OPTIONS every second to the trunk peer: no peer → down (and user-initiated calls are
/// refused 503 with a Reason); a SIPp UAS answering → up; killed → down; restarted → up.
#[test]
fn trunk_qualify_follows_a_sipp_peer_and_a_down_trunk_refuses_calls_503() {
    let gw = start(|name, t| {
        if name == "pbx.toml" {
            t.replace("options_ping_s = 30", "options_ping_s = 1")
        } else {
            t
        }
    });
    let (http, peer) = (gw.ports.http, gw.ports.pbx_peer);
    eventually(10, "trunk down without a peer", || {
        (trunk_state(http) == "down").then_some(())
    });
    let (status, _) = http_get(http, "/healthz").unwrap();
    assert_eq!(status, 503, "degraded while a trunk is down");
    let (_, metrics) = http_get(http, "/metrics").unwrap();
    assert!(
        metrics.contains("whatsip_trunk_up{trunk=\"pbx\"} 0"),
        "{metrics}"
    );
    // A call for a number on the down trunk: 503 from the gateway, with a Reason.
    let call = sandbox_call(&gw, "+15551234567", 1);
    let got = call["sip"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["dir"] == "received"
                && e["first_line"]
                    .as_str()
                    .is_some_and(|l| l.starts_with("SIP/2.0 503"))
        })
        .cloned()
        .unwrap_or_else(|| panic!("no 503: {call:#}"));
    assert!(
        got["headers"].as_array().unwrap().iter().any(|h| h[0]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("reason")
            && h[1].as_str().unwrap().contains("cause=503")),
        "{got:#}"
    );

    let work = tempfile::tempdir().unwrap();
    let mut sipp_peer = options_peer(work.path(), peer);
    eventually(10, "trunk up with a SIPp peer", || {
        (trunk_state(http) == "up").then_some(())
    });
    let (status, _) = http_get(http, "/healthz").unwrap();
    assert_eq!(status, 200);
    let _ = sipp_peer.0.kill();
    let _ = sipp_peer.0.wait();
    drop(sipp_peer);
    eventually(10, "trunk down after the peer died", || {
        (trunk_state(http) == "down").then_some(())
    });
    let _again = options_peer(work.path(), peer);
    eventually(10, "trunk up after the peer restarted", || {
        (trunk_state(http) == "up").then_some(())
    });
}

/// `+15557654321` has no call permission: the gateway waits for Graph on the first call and
/// refuses it itself (403 + Warning 138006); Meta's edge never sees an INVITE.
#[test]
fn first_call_to_a_user_without_permission_is_refused_by_the_gateway() {
    let gw = start(|_, t| t);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let me = sock.local_addr().unwrap().port();
    let t = gw.ports.trunk;
    let sdp = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let invite = format!(
        "INVITE sip:+15557654321@127.0.0.1:{t} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-np1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:100@127.0.0.1>;tag=np\r\n\
         To: <sip:+15557654321@127.0.0.1>\r\n\
         Call-ID: np1@pbx\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:100@127.0.0.1:{me}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    sock.send_to(invite.as_bytes(), ("127.0.0.1", t)).unwrap();
    let mut buf = [0u8; 65536];
    let fin = loop {
        let (n, _) = sock.recv_from(&mut buf).expect("answer within 10 s");
        let r = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !r.starts_with("SIP/2.0 1") {
            break r;
        }
    };
    assert!(fin.starts_with("SIP/2.0 403"), "{fin}");
    assert!(
        header(&fin, "Warning").is_some_and(|w| w.contains("138006")),
        "{fin}"
    );
    let edge = json(gw.ports.sandbox_http, "/sandbox/calls");
    assert_eq!(edge.as_array().map(Vec::len), Some(0), "{edge:#}");
    let r = closed_record(gw.ports.http);
    assert_eq!(r["state"], "Failed", "{r:#}");
    assert_eq!(r["reason"]["sip_code"], 403, "{r:#}");
    assert_eq!(r["reason"]["meta_code"], 138006, "{r:#}");
    assert_eq!(r["pbx_call_id"], "np1@pbx", "{r:#}");
}

/// A connected user-initiated call ("Meta" over TLS, the UDP PBX answering); SIGTERM → both
/// peers get a BYE (Meta's with `Reason: Q.850;cause=16`), the gateway exits 0 after the
/// drain, and the record is completed (not left open for recovery).
#[test]
fn sigterm_hangs_up_a_connected_call_on_both_legs_and_completes_its_record() {
    use rustls_pki_types::ServerName;
    let ports = Ports::fresh();
    let pbx = pbx(ports.pbx_peer);
    let mut gw = start_on(ports, |name, t| {
        if name == "whatsapp.toml" {
            t.replace("challenge = true", "challenge = false")
        } else {
            t
        }
    });
    let roots = whatsip::transport::tls::Roots::CaFile(gw.dir.path().join("var/sandbox/ca.pem"));
    let client = whatsip::transport::tls::client_config(&roots).unwrap();
    let conn = rustls::ClientConnection::new(
        client,
        ServerName::try_from("gateway.whatsip.test").unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", gw.ports.wa)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let me = tcp.local_addr().unwrap();
    let mut meta = rustls::StreamOwned::new(conn, tcp);
    let mut mbuf = Vec::new();
    // Opus and PCMU (the number has `additional_codecs`): the PBX helper answers PCMU.
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 3480 RTP/SAVP 111 0 126\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:126 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\na=rtcp-mux\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n";
    let wa = gw.ports.wa;
    let msg = |first: &str, cseq: &str, branch: &str, to_tag: &str, body: &str| {
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{first}\r\n\
             Via: SIP/2.0/TLS {me};branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 69\r\n\
             From: <sip:+15551234567@wa.meta.vc>;tag=mt\r\n\
             To: <sip:+15550001111@gateway.whatsip.test>{to_tag}\r\n\
             Call-ID: outgoing:wacid.SD\r\n\
             CSeq: {cseq}\r\n\
             Contact: <sip:+15551234567@{me};transport=tls>\r\n\
             x-wa-meta-wacid: wacid.SD\r\n\
             {ctype}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let ruri = format!("sip:+15550001111@gateway.whatsip.test:{wa};transport=tls");
    meta.write_all(
        msg(
            &format!("INVITE {ruri} SIP/2.0"),
            "1 INVITE",
            "sd1",
            "",
            offer,
        )
        .as_bytes(),
    )
    .unwrap();
    let ok = loop {
        let m = read_stream_message(&mut meta, &mut mbuf);
        assert!(
            m.starts_with("SIP/2.0 1") || m.starts_with("SIP/2.0 200"),
            "{m}"
        );
        if m.starts_with("SIP/2.0 200") {
            break m;
        }
    };
    let to_tag = header(&ok, "To")
        .and_then(|t| t.split_once(";tag="))
        .map(|(_, t)| format!(";tag={t}"))
        .unwrap();
    meta.write_all(msg(&format!("ACK {ruri} SIP/2.0"), "1 ACK", "sd2", &to_tag, "").as_bytes())
        .unwrap();
    eventually(10, "call accepted", || {
        http_get(gw.ports.http, "/calls")
            .filter(|(_, b)| b.contains("\"Accepted\""))
            .map(|_| ())
    });

    // SIGTERM while the call is up. "Meta" answers the gateway's BYE.
    let pid = gw.proc.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let bye = loop {
        let m = read_stream_message(&mut meta, &mut mbuf);
        if m.starts_with("BYE ") {
            break m;
        }
    };
    assert!(
        header(&bye, "Reason").is_some_and(|r| r.contains("Q.850")),
        "{bye}"
    );
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for l in bye.lines().filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        }) {
            ok += l;
            ok += "\r\n";
        }
    }
    ok += "Content-Length: 0\r\n\r\n";
    meta.write_all(ok.as_bytes()).unwrap();
    let status = eventually(15, "exit after SIGTERM", || gw.proc.0.try_wait().unwrap());
    assert!(status.success(), "{status}");
    assert_eq!(pbx.received("BYE").len(), 1, "the PBX got a BYE too");

    // The record is closed as completed by the shutdown itself.
    let out = Command::new(env!("CARGO_BIN_EXE_whatsip"))
        .args(["cdr", "--json", "--db"])
        .arg(gw.dir.path().join("var/whatsip.db"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let r: serde_json::Value = serde_json::from_str(line.lines().next().expect("one record"))
        .unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(r["state"], "Completed", "{r:#}");
    assert_eq!(r["open"], false, "{r:#}");
    assert!(
        r["reason"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("shutting down")),
        "{r:#}"
    );
    assert!(r["ended_at"].is_string(), "{r:#}");
}
