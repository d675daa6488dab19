//! RTCP (RFC 3550 §6): a zero-copy walk over compound packets (SR, RR, SDES, BYE, APP and
//! anything else as `Other`), a minimal SR/RR + SDES CNAME builder for keepalives, and the
//! RFC 5761 / RFC 7983 demultiplexing rules for a port shared by RTP, RTCP, STUN and DTLS.
//!
//! Guarantees: the walker never panics and never reads past the buffer; every length field
//! is checked; a malformed packet ends the walk with an error, never a wrong item.

use thiserror::Error;

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
pub const PT_APP: u8 = 204;

/// SDES item type CNAME.
pub const SDES_CNAME: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RtcpError {
    #[error("RTCP packet truncated")]
    Truncated,
    #[error("RTCP version {0} is not 2")]
    BadVersion(u8),
    #[error("RTCP length field inconsistent with content")]
    BadLength,
    #[error("RTCP padding invalid")]
    BadPadding,
    #[error("output buffer too small")]
    BufferTooSmall,
    #[error("too many report blocks or items")]
    TooMany,
}

/// RFC 3550 §6.4.1 report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// 24-bit signed cumulative loss.
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    pub jitter: u32,
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn parse(b: &[u8]) -> Self {
        let be = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let raw = u32::from_be_bytes([0, b[5], b[6], b[7]]);
        let cumulative_lost = ((raw << 8) as i32) >> 8;
        Self {
            ssrc: be(0),
            fraction_lost: b[4],
            cumulative_lost,
            highest_seq: be(8),
            jitter: be(12),
            last_sr: be(16),
            delay_since_last_sr: be(20),
        }
    }

    fn write(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        out[4] = self.fraction_lost;
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32;
        out[5..8].copy_from_slice(&lost.to_be_bytes()[1..]);
        out[8..12].copy_from_slice(&self.highest_seq.to_be_bytes());
        out[12..16].copy_from_slice(&self.jitter.to_be_bytes());
        out[16..20].copy_from_slice(&self.last_sr.to_be_bytes());
        out[20..24].copy_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }
}

/// Sender info of an SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    pub ntp_timestamp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// Iterator over report blocks in a borrowed packet.
#[derive(Debug, Clone)]
pub struct ReportBlocks<'a>(std::slice::ChunksExact<'a, u8>);

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;
    fn next(&mut self) -> Option<ReportBlock> {
        self.0.next().map(ReportBlock::parse)
    }
}

/// One SDES chunk: an SSRC/CSRC and its items (type, value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    pub ssrc: u32,
    pub items: Vec<(u8, &'a [u8])>,
}

/// One packet of a compound RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket<'a> {
    SenderReport {
        ssrc: u32,
        info: SenderInfo,
        reports: Vec<ReportBlock>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: Vec<ReportBlock>,
    },
    Sdes(Vec<SdesChunk<'a>>),
    Bye {
        ssrcs: Vec<u32>,
        reason: Option<&'a [u8]>,
    },
    App {
        subtype: u8,
        ssrc: u32,
        name: [u8; 4],
        data: &'a [u8],
    },
    /// Any other packet type (RTPFB, PSFB, XR, …): header count, type and body.
    Other {
        count: u8,
        packet_type: u8,
        body: &'a [u8],
    },
}

/// RFC 5761 §4: with rtcp-mux, a packet whose second octet (without the marker bit) is in
/// 64..=95 is RTCP (RTCP types 192..=223 ↔ RTP PT 64..=95 with M set).
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && (64..=95).contains(&(buf[1] & 0x7f))
}

/// What arrived on a multiplexed media port (RFC 7983 first-byte ranges, then RFC 5761).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Stun,
    Dtls,
    Rtp,
    Rtcp,
    Unknown,
}

pub fn classify(buf: &[u8]) -> PacketKind {
    match buf.first() {
        Some(0..=3) => PacketKind::Stun,
        Some(20..=63) => PacketKind::Dtls,
        Some(128..=191) if buf.len() >= 2 => {
            if is_rtcp(buf) {
                PacketKind::Rtcp
            } else {
                PacketKind::Rtp
            }
        }
        _ => PacketKind::Unknown,
    }
}

/// Iterator over the packets of a compound RTCP packet.
#[derive(Debug, Clone)]
pub struct Compound<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Walk a compound RTCP packet.
pub fn walk(buf: &[u8]) -> Compound<'_> {
    Compound {
        rest: buf,
        failed: false,
    }
}

