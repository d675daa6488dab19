//! Sans-IO media wire layer: RTP/RTCP views, SRTP/SRTCP protection, SDES `a=crypto`,
//! typed audio SDP with RFC 3264 offer/answer, RFC 4733 DTMF and Opus keepalive frames.
//!
//! Nothing here owns a socket or reads a clock. The packet path (RTP/RTCP parsing and SRTP
//! protect/unprotect) works in place on caller-provided buffers and allocates nothing per
//! packet; per-SSRC state is created once per stream.

pub mod dtmf;
pub mod io;
pub mod opus;
pub mod relay;
pub mod rtcp;
pub mod rtp;
pub mod sdes;
pub mod sdp;
pub mod srtp;
pub mod webrtc;

#[cfg(test)]
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    hex::decode(clean).expect("test hex")
}
