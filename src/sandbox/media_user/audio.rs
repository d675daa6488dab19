//! Audio the sandbox user sends and the evidence it keeps about what it hears.
//!
//! - [`OpusFrames`]: a pre-encoded Opus frame file (`u16` big-endian length, then the packet,
//!   repeated; made by `scripts/make-assets`, see `assets/README.md`) and the built-in 440 Hz
//!   tone compiled into the binary.
//! - [`G711Tone`]: a 440 Hz tone for the G.711 codecs (computed, no fixture needed).
//! - [`LevelMeter`]: decodes every received audio payload to PCM (Opus through the pure-Rust
//!   `opus-decoder`, G.711 by table-free RFC-standard expansion) and reports its RMS level, so
//!   "the user heard non-silent audio" is a measurement of decoded samples, not a guess from
//!   packet sizes.
//!
//! Guarantees: parsing a frame file never panics (typed error on any malformed length); the
//! meter never panics on hostile payloads (a decoder panic is caught, counted as a decode
//! error, and the decoder is rebuilt).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, LazyLock};

use opus_decoder::OpusDecoder;
use thiserror::Error;

use crate::media::opus::SILENCE_20MS;

/// The 440 Hz, -6 dBFS, 20 ms / 24 kbit/s Opus tone (`assets/tone-440hz.opusframes`).
const TONE_440HZ: &[u8] = include_bytes!("../../../assets/tone-440hz.opusframes");

/// RMS (in 16-bit sample units) at or above which a decoded frame counts as non-silent:
/// 64 / 32768 ≈ -54 dBFS, far above a decoder's rendering of digital silence (0) and far below
/// any tone or speech.
pub const NON_SILENT_RMS: u32 = 64;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameFileError {
    #[error("frame file truncated at byte {0}")]
    Truncated(usize),
    #[error("zero-length frame at byte {0}")]
    EmptyFrame(usize),
    #[error("frame file holds no frames")]
    NoFrames,
}

/// A sequence of 20 ms Opus packets, played in a loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusFrames {
    frames: Vec<Vec<u8>>,
}

impl OpusFrames {
    /// Parse a length-prefixed frame file.
    pub fn parse(bytes: &[u8]) -> Result<Self, FrameFileError> {
        let mut frames = Vec::new();
        let mut pos = 0usize;
        while pos < bytes.len() {
            let len_bytes = bytes
                .get(pos..pos + 2)
                .ok_or(FrameFileError::Truncated(pos))?;
            let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
            if len == 0 {
                return Err(FrameFileError::EmptyFrame(pos));
            }
            let frame = bytes
                .get(pos + 2..pos + 2 + len)
                .ok_or(FrameFileError::Truncated(pos))?;
            frames.push(frame.to_vec());
            pos += 2 + len;
        }
        if frames.is_empty() {
            return Err(FrameFileError::NoFrames);
        }
        Ok(Self { frames })
    }

    /// The built-in 440 Hz tone (shared, parsed once).
    pub fn tone() -> Arc<OpusFrames> {
        static TONE: LazyLock<Arc<OpusFrames>> = LazyLock::new(|| {
            // The fixture is compiled in and checked by a unit test; should it ever be
            // unreadable, fall back to the silence frame rather than panic in a call.
            Arc::new(
                OpusFrames::parse(TONE_440HZ).unwrap_or_else(|_| OpusFrames {
                    frames: vec![SILENCE_20MS.to_vec()],
                }),
            )
        });
        TONE.clone()
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frame `i` of the loop (wraps around).
    pub fn frame(&self, i: usize) -> &[u8] {
        match self.frames.get(i % self.frames.len().max(1)) {
            Some(f) => f,
            None => &SILENCE_20MS,
        }
    }
}

/// G.711 variant (RFC 3551 PT 0 / PT 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711 {
    Pcmu,
    Pcma,
}

impl G711 {
    /// Expand one G.711 byte to a 16-bit linear sample (ITU-T G.711).
    pub fn decode(self, b: u8) -> i16 {
        match self {
            G711::Pcmu => {
                let u = !b;
                let exp = (u >> 4) & 0x07;
                let mant = i32::from(u & 0x0f);
                let mag = (((mant << 3) + 0x84) << exp) - 0x84;
                (if u & 0x80 != 0 { -mag } else { mag }) as i16
            }
            G711::Pcma => {
                let a = b ^ 0x55;
                let exp = (a >> 4) & 0x07;
                let mant = i32::from(a & 0x0f);
                let mag = match exp {
                    0 => (mant << 4) + 8,
                    _ => ((mant << 4) + 0x108) << (exp - 1),
                };
                (if a & 0x80 != 0 { mag } else { -mag }) as i16
            }
        }
    }

