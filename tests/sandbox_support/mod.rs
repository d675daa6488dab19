//! Shared helpers of the sandbox integration tests: an in-process sandbox on port 0, a socat
//! TLS wrapper (SIPp has no TLS), SIPp runs with bounded waits.
#![allow(dead_code)]
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};
use whatsip::sandbox::edge::{EdgeConfig, RouteStyle};
use whatsip::sandbox::runtime::RuntimeConfig;
use whatsip::sandbox::{Running, SandboxOptions, SandboxState};
use whatsip::sip::auth::Algorithm;

pub const SEED: u64 = 42;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Sandbox {
    pub running: Running,
    pub dir: tempfile::TempDir,
    pub state: SandboxState,
}

impl Sandbox {
    pub fn ca(&self) -> PathBuf {
        self.running.edge.ca_path.clone()
    }
    pub fn edge(&self) -> SocketAddr {
        self.running.edge.edge_addr
    }
    pub fn password(&self) -> String {
        self.state
            .sip_target("+15550001111")
            .unwrap()
            .password
            .unwrap()
    }
}

/// A sandbox with the fixture, seeded, on ephemeral ports.
pub async fn sandbox(algorithm: Algorithm, gateway_port: u16) -> Sandbox {
    sandbox_with(algorithm, gateway_port, Duration::from_secs(10)).await
}

/// [`sandbox`] with the give-up time of unanswered user-initiated calls.
pub async fn sandbox_with(
    algorithm: Algorithm,
    gateway_port: u16,
    unanswered: Duration,
) -> Sandbox {
    sandbox_cfg(algorithm, gateway_port, unanswered, RouteStyle::Meta).await
}

/// [`sandbox_with`] with a Record-Route style (`Loopback` with port 0 = the edge's address).
pub async fn sandbox_cfg(
    algorithm: Algorithm,
    gateway_port: u16,
    unanswered: Duration,
    route_style: RouteStyle,
) -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    let state = SandboxState::new(SandboxOptions {
        seed: Some(SEED),
        gateway_port,
        ..SandboxOptions::default()
    });
    let config = RuntimeConfig {
        edge: "127.0.0.1:0".parse().unwrap(),
        ca_dir: dir.path().join("ca"),
        seed: Some(SEED),
        edge_config: EdgeConfig {
            algorithm,
            route_style,
        },
        unanswered_timeout: unanswered,
        ..RuntimeConfig::default()
    };
    let running = whatsip::sandbox::start("127.0.0.1:0".parse().unwrap(), config, state.clone())
        .await
        .unwrap();
    Sandbox {
        running,
        dir,
        state,
    }
}

/// Waits (bounded, generously: peers start slowly on a loaded 2-core machine) until something
/// accepts TCP on `port`.
pub async fn wait_listening(port: u16) {
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on 127.0.0.1:{port} after 30 s");
}

/// socat: plain TCP on a fresh loopback port → TLS to the edge (verifies `wa.meta.vc` against
/// the sandbox CA, sends SNI, offers no ALPN).
pub async fn tls_wrapper(edge: SocketAddr, ca: &Path) -> (Child, u16) {
    let port = free_port();
    let child = Command::new("socat")
        .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"))
        .arg(format!(
            "OPENSSL:{edge},cafile={},verify=1,commonname=wa.meta.vc,snihost=wa.meta.vc",
            ca.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("socat installed");
    wait_listening(port).await;
    (child, port)
}

/// Fills `@KEY@` placeholders of a scenario in tests/sipp/.
pub fn scenario(name: &str, vars: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (k, v) in vars {
        text = text.replace(&format!("@{k}@"), v);
    }
    assert!(
        !text.contains("@STATUS@") && !text.contains("@RURI@"),
        "unfilled placeholder"
    );
    text
}

/// Runs one SIPp call of `xml` over TCP toward `port`; returns (success, SIPp's errors).
pub async fn run_sipp(xml: &str, port: u16) -> (bool, String) {
    run_sipp_args(xml, port, &[]).await
}

/// [`run_sipp`] with extra SIPp arguments (e.g. `-auth_uri`).
pub async fn run_sipp_args(xml: &str, port: u16, extra: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.xml");
    std::fs::write(&path, xml).unwrap();
    let mut child = Command::new("sipp")
        .arg("-sf")
        .arg(&path)
        .args(["-t", "t1", "-i", "127.0.0.1", "-p"])
        .arg(free_port().to_string())
        .args([
            "-m",
            "1",
            "-timeout",
            "20s",
            "-timeout_error",
            "-trace_err",
            "-trace_msg",
            "-nostdin",
        ])
        .args(extra)
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp installed");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("SIPp finished within 30 s")
        .unwrap();
    let mut log = String::new();
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with("errors.log") || name.ends_with("messages.log") {
            log.push_str(&format!("--- {name}\n"));
            log.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    (status.success(), log)
}

/// A SIPp UAS (scenario `name` with `@CONTACT@` filled) behind a socat TLS listener on
/// `gw_port` presenting the sandbox-issued certificate for gateway.whatsip.test.
pub async fn tls_uas(sb: &Sandbox, gw_port: u16, name: &str) -> (Child, Child, tempfile::TempDir) {
    let (chain, key) = whatsip::sandbox::ca::issue_gateway_cert_in(
        &sb.dir.path().join("ca"),
        "gateway.whatsip.test",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("gw.pem");
    let keyf = dir.path().join("gw.key");
    std::fs::write(&certs, &chain).unwrap();
    std::fs::write(&keyf, &key).unwrap();
    let sipp_port = free_port();
    let xml = scenario(
        name,
        &[(
            "CONTACT",
            &format!("sip:+15550001111@gateway.whatsip.test:{gw_port};transport=tls"),
        )],
    );
    std::fs::write(dir.path().join("uas.xml"), xml).unwrap();
    let sipp = Command::new("sipp")
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
    let socat = Command::new("socat")
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
    (sipp, socat, dir)
}
