//! User-initiated calls from the sandbox (WhatsApp user → gateway) against independent UAs:
//! baresip as a TLS UAS with SDES (the call connects, the user hangs up after `duration`,
//! no violation), and a SIPp UAS behind a socat TLS listener that rewrites Meta's
//! Record-Route in its 200 OK (the echo check records a violation). Calls are placed through
//! the control API over HTTP.
mod sandbox_support;

use sandbox_support::*;
use std::process::Stdio;
use std::time::Duration;
use whatsip::sip::auth::Algorithm;

async fn post_call(http: std::net::SocketAddr, body: serde_json::Value) -> String {
    let resp = reqwest::Client::new()
        .post(format!("http://{http}/sandbox/calls"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text().await);
    let v: serde_json::Value = resp.json().await.unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// Polls `GET /sandbox/calls/{id}` until `state` is final (bounded).
async fn wait_final(http: std::net::SocketAddr, id: &str) -> serde_json::Value {
    let client = reqwest::Client::new();
    let mut last = serde_json::Value::Null;
    for _ in 0..200 {
        last = client
            .get(format!("http://{http}/sandbox/calls/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if matches!(
            last["state"].as_str(),
            Some("completed" | "rejected" | "failed")
        ) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("call {id} not final after 20 s: {last:#}");
}

fn sent_lines(call: &serde_json::Value) -> Vec<String> {
    call["sip"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["dir"] == "sent")
        .map(|e| e["first_line"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_initiated_call_to_baresip_over_tls_connects() {
    let port = free_port();
    let tls_port = port + 1; // baresip listens for TLS on sip_listen's port + 1
    let sb = sandbox(Algorithm::Sha256, tls_port).await;
    let (chain, key) = whatsip::sandbox::ca::issue_gateway_cert_in(
        &sb.dir.path().join("ca"),
        "gateway.whatsip.test",
    )
    .unwrap();
    let conf = sb.dir.path().join("baresip");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("cert.pem"), format!("{chain}{key}")).unwrap();
    std::fs::write(
        conf.join("config"),
        format!(
            "sip_listen\t\t127.0.0.1:{port}\nsip_certificate\t\t{cert}\nsip_cafile\t\t{ca}\n\
             module_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tg711.so\nmodule\t\t\topus.so\n\
             module\t\t\tsrtp.so\nmodule\t\t\tausine.so\nmodule\t\t\taufile.so\n\
             module_app\t\taccount.so\nmodule_app\t\tmenu.so\n\
             audio_player\t\taufile,{out}\naudio_source\t\tausine,440\naudio_alert\t\taufile,/dev/null\n\
             net_interface\t\t127.0.0.1\n",
            cert = conf.join("cert.pem").display(),
            ca = sb.ca().display(),
            out = conf.join("out.wav").display(),
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("accounts"),
        "<sip:+15550001111@gateway.whatsip.test;transport=tls>;regint=0;answermode=auto;mediaenc=srtp-mand;audio_codecs=opus/48000/2,PCMA,PCMU\n",
    )
    .unwrap();
    let mut baresip = tokio::process::Command::new("baresip")
        .arg("-f")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("baresip installed");
    wait_listening(tls_port).await;
    let http = sb.running.http_addr;
    let id = post_call(
        http,
        serde_json::json!({"from": "+15551234567", "to": "+15550001111", "duration": 2,
                           "cta_payload": "order-42", "media": "tone"}),
    )
    .await;
    let call = wait_final(http, &id).await;
    let _ = baresip.start_kill();
    assert_eq!(call["state"], "completed", "{call:#}");
    assert_eq!(call["status"], 200, "{call:#}");
    assert_eq!(call["end_reason"], "user_hangup", "{call:#}");
    assert_eq!(call["violations"], serde_json::json!([]), "{call:#}");
    // baresip's SRTP (ausine tone) decrypted with the key from its SDP answer, and echoed
    let media = &call["media"];
    assert!(media["rx_packets"].as_u64().unwrap() > 10, "{media:#}");
    assert_eq!(media["decrypt_failures"], 0, "{media:#}");
    assert!(media["tx_packets"].as_u64().unwrap() > 0, "{media:#}");
    // the sandbox media user decoded baresip's 440 Hz tone as audio, not silence
    assert!(
        media["non_silent_rx_packets"].as_u64().unwrap() > 0,
        "{media:#}"
    );
    let invite = &call["sip"][0];
    assert!(
        invite["first_line"]
            .as_str()
            .unwrap()
            .starts_with("INVITE sip:+15550001111@gateway.whatsip.test"),
        "{invite:#}"
    );
    let headers: Vec<(String, String)> = serde_json::from_value(invite["headers"].clone()).unwrap();
    let has = |n: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    assert!(
        has("x-wa-meta-wacid") && has("x-wa-meta-cta-payload"),
        "{headers:?}"
    );
    let cid = headers
        .iter()
        .find(|(k, _)| k == "Call-ID")
        .unwrap()
        .1
        .clone();
    assert!(cid.starts_with("outgoing:wacid."), "{cid}");
    let sent = sent_lines(&call);
    assert!(sent.iter().any(|l| l.starts_with("ACK ")), "{sent:?}");
    let bye = call["sip"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["dir"] == "sent" && e["first_line"].as_str().unwrap().starts_with("BYE "))
        .expect("BYE sent");
    let bye_headers: Vec<(String, String)> =
        serde_json::from_value(bye["headers"].clone()).unwrap();
    assert!(
        bye_headers
            .iter()
            .any(|(k, v)| k == "x-wa-meta-call-duration" && v.parse::<u64>().is_ok()),
        "{bye_headers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_route_rewritten_by_the_gateway_is_a_violation() {
    let gw_port = free_port();
    let sb = sandbox(Algorithm::Sha256, gw_port).await;
    let (chain, key) = whatsip::sandbox::ca::issue_gateway_cert_in(
        &sb.dir.path().join("ca"),
        "gateway.whatsip.test",
    )
    .unwrap();
    let certs = sb.dir.path().join("gw.pem");
    let keyf = sb.dir.path().join("gw.key");
    std::fs::write(&certs, &chain).unwrap();
    std::fs::write(&keyf, &key).unwrap();
    let sipp_port = free_port();
    let xml = scenario(
        "sandbox_uas_rewrites_rr.xml",
        &[(
            "CONTACT",
            &format!("sip:+15550001111@gateway.whatsip.test:{gw_port};transport=tls"),
        )],
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("uas.xml"), xml).unwrap();
    let mut sipp = tokio::process::Command::new("sipp")
        .args(["-sf", "uas.xml", "-t", "t1", "-i", "127.0.0.1", "-p"])
        .arg(sipp_port.to_string())
        .args([
            "-m",
            "1",
            "-timeout",
            "25s",
            "-timeout_error",
            "-trace_err",
            "-nostdin",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp installed");
    wait_listening(sipp_port).await;
    let _socat = tokio::process::Command::new("socat")
        .arg(format!(
            "OPENSSL-LISTEN:{gw_port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
            certs.display(),
            keyf.display()
        ))
        .arg(format!("TCP:127.0.0.1:{sipp_port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("socat installed");
    wait_listening(gw_port).await;
    let http = sb.running.http_addr;
    let id = post_call(
        http,
        serde_json::json!({"from": "US.13491208655302741918", "to": "106540352242922", "duration": 1}),
    )
    .await;
    let call = wait_final(http, &id).await;
    let sipp_ok = tokio::time::timeout(Duration::from_secs(30), sipp.wait())
        .await
        .expect("SIPp finished")
        .unwrap()
        .success();
    assert_eq!(call["status"], 200, "{call:#}");
    let violations = call["violations"].as_array().unwrap();
    assert!(
        violations.iter().any(|v| v
            .as_str()
            .unwrap()
            .starts_with("200 OK did not echo Meta's Record-Route unchanged")),
        "{call:#}"
    );
    assert!(
        sipp_ok,
        "SIPp UAS saw ACK and BYE with x-wa-meta-call-duration"
    );
}

async fn unanswered(hangup_via_api: bool) -> serde_json::Value {
    let gw_port = free_port();
    let give_up = if hangup_via_api { 30 } else { 2 };
    let sb = sandbox_with(Algorithm::Sha256, gw_port, Duration::from_secs(give_up)).await;
    let (mut sipp, _socat, _dir) = tls_uas(&sb, gw_port, "sandbox_uas_no_answer.xml").await;
    let http = sb.running.http_addr;
    let id = post_call(
        http,
        serde_json::json!({"from": "+15551234567", "to": "+15550001111"}),
    )
    .await;
    if hangup_via_api {
        let client = reqwest::Client::new();
        let mut ringing = false;
        for _ in 0..100 {
            let c: serde_json::Value = client
                .get(format!("http://{http}/sandbox/calls/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if c["state"] == "ringing" {
                ringing = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ringing, "call never rang");
        let r = client
            .post(format!("http://{http}/sandbox/calls/{id}/hangup"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let call = wait_final(http, &id).await;
    let sipp_ok = tokio::time::timeout(Duration::from_secs(30), sipp.wait())
        .await
        .expect("SIPp finished")
        .unwrap()
        .success();
    assert!(
        sipp_ok,
        "SIPp UAS saw CANCEL and the ACK of its 487: {call:#}"
    );
    call
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_user_initiated_call_is_cancelled_after_the_timeout() {
    let call = unanswered(false).await;
    assert_eq!(call["status"], 487, "{call:#}");
    assert_eq!(call["end_reason"], "unanswered_timeout", "{call:#}");
    assert!(
        sent_lines(&call).iter().any(|l| l.starts_with("CANCEL ")),
        "{call:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_hangup_while_ringing_cancels() {
    let call = unanswered(true).await;
    assert_eq!(call["status"], 487, "{call:#}");
    assert!(
        sent_lines(&call).iter().any(|l| l.starts_with("CANCEL ")),
        "{call:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_certificate_not_from_a_trusted_ca_fails_the_call() {
    // Meta validates the gateway's certificate against the configured host name; a
    // self-signed one (right name, untrusted issuer) must fail the TLS handshake.
    let gw_port = free_port();
    let sb = sandbox(Algorithm::Sha256, gw_port).await;
    let ck = rcgen::generate_simple_self_signed(vec!["gateway.whatsip.test".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("c.pem");
    let key = dir.path().join("k.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let _socat = tokio::process::Command::new("socat")
        .arg(format!(
            "OPENSSL-LISTEN:{gw_port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
            cert.display(),
            key.display()
        ))
        .arg("SYSTEM:cat")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("socat installed");
    wait_listening(gw_port).await;
    let http = sb.running.http_addr;
    let id = post_call(
        http,
        serde_json::json!({"from": "+15551234567", "to": "+15550001111"}),
    )
    .await;
    let call = wait_final(http, &id).await;
    assert_eq!(call["state"], "failed", "{call:#}");
    assert!(
        call["end_reason"]
            .as_str()
            .unwrap()
            .starts_with("transport"),
        "{call:#}"
    );
}
