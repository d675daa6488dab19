//! Issue 3: baresip (Debian `baresip-core` 1.0) as the **business side** calls a sandbox
//! user through the sandbox SIP edge over TLS, with SDES SRTP (`mediaenc=srtp-mand`) and
//! Opus, and the call carries audio both ways: the sandbox decrypts and counts baresip's
//! packets (a `sox`-made 440 Hz WAV played by `aufile`), the sandbox user plays its tone
//! back, and baresip's recording of what it received is not silence. baresip 1.0's
//! `aufile` module has only a source (no player), so the recording is the `sndfile`
//! filter's dump of the decoded stream (`snd_path/…-dec.wav`), as in
//! `tests/sandbox_media_baresip.rs`.
//!
//! What baresip is configured with, and why (Meta's rules as the edge enforces them):
//! - transport: `outbound="sip:127.0.0.1:<edge>;transport=tls"`, `sip_cafile` = the sandbox
//!   CA (no `sip_certificate`: baresip is a TLS client only). baresip 1.0 (libre) offers no
//!   ALPN, as Meta requires; the edge presents its `wa.meta.vc` certificate.
//! - Request-URI `sip:+15551234567@wa.meta.vc;transport=tls`: the test dials
//!   `sip:+15551234567@wa.meta.vc` and baresip appends the account's `;transport=tls`
//!   (dialing it with `;transport=tls` puts the parameter in twice). From is the account
//!   AOR `sip:+15550001111@gateway.whatsip.test`, the host the fixture configures for the
//!   number (read from `GET /sandbox/numbers` → `hostname`), so Meta's From-host rule passes
//!   without any workaround.
//! - digest: `auth_user=15550001111` (the number without `+`), `auth_pass` = the number's SIP
//!   password read from the Graph twin (`include_sip_credentials=true`). The sandbox
//!   challenges with MD5 (`--digest-algorithm md5`): baresip 1.0's libre only computes MD5
//!   digests (and leaves `algorithm` out of its answer, RFC 2617's default). libre puts the
//!   Request-URI in the digest `uri`, as the edge requires.
//! - Record-Route: Meta's exact values (`--record-route meta`: `wa.meta.vc`,
//!   `onevc-sip-proxy.fbinfra.net:8191`). baresip 1.0 sends the ACK along the route set to
//!   `wa.meta.vc` itself (the `outbound` proxy does not apply to in-dialog requests), so the
//!   name must resolve: the test runs a tiny DNS responder on 127.0.0.1 ([`FakeDns`]) and
//!   points baresip's `dns_server` at it (test only; the machine's resolver is untouched).
//!   It answers what libre 1.1 asks for a `;transport=tls` route without a port (RFC 3263):
//!   SRV `_sips._tcp.wa.meta.vc` → `0 0 <edge port> wa.meta.vc` (the edge listens on an
//!   ephemeral port, not 5061), A `wa.meta.vc` / `onevc-sip-proxy.fbinfra.net` → 127.0.0.1,
//!   empty answers for other types of those names and NXDOMAIN for anything else. libre then
//!   finds its open TLS connection to that address and sends the ACK on it, carrying Meta's
//!   route set, which the edge checks (a violation otherwise).
//! - `audio_codecs=opus/48000/2`, `mediaenc=srtp-mand` (SDES, RTP/SAVP); the WAV is 48 kHz
//!   stereo because baresip 1.0's `aufile` source refuses a channel count other than the
//!   codec's.
mod sandbox_support;

use sandbox_support::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use whatsip::sandbox::edge::RouteStyle;
use whatsip::sip::auth::Algorithm;

const PNID: &str = "106540352242922";

mod baresip_support;
use baresip_support::{FakeDns, wav_rms};

