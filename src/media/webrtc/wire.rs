//! Passive observation of the datagrams a leg sends and receives (RFC 7983 demux ranges).
//!
//! str0m does not expose who sent the DTLS ClientHello, which SRTP profile DTLS negotiated
//! or which ICE attributes the checks carried, so we read those facts off the wire. Nothing
//! here changes a datagram or decides what str0m does with it; every parser is bounds-checked
//! and returns "nothing seen" on malformed input.

/// What one datagram is, by its first byte (RFC 7983 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Stun,
    Dtls,
    /// SRTP (not SRTCP): first byte 128–191 and the second byte is not an RTCP type.
    Rtp,
    Rtcp,
    Other,
}

pub(crate) fn classify(d: &[u8]) -> Kind {
    match d.first() {
        Some(0..=3) => Kind::Stun,
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) => match d.get(1) {
            // RFC 5761 §4: RTCP packet types 192–223 share the range with RTP PT|marker.
            Some(192..=223) => Kind::Rtcp,
            Some(_) => Kind::Rtp,
            None => Kind::Other,
        },
        _ => Kind::Other,
    }
}

/// SSRC of an RTP datagram (bytes 8..12; in the clear in SRTP).
pub(crate) fn rtp_ssrc(d: &[u8]) -> Option<u32> {
    if classify(d) != Kind::Rtp || d.len() < 12 {
        return None;
    }
    Some(u32::from_be_bytes([d[8], d[9], d[10], d[11]]))
}

/// ICE facts of one STUN message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StunFacts {
    pub binding_request: bool,
    pub binding_success: bool,
    pub use_candidate: bool,
    pub ice_controlling: bool,
    pub ice_controlled: bool,
}

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

pub(crate) fn stun(d: &[u8]) -> Option<StunFacts> {
    if d.len() < 20 || d[4..8] != MAGIC_COOKIE || classify(d) != Kind::Stun {
        return None;
    }
    let msg_type = u16::from_be_bytes([d[0], d[1]]);
    let len = usize::from(u16::from_be_bytes([d[2], d[3]]));
    let body = d.get(20..20 + len)?;
    let mut f = StunFacts {
        binding_request: msg_type == 0x0001,
        binding_success: msg_type == 0x0101,
        ..StunFacts::default()
    };
    let mut at = 0usize;
    while at + 4 <= body.len() {
        let t = u16::from_be_bytes([body[at], body[at + 1]]);
        let l = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        match t {
            0x0025 => f.use_candidate = true,
            0x802A => f.ice_controlling = true,
            0x8029 => f.ice_controlled = true,
            _ => {}
        }
        // Attribute values are padded to 4 bytes (RFC 8489 §14).
        at += 4 + l.div_ceil(4) * 4;
    }
    Some(f)
}

/// DTLS handshake facts of one datagram (several records may share it).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DtlsFacts {
    pub client_hello: bool,
    /// The `use_srtp` profile the ServerHello selected (RFC 5764 §4.1.2), if this
    /// datagram carried a ServerHello.
    pub srtp_profile: Option<u16>,
}

pub(crate) fn dtls(d: &[u8]) -> Option<DtlsFacts> {
    if classify(d) != Kind::Dtls {
        return None;
    }
    let mut f = DtlsFacts::default();
    let mut rest = d;
    // Record: type(1) version(2) epoch(2) seq(6) length(2) fragment.
    while rest.len() >= 13 {
        let content_type = rest[0];
        let epoch = u16::from_be_bytes([rest[3], rest[4]]);
        let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        let Some(fragment) = rest.get(13..13 + len) else {
            break;
        };
        // Handshake messages in epoch 0 are plaintext (DTLS 1.2).
        if content_type == 22 && epoch == 0 && fragment.len() >= 12 {
            // Handshake header: type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3).
            let msg_type = fragment[0];
            let frag_offset = u32::from_be_bytes([0, fragment[6], fragment[7], fragment[8]]);
            if msg_type == 1 {
                f.client_hello = true;
            }
            if msg_type == 2
                && frag_offset == 0
                && let Some(p) = server_hello_srtp_profile(&fragment[12..])
            {
                f.srtp_profile = Some(p);
            }
        }
        rest = &rest[13 + len..];
    }
    Some(f)
}

fn server_hello_srtp_profile(b: &[u8]) -> Option<u16> {
    // version(2) random(32) session_id<0..32> cipher_suite(2) compression(1) extensions<..>
    let sid_len = usize::from(*b.get(34)?);
    let mut at = 35 + sid_len + 2 + 1;
    let ext_len = usize::from(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]));
    at += 2;
    let exts = b.get(at..(at + ext_len).min(b.len()))?;
    let mut i = 0usize;
    while i + 4 <= exts.len() {
        let t = u16::from_be_bytes([exts[i], exts[i + 1]]);
        let l = usize::from(u16::from_be_bytes([exts[i + 2], exts[i + 3]]));
        let v = exts.get(i + 4..i + 4 + l)?;
        if t == 0x000E {
            // use_srtp: profiles<2..2^16-1> (the server picks exactly one), mki<0..255>.
            if v.len() >= 4 {
                return Some(u16::from_be_bytes([v[2], v[3]]));
            }
            return None;
        }
        i += 4 + l;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_ranges() {
        assert_eq!(classify(&[0, 1]), Kind::Stun);
        assert_eq!(classify(&[22, 254]), Kind::Dtls);
        assert_eq!(classify(&[0x80, 111]), Kind::Rtp);
        assert_eq!(classify(&[0x80, 200]), Kind::Rtcp);
        assert_eq!(classify(&[0x80]), Kind::Other);
        assert_eq!(classify(&[]), Kind::Other);
        assert_eq!(classify(&[255, 0]), Kind::Other);
    }

    #[test]
    fn stun_attributes_and_truncation() {
        let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        m.extend_from_slice(&[7; 12]);
        // USE-CANDIDATE (empty) + ICE-CONTROLLING (8-byte tie breaker)
        let attrs = [0x00, 0x25, 0, 0, 0x80, 0x2A, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        m[3] = attrs.len() as u8;
        m.extend_from_slice(&attrs);
        let f = stun(&m).expect("stun");
        assert!(f.binding_request && f.use_candidate && f.ice_controlling && !f.ice_controlled);
        // A length field pointing past the end is not a STUN message we read.
        m[3] = 200;
        assert_eq!(stun(&m), None);
        for n in 0..m.len() {
            let _ = stun(&m[..n]);
            let _ = dtls(&m[..n]);
        }
    }

    #[test]
    fn dtls_garbage_does_not_panic() {
        let mut d = vec![22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 40];
        d.extend_from_slice(&[2; 40]);
        for n in 0..d.len() {
            let _ = dtls(&d[..n]);
        }
        assert_eq!(dtls(&[0x80, 0]), None);
    }
}
