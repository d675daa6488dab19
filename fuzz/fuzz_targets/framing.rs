//! Fuzz the SIP stream and datagram framers: no input may panic, the stream framer's buffer
//! stays bounded, and chunking the input never changes the frames produced.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use whatsip::sip::framing::{Frame, FramingError, Limits, StreamFramer, frame_datagram};

fn run(limits: Limits, chunks: &[&[u8]]) -> (Vec<Frame>, Option<FramingError>) {
    let mut f = StreamFramer::new(limits);
    let mut out = Vec::new();
    for c in chunks {
        if let Err(e) = f.push(c) {
            return (out, Some(e));
        }
        loop {
            match f.poll() {
                Ok(Some(fr)) => out.push(fr),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        assert!(f.buffered() <= limits.max_header + limits.max_body);
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_header: 512,
        max_body: 1024,
    };
    let _ = frame_datagram(Bytes::copy_from_slice(data), &limits);
    // First byte picks a chunk size; compare chunked against one-shot framing.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let size = usize::from(n).max(1);
    let chunks: Vec<&[u8]> = rest.chunks(size).collect();
    let (chunked, chunked_err) = run(limits, &chunks);
    let (whole, whole_err) = run(limits, &[rest]);
    if chunked_err.is_none() && whole_err.is_none() {
        assert_eq!(chunked, whole);
    }
});
