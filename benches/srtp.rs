//! SRTP cost per packet: protect + unprotect of one 20 ms media packet (12-byte RTP header +
//! 160-byte payload, the G.711 size; Opus at 20 kbit/s is ~50 bytes) per suite, in place on
//! a reused buffer, exactly as the relay will run it.
//!
//! Run: `cargo bench --bench srtp` (numbers recorded in docs/benchmarks.md).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use whatsip::media::rtp::RtpHeader;
use whatsip::media::srtp::{MasterKey, SrtpProfile, SrtpSession};

const PAYLOAD: usize = 160;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp_160B");
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.sample_size(30);
    for profile in SrtpProfile::ALL {
        let key = MasterKey::random(profile);
        let mut tx = SrtpSession::new(&key).unwrap();
        let mut rx = SrtpSession::new(&key).unwrap();
        let mut buf = vec![0u8; 12 + PAYLOAD + tx.rtp_overhead()];
        let mut seq = 0u16;
        g.bench_function(format!("{profile}/protect+unprotect"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                RtpHeader::new(111, seq, u32::from(seq) * 960, 0x1234)
                    .write(&[], &mut buf)
                    .unwrap();
                buf[12..12 + PAYLOAD].fill(0x55);
                let n = tx.protect_rtp(&mut buf, 12 + PAYLOAD).unwrap();
                let m = rx.unprotect_rtp(&mut buf[..n]).unwrap();
                black_box(m)
            })
        });
        let mut tx = SrtpSession::new(&key).unwrap();
        let mut seq = 0u16;
        g.bench_function(format!("{profile}/protect"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                RtpHeader::new(111, seq, u32::from(seq) * 960, 0x1234)
                    .write(&[], &mut buf)
                    .unwrap();
                black_box(tx.protect_rtp(&mut buf, 12 + PAYLOAD).unwrap())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
