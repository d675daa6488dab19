//! The sandbox user's side of SDES offer/answer, on the `media::sdp` types: one audio m-line
//! `RTP/SAVP` with a fresh `a=crypto` key, rtcp-mux, Opus 48000/2 with Meta's fmtp (plus
//! PCMA/PCMU when the business number allows G.711), telephone-event/8000 and ptime 20.
//! Answers mirror the offerer's payload type numbers (RFC 3264 §6.1).
//!
//! Guarantees: never panics on a hostile offer (typed [`SdpError`]); an answer always carries
//! a key of our own, never the offerer's.

use std::net::SocketAddr;

use crate::media::sdp::{self, AudioSession, LocalMedia, Negotiated, Offer, SdpError};
use crate::media::srtp::SrtpProfile;

/// SDES suites the sandbox user accepts, in preference order: AEAD_AES_128_GCM when the
/// business offers it, else the RFC 4568 default AES_CM_128_HMAC_SHA1_80, then the rest.
pub const SUITES: [SrtpProfile; 5] = [
    SrtpProfile::AeadAes128Gcm,
    SrtpProfile::AesCm128HmacSha1_80,
    SrtpProfile::AesCm128HmacSha1_32,
    SrtpProfile::AeadAes256Gcm,
    SrtpProfile::AesCm256HmacSha1_80,
];

/// What a sandbox WhatsApp user offers or accepts, receiving on `rtp` (rtcp-mux).
pub fn local_media(rtp: SocketAddr, g711: bool) -> LocalMedia {
    let mut local = LocalMedia::whatsapp(rtp.ip(), rtp.port(), g711);
    local.srtp_suites = SUITES.to_vec();
    local.session_id = u64::from(rand::random::<u32>());
    local.session_version = local.session_id;
    local
}

/// Answer a business offer (SIP body bytes). Returns our SDP text and the negotiated
/// parameters (keys both ways, where to send, payload types to use).
pub fn answer(offer: &[u8], rtp: SocketAddr, g711: bool) -> Result<(String, Negotiated), SdpError> {
    let offer = AudioSession::parse(offer)?;
    let (sdp, neg) = sdp::build_answer(&offer, &local_media(rtp, g711))?;
    Ok((sdp.to_sdp(), neg))
}

/// Our offer (for a user-initiated call); finish with [`accept`].
pub fn offer(rtp: SocketAddr, g711: bool) -> Offer {
    sdp::build_offer(&local_media(rtp, g711))
}

/// Process the business side's answer to `offer`.
pub fn accept(offer: &Offer, answer: &[u8]) -> Result<Negotiated, SdpError> {
    sdp::accept_answer(offer, &AudioSession::parse(answer)?)
}
