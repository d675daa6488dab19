//! RTP fixed header (RFC 3550 §5.1): a zero-copy view over a packet buffer and a writer.
//!
//! Guarantees: `RtpPacket::parse` never panics and never reads past the buffer; it checks the
//! version, the CSRC list, the header extension length (RFC 3550 §5.3.1) and the padding count.
//! `RtpHeader::write` produces exactly the bytes `parse` reads back.

use thiserror::Error;

/// Size of the fixed RTP header.
pub const FIXED_HEADER_LEN: usize = 12;

/// Why a buffer is not a valid RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RtpError {
    #[error("RTP packet shorter than its header ({0} bytes)")]
    TooShort(usize),
    #[error("RTP version {0} is not 2")]
    BadVersion(u8),
    #[error("RTP header extension runs past the packet")]
    BadExtension,
    #[error("RTP padding count {0} is invalid")]
    BadPadding(u8),
    #[error("output buffer too small for RTP header")]
    BufferTooSmall,
    #[error("too many CSRCs (max 15)")]
    TooManyCsrcs,
    #[error("header extension data must be a multiple of 4 bytes")]
    ExtensionNotAligned,
}

/// RFC 3550 §5.3.1 header extension as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    /// "defined by profile" (0xBEDE for RFC 8285 one-byte headers).
    pub profile: u16,
    /// Extension data (length is a multiple of 4).
    pub data: &'a [u8],
}

/// A validated, borrowed RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    header_len: usize,
    payload_end: usize,
}

/// Length of the RTP header (fixed part, CSRCs and extension) in `buf`, without checking
/// padding. This is what SRTP needs: everything before the encrypted portion.
pub fn header_len(buf: &[u8]) -> Result<usize, RtpError> {
    if buf.len() < FIXED_HEADER_LEN {
        return Err(RtpError::TooShort(buf.len()));
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    let cc = usize::from(buf[0] & 0x0f);
    let mut len = FIXED_HEADER_LEN + 4 * cc;
    if buf.len() < len {
        return Err(RtpError::TooShort(buf.len()));
    }
    if buf[0] & 0x10 != 0 {
        let ext = buf.get(len..len + 4).ok_or(RtpError::BadExtension)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        len += 4 + 4 * words;
        if buf.len() < len {
            return Err(RtpError::BadExtension);
        }
    }
    Ok(len)
}

impl<'a> RtpPacket<'a> {
    /// Parse and validate a complete RTP packet.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let header_len = header_len(buf)?;
        let mut payload_end = buf.len();
        if buf[0] & 0x20 != 0 {
            let pad = buf[buf.len() - 1];
            if pad == 0 || usize::from(pad) > buf.len() - header_len {
                return Err(RtpError::BadPadding(pad));
            }
            payload_end -= usize::from(pad);
        }
        Ok(Self {
            buf,
            header_len,
            payload_end,
        })
    }

    pub fn version(&self) -> u8 {
        self.buf[0] >> 6
    }
    pub fn padding(&self) -> bool {
        self.buf[0] & 0x20 != 0
    }
    pub fn has_extension(&self) -> bool {
        self.buf[0] & 0x10 != 0
    }
    pub fn csrc_count(&self) -> usize {
        usize::from(self.buf[0] & 0x0f)
    }
    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }
    pub fn payload_type(&self) -> u8 {
        self.buf[1] & 0x7f
    }
    pub fn sequence(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }
    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
    }
    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]])
    }
    /// The CSRC identifiers.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let buf = self.buf;
        let n = self.csrc_count();
        buf[FIXED_HEADER_LEN..FIXED_HEADER_LEN + 4 * n]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
    /// The header extension, if the X bit is set.
    pub fn extension(&self) -> Option<RtpExtension<'a>> {
        if !self.has_extension() {
            return None;
        }
        let at = FIXED_HEADER_LEN + 4 * self.csrc_count();
        let buf = self.buf;
        Some(RtpExtension {
            profile: u16::from_be_bytes([buf[at], buf[at + 1]]),
            data: &buf[at + 4..self.header_len],
        })
    }
    /// Header length in bytes (fixed part + CSRCs + extension).
    pub fn header_len(&self) -> usize {
        self.header_len
    }
    /// The payload, without padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..self.payload_end]
    }
    /// Number of padding bytes at the end (0 when P is clear).
    pub fn padding_len(&self) -> usize {
        self.buf.len() - self.payload_end
    }
    /// The whole packet.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    /// The header fields as an owned value.
    pub fn header(&self) -> RtpHeader {
        let mut csrc = [0u32; 15];
        for (slot, c) in csrc.iter_mut().zip(self.csrcs()) {
            *slot = c;
        }
        RtpHeader {
            marker: self.marker(),
            payload_type: self.payload_type(),
            sequence: self.sequence(),
            timestamp: self.timestamp(),
            ssrc: self.ssrc(),
            csrc,
            csrc_count: self.buf[0] & 0x0f,
            padding: self.padding(),
            extension_profile: self.extension().map(|e| e.profile),
        }
    }
}

/// RTP header fields for building packets. No heap data: CSRCs live in a fixed array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// CSRC identifiers; only the first `csrc_count` are used.
    pub csrc: [u32; 15],
    pub csrc_count: u8,
    /// Sets the P bit; the caller appends the padding (last byte = count).
    pub padding: bool,
    /// Some(profile) sets the X bit; the data is passed to [`RtpHeader::write`].
    pub extension_profile: Option<u16>,
}

impl RtpHeader {
    /// A plain header (no CSRC, no extension).
    pub fn new(payload_type: u8, sequence: u16, timestamp: u32, ssrc: u32) -> Self {
        Self {
            payload_type: payload_type & 0x7f,
            sequence,
            timestamp,
            ssrc,
            ..Self::default()
        }
    }