    /// Compress one 16-bit linear sample (ITU-T G.711).
    pub fn encode(self, s: i16) -> u8 {
        match self {
            G711::Pcmu => {
                const BIAS: i32 = 0x84;
                let mut v = i32::from(s);
                let sign = if v < 0 {
                    v = -v;
                    0x80
                } else {
                    0
                };
                v = v.min(32635) + BIAS;
                let exp = (0..8).rev().find(|e| v & (0x80 << e) != 0).unwrap_or(0);
                let mant = (v >> (exp + 3)) & 0x0f;
                !(sign | (exp << 4) as u8 | mant as u8)
            }
            G711::Pcma => {
                let mut v = i32::from(s);
                let sign = if v >= 0 {
                    0x80
                } else {
                    v = -v - 1;
                    0
                };
                v = v.min(32767);
                let byte = if v < 256 {
                    (v >> 4) as u8
                } else {
                    let exp = (1..8).rev().find(|e| v & (0x80 << e) != 0).unwrap_or(1);
                    ((exp << 4) as u8) | ((v >> (exp + 3)) & 0x0f) as u8
                };
                (sign | byte) ^ 0x55
            }
        }
    }
}

/// A 440 Hz, -6 dBFS tone at 8 kHz for G.711, 160 samples (20 ms) per frame.
#[derive(Debug, Clone)]
pub struct G711Tone {
    law: G711,
    sample: u64,
}

impl G711Tone {
    pub fn new(law: G711) -> Self {
        Self { law, sample: 0 }
    }

    /// The next 20 ms frame.
    pub fn next_frame(&mut self) -> Vec<u8> {
        (0..160)
            .map(|_| {
                let t = self.sample as f64 / 8000.0;
                self.sample = (self.sample + 1) % 8000; // 440 Hz repeats exactly every second
                let v = (t * 440.0 * std::f64::consts::TAU).sin() * 16384.0;
                self.law.encode(v as i16)
            })
            .collect()
    }
}

/// How received audio payloads are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// Opus (48 kHz RTP clock, RFC 7587).
    Opus,
    G711(G711),
}

impl AudioCodec {
    /// From an SDP encoding name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("opus") {
            Some(AudioCodec::Opus)
        } else if name.eq_ignore_ascii_case("PCMU") {
            Some(AudioCodec::G711(G711::Pcmu))
        } else if name.eq_ignore_ascii_case("PCMA") {
            Some(AudioCodec::G711(G711::Pcma))
        } else {
            None
        }
    }

    /// RTP timestamp units per 20 ms frame.
    pub fn timestamp_step(self) -> u32 {
        match self {
            AudioCodec::Opus => crate::media::opus::TIMESTAMP_STEP_20MS,
            AudioCodec::G711(_) => 160,
        }
    }
}

/// Decodes received payloads and measures their level.
pub struct LevelMeter {
    codec: AudioCodec,
    opus: Option<OpusDecoder>,
    pcm: Vec<i16>,
}

impl std::fmt::Debug for LevelMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LevelMeter")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

fn new_opus() -> Option<OpusDecoder> {
    // Mono at 48 kHz: a stereo packet is downmixed by the decoder.
    OpusDecoder::new(48_000, 1).ok()
}

impl LevelMeter {
    pub fn new(codec: AudioCodec) -> Self {
        Self {
            codec,
            opus: match codec {
                AudioCodec::Opus => new_opus(),
                AudioCodec::G711(_) => None,
            },
            pcm: vec![0; OpusDecoder::MAX_FRAME_SIZE_48K],
        }
    }

    /// Decode `payload` and return its RMS in 16-bit sample units, or `None` when it does not
    /// decode.
    pub fn measure(&mut self, payload: &[u8]) -> Option<u32> {
        match self.codec {
            AudioCodec::G711(law) => {
                if payload.is_empty() {
                    return None;
                }
                Some(rms(payload.iter().map(|b| law.decode(*b))))
            }
            AudioCodec::Opus => {
                if payload.is_empty() {
                    return None; // an empty payload would ask the decoder for concealment
                }
                let dec = self.opus.as_mut()?;
                let pcm = &mut self.pcm;
                let out = catch_unwind(AssertUnwindSafe(|| dec.decode(payload, pcm, false)));
                match out {
                    Ok(Ok(n)) => Some(rms(self.pcm.get(..n)?.iter().copied())),
                    Ok(Err(_)) => None,
                    Err(_) => {
                        // The decoder state is suspect after a panic: start afresh.
                        self.opus = new_opus();
                        None
                    }
                }
            }
        }
    }
}

