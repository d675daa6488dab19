//! Relay cost per packet, sans I/O: one `RelayCall::handle_datagram` for a 20 ms Opus packet
//! (12-byte header + 80-byte payload) in each direction, SDES AES_CM_128_HMAC_SHA1_80 on the
//! WhatsApp leg and plain RTP on the PBX leg — parse, PT map, SSRC/sequence/timestamp
//! rewrite, SRTP protect (toward Meta) or unprotect (from Meta), counters. Kernel UDP cost is
//! not included (see docs/benchmarks.md).
//!
//! Run: `cargo bench --bench relay` (numbers recorded in docs/benchmarks.md).

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use whatsip::media::relay::{
    MAX_DATAGRAM, MediaCounters, RelayCall, RelaySpec, Side, Socket, StreamIds,
};
use whatsip::media::sdp::{self, AudioSession, Codec, LocalMedia};
use whatsip::media::srtp::SrtpSession;

const META_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 3480 RTP/SAVP 111 126\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:126 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\na=rtcp-mux\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n";
const PBX_ANSWER: &str = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 111 101\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
const PAYLOAD: usize = 80;

fn rtp(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut v = vec![0x80, 111, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    v[2..4].copy_from_slice(&seq.to_be_bytes());
    v[4..8].copy_from_slice(&ts.to_be_bytes());
    v[8..12].copy_from_slice(&ssrc.to_be_bytes());
    v.resize(12 + PAYLOAD, 0x5a);
    v
}

fn bench(c: &mut Criterion) {
    let lo = IpAddr::from([127, 0, 0, 1]);
    let offer = AudioSession::parse(META_OFFER.as_bytes()).unwrap();
    let (answer, neg) = sdp::build_answer(&offer, &LocalMedia::whatsapp(lo, 40000, false)).unwrap();
    let pbx_offer = sdp::build_offer(&LocalMedia::pbx(lo, 30000, vec![Codec::opus(111)]));
    let spec = RelaySpec::from_sdps(
        answer.to_sdp().as_bytes(),
        META_OFFER.as_bytes(),
        pbx_offer.sdp.to_sdp().as_bytes(),
        PBX_ANSWER.as_bytes(),
    )
    .unwrap();
    let keys = neg.srtp.unwrap();
    let t0 = Instant::now();
    let ids = StreamIds {
        ssrc: 1,
        seq: 1,
        ts: 1,
    };
    let mut relay = RelayCall::new(
        t0,
        SystemTime::now(),
        spec,
        ids,
        true,
        Arc::new(MediaCounters::default()),
    );
    let pbx: SocketAddr = "127.0.0.1:20000".parse().unwrap();
    let meta: SocketAddr = "127.0.0.2:3480".parse().unwrap();
    let mut out = vec![0u8; MAX_DATAGRAM];

    let mut g = c.benchmark_group("relay_opus_80B");
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.sample_size(30);

    let mut seq = 0u16;
    g.bench_function("pbx_to_whatsapp (RTP → SRTP)", |b| {
        let mut pkt = rtp(0, 0, 0x77);
        b.iter(|| {
            seq = seq.wrapping_add(1);
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
            let tx = relay.handle_datagram(t0, Side::Pbx, Socket::Rtp, pbx, &mut pkt, &mut out);
            black_box(tx.unwrap().len)
        })
    });

    // From Meta: packets protected by Meta's session outside the timed section (SRTP replay
    // protection forbids reusing one).
    let mut meta_tx = SrtpSession::new(&keys.remote).unwrap();
    let mut mseq = 0u16;
    let mut mts = 0u32;
    g.bench_function("whatsapp_to_pbx (SRTP → RTP)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(4096);
                let mut batch: Vec<Vec<u8>> = (0..n)
                    .map(|_| {
                        mseq = mseq.wrapping_add(1);
                        mts = mts.wrapping_add(960);
                        let mut p = rtp(mseq, mts, 0x3e7a);
                        meta_tx.protect_rtp_vec(&mut p).unwrap();
                        p
                    })
                    .collect();
                let start = Instant::now();
                for p in &mut batch {
                    let tx =
                        relay.handle_datagram(t0, Side::WhatsApp, Socket::Rtp, meta, p, &mut out);
                    black_box(tx.map(|t| t.len));
                }
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
