//! Media through `whatsip run`, end to end: a plain-RTP PBX (UDP SIP + an RTP socket) ↔ the
//! gateway's relay ↔ the in-process sandbox's WhatsApp user (SDES SRTP, real Opus, decrypts
//! and decodes everything it receives). Asserts packets and decoded audio on both sides,
//! hold/refresh absorbed on the PBX leg with silence toward WhatsApp, and the media timeout.
mod gateway_support;

use gateway_support::*;
use std::time::Duration;

const USER: &str = "+15551234567";

fn sandbox_call(ports: &Ports) -> serde_json::Value {
    json(ports.sandbox_http, "/sandbox/calls")[0].clone()
}

fn sandbox_rx(ports: &Ports) -> u64 {
    sandbox_call(ports)["media"]["rx_packets"]
        .as_u64()
        .unwrap_or(0)
}

fn received_invites(call: &serde_json::Value) -> usize {
    call["sip"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter(|m| {
                    m["dir"] == "received"
                        && m["first_line"]
                            .as_str()
                            .is_some_and(|l| l.starts_with("INVITE "))
                })
                .count()
        })
        .unwrap_or(0)
}

fn set_user(ports: &Ports, body: &str) {
    let (st, b) = http(ports.sandbox_http, "POST", "/sandbox/users", Some(body)).unwrap();
    assert!(st < 300, "{st} {b}");
}

fn closed_record(ports: &Ports) -> serde_json::Value {
    eventually(15, "a closed record", || {
        json(ports.http, "/records")
            .as_array()
            .and_then(|a| a.first())
            .filter(|r| r["open"] == false)
            .cloned()
    })
}

/// The business number's key exchange in the profile copy (`sdes` as shipped, or `dtls`).
fn key_exchange(dtls: bool) -> impl Fn(&str, String) -> String {
    move |name, t| {
        if dtls && name == "whatsapp.toml" {
            let out = t.replace(
                "srtp_key_exchange = \"sdes\"",
                "srtp_key_exchange = \"dtls\"",
            );
            assert_ne!(out, t, "shipped profile names its key exchange");
            out
        } else {
            t
        }
    }
}

/// The sandbox saw a DTLS+ICE leg run the way Meta needs it: we were ICE-controlling with
/// regular nomination and sent the ClientHello.
fn assert_gateway_drove_dtls(call: &serde_json::Value) {
    let m = &call["media"];
    assert_eq!(m["key_exchange"], "dtls", "{call}");
    assert_eq!(m["ice_role_seen"], "controlling", "{call}");
    assert_eq!(m["regular_nomination_seen"], true, "{call}");
    assert_eq!(m["client_hello_from"], "gateway", "{call}");
    assert!(m["srtp_profile"].is_string(), "{call}");
}

#[test]
fn business_initiated_call_carries_audio_both_ways_and_survives_hold_and_refresh() {
    business_initiated_call(false);
}

#[test]
fn business_initiated_dtls_call_carries_audio_both_ways_and_survives_hold_and_refresh() {
    business_initiated_call(true);
}

