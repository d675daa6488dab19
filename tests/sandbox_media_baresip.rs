//! Interop with an independent SRTP/Opus implementation: baresip (libre/librem SRTP, libopus)
//! calls a sandbox user over plain UDP SIP with `mediaenc=srtp-mand` (SDES, RTP/SAVP). The test
//! is the callee: a minimal UAS answers the INVITE with the sandbox SDP helper and runs a
//! `MediaUser` in tone mode on the negotiated keys. baresip plays a 440 Hz sine (`ausine`) and
//! dumps what it decodes from us to a WAV file (`sndfile`).
//!
//! Checks: we decrypt baresip's packets (no decrypt failures) and decode them as non-silent
//! Opus; baresip decrypts and decodes ours (its recording of our tone is not silence); digits
//! baresip sends as RFC 4733 events (driven over its `ctrl_tcp` control socket) arrive once
//! each.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use whatsip::sandbox::media_user::{MediaSocket, MediaUserConfig, Mode, sdp};

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

mod baresip_support;
use baresip_support::wav_rms;

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

#[tokio::test]
async fn baresip_calls_a_sandbox_user_with_sdes_srtp_opus() {
    if Command::new("baresip").arg("-h").output().is_err() {
        panic!("baresip is not installed (scripts/test installs baresip-core)");
    }
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    std::fs::create_dir_all(&rec).unwrap();

    let sip = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sip_addr = sip.local_addr().unwrap();
    let media = MediaSocket::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let media_addr = media.local_addr();

    std::fs::write(
        dir.path().join("config"),
        format!(
            "poll_method\tpoll\n\
             sip_listen\t127.0.0.1:0\n\
             module_path\t/usr/lib/baresip/modules\n\
             module\tmenu.so\n\
             module\tsrtp.so\n\
             module\topus.so\n\
             module\tausine.so\n\
             module\tsndfile.so\n\
             module_app\taccount.so\n\
             audio_source\tausine,440\n\
             audio_player\tausine,440\n\
             ausrc_srate\t48000\n\
             ausrc_channels\t2\n\
             auplay_srate\t48000\n\
             auplay_channels\t2\n\
             snd_path\t{}\n\
             rtp_timeout\t0\n",
            rec.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("accounts"),
        "<sip:tester@127.0.0.1>;regint=0;mediaenc=srtp-mand;audio_codecs=opus\n",
    )
    .unwrap();
    let ctrl_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = std::fs::read_to_string(dir.path().join("config")).unwrap();
    config.push_str(&format!(
        "module_app\tctrl_tcp.so\nctrl_tcp_listen\t127.0.0.1:{ctrl_port}\n"
    ));
    std::fs::write(dir.path().join("config"), config).unwrap();
    let log = std::fs::File::create(dir.path().join("baresip.log")).unwrap();
    let child = Command::new("baresip")
        .arg("-f")
        .arg(dir.path())
        .arg("-e")
        .arg(format!("/dial sip:+15551234567@{sip_addr}"))
        .arg("-t")
        .arg("20")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start baresip");
    let mut child = KillOnDrop(child);

    // Minimal UAS: answer the INVITE (and its retransmissions) with our SDES answer.
    let mut buf = vec![0u8; 65536];
    let mut answer: Option<(String, whatsip::media::sdp::Negotiated, String)> = None;
    let mut baresip_sip: Option<SocketAddr> = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut acked = false;
    while !acked {
        let left = deadline.saturating_duration_since(Instant::now());
        let (n, from) = match tokio::time::timeout(left, sip.recv_from(&mut buf)).await {
            Ok(r) => r.unwrap(),
            Err(_) => panic!(
                "no INVITE/ACK from baresip in 15 s; log:\n{}",
                std::fs::read_to_string(dir.path().join("baresip.log")).unwrap_or_default()
            ),
        };
        let msg = String::from_utf8_lossy(&buf[..n]).to_string();
        if msg.starts_with("INVITE ") {
            baresip_sip = Some(from);
            if answer.is_none() {
                let offer = body(&msg);
                assert!(offer.contains("RTP/SAVP"), "baresip offer: {offer}");
                assert!(offer.contains("a=crypto:"), "baresip offer: {offer}");
                let (sdp_text, neg) = sdp::answer(offer.as_bytes(), media_addr, false)
                    .unwrap_or_else(|e| panic!("answering {offer}: {e}"));
                answer = Some((sdp_text, neg, offer.to_owned()));
            }
            let (sdp_text, _, _) = answer.as_ref().unwrap();
            let resp = format!(
                "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=sbx1\r\nCall-ID: {}\r\n\
                 CSeq: {}\r\nContact: <sip:+15551234567@{sip_addr}>\r\n\
                 Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
                header(&msg, "Via").unwrap(),
                header(&msg, "From").unwrap(),
                header(&msg, "To").unwrap(),
                header(&msg, "Call-ID").unwrap(),
                header(&msg, "CSeq").unwrap(),
                sdp_text.len(),
                sdp_text
            );
            sip.send_to(resp.as_bytes(), from).await.unwrap();
        } else if msg.starts_with("ACK ") {
            acked = true;
        }
    }
    let _ = baresip_sip;
    let (answer_sdp, neg, offer) = answer.unwrap();
    let suite = neg.srtp.as_ref().unwrap().local.profile();
    let cfg = MediaUserConfig::from_negotiated(&neg, Mode::Tone).unwrap();
    let user = media.start_with(Instant::now(), cfg).unwrap();

    // Wait (bounded) until we decoded plenty of non-silent audio from baresip and sent ours.
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let c = user.counters();
        if c.non_silent_rx_packets >= 100 && c.tx_packets >= 150 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not enough media with baresip ({suite:?}): {c:?}\noffer:\n{offer}\nanswer:\n{answer_sdp}\nlog:\n{}",
            std::fs::read_to_string(dir.path().join("baresip.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Digits from baresip (menu's `sndcode`, one per command so each gets its full tone).
    let mut ctrl = tokio::net::TcpStream::connect(("127.0.0.1", ctrl_port))
        .await
        .expect("baresip ctrl_tcp");
    for d in ["1", "5", "#", "*"] {
        let cmd = format!(r#"{{"command":"sndcode","params":"{d}","token":"t{d}"}}"#);
        let ns = format!("{}:{},", cmd.len(), cmd);
        tokio::io::AsyncWriteExt::write_all(&mut ctrl, ns.as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while user.counters().dtmf.len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let late redundant end packets arrive: still exactly once each.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = user.stop().await;
    assert_eq!(c.dtmf, "15#*", "{c:?}");
    // End baresip so it closes its recording.
    let _ = child.0.kill();
    let _ = child.0.wait();

    eprintln!("negotiated {suite:?}; sandbox counters: {c:?}");
    assert_eq!(c.decrypt_failures, 0, "{c:?}");
    assert!(c.rx_packets >= 100, "{c:?}");
    assert!(c.rx_peak_rms > 1000, "{c:?}");

    // baresip's decoded recording of what we sent.
    let dec: Vec<_> = std::fs::read_dir(&rec)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .collect();
    assert_eq!(dec.len(), 1, "baresip recordings: {dec:?}");
    let (samples, rms) = wav_rms(&dec[0]);
    eprintln!("baresip recorded {samples} samples of our audio, rms {rms:.0}");
    assert!(samples > 48_000, "recording too short: {samples} samples");
    assert!(
        rms > 1000.0,
        "baresip's recording of our tone is silent: rms {rms}"
    );
}