/// Parse a whole compound packet, failing on the first malformed part.
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket<'_>>, RtcpError> {
    if buf.is_empty() {
        return Err(RtcpError::Truncated);
    }
    walk(buf).collect()
}

fn be32(b: &[u8], i: usize) -> Result<u32, RtcpError> {
    b.get(i..i + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(RtcpError::Truncated)
}

fn reports(body: &[u8], count: usize) -> Result<Vec<ReportBlock>, RtcpError> {
    let blocks = body.get(..count * 24).ok_or(RtcpError::BadLength)?;
    Ok(ReportBlocks(blocks.chunks_exact(24)).collect())
}

fn parse_one(buf: &[u8]) -> Result<(RtcpPacket<'_>, usize), RtcpError> {
    if buf.len() < 4 {
        return Err(RtcpError::Truncated);
    }
    let version = buf[0] >> 6;
    if version != 2 {
        return Err(RtcpError::BadVersion(version));
    }
    let count = buf[0] & 0x1f;
    let pt = buf[1];
    let len = (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1) * 4;
    let pkt = buf.get(..len).ok_or(RtcpError::Truncated)?;
    let mut body = &pkt[4..];
    if buf[0] & 0x20 != 0 {
        let pad = usize::from(*pkt.last().ok_or(RtcpError::BadPadding)?);
        if pad == 0 || pad > body.len() {
            return Err(RtcpError::BadPadding);
        }
        body = &body[..body.len() - pad];
    }
    let n = usize::from(count);
    let parsed = match pt {
        PT_SR => {
            let ssrc = be32(body, 0)?;
            let info = SenderInfo {
                ntp_timestamp: (u64::from(be32(body, 4)?) << 32) | u64::from(be32(body, 8)?),
                rtp_timestamp: be32(body, 12)?,
                packet_count: be32(body, 16)?,
                octet_count: be32(body, 20)?,
            };
            RtcpPacket::SenderReport {
                ssrc,
                info,
                reports: reports(&body[24..], n)?,
            }
        }
        PT_RR => RtcpPacket::ReceiverReport {
            ssrc: be32(body, 0)?,
            reports: reports(&body[4..], n)?,
        },
        PT_SDES => {
            let mut chunks = Vec::with_capacity(n);
            let mut at = 0usize;
            for _ in 0..n {
                let ssrc = be32(body, at)?;
                at += 4;
                let mut items = Vec::new();
                loop {
                    let ty = *body.get(at).ok_or(RtcpError::BadLength)?;
                    if ty == 0 {
                        // End of list, then pad to the next 32-bit boundary.
                        at = (at + 4) & !3;
                        break;
                    }
                    let l = usize::from(*body.get(at + 1).ok_or(RtcpError::BadLength)?);
                    let v = body.get(at + 2..at + 2 + l).ok_or(RtcpError::BadLength)?;
                    items.push((ty, v));
                    at += 2 + l;
                }
                chunks.push(SdesChunk { ssrc, items });
            }
            if at > body.len() {
                return Err(RtcpError::BadLength);
            }
            RtcpPacket::Sdes(chunks)
        }
        PT_BYE => {
            let ids = body.get(..n * 4).ok_or(RtcpError::BadLength)?;
            let ssrcs = ids
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let rest = &body[n * 4..];
            let reason = match rest.first() {
                Some(&l) if l > 0 => Some(
                    rest.get(1..1 + usize::from(l))
                        .ok_or(RtcpError::BadLength)?,
                ),
                _ => None,
            };
            RtcpPacket::Bye { ssrcs, reason }
        }
        PT_APP => {
            let ssrc = be32(body, 0)?;
            let name = body.get(4..8).ok_or(RtcpError::Truncated)?;
            RtcpPacket::App {
                subtype: count,
                ssrc,
                name: [name[0], name[1], name[2], name[3]],
                data: &body[8..],
            }
        }
        _ => RtcpPacket::Other {
            count,
            packet_type: pt,
            body,
        },
    };
    Ok((parsed, len))
}

impl<'a> Iterator for Compound<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match parse_one(self.rest) {
            Ok((p, len)) => {
                self.rest = &self.rest[len..];
                Some(Ok(p))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn header(out: &mut [u8], count: u8, pt: u8, len: usize) {
    out[0] = 0x80 | (count & 0x1f);
    out[1] = pt;
    let words = (len / 4 - 1) as u16;
    out[2..4].copy_from_slice(&words.to_be_bytes());
}

/// Write an SR (when `info` is Some) or RR into `out`; returns the length.
pub fn write_report(
    out: &mut [u8],
    ssrc: u32,
    info: Option<&SenderInfo>,
    reports: &[ReportBlock],
) -> Result<usize, RtcpError> {
    if reports.len() > 31 {
        return Err(RtcpError::TooMany);
    }
    let fixed = if info.is_some() { 28 } else { 8 };
    let len = fixed + 24 * reports.len();
    let o = out.get_mut(..len).ok_or(RtcpError::BufferTooSmall)?;
    header(
        o,
        reports.len() as u8,
        if info.is_some() { PT_SR } else { PT_RR },
        len,
    );
    o[4..8].copy_from_slice(&ssrc.to_be_bytes());
    if let Some(i) = info {
        o[8..16].copy_from_slice(&i.ntp_timestamp.to_be_bytes());
        o[16..20].copy_from_slice(&i.rtp_timestamp.to_be_bytes());
        o[20..24].copy_from_slice(&i.packet_count.to_be_bytes());
        o[24..28].copy_from_slice(&i.octet_count.to_be_bytes());
    }
    for (r, chunk) in reports.iter().zip(o[fixed..].chunks_exact_mut(24)) {
        r.write(chunk);
    }
    Ok(len)
}

/// Write an SDES packet with one chunk carrying only CNAME; returns the length.
pub fn write_sdes_cname(out: &mut [u8], ssrc: u32, cname: &[u8]) -> Result<usize, RtcpError> {
    if cname.len() > 255 {
        return Err(RtcpError::TooMany);
    }
    // header(4) + ssrc(4) + type(1) + len(1) + cname + end(1), padded to 4.
    let len = (4 + 4 + 2 + cname.len() + 1 + 3) & !3;
    let o = out.get_mut(..len).ok_or(RtcpError::BufferTooSmall)?;
    o.fill(0);
    header(o, 1, PT_SDES, len);
    o[4..8].copy_from_slice(&ssrc.to_be_bytes());
    o[8] = SDES_CNAME;
    o[9] = cname.len() as u8;
    o[10..10 + cname.len()].copy_from_slice(cname);
    Ok(len)
}

/// Compound keepalive: SR (or RR without `info`) followed by SDES CNAME (RFC 3550 §6.1).
pub fn write_keepalive(
    out: &mut [u8],
    ssrc: u32,
    info: Option<&SenderInfo>,
    cname: &[u8],
) -> Result<usize, RtcpError> {
    let n = write_report(out, ssrc, info, &[])?;
    let m = write_sdes_cname(
        out.get_mut(n..).ok_or(RtcpError::BufferTooSmall)?,
        ssrc,
        cname,
    )?;
    Ok(n + m)
}

/// Write a BYE for `ssrcs`.
pub fn write_bye(out: &mut [u8], ssrcs: &[u32]) -> Result<usize, RtcpError> {
    if ssrcs.len() > 31 {
        return Err(RtcpError::TooMany);
    }
    let len = 4 + 4 * ssrcs.len();
    let o = out.get_mut(..len).ok_or(RtcpError::BufferTooSmall)?;
    header(o, ssrcs.len() as u8, PT_BYE, len.max(4));
    for (s, c) in ssrcs.iter().zip(o[4..].chunks_exact_mut(4)) {
        c.copy_from_slice(&s.to_be_bytes());
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::hex;
    use proptest::prelude::*;

    #[test]
    fn keepalive_round_trips() {
        let mut buf = [0u8; 128];
        let info = SenderInfo {
            ntp_timestamp: 0x0102_0304_0506_0708,
            rtp_timestamp: 960,
            packet_count: 5,
            octet_count: 800,
        };
        let n = write_keepalive(&mut buf, 0xcafe, Some(&info), b"whatsip").unwrap();
        assert_eq!(n % 4, 0);
        assert!(is_rtcp(&buf[..n]));
        let pkts = parse_compound(&buf[..n]).unwrap();
        assert_eq!(
            pkts,
            vec![
                RtcpPacket::SenderReport {
                    ssrc: 0xcafe,
                    info,
                    reports: vec![]
                },
                RtcpPacket::Sdes(vec![SdesChunk {
                    ssrc: 0xcafe,
                    items: vec![(SDES_CNAME, &b"whatsip"[..])]
                }])
            ]
        );
    }

    #[test]
    fn parses_rr_with_block_bye_and_app() {
        let rb = ReportBlock {
            ssrc: 9,
            fraction_lost: 3,
            cumulative_lost: -2,
            highest_seq: 70000,
            jitter: 12,
            last_sr: 0x1234,
            delay_since_last_sr: 99,
        };
        let mut buf = [0u8; 256];
        let mut n = write_report(&mut buf, 1, None, &[rb]).unwrap();
        n += write_bye(&mut buf[n..], &[1, 2]).unwrap();
        let app = hex("81cc0003 00000001 74657374 deadbeef");
        buf[n..n + app.len()].copy_from_slice(&app);
        n += app.len();
        let pkts = parse_compound(&buf[..n]).unwrap();
        assert_eq!(
            pkts[0],
            RtcpPacket::ReceiverReport {
                ssrc: 1,
                reports: vec![rb]
            }
        );
        assert_eq!(
            pkts[1],
            RtcpPacket::Bye {
                ssrcs: vec![1, 2],
                reason: None
            }
        );
        assert_eq!(
            pkts[2],
            RtcpPacket::App {
                subtype: 1,
                ssrc: 1,
                name: *b"test",
                data: &[0xde, 0xad, 0xbe, 0xef]
            }
        );
    }

    #[test]
    fn bye_reason_and_other_types() {
        let bye = hex("81cb0003 00000007 05686f6c 69640000");
        assert_eq!(
            parse_compound(&bye).unwrap(),
            vec![RtcpPacket::Bye {
                ssrcs: vec![7],
                reason: Some(b"holid")
            }]
        );
        let fb = hex("81cd0002 00000001 00000002");
        assert!(matches!(
            parse_compound(&fb).unwrap()[0],
            RtcpPacket::Other {
                packet_type: 205,
                ..
            }
        ));
    }

    #[test]
    fn rejects_bad_lengths() {
        // Length claims 2 words more than present.
        assert_eq!(
            parse_compound(&hex("80c90003 00000001")),
            Err(RtcpError::Truncated)
        );
        // RR with count 1 but no block.
        assert_eq!(
            parse_compound(&hex("81c90001 00000001")),
            Err(RtcpError::BadLength)
        );
        assert_eq!(
            parse_compound(&hex("40c90001 00000001")),
            Err(RtcpError::BadVersion(1))
        );
        assert!(parse_compound(&[]).is_err());
    }

    #[test]
    fn demux_rules() {
        assert!(is_rtcp(&[0x80, 200]));
        assert!(is_rtcp(&[0x80, 0xc9]));
        assert!(!is_rtcp(&[0x80, 111]));
        assert!(!is_rtcp(&[0x80, 0x80 | 111]));
        assert!(!is_rtcp(&[0x80, 96 + 0x80]));
        assert_eq!(classify(&[0x00, 0x01]), PacketKind::Stun);
        assert_eq!(classify(&[22, 0xfe]), PacketKind::Dtls);
        assert_eq!(classify(&[0x80, 0x6f]), PacketKind::Rtp);
        assert_eq!(classify(&[0x81, 0xc8]), PacketKind::Rtcp);
        assert_eq!(classify(&[0xff]), PacketKind::Unknown);
    }

    proptest! {
        #[test]
        fn walk_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_compound(&buf);
            let _ = classify(&buf);
        }

        #[test]
        fn report_round_trip(ssrc in any::<u32>(), sr in any::<bool>(), ntp in any::<u64>(),
                             blocks in proptest::collection::vec((any::<u32>(), any::<u8>(), -0x80_0000i32..0x80_0000, any::<u32>()), 0..5)) {
            let reports: Vec<ReportBlock> = blocks.iter().map(|&(s, f, c, h)| ReportBlock {
                ssrc: s, fraction_lost: f, cumulative_lost: c, highest_seq: h, jitter: h ^ 1, last_sr: s ^ 2, delay_since_last_sr: 3,
            }).collect();
            let info = SenderInfo { ntp_timestamp: ntp, rtp_timestamp: 1, packet_count: 2, octet_count: 3 };
            let mut buf = [0u8; 512];
            let n = write_report(&mut buf, ssrc, sr.then_some(&info), &reports).unwrap();
            let got = parse_compound(&buf[..n]).unwrap();
            let want = if sr {
                RtcpPacket::SenderReport { ssrc, info, reports }
            } else {
                RtcpPacket::ReceiverReport { ssrc, reports }
            };
            prop_assert_eq!(got, vec![want]);
        }
    }
}
