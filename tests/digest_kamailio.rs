//! Interop with a real peer: Kamailio's `auth` module challenges (MD5 and SHA-256,
//! qop=auth) and verifies what our `DigestClient` answers over UDP on 127.0.0.1.
//! Skipped (with a message) when `/usr/sbin/kamailio` is not installed.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use whatsip::sip::auth::{AuthError, DigestClient, RandomCnonce};

const KAMAILIO: &str = "/usr/sbin/kamailio";
const MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules/";

/// Kamailio child, stopped with SIGTERM (so it takes its workers down) and reaped on drop.
struct Kamailio {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_kamailio(algorithm: &str) -> Option<Kamailio> {
    if !Path::new(KAMAILIO).exists() || !Path::new(MODULES).join("auth.so").exists() {
        // scripts/test installs kamailio; a missing install is a broken setup, not a skip.
        panic!("kamailio not installed at {KAMAILIO} (scripts/test installs it)");
    }
    let port = UdpSocket::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="{MODULES}"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "auth.so"
modparam("auth", "algorithm", "{algorithm}")
request_route {{
  if (!pv_auth_check("example.org", "wonderland", "0", "0")) {{
    auth_challenge("example.org", "1");
    exit;
  }}
  if ($au != "alice") {{ sl_send_reply("403", "Forbidden"); exit; }}
  sl_send_reply("200", "OK");
}}
"#
    );
    let cfg_path = dir.path().join("kamailio.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let log = std::fs::File::create(dir.path().join("kamailio.log")).unwrap();
    let child = Command::new(KAMAILIO)
        .arg("-f")
        .arg(&cfg_path)
        .args(["-D", "-E", "-Y"])
        .arg(dir.path())
        .arg("-w")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    Some(Kamailio {
        child,
        port,
        _dir: dir,
    })
}

fn register(sock: &UdpSocket, port: u16, cseq: u32, auth: Option<&str>) -> String {
    let local = sock.local_addr().unwrap().port();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "REGISTER sip:example.org SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-{cseq}-{port}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.org>;tag=t1\r\n\
         To: <sip:alice@example.org>\r\n\
         Call-ID: whatsip-auth-interop-{port}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:alice@127.0.0.1:{local}>\r\n\
         {auth}Content-Length: 0\r\n\r\n"
    )
}

/// Sends and waits (bounded) for the response with this CSeq; retransmits every 250 ms
/// (Kamailio may still be starting) and skips late answers to earlier requests.
fn exchange(sock: &UdpSocket, port: u16, msg: &str) -> String {
    let cseq_line = msg
        .lines()
        .find(|l| l.starts_with("CSeq:"))
        .expect("request has a CSeq")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    loop {
        sock.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            let r = String::from_utf8_lossy(&buf[..n]).into_owned();
            if r.lines().any(|l| l == cseq_line) {
                return r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no answer from kamailio within 10 s"
        );
    }
}

fn status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn www_authenticate(resp: &str) -> Vec<String> {
    resp.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case("WWW-Authenticate"))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

#[test]
fn kamailio_accepts_our_md5_and_sha256_answers() {
    for algorithm in ["MD5", "SHA-256"] {
        let Some(k) = start_kamailio(algorithm) else {
            return;
        };
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(250)))
            .unwrap();

        let r = exchange(&sock, k.port, &register(&sock, k.port, 1, None));
        assert_eq!(status(&r), 401, "{r}");
        let challenges = www_authenticate(&r);
        assert!(
            challenges[0].contains(&format!("algorithm={algorithm}")),
            "{r}"
        );

        let mut client = DigestClient::new("alice", "wonderland");
        let auth = client
            .respond(
                challenges.iter().map(String::as_str),
                "REGISTER",
                "sip:example.org",
                None,
                &mut RandomCnonce,
            )
            .unwrap();
        let r = exchange(&sock, k.port, &register(&sock, k.port, 2, Some(&auth)));
        assert_eq!(status(&r), 200, "{algorithm}: {auth}\n{r}");

        // preemptive reuse of the nonce with nc=2
        let auth2 = client
            .authorize("REGISTER", "sip:example.org", &mut RandomCnonce)
            .unwrap()
            .unwrap();
        assert!(auth2.contains("nc=00000002"));
        let r = exchange(&sock, k.port, &register(&sock, k.port, 3, Some(&auth2)));
        assert_eq!(status(&r), 200, "{algorithm}: {auth2}\n{r}");

        // a wrong password is challenged again, and the client gives up instead of looping
        let mut bad = DigestClient::new("alice", "not-it");
        let r = exchange(&sock, k.port, &register(&sock, k.port, 4, None));
        let ch = www_authenticate(&r);
        let a = bad
            .respond(
                ch.iter().map(String::as_str),
                "REGISTER",
                "sip:example.org",
                None,
                &mut RandomCnonce,
            )
            .unwrap();
        let r = exchange(&sock, k.port, &register(&sock, k.port, 5, Some(&a)));
        assert_eq!(status(&r), 401, "{r}");
        let ch = www_authenticate(&r);
        let e = bad
            .respond(
                ch.iter().map(String::as_str),
                "REGISTER",
                "sip:example.org",
                Some(&a),
                &mut RandomCnonce,
            )
            .unwrap_err();
        assert!(matches!(e, AuthError::CredentialsRejected { .. }), "{e:?}");
    }
}
