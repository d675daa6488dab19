//! The transaction layer, dialogs and the minimal UAs (`sip::ua`) on the real transport
//! against SIPp's built-in scenarios: SIPp `uac` calls our UAS, SIPp `uas` answers our UAC,
//! over UDP and TCP, 100 calls each; SIPp's exit status (0 = every call succeeded) and our own
//! counters are asserted. Loopback only; every wait is bounded.
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;
use whatsip::sip::driver::{Driver, Step, target};
use whatsip::sip::endpoint::{Endpoint, EndpointConfig, TransportKind};
use whatsip::sip::ua::{SimpleUac, SimpleUas};
use whatsip::sip::uri::Uri;
use whatsip::transport::{Config, Kind, Transport};

const CALLS: u64 = 100;
const BOUND: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn bind(kind: Kind) -> (Driver, SocketAddr) {
    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut cfg = Config::default();
    match kind {
        Kind::Udp => cfg.udp = vec![lo],
        _ => cfg.tcp = vec![lo],
    }
    let (t, rx) = Transport::bind(cfg).await.unwrap();
    let local = t.local_addr(kind).unwrap();
    let ep = Endpoint::new(EndpointConfig::new("127.0.0.1", Some(local.port()), "wsip"));
    (Driver::new(ep, t, rx), local)
}

fn tk(kind: Kind) -> TransportKind {
    match kind {
        Kind::Udp => TransportKind::Udp,
        _ => TransportKind::Tcp,
    }
}

fn sipp(dir: &std::path::Path, scenario: &str, kind: Kind, port: u16) -> Command {
    let mut c = Command::new("sipp");
    c.args([
        "-sn",
        scenario,
        "-t",
        if kind == Kind::Udp { "u1" } else { "t1" },
    ])
    .args(["-i", "127.0.0.1", "-p", &port.to_string()])
    .args([
        "-m",
        &CALLS.to_string(),
        "-timeout",
        "50s",
        "-timeout_error",
    ])
    .args(["-nostdin", "-trace_stat", "-trace_err"])
    .current_dir(dir)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    c
}

async fn report(child: &mut tokio::process::Child, dir: &std::path::Path) -> String {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = tokio::time::timeout(Duration::from_secs(2), e.read_to_string(&mut err)).await;
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with("_errors.log") {
            err.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    err
}

async fn sipp_uac_against_our_uas(kind: Kind) {
    let (mut driver, local) = bind(kind).await;
    let contact = Uri::parse(&format!(
        "sip:uas@{local};transport={}",
        kind.via_token().to_ascii_lowercase()
    ))
    .unwrap();
    let mut uas = SimpleUas::new(contact);
    let dir = tempfile::tempdir().unwrap();
    let mut child = sipp(dir.path(), "uac", kind, free_port())
        .args(["-r", "50"])
        .arg(local.to_string())
        .spawn()
        .expect("sipp (sip-tester) installed");
    let deadline = tokio::time::Instant::now() + BOUND;
    let status = loop {
        tokio::select! {
            step = driver.next(None) => match step {
                Step::Event(ev) => uas.handle_event(Instant::now(), driver.endpoint(), ev),
                Step::Deadline => {}
                Step::Closed => panic!("transport closed"),
            },
            st = child.wait() => break st.unwrap(),
            () = tokio::time::sleep_until(deadline) => panic!("SIPp did not finish within {BOUND:?}"),
        }
    };
    let err = report(&mut child, dir.path()).await;
    assert!(status.success(), "SIPp uac failed ({status}): {err}");
    let s = uas.stats();
    assert_eq!(s.answered, CALLS, "{s:?}");
    assert_eq!(s.completed, CALLS, "{s:?}");
    assert_eq!(uas.dialogs(), 0);
}

async fn our_uac_against_sipp_uas(kind: Kind) {
    let (mut driver, local) = bind(kind).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = sipp(dir.path(), "uas", kind, port)
        .spawn()
        .expect("sipp (sip-tester) installed");
    let peer = SocketAddr::from(([127, 0, 0, 1], port));
    // SIPp needs a moment to bind; UDP retransmissions / one TCP connect retry cover it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let contact = Uri::parse(&format!(
        "sip:uac@{local};transport={}",
        kind.via_token().to_ascii_lowercase()
    ))
    .unwrap();
    let ruri = Uri::parse(&format!("sip:service@{peer}")).unwrap();
    let mut uac = SimpleUac::new(
        Instant::now(),
        target(tk(kind), peer),
        ruri,
        contact,
        CALLS,
        50,
    );
    let deadline = Instant::now() + BOUND;
    while !uac.is_done() {
        assert!(
            Instant::now() < deadline,
            "UAC did not finish: {:?}",
            uac.stats()
        );
        let wake = uac.poll_timeout().unwrap_or(deadline).min(deadline);
        match driver.next(Some(wake)).await {
            Step::Event(ev) => uac.handle_event(Instant::now(), driver.endpoint(), ev),
            Step::Deadline => uac.handle_timeout(Instant::now(), driver.endpoint()),
            Step::Closed => panic!("transport closed"),
        }
    }
    driver.flush().await;
    let status = match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
        Ok(st) => st.unwrap(),
        Err(_) => panic!("SIPp uas did not exit after {CALLS} calls"),
    };
    let err = report(&mut child, dir.path()).await;
    let s = uac.stats();
    assert_eq!(
        (s.answered, s.completed, s.failed),
        (CALLS, CALLS, 0),
        "{s:?} {err}"
    );
    assert!(status.success(), "SIPp uas failed ({status}): {err}");
}

#[tokio::test]
async fn sipp_uac_calls_our_uas_over_udp() {
    sipp_uac_against_our_uas(Kind::Udp).await;
}

#[tokio::test]
async fn sipp_uac_calls_our_uas_over_tcp() {
    sipp_uac_against_our_uas(Kind::Tcp).await;
}

#[tokio::test]
async fn our_uac_calls_sipp_uas_over_udp() {
    our_uac_against_sipp_uas(Kind::Udp).await;
}

#[tokio::test]
async fn our_uac_calls_sipp_uas_over_tcp() {
    our_uac_against_sipp_uas(Kind::Tcp).await;
}
