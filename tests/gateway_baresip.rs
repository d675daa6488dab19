//! baresip (Debian `baresip-core`, libre/librem, libopus) as a **PBX-side phone** on plain
//! RTP/AVP with Opus, through `whatsip run` to the in-process sandbox's WhatsApp user:
//! - baresip dials the WhatsApp user through the trunk listener (UDP SIP): the sandbox
//!   decrypts and decodes baresip's tone (non-silent, 0 decrypt failures), baresip decodes
//!   the user's tone (its `sndfile` recording is not silence); the user hangs up and the
//!   gateway's BYE reaches baresip;
//! - reverse: the sandbox user calls the business number (passing the gateway's 407), the
//!   gateway calls baresip (the trunk peer address points at baresip's SIP port), baresip
//!   answers automatically, audio both ways as above, and the user's BYE ends both legs.
//!
//! baresip plays a `sox`-made 440 Hz WAV (`aufile`) and dumps what it decodes to
//! `snd_path/…-dec.wav` (`sndfile`), as in `tests/sandbox_baresip_business.rs`.
mod gateway_support;

use gateway_support::*;

mod baresip_support;
use baresip_support::{Baresip, wav_rms};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const USER: &str = "+15551234567";

/// Starts baresip on `sip_port` with a plain-RTP Opus account `aor` (auto-answer), running
/// `command` (e.g. `/dial …`) once up; it quits by itself after 40 s.
fn baresip(dir: &Path, sip_port: u16, aor: &str, command: Option<&str>) -> Baresip {
    let conf = dir.join("baresip");
    let rec = conf.join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    let tone = conf.join("tone.wav");
    let sox = Command::new("sox")
        .args(["-n", "-r", "48000", "-c", "2", "-b", "16"])
        .arg(&tone)
        .args(["synth", "30", "sine", "440", "vol", "0.5"])
        .status()
        .expect("sox installed");
    assert!(sox.success(), "sox failed");
    std::fs::write(
        conf.join("config"),
        format!(
            "sip_listen\t\t127.0.0.1:{sip_port}\n\
             module_path\t\t/usr/lib/baresip/modules\nmodule\t\t\topus.so\n\
             module\t\t\taufile.so\nmodule\t\t\tsndfile.so\n\
             module_app\t\taccount.so\nmodule_app\t\tmenu.so\n\
             audio_source\t\taufile,{tone}\naudio_alert\t\taufile,/dev/null\n\
             snd_path\t\t{rec}\n\
             net_interface\t\t127.0.0.1\nrtp_timeout\t\t0\n",
            tone = tone.display(),
            rec = rec.display(),
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("accounts"),
        format!("<{aor}>;regint=0;answermode=auto;audio_codecs=opus/48000/2\n"),
    )
    .unwrap();
    let log = std::fs::File::create(conf.join("baresip.log")).unwrap();
    let mut cmd = Command::new("baresip");
    cmd.arg("-f").arg(&conf);
    if let Some(c) = command {
        cmd.arg("-e").arg(c);
    }
    let child = cmd
        .arg("-t")
        .arg("40")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("baresip installed (scripts/test installs baresip-core)");
    Baresip { child, dir: conf }
}

/// `dtls`: the business number uses DTLS-SRTP + ICE toward WhatsApp (Meta's default) instead
/// of the shipped SDES; the PBX side (baresip, plain RTP) is the same either way.
fn started(dtls: bool) -> (tempfile::TempDir, Ports, Gateway) {
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
    (dir, ports, gw)
}

/// Waits (≤ 25 s) until the sandbox call `id` (or the first call) is accepted and has
/// decoded plenty of non-silent audio and sent its own.
fn call_with_media(ports: &Ports, id: Option<&str>, bs: &Baresip) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let c = match id {
            Some(id) => sandbox_call_by_id(ports, id),
            None => sandbox_calls(ports)
                .into_iter()
                .next()
                .unwrap_or(serde_json::Value::Null),
        };
        let n = |k: &str| c["media"][k].as_u64().unwrap_or(0);
        if c["state"] == "accepted" && n("non_silent_rx_packets") > 50 && n("tx_packets") > 50 {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "no accepted call with audio both ways in 25 s: {c:#}\nbaresip log:\n{}",
            bs.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the sandbox saw of the WhatsApp leg's key exchange.
fn assert_key_exchange(call: &serde_json::Value, dtls: bool) {
    let m = &call["media"];
    if dtls {
        assert_eq!(m["key_exchange"], "dtls", "{call:#}");
        assert_eq!(m["ice_role_seen"], "controlling", "{call:#}");
        assert_eq!(m["client_hello_from"], "gateway", "{call:#}");
    } else {
        assert_eq!(m["key_exchange"], "sdes", "{call:#}");
    }
}

fn assert_recorded_tone(bs: &Baresip) {
    let (samples, rms) = wav_rms(&bs.decoded_wav());
    assert!(
        samples > 24_000,
        "baresip's recording too short: {samples} samples\n{}",
        bs.log()
    );
    assert!(
        rms > 500.0,
        "baresip's recording of the user's tone is silent: rms {rms}\n{}",
        bs.log()
    );
}

#[test]
fn baresip_pbx_phone_calls_a_whatsapp_user_through_the_gateway() {
    pbx_phone_calls_user(false);
}

#[test]
fn baresip_pbx_phone_calls_a_whatsapp_user_with_dtls_toward_whatsapp() {
    pbx_phone_calls_user(true);
}

fn pbx_phone_calls_user(dtls: bool) {
    let (dir, ports, mut gw) = started(dtls);
    sandbox_user(&ports, &format!(r#"{{"user":"{USER}","media":"tone"}}"#));
    // baresip listens on the trunk peer's port: the gateway's in-dialog requests go there.
    let mut bs = baresip(
        dir.path(),
        ports.pbx_peer,
        "sip:100@127.0.0.1",
        Some(&format!("/dial sip:{USER}@127.0.0.1:{}", ports.trunk)),
    );
    let call = call_with_media(&ports, None, &bs);
    let id = call["id"].as_str().unwrap().to_owned();
    assert_eq!(call["media"]["decrypt_failures"], 0, "{call:#}");
    assert_key_exchange(&call, dtls);
    if !dtls {
        assert_eq!(call["media"]["codec"], "opus/48000", "{call:#}");
    }
    // Let baresip record a little more, then the user hangs up.
    std::thread::sleep(Duration::from_secs(1));
    let (st, b) = http(
        ports.sandbox_http,
        "POST",
        &format!("/sandbox/calls/{id}/hangup"),
        None,
    )
    .unwrap();
    assert_eq!(st, 200, "{b}");
    let call = sandbox_final(&ports, &id, 10);
    assert_eq!(call["state"], "completed", "{call:#}");
    assert_eq!(call["media"]["decrypt_failures"], 0, "{call:#}");
    assert_eq!(
        call["violations"].as_array().map(Vec::len),
        Some(0),
        "{call:#}"
    );
    // The gateway's BYE reached baresip: the PBX leg ends and the record completes.
    let rec = eventually(10, "the closed record", || {
        records(&ports).into_iter().find(|r| r["open"] == false)
    });
    assert_eq!(rec["state"], "Completed", "{rec:#}");
    let m = &rec["media"];
    assert!(
        m["pbx_to_whatsapp"]["packets"].as_u64().unwrap_or(0) > 50,
        "{rec:#}"
    );
    assert!(
        m["whatsapp_to_pbx"]["packets"].as_u64().unwrap_or(0) > 50,
        "{rec:#}"
    );
    eventually(10, "baresip saw the BYE", || {
        bs.log()
            .to_ascii_lowercase()
            .contains("terminated")
            .then_some(())
    });
    bs.stop();
    assert_recorded_tone(&bs);
    assert!(sigterm(&mut gw).success());
}

#[test]
fn whatsapp_user_calls_baresip_answering_as_the_pbx() {
    user_calls_pbx_phone(false);
}

#[test]
fn whatsapp_user_calls_baresip_answering_as_the_pbx_with_dtls_toward_whatsapp() {
    user_calls_pbx_phone(true);
}

fn user_calls_pbx_phone(dtls: bool) {
    let (dir, ports, mut gw) = started(dtls);
    let mut bs = baresip(
        dir.path(),
        ports.pbx_peer,
        "sip:+15550001111@127.0.0.1",
        None,
    );
    // baresip up: its SIP port is bound (bounded wait).
    eventually(20, "baresip listening", || {
        std::net::UdpSocket::bind(("127.0.0.1", ports.pbx_peer))
            .is_err()
            .then_some(())
    });
    let id = sandbox_place_call(
        &ports,
        &format!(r#"{{"from":"{USER}","to":"+15550001111","duration":5,"media":"tone"}}"#),
    );
    let call = call_with_media(&ports, Some(&id), &bs);
    assert_eq!(call["media"]["decrypt_failures"], 0, "{call:#}");
    assert_key_exchange(&call, dtls);
    let received = transcript_lines(&call, "received");
    assert!(
        received.iter().any(|l| l.starts_with("SIP/2.0 407")),
        "the gateway challenged the user's INVITE: {received:?}"
    );
    let call = sandbox_final(&ports, &id, 20);
    assert_eq!(call["state"], "completed", "{call:#}");
    assert_eq!(call["media"]["decrypt_failures"], 0, "{call:#}");
    assert_eq!(
        call["violations"].as_array().map(Vec::len),
        Some(0),
        "{call:#}"
    );
    let rec = eventually(10, "the closed record", || {
        records(&ports).into_iter().find(|r| r["open"] == false)
    });
    assert_eq!(rec["state"], "Completed", "{rec:#}");
    assert!(
        rec["media"]["pbx_to_whatsapp"]["packets"]
            .as_u64()
            .unwrap_or(0)
            > 50,
        "{rec:#}"
    );
    eventually(10, "baresip saw the BYE", || {
        bs.log()
            .to_ascii_lowercase()
            .contains("terminated")
            .then_some(())
    });
    bs.stop();
    assert_recorded_tone(&bs);
    assert!(sigterm(&mut gw).success());
}
