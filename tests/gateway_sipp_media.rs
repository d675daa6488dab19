//! SIPp as the PBX, with RTP, through `whatsip run` to the in-process sandbox (Meta's edge and
//! its WhatsApp users decrypting and decoding what they get):
//! - business-initiated: 50 calls from two SIPp UACs at once (`-l 5` each) offering PCMU and
//!   streaming a 440 Hz µ-law tone (`rtp_stream`); 25 hung up by SIPp (BYE from the PBX), 25 by
//!   the WhatsApp user (`/sandbox/calls/{id}/hangup`, SIPp answers the gateway's BYE). Every
//!   call connects, the sandbox decodes the PBX's tone (non-silent, 0 decrypt failures), the
//!   gateway relays the user's audio to the PBX, and 50 complete records are written.
//! - user-initiated: the sandbox user calls the business number, a SIPp UAS answers with
//!   `-rtp_echo`; the 200 OK echoes Meta's Record-Route (no violation at the edge), audio goes
//!   both ways (the user decodes its own echoed tone), the user's BYE carries
//!   `x-wa-meta-call-duration` and the record's duration matches it within 1 s.
mod gateway_support;

use gateway_support::*;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// Called by SIPp instance A (SIPp hangs up).
const USER_A: &str = "+15551234567";
/// Called by SIPp instance B (the WhatsApp user hangs up).
const USER_B: &str = "+15551234568";
const CALLS_EACH: usize = 25;

fn wait_exit(p: &mut Proc, secs: u64, what: &str) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = p.0.try_wait().unwrap() {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "{what} still running after {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 3 s of a 440 Hz tone, G.711 µ-law, 8 kHz, no header (SIPp `rtp_stream` payload 0).
fn write_ulaw_tone(path: &Path) {
    let mut out = Vec::with_capacity(24_000);
    for i in 0..24_000u32 {
        let x = (f64::from(i) * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin() * 12_000.0;
        out.push(ulaw(x as i16));
    }
    std::fs::write(path, out).unwrap();
}

/// G.711 µ-law encoding of one sample (ITU-T G.711, as in Sun's g711.c).
fn ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    let mut exponent = 7;
    let mut mask = 0x4000;
    while exponent > 0 && s & mask == 0 {
        exponent -= 1;
        mask >>= 1;
    }
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// 2 s of the shipped 440 Hz Opus tone as RTP (PT 111, 20 ms apart) in a pcap file, for
/// SIPp's `play_pcap_audio` (SIPp 3.6.1's `rtp_stream` only knows G.711/G.729 framing).
fn write_opus_pcap(path: &Path) {
    let frames = tone_frames();
    let mut out = Vec::new();
    // Global header: magic, version 2.4 (two u16s), zone, sigfigs, snaplen, Ethernet.
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for i in 0..100u32 {
        let payload = &frames[i as usize % frames.len()];
        let rtp = rtp(111, i as u16 + 1, i * 960, 0x5151_0001, payload);
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        let sum: u32 = ip
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&6000u16.to_be_bytes());
        frame.extend_from_slice(&6002u16.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&rtp);
        let (sec, usec) = ((i * 20) / 1000, ((i * 20) % 1000) * 1000);
        for v in [sec, usec, frame.len() as u32, frame.len() as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out).unwrap();
}

/// `base` (a G.711 `rtp_stream` scenario) turned into its Opus twin: the offer names Opus and
/// the tone is played from `tone-opus.pcap`. Returns the absolute path of the new scenario.
fn opus_scenario(dir: &Path, base: &str) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(base),
    )
    .unwrap();
    let out = text
        .replace(
            "m=audio [rtpstream_audio_port] RTP/AVP 0 101",
            "m=audio [media_port] RTP/AVP 111 101",
        )
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:111 opus/48000/2")
        .replace(
            r#"<exec rtp_stream="tone.ulaw,-1,0" />"#,
            r#"<exec play_pcap_audio="tone-opus.pcap" />"#,
        );
    assert!(
        out.contains("play_pcap_audio") && out.contains("opus/48000/2"),
        "{base}"
    );
    let path = dir.join(base.replace(".xml", "-opus.xml"));
    std::fs::write(&path, out).unwrap();
    path.to_string_lossy().into_owned()
}

