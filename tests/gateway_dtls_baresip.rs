//! DTLS-SRTP + ICE on the WhatsApp leg against an independent implementation: baresip
//! (Debian `baresip-core` 1.0.0, libre 1.1 on OpenSSL 3; modules `ice`, `dtls_srtp`, `opus`)
//! plays Meta and calls a `srtp_key_exchange = "dtls"` business number through
//! `whatsip run`'s WhatsApp-side TLS listener (user-initiated). The PBX is a SIPp UAS
//! answering Opus with `-rtp_echo`, so baresip's 440 Hz tone (`ausine`) goes
//! baresip → DTLS-SRTP → gateway → RTP → SIPp → RTP → gateway → DTLS-SRTP → baresip, and
//! baresip's decoded recording (`sndfile`, `…-dec.wav`) must hold that tone. Checked: the
//! gateway answered `a=setup:active` and sent the ClientHello (its log line "DTLS-SRTP with
//! WhatsApp connected" says `client_hello_from="whatsip"`, baresip says "start DTLS
//! server"), both fingerprints verified, the ICE roles ended up opposite, the live call and
//! the closed record count ≥ 100 packets each way with no decrypt failure, baresip's
//! hang-up ends both legs (SIPp gets its BYE and exits 0).
//!
//! What baresip 1.0 needed, and why:
//! - **ECDSA certificate (LD_PRELOAD shim).** baresip's `dtls_srtp` module always makes an
//!   RSA-2048 self-signed certificate (`tls_set_selfsigned_rsa`, no setting). The gateway's
//!   DTLS (str0m 0.25 → dimpl 0.9) is ECDSA-only: its ClientHello offers only
//!   `ECDHE_ECDSA_*` suites and it cannot verify RSA signatures, so against stock baresip
//!   OpenSSL answers "no shared cipher" (fatal alert 40) and the call ends with "DTLS/ICE
//!   failure on the WhatsApp leg". Meta uses ECDSA (whatsapp-calling.md §1.6), so the test
//!   swaps only baresip's certificate: a 20-line C shim ([`EC_SHIM_C`], built with `cc`)
//!   replaces `tls_set_selfsigned_rsa` and loads an `openssl req`-made P-256 certificate via
//!   libre's own `tls_set_certificate_pem`. The handshake, SRTP and ICE stay baresip's.
//! - **No digest challenge** (`[inbound_auth] challenge = false` in the profile copy). The
//!   gateway challenges Meta with SHA-256 first (then MD5); libre 1.1's digest client knows
//!   only MD5 and gives up on the first challenge with another algorithm ("session closed:
//!   Function not implemented"), so baresip cannot pass the 407. The 407 path is covered by
//!   `gateway_baresip.rs` / `gateway_sipp_media.rs` with the sandbox as Meta.
//! - **`rtcp_mux yes`.** Without it baresip offers RTCP on port+1 with its own ICE
//!   component; the gateway's answer (str0m: one component, `a=rtcp-mux`) has no RTCP
//!   candidate, so libre's ICE calls the peer "ICE not supported" and never checks.
//! - **DNS for `gateway.whatsip.test`** ([`FakeDns`], `dns_server`): libre sends in-dialog
//!   requests (ACK, its re-INVITE, BYE) to the gateway's Contact host itself, not to the
//!   `outbound` proxy; without an answer no ACK ever leaves and the 200 OK is retransmitted.
//! - **baresip's re-INVITE.** After ICE completes, baresip re-INVITEs with its new default
//!   candidate (full ICE, RFC 8445 §8.1.2 style). The gateway absorbs it and answers with its
//!   current SDP: same fingerprint, same ICE credentials (checked below).
//! - **Roles.** baresip offers `a=setup:actpass` and acts as DTLS server when the answer
//!   says `active`, so the gateway's usual answer works as is (as an *answerer* baresip 1.0
//!   always writes `a=setup:active` whatever the offer said — why this test is
//!   user-initiated). baresip runs full ICE and is controlling as offerer; the gateway is
//!   controlling too, str0m resolves the 487 role conflict by tie-breaker, so either side may
//!   end up controlling — the test checks only that they disagree.
//! - **Host candidates.** baresip's ICE skips loopback interfaces and binds its RTP socket to
//!   the wildcard address; it advertises the machine's other addresses and ICE finds the
//!   loopback path as a peer-reflexive pair (the gateway drops the IPv6 candidates).
//! - **No `a=mid` / BUNDLE** in baresip's RFC 5763-style offer: str0m needs both, the
//!   gateway's WebRTC leg adds them (`media::webrtc::sdp::with_audio_mid`); before that fix
//!   the gateway answered 488 "remote SDP has no m=audio section with a=mid".
mod gateway_support;

