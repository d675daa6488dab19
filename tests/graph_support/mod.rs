//! Helpers for the graph integration tests: a `whatsip sandbox` child on a free loopback
//! port (killed on drop), bounded runs of the real binary, and a minimal HTTP/1.1 client.
#![allow(dead_code)]
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_whatsip");
pub const PNID: &str = "106540352242922";
pub const BUSINESS: &str = "+15550001111";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct Sandbox {
    child: Child,
    pub port: u16,
}

impl Sandbox {
    pub fn start() -> Sandbox {
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(BIN)
                .args([
                    "sandbox",
                    "--http",
                    &format!("127.0.0.1:{port}"),
                    "--seed",
                    "7",
                    // the SIP edge on an ephemeral port, its CA outside the work tree
                    "--edge",
                    "127.0.0.1:0",
                    "--ca-dir",
                ])
                .arg(std::env::temp_dir().join(format!("whatsip-sandbox-ca-{port}")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn whatsip sandbox");
            let mut sb = Sandbox { child, port };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = sb.child.try_wait() {
                    break; // port taken: try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return sb;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("whatsip sandbox did not start");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `--graph-url … --phone-number-id …` for this sandbox.
    pub fn graph_args(&self) -> Vec<String> {
        vec![
            "--graph-url".into(),
            self.url(),
            "--phone-number-id".into(),
            PNID.into(),
            "--timeout-s".into(),
            "5".into(),
        ]
    }

    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        http(self.port, "GET", path, None, None)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `whatsip ARGS` with `WHATSAPP_TOKEN=token`, killed after 60 s.
pub fn run(args: &[String], token: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("WHATSAPP_TOKEN", token)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn whatsip");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

pub fn args(parts: &[&str], extra: &[String]) -> Vec<String> {
    parts
        .iter()
        .map(|s| s.to_string())
        .chain(extra.iter().cloned())
        .collect()
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Minimal HTTP/1.1 request (Connection: close); returns status and JSON body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (_, body) = resp.split_once("\r\n\r\n").unwrap_or(("", ""));
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}
