//! `whatsip run` refusals and digest variants against real peers (the in-process sandbox as
//! Meta, raw UDP/TLS sockets as the PBX and as "Meta" where a sandbox call cannot express the
//! case):
//! - an INVITE from an address no trunk allows → 403, nothing reaches Meta;
//! - an INVITE from a trunk that routes no business number → 404; "Meta" calling a number
//!   that is not configured → 404 (before any digest challenge);
//! - CANCEL before the answer, from the PBX: 200 + 487 to the PBX, the gateway CANCELs Meta's
//!   leg and the sandbox answers its INVITE 487; from the WhatsApp user: the sandbox gets 487,
//!   the PBX gets CANCEL and its 487 is ACKed;
//! - Meta's 407 answered with SHA-256 (default) and with MD5
//!   (`meta.sandbox_digest_algorithm = "md5"`).
//!
//! Covered elsewhere and not repeated: the Meta 403 for a user without permission
//! (`gateway_run`, `gateway_signalling`), trunk digest 401/403 (`gateway_signalling`).
mod gateway_support;

use gateway_support::*;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

const USER: &str = "+15551234567";

fn started(edit: impl Fn(&str, String) -> String) -> (tempfile::TempDir, Ports, Gateway) {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::fresh();
    let profiles = write_profiles(dir.path(), &ports, edit);
    let mut gw = start(dir.path(), &profiles);
    wait_up(&mut gw, ports.http);
    (dir, ports, gw)
}