/// `limit`: calls at once per SIPp instance.
#[allow(clippy::too_many_arguments)]
fn uac(
    dir: &Path,
    scenario: &str,
    port: u16,
    rtp_base: u16,
    user: &str,
    trunk: u16,
    limit: u16,
    calls: usize,
) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    write_ulaw_tone(&dir.join("tone.ulaw"));
    write_opus_pcap(&dir.join("tone-opus.pcap"));
    let target = format!("127.0.0.1:{trunk}");
    let (p, mp, l, m) = (
        port.to_string(),
        rtp_base.to_string(),
        limit.to_string(),
        calls.to_string(),
    );
    let args = [
        "-p",
        &p,
        "-s",
        user,
        "-m",
        &m,
        "-l",
        &l,
        "-r",
        "10",
        "-aa",
        "-mp",
        &mp,
        "-timeout",
        "50s",
        "-timeout_error",
        &target,
    ];
    sipp_spawn(dir, scenario, &args)
}

#[test]
fn sipp_pbx_places_50_calls_with_rtp_hung_up_by_each_side() {
    sipp_50_calls(false);
}

/// The same with DTLS-SRTP + ICE toward WhatsApp (20 calls, 2 at a time per SIPp): SIPp streams
/// Opus (DTLS numbers carry Opus only; no transcoding).
#[test]
fn sipp_pbx_places_20_calls_with_opus_rtp_and_dtls_toward_whatsapp() {
    sipp_50_calls(true);
}

