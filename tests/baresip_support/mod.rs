//! Shared by the tests that run baresip: reading its `sndfile` recordings, and a tiny DNS
//! responder so baresip (which resolves names with its own DNS client) finds test hosts such
//! as `wa.meta.vc` or `gateway.whatsip.test` on loopback without touching /etc.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running baresip whose config folder is `dir` (log in `baresip.log`, recordings in
/// `rec/`). Killed when dropped.
pub struct Baresip {
    pub child: Child,
    pub dir: PathBuf,
}

impl Baresip {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// SIGTERM (baresip hangs up and closes its recording), then kill if it lingers (≤ 5 s).
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The one recording of what baresip decoded (`sndfile`'s `…-dec.wav`).
    pub fn decoded_wav(&self) -> PathBuf {
        let dec: Vec<_> = std::fs::read_dir(self.dir.join("rec"))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        assert_eq!(dec.len(), 1, "baresip recordings: {dec:?}\n{}", self.log());
        dec[0].clone()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 16-bit PCM samples of a WAV, read from the `data` chunk to the end of the file (so a
/// header whose sizes were never finalised still works).
pub fn wav_samples(path: &Path) -> Vec<i16> {
    let data = std::fs::read(path).unwrap();
    let at = data
        .windows(4)
        .position(|w| w == b"data")
        .expect("WAV data chunk")
        + 8;
    data[at.min(data.len())..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// (samples, RMS) of a 16-bit PCM WAV.
pub fn wav_rms(path: &Path) -> (usize, f64) {
    let samples = wav_samples(path);
    let sum: f64 = samples.iter().map(|s| f64::from(*s) * f64::from(*s)).sum();
    (samples.len(), (sum / samples.len().max(1) as f64).sqrt())
}

/// (samples, RMS, left-channel frequency over the last second) of a 16-bit stereo 48 kHz WAV.
pub fn wav_stats(path: &Path) -> (usize, f64, f64) {
    let samples = wav_samples(path);
    let (n, rms) = wav_rms(path);
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let last = &left[left.len().saturating_sub(48_000)..];
    let crossings = last.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    let hz = crossings as f64 / 2.0 / (last.len().max(1) as f64 / 48_000.0);
    (n, rms, hz)
}

const TYPE_A: u16 = 1;
const TYPE_SRV: u16 = 33;

/// An authoritative DNS responder over UDP on 127.0.0.1: `A <host>` → 127.0.0.1 for each of
/// `hosts`, `SRV <srv name>` → `<target>:<port>` for each of `srv`, an empty NOERROR answer
/// for other types of those names and NXDOMAIN for anything else. Records every question
/// (name, type). Malformed datagrams are ignored. Stops when dropped.
pub struct FakeDns {
    pub addr: SocketAddr,
    questions: Arc<Mutex<Vec<(String, u16)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDns {
    pub fn start(hosts: &[&str], srv: &[(&str, &str, u16)]) -> FakeDns {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let questions = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, halt) = (questions.clone(), stop.clone());
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        let srv: Vec<(String, String, u16)> = srv
            .iter()
            .map(|(n, t, p)| (n.to_ascii_lowercase(), t.to_string(), *p))
            .collect();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !halt.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some((name, qtype, reply)) = answer(&buf[..n], &hosts, &srv) {
                    seen.lock().unwrap().push((name, qtype));
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        FakeDns {
            addr,
            questions,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn questions(&self) -> Vec<(String, u16)> {
        self.questions.lock().unwrap().clone()
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// (question name, type, response) for a one-question query.
fn answer(
    q: &[u8],
    hosts: &[String],
    srv: &[(String, String, u16)],
) -> Option<(String, u16, Vec<u8>)> {
    if q.len() < 12 || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // no compression in questions
        }
        labels.push(String::from_utf8_lossy(q.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*q.get(at)?, *q.get(at + 1)?]);
    let question = q.get(12..at + 4)?;
    let name = labels.join(".");
    let host = hosts.contains(&name);
    let service = srv.iter().find(|(n, _, _)| *n == name);
    let mut answers: Vec<(u16, Vec<u8>)> = Vec::new();
    match (qtype, service) {
        (TYPE_A, _) if host => answers.push((TYPE_A, vec![127, 0, 0, 1])),
        (TYPE_SRV, Some((_, target, port))) => {
            let mut rdata = Vec::new();
            rdata.extend_from_slice(&0u16.to_be_bytes()); // priority
            rdata.extend_from_slice(&0u16.to_be_bytes()); // weight
            rdata.extend_from_slice(&port.to_be_bytes());
            for l in target.split('.') {
                rdata.push(l.len() as u8);
                rdata.extend_from_slice(l.as_bytes());
            }
            rdata.push(0);
            answers.push((TYPE_SRV, rdata));
        }
        _ => {}
    }
    let rcode: u8 = if host || service.is_some() { 0 } else { 3 };
    let mut r = Vec::with_capacity(512);
    r.extend_from_slice(&q[..2]); // id
    r.push(0x84 | (q[2] & 0x01)); // QR, AA, RD copied
    r.push(0x80 | rcode); // RA, rcode
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(question);
    for (t, rdata) in answers {
        r.extend_from_slice(&[0xc0, 0x0c]); // name: the question's
        r.extend_from_slice(&t.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes()); // IN
        r.extend_from_slice(&60u32.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(&rdata);
    }
    Some((name, qtype, r))
}
