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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::sdes::CryptoSuite;

    const GATEWAY_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
        t=0 0\r\nm=audio 30000 RTP/SAVP 96 101\r\na=rtpmap:96 opus/48000/2\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=rtcp-mux\r\n\
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n\
        a=crypto:2 AEAD_AES_128_GCM inline:MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3OA==\r\n";

    #[test]
    fn answer_mirrors_offered_payload_types_and_prefers_gcm_with_a_fresh_key() {
        let me: SocketAddr = "127.0.0.1:41000".parse().unwrap();
        let (text, neg) = answer(GATEWAY_OFFER.as_bytes(), me, false).unwrap();
        let a = AudioSession::parse(text.as_bytes()).unwrap();
        assert_eq!(a.port, 41000);
        assert!(a.proto.is_sdes());
        assert!(a.rtcp_mux);
        assert_eq!(a.ptime, Some(20));
        let pts: Vec<(u8, &str, u32)> = a
            .codecs
            .iter()
            .map(|c| (c.payload_type, c.name.as_str(), c.clock_rate))
            .collect();
        assert_eq!(
            pts,
            vec![(96, "opus", 48000), (101, "telephone-event", 8000)]
        );
        assert_eq!(a.crypto.len(), 1);
        assert_eq!(a.crypto[0].tag, 2);
        assert_eq!(
            a.crypto[0].suite,
            CryptoSuite::Known(SrtpProfile::AeadAes128Gcm)
        );
        let keys = neg.srtp.unwrap();
        assert_ne!(keys.local.concat(), keys.remote.concat());
        assert_eq!(keys.remote.concat(), b"1234567890123456789012345678");
        assert_eq!(
            (neg.codec.payload_type, neg.dtmf.unwrap().payload_type),
            (96, 101)
        );
        assert_eq!(neg.remote_rtp, "127.0.0.1:30000".parse().unwrap());
    }

    #[test]
    fn aes_cm_only_offer_gets_aes_cm_and_plain_rtp_is_refused_keys() {
        let me: SocketAddr = "127.0.0.1:41000".parse().unwrap();
        let only_cm = GATEWAY_OFFER.replace(
            "a=crypto:2 AEAD_AES_128_GCM inline:MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3OA==\r\n",
            "",
        );
        let (text, _) = answer(only_cm.as_bytes(), me, false).unwrap();
        assert!(
            text.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{text}"
        );
        // An RTP/AVP offer negotiates without keys: the media user refuses to start on it.
        let plain = only_cm.replace("RTP/SAVP", "RTP/AVP");
        let (_, neg) = answer(plain.as_bytes(), me, false).unwrap();
        assert!(matches!(
            crate::sandbox::media_user::MediaUserConfig::from_negotiated(
                &neg,
                crate::sandbox::media_user::Mode::Tone
            ),
            Err(crate::sandbox::media_user::MediaUserError::NotSrtp)
        ));
    }

    #[test]
    fn offer_round_trips_through_accept() {
        let me: SocketAddr = "127.0.0.1:41000".parse().unwrap();
        let o = offer(me, true);
        let text = o.sdp.to_sdp();
        assert!(text.contains("m=audio 41000 RTP/SAVP"), "{text}");
        assert!(text.contains("telephone-event/8000"));
        let (ans, _) = answer(text.as_bytes(), "127.0.0.1:42000".parse().unwrap(), false).unwrap();
        let neg = accept(&o, ans.as_bytes()).unwrap();
        assert_eq!(neg.remote_rtp.port(), 42000);
        assert!(neg.srtp.is_some());
    }
}
