//! Shared harness for tests that run `whatsip run` as a real process on free loopback ports
//! with a temp copy of the shipped profiles (in-process sandbox as WhatsApp), plus a minimal
//! PBX made of one UDP SIP socket and one RTP socket.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the gateway when the test ends, however it ends.
pub struct Gateway {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows the end of the gateway's log.
        if std::thread::panicking()
            && let Ok(log) = std::fs::read_to_string(&self.log)
        {
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("--- gateway log (last 80 lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A port free for both UDP and TCP on 127.0.0.1.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

pub struct Ports {
    pub http: u16,
    pub trunk: u16,
    pub wa: u16,
    pub sandbox_http: u16,
    pub pbx_peer: u16,
    pub edge: u16,
}

impl Ports {
    pub fn fresh() -> Ports {
        Ports {
            http: free_port(),
            trunk: free_port(),
            wa: free_port(),
            sandbox_http: free_port(),
            pbx_peer: free_port(),
            edge: free_port(),
        }
    }
}

/// Writes the shipped profiles with `p`'s ports; `edit(file, text)` may change each file.
pub fn write_profiles(dir: &Path, p: &Ports, edit: impl Fn(&str, String) -> String) -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-profiles");
    let out = dir.join("sip-profiles");
    std::fs::create_dir_all(&out).unwrap();
    let read = |f: &str| std::fs::read_to_string(shipped.join(f)).unwrap();
    let gw = read("gateway.toml").replace("127.0.0.1:8080", &format!("127.0.0.1:{}", p.http));
    let pbx = read("pbx.toml")
        .replace("127.0.0.1:5080", &format!("127.0.0.1:{}", p.trunk))
        .replace("127.0.0.1:5060", &format!("127.0.0.1:{}", p.pbx_peer));
    let wa = read("whatsapp.toml")
        .replace("127.0.0.1:5061", &format!("127.0.0.1:{}", p.wa))
        .replace("public_port = 5061", &format!("public_port = {}", p.wa))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", p.sandbox_http))
        .replace("127.0.0.1:5062", &format!("127.0.0.1:{}", p.edge));
    for (name, text, needle) in [
        ("gateway.toml", gw, p.http),
        ("pbx.toml", pbx, p.trunk),
        ("whatsapp.toml", wa, p.wa),
    ] {
        assert!(
            text.contains(&needle.to_string()),
            "{name}: port not replaced"
        );
        std::fs::write(out.join(name), edit(name, text)).unwrap();
    }
    out
}

pub fn start(dir: &Path, profiles: &Path) -> Gateway {
    let child = Command::new(env!("CARGO_BIN_EXE_whatsip"))
        .arg("run")
        .arg("--profiles")
        .arg(profiles)
        .current_dir(dir)
        .env("RUST_LOG", "whatsip=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("gateway.log")).map_or(Stdio::null(), Stdio::from))
        .spawn()
        .expect("whatsip binary runs");
    Gateway {
        child,
        log: dir.join("gateway.log"),
    }
}

/// One HTTP/1.1 request with `Connection: close`; `None` while the server is not up.
pub fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.get(9..12)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Some((status, body.to_owned()))
}

pub fn json(port: u16, path: &str) -> serde_json::Value {
    let (_, b) = http(port, "GET", path, None).expect("HTTP answers");
    serde_json::from_str(&b).unwrap_or_else(|e| panic!("{path}: {e}: {b}"))
}

/// Waits (≤ 60 s, start-up compiles nothing but machines are slow) for `/healthz` to answer.
pub fn wait_up(gw: &mut Gateway, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, _)) = http(port, "GET", "/healthz", None) {
            return;
        }
        if let Ok(Some(st)) = gw.child.try_wait() {
            panic!("gateway exited early: {st}");
        }
        assert!(Instant::now() < deadline, "gateway not up within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `secs`.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn sigterm(gw: &mut Gateway) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(gw.child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(st)) = gw.child.try_wait() {
            return st;
        }
        assert!(Instant::now() < deadline, "no exit within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("")
}

pub fn audio_port(sdp: &str) -> u16 {
    sdp.lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("m=audio port")
}

/// The shipped 440 Hz Opus tone, 20 ms frames.
pub fn tone_frames() -> Vec<Vec<u8>> {
    let raw =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/tone-440hz.opusframes"))
            .unwrap();
    let mut v = vec![];
    let mut pos = 0;
    while pos + 2 <= raw.len() {
        let n = usize::from(u16::from_be_bytes([raw[pos], raw[pos + 1]]));
        v.push(raw[pos + 2..pos + 2 + n].to_vec());
        pos += 2 + n;
    }
    assert!(!v.is_empty());
    v
}

pub fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    v[2..4].copy_from_slice(&seq.to_be_bytes());
    v[4..8].copy_from_slice(&ts.to_be_bytes());
    v[8..12].copy_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A plain-RTP PBX: a UDP SIP socket and an RTP socket (the port its SDP advertises).
pub struct Pbx {
    pub sip: UdpSocket,
    pub rtp: UdpSocket,
    pub trunk: u16,
    pub call_id: String,
    pub to: String,
    pub target: String,
    pub cseq: u32,
    pub gw_rtp: Option<SocketAddr>,
}

impl Pbx {
    /// `sip_port`: the trunk peer's port from the profile (in-dialog requests from the
    /// gateway go to the configured peer).
    pub fn new(trunk: u16, sip_port: u16, call_id: &str) -> Pbx {
        let sip = UdpSocket::bind(("127.0.0.1", sip_port)).unwrap();
        sip.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        rtp.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Pbx {
            sip,
            rtp,
            trunk,
            call_id: call_id.to_owned(),
            to: String::new(),
            target: String::new(),
            cseq: 1,
            gw_rtp: None,
        }
    }