    /// Bytes this header occupies with `ext_data_len` bytes of extension data.
    pub fn len(&self, ext_data_len: usize) -> usize {
        FIXED_HEADER_LEN
            + 4 * usize::from(self.csrc_count)
            + if self.extension_profile.is_some() {
                4 + ext_data_len
            } else {
                0
            }
    }

    /// Write the header (and extension data, if `extension_profile` is set) to the start of
    /// `out`; returns the number of bytes written.
    pub fn write(&self, ext_data: &[u8], out: &mut [u8]) -> Result<usize, RtpError> {
        if self.csrc_count > 15 {
            return Err(RtpError::TooManyCsrcs);
        }
        if self.extension_profile.is_some()
            && (!ext_data.len().is_multiple_of(4) || ext_data.len() / 4 > usize::from(u16::MAX))
        {
            return Err(RtpError::ExtensionNotAligned);
        }
        let len = self.len(ext_data.len());
        let out = out.get_mut(..len).ok_or(RtpError::BufferTooSmall)?;
        out[0] = 0x80
            | if self.padding { 0x20 } else { 0 }
            | if self.extension_profile.is_some() {
                0x10
            } else {
                0
            }
            | self.csrc_count;
        out[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
        out[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let mut at = FIXED_HEADER_LEN;
        for c in &self.csrc[..usize::from(self.csrc_count)] {
            out[at..at + 4].copy_from_slice(&c.to_be_bytes());
            at += 4;
        }
        if let Some(profile) = self.extension_profile {
            out[at..at + 2].copy_from_slice(&profile.to_be_bytes());
            // Bounded above by the alignment check.
            let words = (ext_data.len() / 4) as u16;
            out[at + 2..at + 4].copy_from_slice(&words.to_be_bytes());
            out[at + 4..at + 4 + ext_data.len()].copy_from_slice(ext_data);
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_simple_packet() {
        let pkt = crate::media::hex("80e0 0001 00000010 deadbeef 0102 03");
        let p = RtpPacket::parse(&pkt).unwrap();
        assert_eq!(p.version(), 2);
        assert!(p.marker());
        assert_eq!(p.payload_type(), 96);
        assert_eq!(p.sequence(), 1);
        assert_eq!(p.timestamp(), 16);
        assert_eq!(p.ssrc(), 0xdeadbeef);
        assert_eq!(p.payload(), &[1, 2, 3]);
    }

    #[test]
    fn skips_csrc_and_extension() {
        // CC=1, X=1, extension with 1 word, payload "ab".
        let pkt = crate::media::hex("9100 0002 00000000 00000001 00000009 bede0001 11223344 abcd");
        let p = RtpPacket::parse(&pkt).unwrap();
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![9]);
        let e = p.extension().unwrap();
        assert_eq!(e.profile, 0xbede);
        assert_eq!(e.data, &[0x11, 0x22, 0x33, 0x44]);
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload(), &[0xab, 0xcd]);
    }

    #[test]
    fn strips_padding_and_rejects_bad_padding() {
        let pkt = crate::media::hex("a000 0002 00000000 00000001 aabb 0000 03");
        let p = RtpPacket::parse(&pkt).unwrap();
        assert_eq!(p.payload(), &[0xaa, 0xbb]);
        assert_eq!(p.padding_len(), 3);
        let bad = crate::media::hex("a000 0002 00000000 00000001 aa 09");
        assert_eq!(RtpPacket::parse(&bad), Err(RtpError::BadPadding(9)));
        let zero = crate::media::hex("a000 0002 00000000 00000001 aa 00");
        assert_eq!(RtpPacket::parse(&zero), Err(RtpError::BadPadding(0)));
    }

    #[test]
    fn rejects_truncated_and_wrong_version() {
        assert_eq!(RtpPacket::parse(&[0x80; 11]), Err(RtpError::TooShort(11)));
        assert_eq!(RtpPacket::parse(&[0x40; 12]), Err(RtpError::BadVersion(1)));
        // CC=2 but only 12 bytes.
        assert!(RtpPacket::parse(&[0x82, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // Extension length claims 2 words, only 1 present.
        let pkt = crate::media::hex("9000 0002 00000000 00000001 bede0002 11223344");
        assert_eq!(RtpPacket::parse(&pkt), Err(RtpError::BadExtension));
    }

    proptest! {
        #[test]
        fn parse_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = RtpPacket::parse(&buf);
            let _ = header_len(&buf);
        }

        #[test]
        fn write_parse_round_trip(
            marker in any::<bool>(), pt in 0u8..128, seq in any::<u16>(), ts in any::<u32>(),
            ssrc in any::<u32>(), csrcs in proptest::collection::vec(any::<u32>(), 0..16),
            ext in proptest::option::of((any::<u16>(), proptest::collection::vec(any::<[u8; 4]>(), 0..4))),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut h = RtpHeader::new(pt, seq, ts, ssrc);
            h.marker = marker;
            h.csrc_count = csrcs.len() as u8;
            h.csrc[..csrcs.len()].copy_from_slice(&csrcs);
            let ext_data: Vec<u8> = ext.as_ref().map(|(_, d)| d.concat()).unwrap_or_default();
            h.extension_profile = ext.as_ref().map(|(p, _)| *p);
            let mut buf = vec![0u8; 200];
            let n = h.write(&ext_data, &mut buf).unwrap();
            buf.truncate(n);
            buf.extend_from_slice(&payload);
            let p = RtpPacket::parse(&buf).unwrap();
            prop_assert_eq!(p.header(), h);
            prop_assert_eq!(p.payload(), &payload[..]);
            prop_assert_eq!(p.extension().map(|e| e.data.to_vec()), ext.map(|_| ext_data));
        }
    }
}
