//! Deterministic mode covers the SDES keys: two sandbox runs with the same `--seed` (and the
//! same RTP port range, since the port is in the SDP) put byte-identical SDP on the wire for
//! the same scenario — the 200 OK's answer to a business-initiated call (SIPp through a socat
//! TLS wrapper) and the offer of a user-initiated call — keys included; another seed gives
//! other keys.
mod sandbox_support;

use sandbox_support::*;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};
use whatsip::sandbox::edge::{CallBook, CallDirection, EdgeConfig, RouteStyle};
use whatsip::sandbox::runtime::{PlaceCall, RuntimeConfig, start_edge};
use whatsip::sandbox::{SandboxOptions, SandboxState};
use whatsip::sip::auth::Algorithm;

fn udp_free(port: u16) -> bool {
    std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

/// An even-based range of 41 UDP ports on loopback whose first ports are free now.
fn rtp_range() -> RangeInclusive<u16> {
    for _ in 0..200 {
        let p = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if p.is_multiple_of(2) && p < 65_000 && (p..p + 6).all(udp_free) {
            return p..=p + 40;
        }
    }
    panic!("no free UDP port range");
}

/// The SDP bodies one run put on the wire: (answer in the 200 OK, offer in the INVITE).
struct Run {
    answer: String,
    offer: String,
}

async fn run(seed: u64, rtp: RangeInclusive<u16>) -> Run {
    let dir = tempfile::tempdir().unwrap();
    // nothing listens on the gateway port: the user-initiated INVITE is sent (and recorded),
    // then fails on transport
    let closed = free_port();
    let state = SandboxState::new(SandboxOptions {
        seed: Some(seed),
        gateway_port: closed,
        ..SandboxOptions::default()
    });
    let config = RuntimeConfig {
        edge: "127.0.0.1:0".parse().unwrap(),
        ca_dir: dir.path().join("ca"),
        seed: Some(seed),
        edge_config: EdgeConfig {
            algorithm: Algorithm::Md5,
            route_style: RouteStyle::Meta,
        },
        rtp_ports: Some(rtp.clone()),
        ..RuntimeConfig::default()
    };
    let calls = CallBook::new();
    let edge = start_edge(config, state.clone(), calls.clone())
        .await
        .unwrap();

    // 1. business-initiated call: the edge answers SIPp's fixed offer
    let (socat, port) = tls_wrapper(edge.edge_addr, &edge.ca_path).await;
    let pw = state.sip_target("+15550001111").unwrap().password.unwrap();
    let xml = scenario(
        "sandbox_call.xml",
        &[
            ("CALLEE", "+15551234567"),
            ("USER", "15550001111"),
            ("PASSWORD", &pw),
            ("ROUTES", "[routes]"),
        ],
    );
    let (ok, log) = run_sipp_args(
        &xml,
        port,
        &["-auth_uri", "+15551234567@wa.meta.vc;transport=tls"],
    )
    .await;
    assert!(ok, "business-initiated call failed\n{log}");
    drop(socat);

    // 2. user-initiated call: the edge's offer
    let id = edge
        .place_call(PlaceCall {
            from: "+15551234567".into(),
            to: "+15550001111".into(),
            ..PlaceCall::default()
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let offer = loop {
        let c = calls.get(&id).unwrap();
        if let Some(e) = c
            .sip
            .iter()
            .find(|e| e.dir == "sent" && e.first_line.starts_with("INVITE "))
        {
            break e.body.clone();
        }
        assert!(Instant::now() < deadline, "INVITE never sent: {c:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let list = calls.list();
    let business = list
        .iter()
        .find(|c| c.direction == CallDirection::BusinessInitiated)
        .unwrap_or_else(|| panic!("{list:?}"));
    let answer = business
        .sip
        .iter()
        .find(|e| e.dir == "sent" && e.first_line.starts_with("SIP/2.0 200") && !e.body.is_empty())
        .unwrap_or_else(|| panic!("no 200 OK with SDP: {business:?}"))
        .body
        .clone();
    // stop this edge and wait until its RTP ports are free again for the next run
    drop(edge);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(udp_free(*rtp.start()) && udp_free(rtp.start() + 2)) {
        assert!(
            Instant::now() < deadline,
            "RTP ports of the first run still bound"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Run { answer, offer }
}

fn crypto_lines(sdp: &str) -> Vec<&str> {
    sdp.lines().filter(|l| l.starts_with("a=crypto:")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_seed_same_sdp_keys_included_other_seed_other_keys() {
    let rtp = rtp_range();
    let a = run(SEED, rtp.clone()).await;
    let b = run(SEED, rtp.clone()).await;
    let c = run(SEED + 1, rtp.clone()).await;
    eprintln!("answer:\n{}\noffer:\n{}", a.answer, a.offer);
    // the SDP is real: SDES keys in both directions, on the range's ports
    assert_eq!(crypto_lines(&a.answer).len(), 1, "{}", a.answer);
    assert!(crypto_lines(&a.offer).len() >= 2, "{}", a.offer);
    assert!(
        a.answer
            .contains(&format!("m=audio {} RTP/SAVP 107", rtp.start())),
        "{}",
        a.answer
    );
    assert!(
        a.offer
            .contains(&format!("m=audio {} RTP/SAVP ", rtp.start() + 2)),
        "{}",
        a.offer
    );
    // same seed: byte-identical
    assert_eq!(a.answer, b.answer);
    assert_eq!(a.offer, b.offer);
    // another seed: every key differs (ports and everything else being equal)
    for (x, y) in [(&a.answer, &c.answer), (&a.offer, &c.offer)] {
        let (kx, ky) = (crypto_lines(x), crypto_lines(y));
        assert_eq!(kx.len(), ky.len());
        for (l, m) in kx.iter().zip(&ky) {
            assert_ne!(l, m);
        }
        let strip = |s: &str| {
            s.lines()
                .filter(|l| !l.starts_with("a=crypto:"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(x), strip(y), "only the keys depend on the seed");
    }
    // the keys of one run are all different (offer suites, answer)
    let mut all: Vec<&str> = crypto_lines(&a.offer)
        .into_iter()
        .chain(crypto_lines(&a.answer))
        .filter_map(|l| l.split("inline:").nth(1))
        .collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a key repeats within a run");
}