use gateway_support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod baresip_support;
use baresip_support::{Baresip, FakeDns, wav_stats};

const NUMBER: &str = "+15550001111";
const USER: &str = "+15551234567";

/// LD_PRELOAD shim: baresip 1.0's `dtls_srtp` module makes its DTLS certificate with
/// libre's `tls_set_selfsigned_rsa()`; this replaces that one function so the module loads
/// an ECDSA P-256 certificate + key (one PEM file, `$WHATSIP_TEST_DTLS_PEM`) through
/// libre's own `tls_set_certificate_pem()`. Everything else (OpenSSL's DTLS, SRTP, ICE) is
/// baresip's.
const EC_SHIM_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
struct tls;
int tls_set_certificate_pem(struct tls *tls, const char *cert, size_t len_cert,
                            const char *key, size_t len_key);
int tls_set_selfsigned_rsa(struct tls *tls, const char *cn, size_t bits)
{
    const char *path = getenv("WHATSIP_TEST_DTLS_PEM");
    FILE *f = path ? fopen(path, "rb") : NULL;
    char buf[8192];
    size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
    int err;
    if (f)
        fclose(f);
    if (n == 0 || n == sizeof(buf)) {
        fprintf(stderr, "dtls-ec-shim: cannot read %s\n", path ? path : "(unset)");
        return 22;
    }
    err = tls_set_certificate_pem(tls, buf, n, NULL, 0);
    fprintf(stderr, "dtls-ec-shim: %s: ECDSA certificate instead of RSA-%zu: err=%d\n",
            cn, bits, err);
    return err;
}
"#;

/// Builds the shim and an ECDSA P-256 self-signed certificate (+ key) in `dir`; returns
/// (shim path, PEM path).
fn ec_shim(dir: &Path) -> (PathBuf, PathBuf) {
    let src = dir.join("ec_shim.c");
    let so = dir.join("ec_shim.so");
    let pem = dir.join("dtls-ec.pem");
    std::fs::write(&src, EC_SHIM_C).unwrap();
    let cc = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&so)
        .arg(&src)
        .status()
        .expect("a C compiler (cc)");
    assert!(cc.success(), "cc failed");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=dtls@baresip",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl CLI");
    assert!(st.success(), "openssl req failed");
    let mut both = std::fs::read(&cert).unwrap();
    both.extend(std::fs::read(&key).unwrap());
    std::fs::write(&pem, both).unwrap();
    (so, pem)
}

const GATEWAY_HOST: &str = "gateway.whatsip.test";

