//! SIPp (an independent SIP implementation) against the transport over UDP and TCP: SIPp sends
//! OPTIONS requests, the test answers 200 OK through `Transport::send`, SIPp checks the answer.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::time::timeout;
use whatsip::transport::{Config, Event, Kind, Outgoing, Transport};

const SCENARIO: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="options">
  <send retrans="500">
    <![CDATA[
      OPTIONS sip:gw@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:gw@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Max-Forwards: 70
      Content-Length: [len]

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"#;

/// A 200 OK copying the headers RFC 3261 §8.2.6.2 requires from the request.
fn ok_for(request: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(request);
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in text.split("\r\n").skip(1) {
        let lower = line.to_ascii_lowercase();
        if ["via:", "from:", "to:", "call-id:", "cseq:"]
            .iter()
            .any(|h| lower.starts_with(h))
        {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn sipp_options(kind: Kind, calls: u32) {
    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    let (t, mut rx) = Transport::bind(Config {
        udp: vec![lo],
        tcp: vec![lo],
        ..Config::default()
    })
    .await
    .unwrap();
    let target = t.local_addr(kind).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("options.xml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let mode = if kind == Kind::Udp { "u1" } else { "t1" };
    let mut sipp = Command::new("sipp")
        .arg("-sf")
        .arg(&scenario)
        .args(["-t", mode, "-i", "127.0.0.1", "-p"])
        .arg(free_port().to_string())
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            "50",
            "-timeout",
            "20s",
            "-timeout_error",
        ])
        .arg("-nostdin")
        .arg(target.to_string())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp installed");
    let mut answered = 0;
    let mut conns = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        tokio::select! {
            ev = rx.recv() => {
                if let Some(Event::Message(m)) = ev {
                    assert_eq!(m.transport, kind);
                    if m.bytes.starts_with(b"OPTIONS ") {
                        conns.insert(m.conn);
                        t.send(Outgoing::reply_to(&m, ok_for(&m.bytes))).await.unwrap();
                        answered += 1;
                    }
                }
            }
            st = sipp.wait() => break st.unwrap(),
            () = tokio::time::sleep_until(deadline) => panic!("SIPp did not finish within bound"),
        }
    };
    let mut err = String::new();
    if let Some(mut e) = sipp.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = timeout(Duration::from_secs(2), e.read_to_string(&mut err)).await;
    }
    assert!(status.success(), "SIPp failed ({status}): {err}");
    assert!(answered >= calls, "answered {answered} of {calls}");
    if kind == Kind::Tcp {
        assert_eq!(conns.len(), 1, "SIPp t1 uses one connection for all calls");
        assert_eq!(t.stats().accepted, 1);
    }
}

#[tokio::test]
async fn sipp_options_over_udp() {
    sipp_options(Kind::Udp, 5).await;
}

#[tokio::test]
async fn sipp_options_over_tcp() {
    sipp_options(Kind::Tcp, 5).await;
}
