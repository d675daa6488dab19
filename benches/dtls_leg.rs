//! Per-call DTLS+ICE leg setup cost: the gateway's `create_offer`, the Meta-like peer's
//! `meta_answer`, the gateway's `accept_answer`, then the full in-memory ICE + DTLS 1.2
//! handshake (virtual time, no sockets) until both legs report `Connected`.
//!
//! Two variants: with the process-wide certificate (what the gateway does) and with a fresh
//! ECDSA P-256 certificate per leg (what str0m would do by default).
//!
//! Run: `cargo bench --bench dtls_leg` (numbers recorded in docs/benchmarks.md).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use whatsip::media::webrtc::{MetaLikeConfig, Output, WebrtcConfig, WebrtcLeg, new_certificate};

fn drain(
    leg: &mut WebrtcLeg,
    now: Instant,
    out: &mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    up: &mut bool,
) -> Instant {
    loop {
        match leg.poll_output(now) {
            Output::Transmit(t) => out.push((t.source, t.destination, t.contents)),
            Output::Timeout(at) => return at,
            Output::Connected(_) => *up = true,
            Output::Rtp(_) => {}
            Output::Failed(f) => panic!("leg failed: {f}"),
        }
    }
}

fn one_call(gw: &WebrtcConfig, meta: &MetaLikeConfig) {
    let mut now = Instant::now();
    let (mut g, offer) = WebrtcLeg::create_offer(now, gw).expect("offer");
    let (mut m, answer) = WebrtcLeg::meta_answer(now, meta, &offer).expect("answer");
    g.accept_answer(now, &answer).expect("accept");
    let (mut g_up, mut m_up) = (false, false);
    let mut buf = Vec::new();
    for _ in 0..10_000 {
        let gw_wake = drain(&mut g, now, &mut buf, &mut g_up);
        for (s, d, c) in buf.drain(..) {
            if d == m.local_addr() {
                m.handle_receive(now, s, d, &c);
            }
        }
        let m_wake = drain(&mut m, now, &mut buf, &mut m_up);
        let quiet = buf.is_empty();
        for (s, d, c) in buf.drain(..) {
            if d == g.local_addr() {
                g.handle_receive(now, s, d, &c);
            }
        }
        if g_up && m_up {
            black_box((&g, &m));
            return;
        }
        if quiet {
            now = gw_wake.min(m_wake).max(now);
            g.handle_timeout(now);
            m.handle_timeout(now);
        }
    }
    panic!("legs never connected");
}

fn bench(c: &mut Criterion) {
    let gw = WebrtcConfig::new("127.0.0.1:40000".parse().unwrap());
    let meta = MetaLikeConfig::new("127.0.0.1:3482".parse().unwrap());
    let mut g = c.benchmark_group("dtls_leg_setup");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(20);
    g.bench_function("shared_cert/offer+answer+handshake", |b| {
        b.iter(|| one_call(&gw, &meta))
    });
    g.bench_function("fresh_cert_per_leg/offer+answer+handshake", |b| {
        b.iter(|| {
            let mut gw = gw.clone();
            gw.certificate = new_certificate();
            let mut meta = meta.clone();
            meta.leg.certificate = new_certificate();
            one_call(&gw, &meta)
        })
    });
    g.bench_function("shared_cert/answer_offer_only", |b| {
        let (_m, offer) = WebrtcLeg::meta_offer(Instant::now(), &meta).expect("offer");
        b.iter(|| black_box(WebrtcLeg::answer_offer(Instant::now(), &gw, &offer).expect("answer")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