fn sipp_50_calls(dtls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::fresh();
    let profiles = write_profiles(dir.path(), &ports, move |name, t| {
        if dtls && name == "whatsapp.toml" {
            t.replace(
                "srtp_key_exchange = \"sdes\"",
                "srtp_key_exchange = \"dtls\"",
            )
        } else {
            t
        }
    });
    let mut gw = start(dir.path(), &profiles);
    wait_up(&mut gw, ports.http);
    for u in [USER_A, USER_B] {
        sandbox_user(
            &ports,
            &format!(r#"{{"user":"{u}","permission":"permanent","media":"tone"}}"#),
        );
    }

    // B listens on the trunk peer's port: the gateway sends its in-dialog requests there.
    let (rtp_a, mut rtp_b) = (rtp_block(), rtp_block());
    if rtp_a.abs_diff(rtp_b) < 400 {
        rtp_b = if rtp_a > 20_000 {
            rtp_a - 2000
        } else {
            rtp_a + 2000
        };
    }
    let work = dir.path().join("sipp");
    std::fs::create_dir_all(&work).unwrap();
    let scenario = |base: &str| {
        if dtls {
            opus_scenario(&work, base)
        } else {
            base.to_owned()
        }
    };
    // DTLS calls decode Opus in the (debug-built, in-process) sandbox: fewer at once keeps a
    // 2-core CI machine from starving the handshakes.
    // (10 calls each instead of 25 for the same reason.)
    let (limit, calls_each) = if dtls { (2, 10) } else { (5, CALLS_EACH) };
    let (scenario_a, scenario_b) = (
        scenario("pbx_rtp_uac.xml"),
        scenario("pbx_rtp_uac_wait_bye.xml"),
    );
    let mut b = uac(
        &work.join("b"),
        &scenario_b,
        ports.pbx_peer,
        rtp_b,
        USER_B,
        ports.trunk,
        limit,
        calls_each,
    );
    let mut a = uac(
        &work.join("a"),
        &scenario_a,
        free_port(),
        rtp_a,
        USER_A,
        ports.trunk,
        limit,
        calls_each,
    );

    // The WhatsApp user B hangs up each of its calls once the PBX's audio is decoded.
    let deadline = Instant::now() + Duration::from_secs(55);
    let mut hung_up = std::collections::HashSet::new();
    while hung_up.len() < calls_each {
        for c in sandbox_calls(&ports) {
            let id = c["id"].as_str().unwrap_or_default().to_owned();
            if c["to"] == USER_B
                && c["state"] == "accepted"
                && c["media"]["non_silent_rx_packets"].as_u64().unwrap_or(0) >= 25
                && !hung_up.contains(&id)
            {
                let (st, body) = eventually(10, "the sandbox's hangup answer", || {
                    http(
                        ports.sandbox_http,
                        "POST",
                        &format!("/sandbox/calls/{id}/hangup"),
                        None,
                    )
                });
                assert_eq!(st, 200, "{body}");
                hung_up.insert(id);
            }
        }
        if Instant::now() > deadline {
            panic!(
                "the user hung up {} calls of {calls_each} in 55 s; SIPp B errors:\n{}\ncalls: {:#?}",
                hung_up.len(),
                sipp_errors(&work.join("b")),
                sandbox_calls(&ports)
                    .iter()
                    .map(|c| (c["to"].clone(), c["state"].clone(), c["media"].clone()))
                    .collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let st_a = wait_exit(&mut a, 40, "SIPp A");
    let st_b = wait_exit(&mut b, 20, "SIPp B");
    assert!(
        st_a.success(),
        "SIPp A: {st_a}\n{}",
        sipp_errors(&work.join("a"))
    );
    assert!(
        st_b.success(),
        "SIPp B: {st_b}\n{}",
        sipp_errors(&work.join("b"))
    );

    // Meta's side: 50 calls, all connected and ended, the PBX's tone decoded on each.
    let calls = eventually(15, "50 ended sandbox calls", || {
        let calls = sandbox_calls(&ports);
        (calls.len() == 2 * calls_each && calls.iter().all(|c| c["state"] == "completed"))
            .then_some(calls)
    });
    for c in &calls {
        let m = &c["media"];
        assert_eq!(c["status"], 200, "{c:#}");
        assert!(m["rx_packets"].as_u64().unwrap() > 0, "{c:#}");
        assert!(m["non_silent_rx_packets"].as_u64().unwrap() > 0, "{c:#}");
        assert!(m["tx_packets"].as_u64().unwrap() > 0, "{c:#}");
        assert_eq!(m["decrypt_failures"], 0, "{c:#}");
        if dtls {
            assert_eq!(m["key_exchange"], "dtls", "{c:#}");
            assert_eq!(m["ice_role_seen"], "controlling", "{c:#}");
            assert_eq!(m["client_hello_from"], "gateway", "{c:#}");
        } else {
            assert_eq!(m["codec"], "PCMU/8000", "no transcoding: {c:#}");
        }
        assert_eq!(c["violations"].as_array().map(Vec::len), Some(0), "{c:#}");
        // Who hung up: the PBX's BYE reached the edge for A, the user's BYE left it for B.
        let (dir, who) = if c["to"] == USER_A {
            ("received", "PBX")
        } else {
            ("sent", "user")
        };
        assert!(
            transcript_lines(c, dir)
                .iter()
                .any(|l| l.starts_with("BYE ")),
            "BYE from the {who}: {c:#}"
        );
    }
    assert_eq!(
        calls.iter().filter(|c| c["to"] == USER_A).count(),
        calls_each
    );

    // The gateway's side: 50 complete records with media relayed both ways.
    let recs = eventually(15, "50 closed records", || {
        let r = json(ports.http, "/records?limit=500")
            .as_array()
            .cloned()
            .unwrap_or_default();
        (r.len() == 2 * calls_each && r.iter().all(|r| r["open"] == false)).then_some(r)
    });
    for r in &recs {
        assert_eq!(r["state"], "Completed", "{r:#}");
        assert!(r["answered_at"].is_string(), "{r:#}");
        let m = &r["media"];
        assert!(
            m["whatsapp_to_pbx"]["packets"].as_u64().unwrap_or(0) > 0,
            "{r:#}"
        );
        assert!(
            m["pbx_to_whatsapp"]["packets"].as_u64().unwrap_or(0) > 0,
            "{r:#}"
        );
        assert_eq!(m["decrypt_failures"], 0, "{r:#}");
    }
    assert!(sigterm(&mut gw).success());
}

#[test]
fn user_initiated_call_to_a_sipp_uas_with_rtp_echo() {
    user_initiated_to_sipp_echo(false);
}

/// The same with DTLS-SRTP + ICE toward WhatsApp (Meta's default key exchange).
#[test]
fn user_initiated_dtls_call_to_a_sipp_uas_with_rtp_echo() {
    user_initiated_to_sipp_echo(true);
}

fn user_initiated_to_sipp_echo(dtls: bool) {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::fresh();
    let profiles = write_profiles(dir.path(), &ports, move |name, t| {
        if dtls && name == "whatsapp.toml" {
            t.replace(
                "srtp_key_exchange = \"sdes\"",
                "srtp_key_exchange = \"dtls\"",
            )
        } else {
            t
        }
    });
    let mut gw = start(dir.path(), &profiles);
    wait_up(&mut gw, ports.http);
    let work = dir.path().join("sipp");
    std::fs::create_dir_all(&work).unwrap();
    let mp = rtp_block();
    let mut uas = sipp_spawn(
        &work,
        "pbx_uas_echo.xml",
        &[
            "-p",
            &ports.pbx_peer.to_string(),
            "-m",
            "1",
            "-aa",
            "-rtp_echo",
            "-mp",
            &mp.to_string(),
            "-timeout",
            "40s",
            "-timeout_error",
        ],
    );
    // Let SIPp bind before the call (bounded).
    eventually(10, "SIPp UAS bound", || {
        std::net::UdpSocket::bind(("127.0.0.1", ports.pbx_peer))
            .is_err()
            .then_some(())
    });
    let duration = 4;
    let id = sandbox_place_call(
        &ports,
        &format!(
            r#"{{"from":"{USER_A}","to":"+15550001111","duration":{duration},"media":"tone"}}"#
        ),
    );
    let call = sandbox_final(&ports, &id, 30);
    let st = wait_exit(&mut uas, 15, "SIPp UAS");
    assert!(st.success(), "SIPp UAS: {st}\n{}", sipp_errors(&work));

    assert_eq!(call["state"], "completed", "{call:#}");
    assert_eq!(call["status"], 200, "{call:#}");
    assert_eq!(
        call["violations"].as_array().map(Vec::len),
        Some(0),
        "{call:#}"
    );
    // Record-Route: the 200 OK's last Record-Route lines are the INVITE's, in order.
    let sip = call["sip"].as_array().unwrap();
    let rr = |e: &serde_json::Value| -> Vec<String> {
        e["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("record-route"))
            .map(|h| h[1].as_str().unwrap().to_owned())
            .collect()
    };
    let invite = sip
        .iter()
        .rev()
        .find(|e| {
            e["dir"] == "sent"
                && e["first_line"]
                    .as_str()
                    .is_some_and(|l| l.starts_with("INVITE "))
        })
        .unwrap();
    let ok = sip
        .iter()
        .find(|e| {
            e["dir"] == "received"
                && e["first_line"]
                    .as_str()
                    .is_some_and(|l| l.starts_with("SIP/2.0 200"))
                && transcript_header(e, "CSeq").is_some_and(|c| c.ends_with("INVITE"))
        })
        .unwrap_or_else(|| panic!("no 200 for the INVITE: {call:#}"));
    let (sent_rr, got_rr) = (rr(invite), rr(ok));
    assert!(!sent_rr.is_empty(), "{invite:#}");
    assert!(got_rr.ends_with(&sent_rr), "{sent_rr:?} vs {got_rr:?}");

    // Audio both ways: the user decodes its own tone, echoed by the PBX through the relay.
    let m = &call["media"];
    assert!(m["rx_packets"].as_u64().unwrap() >= 50, "{m:#}");
    assert!(m["non_silent_rx_packets"].as_u64().unwrap() >= 25, "{m:#}");
    assert_eq!(m["decrypt_failures"], 0, "{m:#}");
    if dtls {
        assert_eq!(m["key_exchange"], "dtls", "{m:#}");
        assert_eq!(m["ice_role_seen"], "controlling", "{m:#}");
        assert_eq!(m["regular_nomination_seen"], true, "{m:#}");
        assert_eq!(m["client_hello_from"], "gateway", "{m:#}");
    }

    // The user's BYE carries the call duration; the record's duration matches it.
    let bye = sip
        .iter()
        .find(|e| {
            e["dir"] == "sent"
                && e["first_line"]
                    .as_str()
                    .is_some_and(|l| l.starts_with("BYE "))
        })
        .unwrap_or_else(|| panic!("no BYE from the user: {call:#}"));
    let meta_duration: f64 = transcript_header(bye, "x-wa-meta-call-duration")
        .unwrap_or_else(|| panic!("no x-wa-meta-call-duration: {bye:#}"))
        .trim()
        .parse()
        .unwrap();
    let rec = eventually(10, "the closed record", || {
        records(&ports).into_iter().find(|r| r["open"] == false)
    });
    assert_eq!(rec["state"], "Completed", "{rec:#}");
    let d = rec["duration_s"].as_f64().expect("duration_s");
    assert!(
        (d - meta_duration).abs() <= 1.0,
        "record {d} s vs Meta's {meta_duration} s: {rec:#}"
    );
    assert!(
        (meta_duration - f64::from(duration)).abs() <= 1.0,
        "{meta_duration}"
    );
    let rm = &rec["media"];
    assert!(
        rm["whatsapp_to_pbx"]["packets"].as_u64().unwrap_or(0) >= 50,
        "{rec:#}"
    );
    assert!(
        rm["pbx_to_whatsapp"]["packets"].as_u64().unwrap_or(0) >= 50,
        "{rec:#}"
    );
    assert!(sigterm(&mut gw).success());
}