async fn get_json(url: String) -> serde_json::Value {
    reqwest::Client::new()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The number's SIP password from the Graph twin, as a gateway operator would read it.
async fn sip_password(http: SocketAddr) -> String {
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!(
            "http://{http}/v23.0/{PNID}/settings?include_sip_credentials=true"
        ))
        .bearer_auth("sandbox")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["calling"]["sip"]["servers"][0]["sip_user_password"]
        .as_str()
        .unwrap_or_else(|| panic!("no sip_user_password in {v:#}"))
        .to_string()
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_business_side_calls_a_sandbox_user_over_tls_sdes_opus() {
    let sb = sandbox_cfg(
        Algorithm::Md5,
        5061,
        Duration::from_secs(10),
        RouteStyle::Meta,
    )
    .await;
    let http = sb.running.http_addr;
    let edge = sb.edge();
    let dns = FakeDns::start(
        &["wa.meta.vc", "onevc-sip-proxy.fbinfra.net"],
        &[("_sips._tcp.wa.meta.vc", "wa.meta.vc", edge.port())],
    );

    // The host configured for the number: baresip's From host.
    let numbers = get_json(format!("http://{http}/sandbox/numbers")).await;
    let host = numbers["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["e164"] == "+15550001111")
        .and_then(|n| n["hostname"].as_str())
        .unwrap_or_else(|| panic!("fixture number: {numbers:#}"))
        .to_string();
    let password = sip_password(http).await;
    assert_eq!(password, sb.password());

    // The sandbox user plays its 440 Hz tone, so baresip's recording is the sandbox's audio.
    let r = reqwest::Client::new()
        .post(format!("http://{http}/sandbox/users"))
        .json(&serde_json::json!({"user": "+15551234567", "media": "tone"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);

    let conf = sb.dir.path().join("baresip");
    std::fs::create_dir_all(&conf).unwrap();
    let tone = conf.join("tone.wav");
    let rec = conf.join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    let sox = std::process::Command::new("sox")
        .args(["-n", "-r", "48000", "-c", "2", "-b", "16"])
        .arg(&tone)
        .args(["synth", "30", "sine", "440", "vol", "0.5"])
        .status()
        .expect("sox installed");
    assert!(sox.success(), "sox failed");
    let sip_port = free_port();
    std::fs::write(
        conf.join("config"),
        format!(
            "sip_listen\t\t127.0.0.1:{sip_port}\nsip_cafile\t\t{ca}\n\
             module_path\t\t/usr/lib/baresip/modules\nmodule\t\t\topus.so\n\
             module\t\t\tsrtp.so\nmodule\t\t\taufile.so\nmodule\t\t\tsndfile.so\n\
             module_app\t\taccount.so\nmodule_app\t\tmenu.so\n\
             audio_source\t\taufile,{tone}\naudio_alert\t\taufile,/dev/null\n\
             snd_path\t\t{rec}\n\
             net_interface\t\t127.0.0.1\nrtp_timeout\t\t0\n\
             dns_server\t\t{dns}\n",
            dns = dns.addr,
            ca = sb.ca().display(),
            tone = tone.display(),
            rec = rec.display(),
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("accounts"),
        format!(
            "<sip:+15550001111@{host};transport=tls>;auth_user=15550001111;auth_pass={password};\
             outbound=\"sip:127.0.0.1:{port};transport=tls\";regint=0;\
             mediaenc=srtp-mand;audio_codecs=opus/48000/2\n",
            port = edge.port()
        ),
    )
    .unwrap();
    let log_path = conf.join("baresip.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut baresip = tokio::process::Command::new("baresip")
        .arg("-f")
        .arg(&conf)
        .arg("-e")
        .arg("/dial sip:+15551234567@wa.meta.vc")
        .arg("-t")
        .arg("40")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("baresip installed (scripts/test installs baresip-core)");

    // Bounded wait: the call is accepted and media flows both ways.
    let deadline = Instant::now() + Duration::from_secs(25);
    let (id, call) = loop {
        let calls = get_json(format!("http://{http}/sandbox/calls")).await;
        let found = calls
            .as_array()
            .and_then(|a| a.last())
            .cloned()
            .filter(|c| c["state"] == "accepted");
        if let Some(c) = found {
            let m = &c["media"];
            let n = |k: &str| m[k].as_u64().unwrap_or(0);
            if n("rx_packets") > 50 && n("tx_packets") > 50 && n("non_silent_rx_packets") > 20 {
                break (c["id"].as_str().unwrap().to_string(), c);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no accepted call with media both ways in 25 s: {calls:#}\nbaresip log:\n{}",
            log_of(&log_path)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("sandbox media: {:#}", call["media"]);
    let m = &call["media"];
    assert!(m["rx_packets"].as_u64().unwrap() > 20, "{m:#}");
    assert_eq!(m["decrypt_failures"], 0, "{m:#}");
    assert!(m["non_silent_rx_packets"].as_u64().unwrap() > 0, "{m:#}");
    assert!(m["tx_packets"].as_u64().unwrap() > 20, "{m:#}");
    assert_eq!(call["status"], 200, "{call:#}");
    assert_eq!(call["violations"], serde_json::json!([]), "{call:#}");

    // Let baresip record a little more, then the user hangs up (BYE to baresip) so baresip
    // closes its recording; then stop baresip cleanly (SIGTERM), killing it if it lingers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = reqwest::Client::new()
        .post(format!("http://{http}/sandbox/calls/{id}/hangup"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let call = loop {
        let c = get_json(format!("http://{http}/sandbox/calls/{id}")).await;
        if c["state"] != "accepted" || Instant::now() >= deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if let Some(pid) = baresip.id() {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(5), baresip.wait())
        .await
        .is_err()
    {
        let _ = baresip.start_kill();
        let _ = baresip.wait().await;
    }
    assert_eq!(call["state"], "completed", "{call:#}");
    assert_eq!(call["violations"], serde_json::json!([]), "{call:#}");
    let m = &call["media"];
    assert_eq!(m["decrypt_failures"], 0, "{m:#}");
    // What the edge received from baresip: the authenticated INVITE as configured above,
    // and the ACK through the (loopback) route set.
    let received: Vec<&serde_json::Value> = call["sip"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["dir"] == "received")
        .collect();
    let lines: Vec<&str> = received
        .iter()
        .map(|e| e["first_line"].as_str().unwrap())
        .collect();
    eprintln!("edge received: {lines:?}");
    let header = |e: &serde_json::Value, name: &str| -> Option<String> {
        e["headers"].as_array().unwrap().iter().find_map(|h| {
            h[0].as_str()
                .unwrap()
                .eq_ignore_ascii_case(name)
                .then(|| h[1].as_str().unwrap().to_string())
        })
    };
    let invite = received
        .iter()
        .find(|e| header(e, "Proxy-Authorization").is_some())
        .unwrap_or_else(|| panic!("no authenticated INVITE: {call:#}"));
    assert_eq!(
        invite["first_line"], "INVITE sip:+15551234567@wa.meta.vc;transport=tls SIP/2.0",
        "{invite:#}"
    );
    let from = header(invite, "From").unwrap();
    assert!(from.contains(&format!("sip:+15550001111@{host}")), "{from}");
    let auth = header(invite, "Proxy-Authorization").unwrap();
    for part in [
        "username=\"15550001111\"",
        "uri=\"sip:+15551234567@wa.meta.vc;transport=tls\"",
        "realm=\"wa.meta.vc\"",
    ] {
        assert!(auth.contains(part), "{part} not in {auth}");
    }
    // libre 1.0 leaves out `algorithm` in its answer: MD5, the RFC 2617 default, which is
    // what the edge's 407 asked for (`--digest-algorithm md5`).
    let lower = auth.to_ascii_lowercase();
    assert!(
        !lower.contains("algorithm=") || lower.contains("algorithm=md5"),
        "{auth}"
    );
    // The call's transcript starts with the unauthenticated INVITE and the edge's MD5 407.
    let first = &call["sip"][0];
    assert!(
        first["dir"] == "received"
            && first["first_line"]
                .as_str()
                .is_some_and(|l| l.starts_with("INVITE "))
            && header(first, "Proxy-Authorization").is_none(),
        "{call:#}"
    );
    let challenge = call["sip"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["first_line"] == "SIP/2.0 407 Proxy Authentication Required")
        .unwrap_or_else(|| panic!("no 407 in the transcript: {call:#}"));
    let pa = header(challenge, "Proxy-Authenticate").unwrap();
    assert!(pa.contains("algorithm=MD5"), "{pa}");
    // The 2xx ACK reached the edge along Meta's route set, resolved through the fake DNS.
    // (the ACK of the 407 goes to the outbound proxy like the INVITE; the 2xx ACK is the
    // last one, to the edge's Contact)
    let acks: Vec<&&serde_json::Value> = received
        .iter()
        .filter(|e| {
            e["first_line"]
                .as_str()
                .is_some_and(|l| l.starts_with("ACK "))
        })
        .collect();
    assert_eq!(acks.len(), 2, "ACK of the 407 and of the 200: {lines:?}");
    assert!(
        acks[1]["first_line"]
            .as_str()
            .is_some_and(|l| l.contains("@wa.meta.vc;transport=tls;ob;")),
        "{lines:?}"
    );
    let route = header(acks[1], "Route").unwrap_or_default();
    assert!(
        route.starts_with("<sip:wa.meta.vc;transport=tls;lr>"),
        "ACK Route: {route}"
    );
    let asked = dns.questions();
    eprintln!("DNS questions: {asked:?}");
    assert!(
        asked.iter().any(|(n, _)| n.ends_with("wa.meta.vc")),
        "baresip never asked the test's DNS for wa.meta.vc: {asked:?}"
    );

    // baresip's recording (sndfile's dump of the decoded stream) of the sandbox user's tone.
    let dec: Vec<_> = std::fs::read_dir(&rec)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .collect();
    assert_eq!(
        dec.len(),
        1,
        "baresip recordings: {dec:?}\nlog:\n{}",
        log_of(&log_path)
    );
    let (samples, rms) = wav_rms(&dec[0]);
    eprintln!("baresip recorded {samples} samples, rms {rms:.0}");
    assert!(
        samples > 24_000,
        "baresip's recording too short: {samples} samples\nlog:\n{}",
        log_of(&log_path)
    );
    assert!(
        rms > 500.0,
        "baresip's recording is silent: rms {rms}\nlog:\n{}",
        log_of(&log_path)
    );
}