    fn branch_base(&self) -> String {
        self.call_id
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    }

    pub fn sip_port(&self) -> u16 {
        self.sip.local_addr().unwrap().port()
    }

    pub fn sdp(&self, direction: &str) -> String {
        let port = self.rtp.local_addr().unwrap().port();
        format!(
            "v=0\r\no=pbx 1 {} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 111 101\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na={direction}\r\n",
            self.cseq
        )
    }

    pub fn send(&self, msg: &str) {
        self.sip
            .send_to(msg.as_bytes(), ("127.0.0.1", self.trunk))
            .unwrap();
    }

    /// Next SIP message (15 s at most).
    pub fn recv(&self) -> String {
        let mut buf = [0u8; 65536];
        let (n, _) = self
            .sip
            .recv_from(&mut buf)
            .expect("SIP message within 15 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Sends INVITE to `user` and returns the final response (provisionals collected).
    pub fn invite(&mut self, user: &str) -> (String, Vec<String>) {
        let me = self.sip_port();
        let t = self.trunk;
        let sdp = self.sdp("sendrecv");
        let invite = format!(
            "INVITE sip:{user}@127.0.0.1:{t} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-{}-1\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:100@127.0.0.1>;tag=pbx1\r\n\
             To: <sip:{user}@127.0.0.1>\r\n\
             Call-ID: {}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:100@127.0.0.1:{me}>\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            self.branch_base(),
            self.call_id,
            sdp.len()
        );
        self.send(&invite);
        let mut provisional = vec![];
        let fin = loop {
            let r = self.recv();
            if r.starts_with("SIP/2.0 1") {
                provisional.push(r[8..11].to_string());
                continue;
            }
            if r.starts_with("SIP/2.0 ") {
                break r;
            }
        };
        if fin.starts_with("SIP/2.0 2") {
            self.to = header(&fin, "To").unwrap().to_owned();
            let contact = header(&fin, "Contact").unwrap();
            self.target = contact
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap()
                .to_owned();
            self.gw_rtp = Some(SocketAddr::from(([127, 0, 0, 1], audio_port(body(&fin)))));
            self.ack(1);
        }
        (fin, provisional)
    }

    pub fn in_dialog(&self, method: &str, cseq: u32, body: &str) -> String {
        self.in_dialog_typed(method, cseq, "application/sdp", body)
    }

    pub fn in_dialog_typed(
        &self,
        method: &str,
        cseq: u32,
        content_type: &str,
        body: &str,
    ) -> String {
        let me = self.sip_port();
        let ct = if body.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {content_type}\r\n")
        };
        format!(
            "{method} {} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-{}-{method}-{cseq}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:100@127.0.0.1>;tag=pbx1\r\n\
             To: {}\r\n\
             Call-ID: {}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:100@127.0.0.1:{me}>\r\n\
             {ct}Content-Length: {}\r\n\r\n{body}",
            self.target,
            self.branch_base(),
            self.to,
            self.call_id,
            body.len()
        )
    }

    pub fn ack(&self, cseq: u32) {
        self.send(&self.in_dialog("ACK", cseq, ""));
    }

    /// Sends an in-dialog request and returns its final response.
    pub fn request(&mut self, method: &str, body: &str) -> String {
        self.request_typed(method, "application/sdp", body)
    }

    /// As [`Pbx::request`] with a body of `content_type`.
    pub fn request_typed(&mut self, method: &str, content_type: &str, body: &str) -> String {
        self.cseq += 1;
        let c = self.cseq;
        self.send(&self.in_dialog_typed(method, c, content_type, body));
        loop {
            let r = self.recv();
            if r.starts_with("SIP/2.0 ")
                && !r.starts_with("SIP/2.0 1")
                && r.contains(&format!("CSeq: {c} {method}"))
            {
                if method == "INVITE" {
                    self.ack(c);
                }
                return r;
            }
        }
    }

    /// Sends `n` tone packets at 20 ms pacing (SSRC `ssrc`, starting at `seq`).
    pub fn send_tone(&self, n: usize, ssrc: u32, seq: u16) {
        let frames = tone_frames();
        let to = self.gw_rtp.expect("answered");
        for i in 0..n {
            let p = rtp(
                111,
                seq.wrapping_add(i as u16),
                (i as u32) * 960,
                ssrc,
                &frames[i % frames.len()],
            );
            self.rtp.send_to(&p, to).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One RFC 4733 digit (`event` 0–15) as the PBX's phone sends it: start with marker,
    /// updates every 20 ms, three end packets, all at one timestamp (PT 101, 8 kHz).
    pub fn send_rfc4733(&self, event: u8, ssrc: u32, seq: u16, ts: u32) {
        let to = self.gw_rtp.expect("answered");
        let mut seq = seq;
        for (k, end) in [
            (1u16, false),
            (2, false),
            (3, false),
            (4, true),
            (4, true),
            (4, true),
        ] {
            let duration = k * 160;
            let mut payload = vec![event, if end { 0x80 | 10 } else { 10 }];
            payload.extend_from_slice(&duration.to_be_bytes());
            let mut p = rtp(101, seq, ts, ssrc, &payload);
            if k == 1 {
                p[1] |= 0x80;
            }
            self.rtp.send_to(&p, to).unwrap();
            seq = seq.wrapping_add(1);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Receives RTP for `ms`; returns (payload type, ssrc, payload length) of each packet and
    /// where they came from.
    pub fn collect_rtp(&self, ms: u64) -> Vec<(u8, u32, usize, SocketAddr)> {
        let deadline = Instant::now() + Duration::from_millis(ms);
        let mut got = vec![];
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            if let Ok((n, from)) = self.rtp.recv_from(&mut buf)
                && n >= 12
            {
                let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                got.push((buf[1] & 0x7f, ssrc, n - 12, from));
            }
        }
        got
    }
}

// ---- shared by gateway_baresip, gateway_sipp_media, gateway_refusals ----

/// Kills a child process when the test ends, however it ends.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `POST /sandbox/users` with a JSON body; panics unless 2xx.
pub fn sandbox_user(ports: &Ports, body: &str) {
    let (st, b) = http(ports.sandbox_http, "POST", "/sandbox/users", Some(body)).unwrap();
    assert!(st < 300, "{st} {b}");
}

/// `POST /sandbox/calls` (a WhatsApp user calls the business number); the call's id.
pub fn sandbox_place_call(ports: &Ports, body: &str) -> String {
    let (st, b) = http(ports.sandbox_http, "POST", "/sandbox/calls", Some(body)).unwrap();
    assert_eq!(st, 201, "{b}");
    serde_json::from_str::<serde_json::Value>(&b).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub fn sandbox_call_by_id(ports: &Ports, id: &str) -> serde_json::Value {
    json(ports.sandbox_http, &format!("/sandbox/calls/{id}"))
}

pub fn sandbox_calls(ports: &Ports) -> Vec<serde_json::Value> {
    json(ports.sandbox_http, "/sandbox/calls")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits (≤ `secs`) for the sandbox call to reach a final state.
pub fn sandbox_final(ports: &Ports, id: &str, secs: u64) -> serde_json::Value {
    eventually(secs, &format!("sandbox call {id} final"), || {
        let c = sandbox_call_by_id(ports, id);
        matches!(
            c["state"].as_str(),
            Some("completed" | "rejected" | "failed")
        )
        .then_some(c)
    })
}

/// First lines of a sandbox call's transcript in direction `dir` (`sent` / `received`).
pub fn transcript_lines(call: &serde_json::Value, dir: &str) -> Vec<String> {
    call["sip"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["dir"] == dir)
                .filter_map(|e| e["first_line"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of header `name` of a transcript entry.
pub fn transcript_header(entry: &serde_json::Value, name: &str) -> Option<String> {
    entry["headers"].as_array()?.iter().find_map(|h| {
        h[0].as_str()?
            .eq_ignore_ascii_case(name)
            .then(|| h[1].as_str().unwrap_or_default().to_owned())
    })
}

/// Every record (`GET /records`).
pub fn records(ports: &Ports) -> Vec<serde_json::Value> {
    json(ports.http, "/records")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Reads one SIP message from a stream (≤ 10 s).
pub fn read_stream_message(s: &mut impl Read, buf: &mut Vec<u8>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = header(&head, "Content-Length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let msg: Vec<u8> = buf.drain(..end + 4 + len).collect();
                return String::from_utf8_lossy(&msg).into_owned();
            }
        }
        assert!(Instant::now() < deadline, "no complete message within 10 s");
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk) {
            Ok(0) => panic!("connection closed"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Runs `sipp` on `scenario` (in `tests/sipp/`) in `dir` until it exits (bounded by
/// `-timeout`); returns its output. `extra` is appended to the command line.
pub fn sipp_run(dir: &Path, scenario: &str, extra: &[&str]) -> std::process::Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(scenario);
    Command::new("sipp")
        .arg("-sf")
        .arg(path)
        .args(["-i", "127.0.0.1", "-t", "u1", "-nostdin", "-trace_err"])
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("sipp runs (scripts/test installs sip-tester)")
}

/// Starts `sipp` in the background (killed on drop).
pub fn sipp_spawn(dir: &Path, scenario: &str, extra: &[&str]) -> Proc {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(scenario);
    Proc(
        Command::new("sipp")
            .arg("-sf")
            .arg(path)
            .args(["-i", "127.0.0.1", "-t", "u1", "-nostdin", "-trace_err"])
            .args(extra)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("sipp.stderr")).map_or(Stdio::null(), Stdio::from),
            )
            .spawn()
            .expect("sipp runs (scripts/test installs sip-tester)"),
    )
}

/// Everything SIPp wrote to `*_errors.log` in `dir`.
pub fn sipp_errors(dir: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with("_errors.log") {
            all += &std::fs::read_to_string(e.path()).unwrap_or_default();
        }
    }
    all
}

/// An even base for a block of 400 RTP ports that are free right now (SIPp 3.6.1's
/// `rtp_stream` takes the ports above `-mp`; the gateway's ranges are 30000–30999 /
/// 40000–40999).
pub fn rtp_block() -> u16 {
    for _ in 0..50 {
        let base = (free_port() % 20_000 + 10_000) & !1;
        let clear = (base..base + 400).step_by(37).all(|p| {
            std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
                && !(30000..31000).contains(&p)
                && !(40000..41000).contains(&p)
        });
        if clear {
            return base;
        }
    }
    panic!("no free RTP block");
}
