//! The Graph client's retry policy, driven through `whatsip settings pull` against a tiny
//! in-test HTTP server that fails N times (613 / 5xx / 100) before answering.
mod graph_support;
use graph_support::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const OK: &str = r#"{"calling":{"status":"ENABLED","sip":{"status":"ENABLED","servers":[{"hostname":"gw.example.com","port":5061}]}}}"#;

/// Serves `failures` error responses (status, body), then 200 OK; counts requests.
fn flaky(failures: usize, status: u16, body: &'static str) -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let n = h.fetch_add(1, Ordering::SeqCst);
            let (st, b) = if n < failures {
                (status, body)
            } else {
                (200, OK)
            };
            let _ = write!(
                s,
                "HTTP/1.1 {st} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                b.len()
            );
        }
    });
    (port, hits)
}

const E613: &str = r#"{"error":{"message":"(#613) Calls to this api have exceeded the rate limit.","type":"OAuthException","code":613}}"#;
const E138005: &str =
    r#"{"error":{"message":"(#138005) Call limit reached","type":"OAuthException","code":138005}}"#;
const E500: &str = r#"{"error":{"message":"An unknown error occurred","type":"OAuthException","code":1,"is_transient":true}}"#;
const E100: &str =
    r#"{"error":{"message":"(#100) Invalid parameter","type":"OAuthException","code":100}}"#;

fn pull(port: u16, retries: u32, dir: &std::path::Path) -> std::process::Output {
    let pw = dir.join("pw").to_string_lossy().into_owned();
    run(
        &[
            "settings",
            "pull",
            BUSINESS,
            "--graph-url",
            &format!("http://127.0.0.1:{port}"),
            "--phone-number-id",
            PNID,
            "--retries",
            &retries.to_string(),
            "--retry-base-ms",
            "10",
            "--timeout-s",
            "5",
            "--password-file",
            &pw,
        ]
        .map(String::from),
        "test-token",
    )
}

#[test]
fn retries_rate_limits_and_5xx_then_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    for (status, body) in [
        (429, E613),
        (400, E138005),
        (500, E500),
        (503, "<html>down</html>"),
    ] {
        let (port, hits) = flaky(2, status, body);
        let o = pull(port, 2, dir.path());
        let (out, err) = text(&o);
        assert!(o.status.success(), "{status}: {out}\n{err}");
        assert!(out.contains("gw.example.com:5061"), "{out}");
        assert_eq!(hits.load(Ordering::SeqCst), 3, "{status}");
    }
}

#[test]
fn gives_up_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (port, hits) = flaky(100, 429, E613);
    let o = pull(port, 1, dir.path());
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("gave up after 2 attempts: Meta 613 (HTTP 429)"),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    let (port, hits) = flaky(100, 502, E500);
    let o = pull(port, 0, dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "--retries 0 means one attempt"
    );
}

#[test]
fn does_not_retry_client_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (port, hits) = flaky(100, 400, E100);
    let o = pull(port, 3, dir.path());
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("Meta 100 (HTTP 400)"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