fn business_initiated_call(dtls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::fresh();
    let profiles = write_profiles(dir.path(), &ports, key_exchange(dtls));
    let mut gw = start(dir.path(), &profiles);
    wait_up(&mut gw, ports.http);
    set_user(&ports, &format!(r#"{{"user":"{USER}","media":"tone"}}"#));

    let mut pbx = Pbx::new(ports.trunk, ports.pbx_peer, "media1@pbx");
    let (ok, prov) = pbx.invite(USER);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(prov.iter().any(|p| p == "180"), "{prov:?}");
    let gw_rtp = pbx.gw_rtp.unwrap();

    // WhatsApp → PBX: the sandbox user's tone, relayed as plain RTP Opus from the port our
    // SDP advertised, with the PBX's payload type.
    let got = pbx.collect_rtp(1500);
    let tone: Vec<_> = got.iter().filter(|p| p.0 == 111 && p.2 > 3).collect();
    assert!(tone.len() >= 30, "tone packets at the PBX: {}", tone.len());
    assert!(got.iter().all(|p| p.3 == gw_rtp), "RTP from our SDP port");

    // PBX → WhatsApp: 50 tone frames; the sandbox decrypts and decodes them.
    pbx.send_tone(50, 0x1111_0001, 100);
    let call = eventually(5, "sandbox decoded the PBX's tone", || {
        let c = sandbox_call(&ports);
        (c["media"]["non_silent_rx_packets"].as_u64().unwrap_or(0) >= 40).then_some(c)
    });
    assert_eq!(call["media"]["decrypt_failures"], 0, "{call}");
    if dtls {
        assert_gateway_drove_dtls(&call);
    } else {
        assert_eq!(call["media"]["key_exchange"], "sdes", "{call}");
    }
    // DTMF toward WhatsApp: an INFO digit (application/dtmf-relay) becomes RFC 4733, and the
    // PBX's own RFC 4733 packets (PT 101) are relayed with WhatsApp's PT.
    let info = pbx.request_typed(
        "INFO",
        "application/dtmf-relay",
        "Signal=5\r\nDuration=160\r\n",
    );
    assert!(info.starts_with("SIP/2.0 200"), "{info}");
    pbx.send_rfc4733(9, 0x1111_0001, 150, 50 * 960);
    let call = eventually(5, "the user decoded both digits", || {
        let c = sandbox_call(&ports);
        let d = c["media"]["dtmf"].as_str().unwrap_or_default().to_owned();
        (d.contains('5') && d.contains('9')).then_some(c)
    });
    let invites_before_hold = received_invites(&call);
    assert!(invites_before_hold >= 1, "{call}");

    // Hold by re-INVITE (sendonly): answered on the PBX leg, never sent to WhatsApp, and
    // silence keeps flowing to WhatsApp while the PBX sends nothing.
    let hold = pbx.request("INVITE", &pbx.sdp("sendonly"));
    assert!(hold.starts_with("SIP/2.0 200"), "{hold}");
    assert!(body(&hold).contains("a=recvonly"), "{hold}");
    let before = sandbox_rx(&ports);
    std::thread::sleep(Duration::from_millis(2000));
    let during = sandbox_rx(&ports);
    assert!(
        during >= before + 50,
        "silence toward WhatsApp during hold: {before} → {during}"
    );
    // A session refresh (UPDATE without SDP) is answered locally too.
    let refresh = pbx.request("UPDATE", "");
    assert!(refresh.starts_with("SIP/2.0 200"), "{refresh}");
    // Unhold with a new PBX SSRC (music-on-hold style change): audio flows again.
    let resume = pbx.request("INVITE", &pbx.sdp("sendrecv"));
    assert!(resume.starts_with("SIP/2.0 200"), "{resume}");
    let nonsilent_before = sandbox_call(&ports)["media"]["non_silent_rx_packets"]
        .as_u64()
        .unwrap();
    pbx.send_tone(25, 0x2222_0002, 9);
    eventually(5, "tone after unhold", || {
        let c = sandbox_call(&ports);
        (c["media"]["non_silent_rx_packets"].as_u64().unwrap_or(0) >= nonsilent_before + 20)
            .then_some(())
    });
    let call = sandbox_call(&ports);
    assert_eq!(
        received_invites(&call),
        invites_before_hold,
        "no re-INVITE reached WhatsApp: {call}"
    );
    assert_eq!(call["media"]["decrypt_failures"], 0, "{call}");

    let bye = pbx.request("BYE", "");
    assert!(bye.starts_with("SIP/2.0 200"), "{bye}");
    let record = closed_record(&ports);
    assert_eq!(record["state"], "Completed", "{record}");
    let m = &record["media"];
    assert!(
        m["pbx_to_whatsapp"]["packets"].as_u64().unwrap() >= 75 + 50,
        "{record}"
    );
    assert!(
        m["whatsapp_to_pbx"]["packets"].as_u64().unwrap() >= 30,
        "{record}"
    );
    assert_eq!(m["decrypt_failures"], 0, "{record}");
    let call = eventually(10, "sandbox call completed", || {
        let c = sandbox_call(&ports);
        (c["state"] == "completed").then_some(c)
    });
    assert_eq!(
        call["violations"].as_array().map(Vec::len),
        Some(0),
        "{call}"
    );
    assert!(sigterm(&mut gw).success());
}

#[test]
fn no_media_from_whatsapp_ends_the_call_on_both_legs() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::fresh();
    let profiles = write_profiles(dir.path(), &ports, |name, t| {
        if name == "whatsapp.toml" {
            t.replace("media_timeout_s = 20", "media_timeout_s = 2")
        } else {
            t
        }
    });
    let mut gw = start(dir.path(), &profiles);
    wait_up(&mut gw, ports.http);
    // The user answers but never sends media.
    set_user(&ports, &format!(r#"{{"user":"{USER}","media":"silent"}}"#));
    let mut pbx = Pbx::new(ports.trunk, ports.pbx_peer, "timeout1@pbx");
    let (ok, _) = pbx.invite(USER);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let bye = loop {
        let m = pbx.recv();
        if m.starts_with("BYE ") {
            break m;
        }
    };
    let reason = header(&bye, "Reason").unwrap_or_default().to_owned();
    assert!(reason.contains("media"), "BYE carries a Reason: {bye}");
    let call = eventually(10, "sandbox leg ended", || {
        let c = sandbox_call(&ports);
        (c["state"] == "completed").then_some(c)
    });
    // The sandbox user was silent, but it received our packets (first packet + silence).
    assert!(
        call["media"]["rx_packets"].as_u64().unwrap() >= 50,
        "{call}"
    );
    let record = closed_record(&ports);
    assert!(
        record["media"]["pbx_to_whatsapp"]["packets"]
            .as_u64()
            .unwrap()
            >= 50,
        "{record}"
    );
    assert!(sigterm(&mut gw).success());
}

#[test]
fn user_initiated_dtls_call_carries_audio_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::fresh();
    let profiles = write_profiles(dir.path(), &ports, key_exchange(true));
    let mut gw = start(dir.path(), &profiles);
    wait_up(&mut gw, ports.http);

    // The PBX: a UAS on the trunk peer's port that answers Opus from its RTP socket.
    let pbx = Pbx::new(ports.trunk, ports.pbx_peer, "unused");
    let (st, b) = http(
        ports.sandbox_http,
        "POST",
        "/sandbox/calls",
        Some(&format!(
            r#"{{"from":"{USER}","to":"+15550001111","media":"tone","duration":4}}"#
        )),
    )
    .unwrap();
    assert!(st < 300, "{st} {b}");
    let invite = loop {
        let m = pbx.recv();
        if m.starts_with("INVITE ") {
            break m;
        }
    };
    let gw_rtp = std::net::SocketAddr::from(([127, 0, 0, 1], audio_port(body(&invite))));
    let sdp = pbx.sdp("sendrecv");
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for h in ["Via", "From", "Call-ID", "CSeq"] {
        for l in invite.lines().filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(h))
        }) {
            ok.push_str(l);
            ok.push_str("\r\n");
        }
    }
    let to = header(&invite, "To").unwrap();
    ok.push_str(&format!(
        "To: {to};tag=pbx-uas\r\nContact: <sip:pbx@127.0.0.1:{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        ports.pbx_peer,
        sdp.len()
    ));
    pbx.sip
        .send_to(ok.as_bytes(), ("127.0.0.1", ports.trunk))
        .unwrap();
    // The user's tone reaches the PBX; the PBX's tone reaches the user.
    let got = pbx.collect_rtp(1500);
    let tone = got.iter().filter(|p| p.0 == 111 && p.2 > 3).count();
    assert!(
        tone >= 25,
        "tone packets at the PBX: {tone} of {}",
        got.len()
    );
    let mut talker = Pbx::new(ports.trunk, 0, "talker");
    talker.rtp = pbx.rtp.try_clone().unwrap();
    talker.gw_rtp = Some(gw_rtp);
    talker.send_tone(50, 0x3333_0003, 1);
    let call = eventually(10, "the user decoded the PBX's tone", || {
        let c = sandbox_call(&ports);
        (c["media"]["non_silent_rx_packets"].as_u64().unwrap_or(0) >= 40).then_some(c)
    });
    assert_gateway_drove_dtls(&call);
    assert_eq!(
        call["violations"].as_array().map(Vec::len),
        Some(0),
        "{call}"
    );
    // The user hangs up after its duration: BYE reaches the PBX, the record closes.
    let bye = loop {
        let m = pbx.recv();
        if m.starts_with("BYE ") {
            break m;
        }
    };
    let mut resp = String::from("SIP/2.0 200 OK\r\n");
    for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for l in bye.lines().filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(h))
        }) {
            resp.push_str(l);
            resp.push_str("\r\n");
        }
    }
    resp.push_str("Content-Length: 0\r\n\r\n");
    pbx.sip
        .send_to(resp.as_bytes(), ("127.0.0.1", ports.trunk))
        .unwrap();
    let record = closed_record(&ports);
    assert_eq!(record["state"], "Completed", "{record}");
    assert!(
        record["media"]["whatsapp_to_pbx"]["packets"]
            .as_u64()
            .unwrap()
            >= 25,
        "{record}"
    );
    assert!(sigterm(&mut gw).success());
}
