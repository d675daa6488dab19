//! A tiny SIP user agent on whatsip's transaction layer, for poking at it with SIPp or a
//! softphone (loopback by default).
//!
//! ```text
//! cargo run --example sip_ua -- uas udp 127.0.0.1:5070
//! cargo run --example sip_ua -- uac tcp 127.0.0.1:5071 127.0.0.1:5060 [calls] [rate]
//! ```
use std::net::SocketAddr;
use std::time::Instant;
use whatsip::sip::driver::{Driver, Step, target};
use whatsip::sip::endpoint::{Endpoint, EndpointConfig, TransportKind};
use whatsip::sip::ua::{SimpleUac, SimpleUas};
use whatsip::sip::uri::Uri;
use whatsip::transport::{Config, Kind, Transport};

fn usage() -> ! {
    eprintln!("usage: sip_ua uas <udp|tcp> <bind> | uac <udp|tcp> <bind> <peer> [calls] [rate]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, kind, bind) = match args.as_slice() {
        [m, k, b, ..] => (
            m.as_str(),
            k.as_str(),
            b.parse::<SocketAddr>().unwrap_or_else(|_| usage()),
        ),
        _ => usage(),
    };
    let (kind, tk) = match kind {
        "udp" => (Kind::Udp, TransportKind::Udp),
        "tcp" => (Kind::Tcp, TransportKind::Tcp),
        _ => usage(),
    };
    let mut cfg = Config::default();
    match kind {
        Kind::Udp => cfg.udp = vec![bind],
        _ => cfg.tcp = vec![bind],
    }
    let (t, rx) = Transport::bind(cfg).await.expect("bind");
    let local = t.local_addr(kind).expect("bound");
    let ep = Endpoint::new(EndpointConfig::new(
        local.ip().to_string(),
        Some(local.port()),
        "ua",
    ));
    let mut driver = Driver::new(ep, t, rx);
    let contact = Uri::parse(&format!(
        "sip:ua@{local};transport={}",
        kind.via_token().to_ascii_lowercase()
    ))
    .expect("contact");
    match mode {
        "uas" => {
            let mut uas = SimpleUas::new(contact);
            eprintln!("UAS listening on {kind} {local}");
            loop {
                match driver.next(None).await {
                    Step::Event(ev) => {
                        uas.handle_event(Instant::now(), driver.endpoint(), ev);
                        eprintln!("{:?}", uas.stats());
                    }
                    Step::Deadline => {}
                    Step::Closed => break,
                }
            }
        }
        "uac" => {
            let peer: SocketAddr = args
                .get(3)
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| usage());
            let calls = args.get(4).and_then(|n| n.parse().ok()).unwrap_or(1);
            let rate = args.get(5).and_then(|n| n.parse().ok()).unwrap_or(10);
            let ruri = Uri::parse(&format!("sip:service@{peer}")).expect("uri");
            let mut uac =
                SimpleUac::new(Instant::now(), target(tk, peer), ruri, contact, calls, rate);
            while !uac.is_done() {
                match driver.next(uac.poll_timeout()).await {
                    Step::Event(ev) => uac.handle_event(Instant::now(), driver.endpoint(), ev),
                    Step::Deadline => uac.handle_timeout(Instant::now(), driver.endpoint()),
                    Step::Closed => break,
                }
            }
            driver.flush().await;
            let s = uac.stats();
            println!("{s:?}");
            std::process::exit(if s.failed == 0 { 0 } else { 1 });
        }
        _ => usage(),
    }
}