fn rms(samples: impl Iterator<Item = i16>) -> u32 {
    let (mut sum, mut n) = (0f64, 0u64);
    for s in samples {
        sum += f64::from(s) * f64::from(s);
        n += 1;
    }
    if n == 0 {
        return 0;
    }
    (sum / n as f64).sqrt() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn builtin_tone_is_101_celt_frames_of_20ms() {
        let t = OpusFrames::parse(TONE_440HZ).expect("fixture parses");
        assert_eq!(t.len(), 101);
        for i in 0..t.len() {
            let toc = crate::media::opus::Toc::parse(t.frame(i)[0]);
            assert_eq!(toc.frame_duration_us(), 20_000, "frame {i}");
            assert!(!toc.stereo);
        }
        assert_eq!(*OpusFrames::tone(), t);
    }

    #[test]
    fn builtin_tone_decodes_loud_and_silence_decodes_silent() {
        let tone = OpusFrames::tone();
        let mut m = LevelMeter::new(AudioCodec::Opus);
        let levels: Vec<u32> = (0..tone.len())
            .map(|i| m.measure(tone.frame(i)).expect("decodes"))
            .collect();
        // -6 dBFS sine: RMS = 16384 / sqrt(2) ≈ 11585. The encoder's priming frames (first)
        // and the end-of-stream frame (last) are quieter but still far from silence.
        let last = levels.len() - 1;
        for (i, l) in levels.iter().enumerate().skip(3).take(last - 3) {
            assert!((8000..14000).contains(l), "frame {i}: rms {l}");
        }
        assert!(
            levels[last] > 10 * NON_SILENT_RMS,
            "last frame rms {}",
            levels[last]
        );
        let mut m = LevelMeter::new(AudioCodec::Opus);
        for _ in 0..10 {
            assert_eq!(m.measure(&SILENCE_20MS), Some(0));
        }
    }

    #[test]
    fn g711_round_trip_and_tone_level() {
        for law in [G711::Pcmu, G711::Pcma] {
            for s in [-32768i16, -1000, -1, 0, 1, 1000, 32767] {
                let back = law.decode(law.encode(s));
                assert!(
                    (i32::from(back) - i32::from(s)).abs() <= i32::from(s).abs() / 16 + 16,
                    "{law:?} {s} -> {back}"
                );
            }
            let mut tone = G711Tone::new(law);
            let mut m = LevelMeter::new(AudioCodec::G711(law));
            let l = m.measure(&tone.next_frame()).unwrap();
            assert!((10_500..12_500).contains(&l), "{law:?} rms {l}");
            // Digital silence in each law.
            let silent = vec![law.encode(0); 160];
            assert!(m.measure(&silent).unwrap() < NON_SILENT_RMS);
        }
    }

    #[test]
    fn frame_file_errors() {
        assert_eq!(OpusFrames::parse(&[]), Err(FrameFileError::NoFrames));
        assert_eq!(OpusFrames::parse(&[0]), Err(FrameFileError::Truncated(0)));
        assert_eq!(
            OpusFrames::parse(&[0, 0]),
            Err(FrameFileError::EmptyFrame(0))
        );
        assert_eq!(
            OpusFrames::parse(&[0, 1, 7, 0, 3, 1]),
            Err(FrameFileError::Truncated(3))
        );
        let ok = OpusFrames::parse(&[0, 1, 7, 0, 2, 8, 9]).unwrap();
        assert_eq!(
            (ok.frame(0), ok.frame(1), ok.frame(2)),
            (&[7][..], &[8, 9][..], &[7][..])
        );
    }

    proptest! {
        #[test]
        fn frame_file_parse_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = OpusFrames::parse(&b);
        }

        #[test]
        fn opus_meter_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut m = LevelMeter::new(AudioCodec::Opus);
            let _ = m.measure(&b);
            // The meter still works afterwards.
            prop_assert_eq!(m.measure(&SILENCE_20MS).is_some(), true);
        }
    }
}