/// The gateway's log without ANSI colour sequences (`ESC [ … m`).
fn gateway_log(dir: &Path) -> String {
    let raw = std::fs::read_to_string(dir.join("gateway.log")).unwrap_or_default();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn wait_exit(p: &mut Proc, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(Some(st)) = p.0.try_wait() {
            return Some(st);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn baresip_as_meta_calls_a_dtls_number_with_ice_and_hears_the_echo() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::fresh();
    let profiles = write_profiles(dir.path(), &ports, |name, t| {
        if name != "whatsapp.toml" {
            return t;
        }
        let dtls = t.replace(
            "srtp_key_exchange = \"sdes\"",
            "srtp_key_exchange = \"dtls\"",
        );
        assert_ne!(t, dtls, "whatsapp.toml: srtp_key_exchange not replaced");
        let open = dtls.replace(
            "[inbound_auth]\nchallenge = true",
            "[inbound_auth]\nchallenge = false",
        );
        assert_ne!(dtls, open, "whatsapp.toml: challenge not replaced");
        open
    });
    let mut gw = start(dir.path(), &profiles);
    wait_up(&mut gw, ports.http);
    let ca = dir.path().join("var/sandbox/ca.pem");
    eventually(10, "the sandbox CA", || ca.exists().then_some(()));
    let dns = FakeDns::start(&[GATEWAY_HOST], &[]);

    // The PBX: SIPp answers with Opus and echoes every RTP packet back (-rtp_echo).
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
    eventually(10, "SIPp UAS bound", || {
        std::net::UdpSocket::bind(("127.0.0.1", ports.pbx_peer))
            .is_err()
            .then_some(())
    });

    // baresip as Meta: TLS to the gateway's WhatsApp listener, DTLS-SRTP + ICE, Opus.
    let conf = dir.path().join("baresip");
    let rec = conf.join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    let sip_port = free_port();
    std::fs::write(
        conf.join("config"),
        format!(
            "sip_listen\t\t127.0.0.1:{sip_port}\nsip_cafile\t\t{ca}\n\
             dns_server\t\t127.0.0.1:{dns}\n\
             module_path\t\t/usr/lib/baresip/modules\nmodule\t\t\topus.so\n\
             module\t\t\tausine.so\nmodule\t\t\tsndfile.so\n\
             module\t\t\tice.so\nmodule\t\t\tdtls_srtp.so\n\
             module_app\t\taccount.so\nmodule_app\t\tmenu.so\n\
             audio_source\t\tausine,440\naudio_alert\t\tausine,440\n\
             snd_path\t\t{rec}\n\
             net_interface\t\t127.0.0.1\nrtp_timeout\t\t0\nrtcp_mux\t\tyes\n",
            ca = ca.display(),
            dns = dns.port(),
            rec = rec.display(),
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("accounts"),
        format!(
            "<sip:{USER}@127.0.0.1;transport=tls>;\
             outbound=\"sip:127.0.0.1:{wa};transport=tls\";regint=0;\
             mediaenc=dtls_srtp;medianat=ice;audio_codecs=opus/48000/2\n",
            wa = ports.wa
        ),
    )
    .unwrap();
    let (shim, pem) = ec_shim(&conf);
    let log = std::fs::File::create(conf.join("baresip.log")).unwrap();
    let child = Command::new("baresip")
        .env("LD_PRELOAD", &shim)
        .env("WHATSIP_TEST_DTLS_PEM", &pem)
        .arg("-v")
        .arg("-s")
        .arg("-f")
        .arg(&conf)
        .arg("-e")
        .arg(format!("/dial sip:{NUMBER}@{GATEWAY_HOST}"))
        .arg("-t")
        .arg("40")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("baresip installed (scripts/test installs baresip-core)");
    let mut bs = Baresip { child, dir: conf };

    // Media both ways through the relay: ≥ 100 packets (2 s) each way on the live call.
    let deadline = Instant::now() + Duration::from_secs(25);
    let call = loop {
        let calls = json(ports.http, "/calls");
        let c = calls.as_array().and_then(|a| a.first()).cloned();
        let n = |c: &serde_json::Value, k: &str| c["media"][k]["packets"].as_u64().unwrap_or(0);
        if let Some(c) = c
            && n(&c, "whatsapp_to_pbx") >= 100
            && n(&c, "pbx_to_whatsapp") >= 100
        {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "no call with media both ways in 25 s: {calls:#}\nbaresip log:\n{}",
            bs.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(call["direction"], "user_initiated", "{call:#}");
    assert_eq!(call["media"]["decrypt_failures"], 0, "{call:#}");
    // Let baresip record a little more of the echo, then it hangs up (SIGTERM → BYE).
    std::thread::sleep(Duration::from_secs(1));
    bs.stop();
    let log = bs.log();

    let rec = eventually(10, "the closed record", || {
        records(&ports).into_iter().find(|r| r["open"] == false)
    });
    assert_eq!(rec["state"], "Completed", "{rec:#}");
    // baresip sends its BYE and, tearing its media down, a DTLS close_notify; whichever
    // arrives first, the call ends by the BYE (a remote DTLS close is a hang-up, not a
    // media failure).
    assert_eq!(
        rec["reason"]["text"], "BYE from the WhatsApp user",
        "{rec:#}"
    );
    let m = &rec["media"];
    for flow in ["whatsapp_to_pbx", "pbx_to_whatsapp"] {
        assert!(
            m[flow]["packets"].as_u64().unwrap_or(0) >= 100,
            "{flow}: {rec:#}"
        );
    }
    assert_eq!(m["decrypt_failures"], 0, "{rec:#}");
    let st = wait_exit(&mut uas, 10).expect("SIPp UAS exits after the gateway's BYE");
    assert!(st.success(), "SIPp UAS: {st}\n{}", sipp_errors(&work));

    // Who sent the ClientHello, and the ICE roles, from both sides.
    let gw_log = gateway_log(dir.path());
    let connected = gw_log
        .lines()
        .find(|l| l.contains("DTLS-SRTP with WhatsApp connected"))
        .unwrap_or_else(|| panic!("no DTLS connected line in the gateway log:\n{gw_log}"));
    assert!(
        connected.contains("client_hello_from=\"whatsip\""),
        "{connected}"
    );
    let gw_controlling = connected.contains("ice_controlling=true");
    assert!(
        gw_controlling || connected.contains("ice_controlling=false"),
        "{connected}"
    );
    for needle in [
        "dtls-ec-shim: dtls@baresip: ECDSA certificate instead of RSA-2048: err=0",
        "start DTLS server",
        "incoming DTLS connect from 127.0.0.1:",
        "verified sha-256 fingerprint OK",
        "DTLS-SRTP complete (audio/RTP)",
        "connectivity check is complete",
        "a=setup:actpass",
        "a=setup:active",
    ] {
        assert!(log.contains(needle), "baresip log lacks {needle:?}:\n{log}");
    }
    let role = log
        .lines()
        .rev()
        .find_map(|l| l.split("local_role=").nth(1))
        .unwrap_or_else(|| panic!("no ICE role in baresip's log:\n{log}"));
    let baresip_controlling = role.trim().starts_with("Controlling");
    assert_ne!(
        gw_controlling, baresip_controlling,
        "both sides {role:?} / {connected}"
    );
    // baresip's re-INVITE was answered with the same DTLS identity (the gateway's
    // fingerprints are lower-case `sha-256`, baresip's `SHA-256`).
    let fingerprints: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("a=fingerprint:sha-256 "))
        .collect();
    assert!(fingerprints.len() >= 2, "answer + re-INVITE answer:\n{log}");
    assert!(
        fingerprints.iter().all(|f| *f == fingerprints[0]),
        "{fingerprints:?}"
    );

    // baresip decoded the echoed 440 Hz tone.
    let (samples, rms, hz) = wav_stats(&bs.decoded_wav());
    assert!(
        samples >= 96_000,
        "recording too short: {samples} samples\n{log}"
    );
    assert!(rms > 1000.0, "recording silent: rms {rms}\n{log}");
    assert!(
        (400.0..480.0).contains(&hz),
        "recording is not the 440 Hz tone: {hz} Hz"
    );
    drop(dns);
    eprintln!("wall {:?}", t0.elapsed());
    assert!(sigterm(&mut gw).success());
}
