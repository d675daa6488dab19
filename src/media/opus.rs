//! Opus frames the gateway generates itself (RFC 6716): the 20 ms silence frame used as
//! keepalive toward Meta while the PBX leg is quiet or on hold, and a TOC-byte reader.
//!
//! Meta hangs up after 20 s without business media at call start and 30 s mid-call
//! (whatsapp-calling.md §1.6); sending real (silent) Opus at ptime 20 keeps both timers quiet
//! and is what Meta's own FreeSWITCH recipe does (1 s of silence after answer).
//!
//! Guarantees: the constants are valid single-frame Opus packets; `Toc::parse` is total.

/// 20 ms CELT-only fullband mono silence: TOC `0xf8` (config 31 = CELT FB 20 ms, mono,
/// code 0 = one frame) followed by the two-byte CELT frame `0xff 0xfe`, which every libopus
/// decoder renders as digital silence. This is the frame WebRTC stacks and Asterisk send for
/// Opus DTX/silence keepalive.
pub const SILENCE_20MS: [u8; 3] = [0xf8, 0xff, 0xfe];

/// RTP timestamp increment for one 20 ms Opus frame (the RTP clock is always 48 kHz,
/// RFC 7587 §4.1).
pub const TIMESTAMP_STEP_20MS: u32 = 960;

/// Coding mode from the TOC config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Silk,
    Hybrid,
    Celt,
}

/// RFC 6716 §3.1 TOC byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Toc {
    pub config: u8,
    pub stereo: bool,
    /// 0: one frame, 1: two equal, 2: two different, 3: arbitrary.
    pub frame_count_code: u8,
}

impl Toc {
    pub fn parse(b: u8) -> Self {
        Self {
            config: b >> 3,
            stereo: b & 0x04 != 0,
            frame_count_code: b & 0x03,
        }
    }

    pub fn mode(&self) -> Mode {
        match self.config {
            0..=11 => Mode::Silk,
            12..=15 => Mode::Hybrid,
            _ => Mode::Celt,
        }
    }

    /// Duration of one frame in microseconds (RFC 6716 Table 2).
    pub fn frame_duration_us(&self) -> u32 {
        match self.config {
            0..=11 => [10_000, 20_000, 40_000, 60_000][usize::from(self.config % 4)],
            12..=15 => [10_000, 20_000][usize::from(self.config % 2)],
            _ => [2_500, 5_000, 10_000, 20_000][usize::from(self.config % 4)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_frame_is_one_20ms_celt_mono_frame() {
        let toc = Toc::parse(SILENCE_20MS[0]);
        assert_eq!(toc.config, 31);
        assert_eq!(toc.mode(), Mode::Celt);
        assert!(!toc.stereo);
        assert_eq!(toc.frame_count_code, 0);
        assert_eq!(toc.frame_duration_us(), 20_000);
        assert_eq!(
            u64::from(TIMESTAMP_STEP_20MS) * 1_000_000 / 48_000,
            u64::from(toc.frame_duration_us())
        );
    }

    #[test]
    fn toc_table() {
        assert_eq!(Toc::parse(0x08).frame_duration_us(), 20_000); // SILK NB 20 ms
        assert_eq!(Toc::parse(0x78).mode(), Mode::Hybrid); // config 15
        assert_eq!(Toc::parse(0x78).frame_duration_us(), 20_000);
        assert!(Toc::parse(0xfc).stereo);
    }
}
