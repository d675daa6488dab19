//! `whatsip run` as a real process: a temp copy of the shipped profiles with free loopback
//! ports, the HTTP API (`/healthz`, `/metrics`), a SIP OPTIONS to the trunk port answered
//! 200 (raw UDP), and SIGTERM → clean exit. Every wait is bounded; the child is killed on
//! every path.
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod gateway_support;
use gateway_support::{Gateway, Ports, free_port, read_stream_message, start, write_profiles};

/// `write_profiles` with the shipped profiles unchanged but for the ports.
fn shipped_profiles(dir: &Path, p: &Ports) -> PathBuf {
    write_profiles(dir, p, |_, t| t)
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

/// Waits until `path` answers; for `/healthz`, until it answers 200 (every component —
/// records, SIP transports, the in-process sandbox — ready), so tests never race start-up.
fn wait_http(gw: &mut Gateway, port: u16, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = http_get(port, path)
            && (path != "/healthz" || r.0 == 200)
        {
            return r;
        }
        if let Ok(Some(status)) = gw.child.try_wait() {
            let err = std::fs::read_to_string(&gw.log).unwrap_or_default();
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
    let ports = Ports::fresh();
    let profiles = shipped_profiles(dir.path(), &ports);
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
    let ports = Ports::fresh();
    let profiles = shipped_profiles(dir.path(), &ports);
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

/// A business-initiated INVITE from the PBX side to a user without call permission: the
/// in-process sandbox edge (Meta's rules) answers 403, the gateway relays it with a Reason, the
/// call record is written and the outcome counted.
#[test]
fn business_initiated_call_without_permission_gets_403_and_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::fresh();
    let profiles = shipped_profiles(dir.path(), &ports);
    let mut gw = start(dir.path(), &profiles);
    wait_http(&mut gw, ports.http, "/healthz");

    let pbx = UdpSocket::bind("127.0.0.1:0").unwrap();
    pbx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let me = pbx.local_addr().unwrap().port();
    let sdp = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let t = ports.trunk;
    let invite = format!(
        "INVITE sip:+15557654321@127.0.0.1:{t} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-bi1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:100@127.0.0.1>;tag=pbx1\r\n\
         To: <sip:+15557654321@127.0.0.1>\r\n\
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
    // +15557654321 has no call permission in the sandbox fixture: the gateway waits for the
    // Graph permission answer and refuses the call itself (403 with Meta's code in a Reason).
    let status: u16 = final_response[8..11].parse().unwrap();
    assert_eq!(status, 403, "{final_response}");
    assert!(final_response.contains("Reason:"), "{final_response}");
    assert!(final_response.contains("bi1@pbx"), "{final_response}");
    let to_tag = final_response
        .lines()
        .find(|l| l.starts_with("To:"))
        .unwrap()
        .to_owned();
    let ack = format!(
        "ACK sip:+15557654321@127.0.0.1:{t} SIP/2.0\r\n\
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
        // The record is written open at the INVITE and closed by the writer thread shortly
        // after the 403 went out: wait for the closed one.
        if let Some(r) = v
            .as_array()
            .and_then(|a| a.first())
            .filter(|r| r["open"] == false)
            .cloned()
        {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no closed record within 10 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(record["direction"], "business_initiated", "{record}");
    assert_eq!(record["business_number"], "+15550001111", "{record}");
    assert_eq!(record["user"], "+15557654321", "{record}");
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

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The audio port of an SDP body (`m=audio PORT …`).
fn audio_port(sdp: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no m=audio in {sdp}"))
}

/// A user-initiated call as Meta places it: TLS to the gateway (certificate issued by the
/// sandbox CA for `gateway.whatsip.test`), SDES Opus offer; the PBX (a UDP socket) gets a
/// plain RTP/AVP offer of Opus only (what Meta offered: the relay does not transcode) on a
/// port from the trunk's range and answers Opus; Meta gets 200 with an RTP/SAVP answer on a
/// port from the WhatsApp range; ACK and BYE cross; the call is recorded as completed.
#[test]
fn user_initiated_call_over_tls_negotiates_sdp_on_both_legs() {
    use rustls_pki_types::ServerName;
    let dir = tempfile::tempdir().unwrap();
    let pbx = UdpSocket::bind("127.0.0.1:0").unwrap();
    pbx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let ports = Ports {
        http: free_port(),
        trunk: free_port(),
        wa: free_port(),
        sandbox_http: free_port(),
        pbx_peer: pbx.local_addr().unwrap().port(),
        edge: free_port(),
    };
    let profiles = shipped_profiles(dir.path(), &ports);
    let mut gw = start(dir.path(), &profiles);
    wait_http(&mut gw, ports.http, "/healthz");

    // "Meta": TLS client trusting the sandbox CA the gateway wrote.
    let roots = whatsip::transport::tls::Roots::CaFile(dir.path().join("var/sandbox/ca.pem"));
    let client = whatsip::transport::tls::client_config(&roots).unwrap();
    let conn = rustls::ClientConnection::new(
        client,
        ServerName::try_from("gateway.whatsip.test").unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", ports.wa)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let me = tcp.local_addr().unwrap();
    let mut meta = rustls::StreamOwned::new(conn, tcp);
    let mut mbuf = Vec::new();

    let offer = "v=0\r\no=- 1731000000 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 3480 RTP/SAVP 111 126\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1\r\na=rtpmap:126 telephone-event/8000\r\na=ptime:20\r\na=maxptime:20\r\na=sendrecv\r\na=rtcp-mux\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n";
    let wa = ports.wa;
    let req = |method: &str, cseq: u32, branch: &str, to_tag: &str, body: &str| {
        let ctype = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".to_owned()
        };
        format!(
            "{method} sip:+15550001111@gateway.whatsip.test:{wa};transport=tls SIP/2.0\r\n\
             Via: SIP/2.0/TLS {me};branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 69\r\n\
             From: \"15551234567\" <sip:+15551234567@wa.meta.vc>;tag=mt\r\n\
             To: <sip:+15550001111@gateway.whatsip.test>{to_tag}\r\n\
             Call-ID: outgoing:wacid.GW\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:+15551234567@{me};transport=tls>\r\n\
             x-wa-meta-wacid: wacid.GW\r\n\
             {ctype}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    meta.write_all(req("INVITE", 1, "gw1", "", offer).as_bytes())
        .unwrap();
    meta.flush().unwrap();
    // The shipped profile challenges Meta (`[inbound_auth]`): 407, ACK, INVITE with the
    // number's SIP password (the one the gateway stored for the in-process sandbox).
    let challenge = loop {
        let m = read_stream_message(&mut meta, &mut mbuf);
        if !m.starts_with("SIP/2.0 1") {
            break m;
        }
    };
    assert!(challenge.starts_with("SIP/2.0 407"), "{challenge}");
    let tag407 = header(&challenge, "To")
        .and_then(|t| t.split_once(";tag="))
        .map(|(_, t)| format!(";tag={t}"))
        .unwrap();
    meta.write_all(req("ACK", 1, "gw1", &tag407, "").as_bytes())
        .unwrap();
    let challenges: Vec<&str> = challenge
        .lines()
        .filter_map(|l| l.strip_prefix("Proxy-Authenticate:").map(str::trim))
        .collect();
    let password = std::fs::read_to_string(dir.path().join("var/secrets/15550001111.sip")).unwrap();
    let creds = whatsip::sip::auth::DigestClient::new("15550001111", password.trim())
        .respond(
            challenges.iter().copied(),
            "INVITE",
            &format!("sip:+15550001111@gateway.whatsip.test:{wa};transport=tls"),
            None,
            &mut whatsip::sip::auth::RandomCnonce,
        )
        .unwrap();
    let again = req("INVITE", 2, "gw1b", "", offer).replacen(
        "Max-Forwards: 69\r\n",
        &format!("Max-Forwards: 69\r\nProxy-Authorization: {creds}\r\n"),
        1,
    );
    meta.write_all(again.as_bytes()).unwrap();
    meta.flush().unwrap();

    // The PBX gets a plain RTP offer on a trunk-range port.
    let mut buf = [0u8; 65536];
    let (invite, gw_addr) = loop {
        let (n, from) = pbx
            .recv_from(&mut buf)
            .expect("INVITE at the PBX within 10 s");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.starts_with("INVITE ") {
            break (m, from);
        }
    };
    let pbx_offer = body(&invite);
    assert!(pbx_offer.contains("RTP/AVP"), "{pbx_offer}");
    assert!(!pbx_offer.contains("a=crypto"), "{pbx_offer}");
    assert!(
        (30000..=30999).contains(&audio_port(pbx_offer)),
        "{pbx_offer}"
    );

    // "Meta" offered Opus only and the relay does not transcode: the PBX is offered Opus only.
    assert!(pbx_offer.contains("opus/48000/2"), "{pbx_offer}");
    assert!(
        !pbx_offer.contains("PCMU") && !pbx_offer.contains("PCMA"),
        "{pbx_offer}"
    );

    // The PBX answers 200 with Opus.
    let pbx_addr = pbx.local_addr().unwrap();
    let answer = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 111 101\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        for l in invite.lines().filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
        }) {
            ok += l;
            ok += "\r\n";
        }
    }
    ok += &format!(
        "To: {};tag=pbxtag\r\nContact: <sip:100@{pbx_addr}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
        header(&invite, "To").unwrap(),
        answer.len()
    );
    pbx.send_to(ok.as_bytes(), gw_addr).unwrap();

    // Meta gets 200 with an SRTP Opus answer on a WhatsApp-range port.
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
    let wa_answer = body(&ok);
    assert!(wa_answer.contains("RTP/SAVP"), "{wa_answer}");
    assert!(wa_answer.contains("opus/48000/2"), "{wa_answer}");
    assert!(
        wa_answer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{wa_answer}"
    );
    assert!(
        !wa_answer.contains("PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"),
        "key echoed"
    );
    assert!(
        (40000..=40999).contains(&audio_port(wa_answer)),
        "{wa_answer}"
    );
    let to_tag = header(&ok, "To")
        .and_then(|t| t.split_once(";tag="))
        .map(|(_, t)| format!(";tag={t}"))
        .expect("tag in 200");

    // ACK from Meta reaches the PBX.
    meta.write_all(req("ACK", 2, "gw2", &to_tag, "").as_bytes())
        .unwrap();
    meta.flush().unwrap();
    loop {
        let (n, _) = pbx.recv_from(&mut buf).expect("ACK at the PBX within 10 s");
        if buf[..n].starts_with(b"ACK ") {
            break;
        }
    }
    let (_, calls) = http_get(ports.http, "/calls").unwrap();
    assert!(calls.contains("\"state\":\"Accepted\""), "{calls}");

    // Meta hangs up: BYE to the PBX, 200 back to Meta.
    meta.write_all(req("BYE", 3, "gw3", &to_tag, "").as_bytes())
        .unwrap();
    meta.flush().unwrap();
    let bye = loop {
        let (n, from) = pbx.recv_from(&mut buf).expect("BYE at the PBX within 10 s");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.starts_with("BYE ") {
            break (m, from);
        }
    };
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for l in bye.0.lines().filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
        }) {
            ok += l;
            ok += "\r\n";
        }
    }
    ok += "Content-Length: 0\r\n\r\n";
    pbx.send_to(ok.as_bytes(), bye.1).unwrap();
    let r = loop {
        let m = read_stream_message(&mut meta, &mut mbuf);
        if header(&m, "CSeq").is_some_and(|c| c.ends_with("BYE")) {
            break m;
        }
    };
    assert!(r.starts_with("SIP/2.0 200"), "{r}");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, records) = http_get(ports.http, "/records").unwrap();
        if records.contains("\"Completed\"") {
            assert!(records.contains("\"user_initiated\""), "{records}");
            assert!(records.contains("wacid.GW"), "{records}");
            break;
        }
        assert!(Instant::now() < deadline, "no completed record: {records}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(sigterm(&mut gw).success());
}

/// The shipped default end to end (design §3): a PBX call to `+15551234567` goes through the
/// gateway to the in-process sandbox edge (TLS, Meta's 407 answered), the sandbox user answers,
/// the 200 OK reaches the PBX, and the PBX's BYE ends both legs with a completed record.
#[test]
fn business_initiated_call_reaches_the_sandbox_user_who_answers() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::fresh();
    let profiles = shipped_profiles(dir.path(), &ports);
    let mut gw = start(dir.path(), &profiles);
    wait_http(&mut gw, ports.http, "/healthz");

    let pbx = UdpSocket::bind("127.0.0.1:0").unwrap();
    pbx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let me = pbx.local_addr().unwrap().port();
    let t = ports.trunk;
    let sdp = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 111 101\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n";
    let invite = format!(
        "INVITE sip:+15551234567@127.0.0.1:{t} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-ok1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:100@127.0.0.1>;tag=pbx1\r\n\
         To: <sip:+15551234567@127.0.0.1>\r\n\
         Call-ID: ok1@pbx\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:100@127.0.0.1:{me}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    pbx.send_to(invite.as_bytes(), ("127.0.0.1", t)).unwrap();
    let mut buf = [0u8; 65536];
    let mut provisional = Vec::new();
    let ok = loop {
        let (n, _) = pbx.recv_from(&mut buf).expect("answer within 10 s");
        let r = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(r.starts_with("SIP/2.0 "), "{r}");
        if r.starts_with("SIP/2.0 1") {
            provisional.push(r[8..11].to_string());
            continue;
        }
        break r;
    };
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(provisional.iter().any(|s| s == "180"), "{provisional:?}");
    // Our PBX-leg answer: plain RTP Opus with the PBX's payload numbers.
    assert!(body(&ok).contains("RTP/AVP 111"), "{ok}");
    let to = header(&ok, "To").unwrap().to_owned();
    let contact = header(&ok, "Contact").unwrap().to_owned();
    let target = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let in_dialog = |method: &str, cseq: u32, branch: &str| {
        format!(
            "{method} {target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{me};branch={branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:100@127.0.0.1>;tag=pbx1\r\n\
             To: {to}\r\n\
             Call-ID: ok1@pbx\r\n\
             CSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    pbx.send_to(
        in_dialog("ACK", 1, "z9hG4bK-ok1ack").as_bytes(),
        ("127.0.0.1", t),
    )
    .unwrap();

    // The sandbox user's side of the call is accepted.
    let sandbox_state = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, calls) = http_get(ports.sandbox_http, "/sandbox/calls").expect("sandbox up");
            let v: serde_json::Value = serde_json::from_str(&calls).unwrap();
            let state = v[0]["state"].as_str().unwrap_or_default().to_owned();
            if state == want {
                return v[0].clone();
            }
            assert!(
                Instant::now() < deadline,
                "sandbox call not {want}: {calls}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let call = sandbox_state("accepted");
    assert_eq!(call["to"], "+15551234567", "{call}");
    assert_eq!(call["direction"], "business_initiated", "{call}");

    pbx.send_to(
        in_dialog("BYE", 2, "z9hG4bK-ok1bye").as_bytes(),
        ("127.0.0.1", t),
    )
    .unwrap();
    let bye_ok = loop {
        let (n, _) = pbx.recv_from(&mut buf).expect("BYE answered within 10 s");
        let r = String::from_utf8_lossy(&buf[..n]).into_owned();
        if r.contains("CSeq: 2 BYE") {
            break r;
        }
    };
    assert!(bye_ok.starts_with("SIP/2.0 200"), "{bye_ok}");
    let call = sandbox_state("completed");
    assert_eq!(
        call["violations"].as_array().map(Vec::len),
        Some(0),
        "{call}"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        let (_, body) = http_get(ports.http, "/records").expect("records answer");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(r) = v.as_array().and_then(|a| a.first()).cloned()
            && r["open"] == false
        {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no closed record within 10 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(record["state"], "Completed", "{record}");
    assert!(record["answered_at"].is_string(), "{record}");
    assert!(sigterm(&mut gw).success());
}