/// Sends a PBX INVITE for `user` from `ip` to the trunk listener; returns the final response.
fn raw_invite(ip: &str, trunk: u16, user: &str, call_id: &str) -> String {
    let sock = UdpSocket::bind((ip, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let me = sock.local_addr().unwrap();
    let sdp = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
    let invite = format!(
        "INVITE sip:{user}@127.0.0.1:{trunk} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:100@{ip}>;tag=r1\r\n\
         To: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:100@{me}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    sock.send_to(invite.as_bytes(), ("127.0.0.1", trunk))
        .unwrap();
    let mut buf = [0u8; 65536];
    loop {
        let (n, _) = sock.recv_from(&mut buf).expect("final answer within 10 s");
        let r = String::from_utf8_lossy(&buf[..n]).into_owned();
        if r.starts_with("SIP/2.0 ") && !r.starts_with("SIP/2.0 1") {
            return r;
        }
    }
}

/// A trunk profile that routes no business number, accepting calls from 127.0.0.2 only.
fn orphan_trunk(profiles: &std::path::Path) {
    let (listen, peer) = (free_port(), free_port());
    std::fs::write(
        profiles.join("orphan.toml"),
        format!(
            "kind = \"trunk\"\nname = \"orphan\"\nallowed_sources = [\"127.0.0.2\"]\n\
             codecs = [\"PCMU\"]\noptions_ping_s = 0\n\n[listen]\nudp = [\"127.0.0.1:{listen}\"]\n\n\
             [peer]\naddress = \"127.0.0.1:{peer}\"\ntransport = \"udp\"\n\n\
             [media]\nrtp_port_range = [31000, 31099]\nsrtp = \"off\"\n"
        ),
    )
    .unwrap();
}

/// Unknown trunk source → 403; a trunk without a business number → 404; "Meta" calling a
/// number that is not ours → 404 (routing comes before the digest challenge). None of them
/// reaches Meta's edge.
#[test]
fn unknown_source_gets_403_and_unknown_numbers_get_404() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::fresh();
    let profiles = write_profiles(dir.path(), &ports, |_, t| t);
    orphan_trunk(&profiles);
    let mut gw = start(dir.path(), &profiles);
    wait_up(&mut gw, ports.http);

    // 127.0.0.3 is in no trunk's allowed_sources.
    let r = raw_invite("127.0.0.3", ports.trunk, USER, "src403");
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    // 127.0.0.2 is the orphan trunk's source: no business number to call from.
    let r = raw_invite("127.0.0.2", ports.trunk, USER, "num404");
    assert!(r.starts_with("SIP/2.0 404"), "{r}");
    // The shipped trunk from 127.0.0.1 is routed (control: the same INVITE is not refused
    // by the gateway — the sandbox user answers).
    sandbox_user(&ports, &format!(r#"{{"user":"{USER}","answer":"busy"}}"#));
    let r = raw_invite("127.0.0.1", ports.trunk, USER, "ok486");
    assert!(r.starts_with("SIP/2.0 486"), "{r}");

    // "Meta" over TLS (trusting the sandbox CA) calls +15559990000, which is not configured.
    use rustls_pki_types::ServerName;
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
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 3480 RTP/SAVP 111 126\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:126 telephone-event/8000\r\na=rtcp-mux\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n";
    let wa = ports.wa;
    let invite = format!(
        "INVITE sip:+15559990000@gateway.whatsip.test:{wa};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS {me};branch=z9hG4bKu404\r\n\
         Max-Forwards: 69\r\n\
         From: <sip:{USER}@wa.meta.vc>;tag=mt\r\n\
         To: <sip:+15559990000@gateway.whatsip.test>\r\n\
         Call-ID: outgoing:wacid.U404\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:{USER}@{me};transport=tls>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{offer}",
        offer.len()
    );
    meta.write_all(invite.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let fin = loop {
        let m = read_stream_message(&mut meta, &mut buf);
        if !m.starts_with("SIP/2.0 1") {
            break m;
        }
    };
    assert!(fin.starts_with("SIP/2.0 404"), "{fin}");

    // Only the control call reached the edge.
    let calls = sandbox_calls(&ports);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert!(calls[0]["call_id"].as_str() != Some("src403"), "{calls:#?}");
    assert!(sigterm(&mut gw).success());
}

/// The PBX CANCELs while the WhatsApp user's phone rings: the PBX gets 200 for the CANCEL and
/// 487 for its INVITE; the gateway CANCELs Meta's leg, which the sandbox answers 487.
#[test]
fn pbx_cancel_before_answer_gets_487_on_both_legs() {
    let (_dir, ports, mut gw) = started(|_, t| t);
    sandbox_user(
        &ports,
        &format!(r#"{{"user":"{USER}","answer":"no_answer","ring_timeout_ms":30000}}"#),
    );
    let pbx = Pbx::new(ports.trunk, ports.pbx_peer, "cancel1@pbx");
    let (me, t) = (pbx.sip_port(), ports.trunk);
    let sdp = pbx.sdp("sendrecv");
    let common = |method: &str| {
        format!(
            "{method} sip:{USER}@127.0.0.1:{t} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-cancel1\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:100@127.0.0.1>;tag=pbxc\r\n\
             To: <sip:{USER}@127.0.0.1>\r\n\
             Call-ID: cancel1@pbx\r\n\
             CSeq: 1 {method}\r\n"
        )
    };
    pbx.send(&format!(
        "{}Contact: <sip:100@127.0.0.1:{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        common("INVITE"),
        sdp.len()
    ));
    loop {
        let m = pbx.recv();
        if m.starts_with("OPTIONS ") {
            continue; // a qualify ping
        }
        assert!(
            m.starts_with("SIP/2.0 1"),
            "only provisionals before CANCEL: {m}"
        );
        if m.starts_with("SIP/2.0 180") {
            break;
        }
    }
    let ringing = eventually(10, "the sandbox call ringing", || {
        sandbox_calls(&ports)
            .into_iter()
            .find(|c| c["state"] == "ringing")
    });
    let id = ringing["id"].as_str().unwrap().to_owned();
    pbx.send(&format!("{}Content-Length: 0\r\n\r\n", common("CANCEL")));
    let (mut cancel_ok, mut invite_487) = (None, None);
    while cancel_ok.is_none() || invite_487.is_none() {
        let m = pbx.recv();
        if m.starts_with("SIP/2.0 1") || m.starts_with("OPTIONS ") {
            continue;
        }
        match header(&m, "CSeq") {
            Some(c) if c.ends_with("CANCEL") => cancel_ok = Some(m),
            Some(c) if c.ends_with("INVITE") => invite_487 = Some(m),
            _ => panic!("unexpected: {m}"),
        }
    }
    let (cancel_ok, invite_487) = (cancel_ok.unwrap(), invite_487.unwrap());
    assert!(cancel_ok.starts_with("SIP/2.0 200"), "{cancel_ok}");
    assert!(invite_487.starts_with("SIP/2.0 487"), "{invite_487}");
    let to = header(&invite_487, "To").unwrap();
    pbx.send(&format!(
        "{}Content-Length: 0\r\n\r\n",
        common("ACK").replace(&format!("To: <sip:{USER}@127.0.0.1>"), &format!("To: {to}"))
    ));

    // Meta's leg: the gateway's CANCEL reached the edge, which answered its INVITE 487.
    let call = sandbox_final(&ports, &id, 15);
    assert!(
        matches!(call["state"].as_str(), Some("rejected" | "failed")),
        "{call:#}"
    );
    assert_eq!(call["status"], 487, "{call:#}");
    let received = transcript_lines(&call, "received");
    assert!(
        received.iter().any(|l| l.starts_with("CANCEL ")),
        "{received:?}"
    );
    let sent = transcript_lines(&call, "sent");
    assert!(
        sent.iter().any(|l| l.starts_with("SIP/2.0 487")),
        "{sent:?}"
    );
    assert_eq!(
        call["violations"].as_array().map(Vec::len),
        Some(0),
        "{call:#}"
    );
    let record = eventually(10, "a closed record", || {
        records(&ports).into_iter().find(|r| r["open"] == false)
    });
    assert_ne!(record["state"], "Completed", "{record:#}");
    assert_eq!(record["pbx_call_id"], "cancel1@pbx", "{record:#}");
    assert!(sigterm(&mut gw).success());
}

/// The WhatsApp user hangs up while the PBX rings: the sandbox's INVITE gets 487, the PBX gets
/// a CANCEL, answers it 200 + 487, and the gateway ACKs the 487.
#[test]
fn whatsapp_cancel_before_answer_gets_487_on_both_legs() {
    let (_dir, ports, mut gw) = started(|_, t| t);
    let sock = UdpSocket::bind(("127.0.0.1", ports.pbx_peer)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let id = sandbox_place_call(
        &ports,
        &format!(r#"{{"from":"{USER}","to":"+15550001111","duration":5}}"#),
    );
    let mut buf = [0u8; 65536];
    let mut recv = || {
        let (n, from) = sock.recv_from(&mut buf).expect("a message within 15 s");
        (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
    };
    let reply = |req: &str, status: &str| {
        let mut r = format!("SIP/2.0 {status}\r\n");
        for name in ["Via", "From", "Call-ID", "CSeq"] {
            r += &format!("{name}: {}\r\n", header(req, name).unwrap());
        }
        r += &format!(
            "To: {};tag=uas1\r\nContact: <sip:100@127.0.0.1:{}>\r\nContent-Length: 0\r\n\r\n",
            header(req, "To").unwrap(),
            ports.pbx_peer
        );
        r
    };
    // The INVITE (OPTIONS pings are answered on the way).
    let (invite, from) = loop {
        let (m, from) = recv();
        if m.starts_with("OPTIONS ") {
            sock.send_to(reply(&m, "200 OK").as_bytes(), from).unwrap();
        } else if m.starts_with("INVITE ") {
            break (m, from);
        }
    };
    sock.send_to(reply(&invite, "180 Ringing").as_bytes(), from)
        .unwrap();
    eventually(10, "the sandbox call ringing", || {
        (sandbox_call_by_id(&ports, &id)["state"] == "ringing").then_some(())
    });
    let (st, b) = http(
        ports.sandbox_http,
        "POST",
        &format!("/sandbox/calls/{id}/hangup"),
        None,
    )
    .unwrap();
    assert_eq!(st, 200, "{b}");
    let cancel = loop {
        let (m, from) = recv();
        if m.starts_with("OPTIONS ") {
            sock.send_to(reply(&m, "200 OK").as_bytes(), from).unwrap();
        } else if m.starts_with("CANCEL ") {
            break m;
        }
    };
    assert_eq!(
        header(&cancel, "Via").unwrap(),
        header(&invite, "Via").unwrap(),
        "CANCEL matches the INVITE's branch"
    );
    sock.send_to(reply(&cancel, "200 OK").as_bytes(), from)
        .unwrap();
    sock.send_to(reply(&invite, "487 Request Terminated").as_bytes(), from)
        .unwrap();
    let ack = loop {
        let (m, _) = recv();
        if m.starts_with("ACK ") {
            break m;
        }
    };
    assert!(header(&ack, "CSeq").unwrap().ends_with("ACK"), "{ack}");

    let call = sandbox_final(&ports, &id, 15);
    assert!(
        matches!(call["state"].as_str(), Some("rejected" | "failed")),
        "{call:#}"
    );
    assert_eq!(call["status"], 487, "{call:#}");
    let received = transcript_lines(&call, "received");
    assert!(
        received.iter().any(|l| l.starts_with("SIP/2.0 487")),
        "{received:?}"
    );
    assert!(sigterm(&mut gw).success());
}

/// A business-initiated call with the edge challenging in `algorithm`: the gateway's answer
/// uses that algorithm and the call connects.
fn meta_challenge_is_answered(md5: bool) {
    let (_dir, ports, mut gw) = started(|name, t| {
        if md5 && name == "whatsapp.toml" {
            t.replace(
                "sandbox = true",
                "sandbox = true\nsandbox_digest_algorithm = \"md5\"",
            )
        } else {
            t
        }
    });
    let word = if md5 { "MD5" } else { "SHA-256" };
    let mut pbx = Pbx::new(ports.trunk, ports.pbx_peer, &format!("digest-{word}@pbx"));
    let (ok, _) = pbx.invite(USER);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let call = eventually(10, "sandbox call accepted", || {
        sandbox_calls(&ports)
            .into_iter()
            .find(|c| c["state"] == "accepted")
    });
    let sip = call["sip"].as_array().unwrap();
    let challenge = sip
        .iter()
        .find(|e| {
            e["dir"] == "sent"
                && e["first_line"]
                    .as_str()
                    .is_some_and(|l| l.starts_with("SIP/2.0 407"))
        })
        .unwrap_or_else(|| panic!("no 407: {call:#}"));
    let pa = transcript_header(challenge, "Proxy-Authenticate").unwrap();
    assert!(pa.contains(&format!("algorithm={word}")), "{pa}");
    let auth = sip
        .iter()
        .find_map(|e| {
            (e["dir"] == "received")
                .then(|| transcript_header(e, "Proxy-Authorization"))
                .flatten()
        })
        .unwrap_or_else(|| panic!("no authenticated INVITE: {call:#}"));
    let lower = auth.to_ascii_lowercase();
    if md5 {
        assert!(
            !lower.contains("algorithm=") || lower.contains("algorithm=md5"),
            "{auth}"
        );
    } else {
        assert!(lower.contains("algorithm=sha-256"), "{auth}");
    }
    assert!(auth.contains("username=\"15550001111\""), "{auth}");
    let bye = pbx.request("BYE", "");
    assert!(bye.starts_with("SIP/2.0 200"), "{bye}");
    let id = call["id"].as_str().unwrap();
    let call = sandbox_final(&ports, id, 10);
    assert_eq!(call["state"], "completed", "{call:#}");
    assert_eq!(
        call["violations"].as_array().map(Vec::len),
        Some(0),
        "{call:#}"
    );
    assert!(sigterm(&mut gw).success());
}

#[test]
fn meta_sha256_challenge_is_answered() {
    meta_challenge_is_answered(false);
}

#[test]
fn meta_md5_challenge_is_answered() {
    meta_challenge_is_answered(true);
}
