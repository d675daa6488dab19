//! The few SDP text rewrites and look-ups the leg needs around str0m's `SdpApi`.
//!
//! str0m parses and writes the SDP itself; these helpers only (a) steer its DTLS role by
//! rewriting `a=setup`, (b) drop remote candidates of an address family we do not have, and
//! (c) read the payload type numbers and the audio `a=mid` the remote chose. They work line
//! by line, accept `\n` or `\r\n`, and always emit `\r\n` (RFC 8866 §5).

use std::net::IpAddr;

/// An `a=setup` value (RFC 4145 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    Active,
    Passive,
    ActPass,
    HoldConn,
}

impl Setup {
    fn parse(v: &str) -> Option<Setup> {
        match v.trim().to_ascii_lowercase().as_str() {
            "active" => Some(Setup::Active),
            "passive" => Some(Setup::Passive),
            "actpass" => Some(Setup::ActPass),
            "holdconn" => Some(Setup::HoldConn),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::ActPass => "actpass",
            Setup::HoldConn => "holdconn",
        }
    }
}

fn lines(sdp: &str) -> impl Iterator<Item = &str> {
    sdp.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty())
}

fn join(lines: impl Iterator<Item = String>) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str(&l);
        out.push_str("\r\n");
    }
    out
}

/// The `a=setup` that applies to the first media section: its own when it has a valid one,
/// else the session-level one (RFC 4145 §4: media level overrides session level). Values that
/// do not parse are ignored.
pub fn setup_of(sdp: &str) -> Option<Setup> {
    let parse = |l: &str| l.strip_prefix("a=setup:").and_then(Setup::parse);
    let (mut session, mut media, mut in_media) = (None, None, false);
    for l in lines(sdp) {
        if l.starts_with("m=") {
            if in_media {
                break;
            }
            in_media = true;
        } else if let Some(v) = parse(l) {
            if in_media {
                media.get_or_insert(v);
            } else {
                session.get_or_insert(v);
            }
        }
    }
    media.or(session)
}

/// Replace every `a=setup:<from>` line with `a=setup:<to>`.
pub fn rewrite_setup(sdp: &str, from: Setup, to: Setup) -> String {
    join(lines(sdp).map(
        |l| match l.strip_prefix("a=setup:").and_then(Setup::parse) {
            Some(v) if v == from => format!("a=setup:{}", to.as_str()),
            _ => l.to_string(),
        },
    ))
}

/// Whether the session declares `a=ice-lite` (RFC 8445 §2.5; session level only).
pub fn is_ice_lite(sdp: &str) -> bool {
    lines(sdp)
        .take_while(|l| !l.starts_with("m="))
        .any(|l| l == "a=ice-lite")
}

/// Drop `a=candidate` lines whose connection address is not an IP of the family we have
/// (`want_v4`), including FQDN/mDNS candidates, and strip extension attributes from the
/// rest (see [`strip_candidate_extensions`]). Returns the SDP and how many were dropped.
/// A leg has exactly one local candidate, so a pair with another family can never form;
/// dropping them keeps str0m from ever trying and keeps odd candidate syntax away from it.
pub fn keep_candidates_of_family(sdp: &str, want_v4: bool) -> (String, usize) {
    let mut dropped = 0;
    let out = join(lines(sdp).filter_map(|l| {
        if let Some(c) = l.strip_prefix("a=candidate:") {
            // foundation component transport priority address port typ ...
            let addr = c.split_ascii_whitespace().nth(4);
            let keep = addr
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_some_and(|ip| ip.is_ipv4() == want_v4);
            if !keep {
                dropped += 1;
                return None;
            }
            return Some(format!("a=candidate:{}", strip_candidate_extensions(c)));
        }
        Some(l.to_string())
    }));
    (out, dropped)
}

/// Keep `foundation component transport priority address port typ <type>` and
/// `raddr`/`rport`; drop extension attributes. str0m 0.25 parses Meta's
/// `generation 0 network-cost 50 ufrag …` tail but then never checks that candidate
/// (no STUN check is ever sent), so they must go.
fn strip_candidate_extensions(c: &str) -> String {
    let toks: Vec<&str> = c.split_ascii_whitespace().collect();
    let mut out: Vec<&str> = toks.iter().take(8).copied().collect();
    let mut i = 8;
    while i + 1 < toks.len() {
        if toks[i] == "raddr" || toks[i] == "rport" {
            out.push(toks[i]);
            out.push(toks[i + 1]);
        }
        i += 2;
    }
    out.join(" ")
}

/// The `a=mid` of the first `m=audio` section.
pub fn first_audio_mid(sdp: &str) -> Option<String> {
    let mut in_audio = false;
    for l in lines(sdp) {
        if l.starts_with("m=") {
            if in_audio {
                return None;
            }
            in_audio = l.starts_with("m=audio ");
        } else if in_audio && let Some(m) = l.strip_prefix("a=mid:") {
            return Some(m.trim().to_string());
        }
    }
    None
}

/// The `a=mid` of the first `m=audio` section. When it has none, adds `a=mid:0` as the
/// section's last line (after its `c=`/`b=` lines: str0m's parser wants RFC 8866's line
/// order) and, if the session has no `a=group`, `a=group:BUNDLE 0` as the last session
/// line. str0m needs both, but pre-WebRTC DTLS-SRTP offers (RFC 5763; baresip 1.0's, say)
/// carry neither. `None` without an `m=audio` section.
pub fn with_audio_mid(sdp: &str) -> Option<(String, String)> {
    if let Some(mid) = first_audio_mid(sdp) {
        return Some((sdp.to_string(), mid));
    }
    let has_group = lines(sdp)
        .take_while(|l| !l.starts_with("m="))
        .any(|l| l.starts_with("a=group:"));
    let mut out: Vec<String> = Vec::new();
    let mut in_audio = false;
    let mut first_m = true;
    let mut done = false;
    for l in lines(sdp) {
        if l.starts_with("m=") {
            if first_m && !has_group {
                out.push("a=group:BUNDLE 0".to_string());
            }
            first_m = false;
            if in_audio && !done {
                out.push("a=mid:0".to_string());
                done = true;
            }
            in_audio = !done && l.starts_with("m=audio ");
        }
        out.push(l.to_string());
    }
    if in_audio && !done {
        out.push("a=mid:0".to_string());
        done = true;
    }
    done.then(|| (join(out.into_iter()), "0".to_string()))
}

/// Payload types of the first audio section: (Opus 48000/2, telephone-event/8000), as the
/// remote numbered them. Only PTs listed on the `m=audio` line count.
pub fn audio_payload_types(sdp: &str) -> (Option<u8>, Option<u8>) {
    let mut listed: Vec<u8> = Vec::new();
    let mut in_audio = false;
    let (mut opus, mut tel) = (None, None);
    for l in lines(sdp) {
        if let Some(m) = l.strip_prefix("m=") {
            if in_audio {
                break;
            }
            in_audio = m.starts_with("audio ");
            if in_audio {
                listed = m
                    .split_ascii_whitespace()
                    .skip(3)
                    .filter_map(|p| p.parse().ok())
                    .collect();
            }
            continue;
        }
        if !in_audio {
            continue;
        }
        let Some(map) = l.strip_prefix("a=rtpmap:") else {
            continue;
        };
        let mut it = map.splitn(2, ' ');
        let (Some(pt), Some(enc)) = (it.next(), it.next()) else {
            continue;
        };
        let Ok(pt) = pt.trim().parse::<u8>() else {
            continue;
        };
        if !listed.contains(&pt) {
            continue;
        }
        let enc = enc.trim().to_ascii_lowercase();
        if opus.is_none() && (enc == "opus/48000/2" || enc == "opus/48000") {
            opus = Some(pt);
        }
        if tel.is_none() && enc == "telephone-event/8000" {
            tel = Some(pt);
        }
    }
    (opus, tel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_level_setup_wins_and_garbage_is_ignored() {
        let sdp = "v=0\r\na=setup:acdpass\r\nm=audio 9 X 0\r\na=setup:actpass\r\n";
        assert_eq!(setup_of(sdp), Some(Setup::ActPass));
        let sdp = "v=0\r\na=setup:active\r\nm=audio 9 X 0\r\na=setup:bogus\r\n";
        assert_eq!(setup_of(sdp), Some(Setup::Active));
        let sdp = "v=0\r\na=setup:passive\r\nm=audio 9 X 0\r\na=setup:actpass\r\nm=video 9 X 0\r\na=setup:active\r\n";
        assert_eq!(setup_of(sdp), Some(Setup::ActPass));
        assert_eq!(setup_of("v=0\r\nm=audio 9 X 0\r\n"), None);
    }

    /// Fuzz reproducer (`fuzz/fuzz_targets/webrtc_offer.rs`): a garbled session-level
    /// `a=setup` before a valid media-level `actpass` made us answer `passive`, so nobody
    /// would have started DTLS.
    #[test]
    fn fuzz_reproducer_garbled_session_setup_is_answered_active() {
        let offer = include_str!("../../../tests/data/fuzz/webrtc_offer_bad_session_setup.sdp");
        let cfg = super::super::WebrtcConfig::new("127.0.0.1:40000".parse().unwrap());
        let (_leg, answer) =
            super::super::WebrtcLeg::answer_offer(std::time::Instant::now(), &cfg, offer).unwrap();
        assert!(answer.contains("a=setup:active"), "{answer}");
    }

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-lite\r\n\
        m=audio 3482 UDP/TLS/RTP/SAVPF 109 9 101\r\nc=IN IP4 31.13.65.130\r\n\
        a=candidate:1 1 udp 2113937151 31.13.65.130 3482 typ host generation 0\r\n\
        a=candidate:2 1 udp 2113939711 2a03:2880:f211:d1:face:b00c:0:699c 3482 typ host\r\n\
        a=candidate:3 1 udp 2113939711 abcd.local 3482 typ host\r\n\
        a=setup:actpass\r\na=mid:audio\r\na=rtpmap:109 opus/48000/2\r\na=rtpmap:9 G722/8000\r\n\
        a=rtpmap:100 telephone-event/48000\r\na=rtpmap:101 telephone-event/8000\r\n";

    #[test]
    fn setup_rewrite_and_lookup() {
        assert_eq!(setup_of(OFFER), Some(Setup::ActPass));
        let s = rewrite_setup(OFFER, Setup::ActPass, Setup::Passive);
        assert_eq!(setup_of(&s), Some(Setup::Passive));
        assert!(!s.contains("actpass"));
        // other values untouched
        let t = rewrite_setup(&s, Setup::ActPass, Setup::Active);
        assert_eq!(setup_of(&t), Some(Setup::Passive));
        assert_eq!(setup_of("v=0\n"), None);
    }

    #[test]
    fn candidates_by_family() {
        let (v4, dropped) = keep_candidates_of_family(OFFER, true);
        assert_eq!(dropped, 2);
        assert!(v4.contains("a=candidate:1 1 udp 2113937151 31.13.65.130 3482 typ host\r\n"));
        assert!(!v4.contains("generation"));
        assert!(!v4.contains("2a03:"));
        assert!(!v4.contains(".local"));
        let (v6, dropped) = keep_candidates_of_family(OFFER, false);
        assert_eq!(dropped, 2);
        assert!(v6.contains("2a03:"));
    }

    #[test]
    fn a_missing_audio_mid_is_added() {
        // baresip 1.0's DTLS offer: no BUNDLE, no a=mid
        let plain = "v=0\r\ns=-\r\nt=0 0\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 96\r\n\
            a=rtpmap:96 opus/48000/2\r\nm=video 0 RTP/AVP 31\r\n";
        let (sdp, mid) = with_audio_mid(plain).expect("audio");
        assert_eq!(mid, "0");
        assert!(
            sdp.contains("a=rtpmap:96 opus/48000/2\r\na=mid:0\r\nm=video"),
            "{sdp}"
        );
        assert_eq!(sdp.matches("a=mid:").count(), 1, "{sdp}");
        assert!(
            sdp.contains("t=0 0\r\na=group:BUNDLE 0\r\nm=audio"),
            "{sdp}"
        );
        assert_eq!(first_audio_mid(&sdp).as_deref(), Some("0"));
        // an existing mid is kept, the SDP untouched
        assert_eq!(
            with_audio_mid(OFFER),
            Some((OFFER.to_string(), "audio".to_string()))
        );
        assert_eq!(with_audio_mid("v=0\r\nm=video 9 X 0\r\n"), None);
        let last = with_audio_mid("v=0\r\nm=audio 9 X 0\r\nc=IN IP4 1.2.3.4\r\n").unwrap();
        assert_eq!(
            last.0,
            "v=0\r\na=group:BUNDLE 0\r\nm=audio 9 X 0\r\nc=IN IP4 1.2.3.4\r\na=mid:0\r\n"
        );
    }

    #[test]
    fn mid_pts_lite() {
        assert_eq!(first_audio_mid(OFFER).as_deref(), Some("audio"));
        assert_eq!(audio_payload_types(OFFER), (Some(109), Some(101)));
        assert!(is_ice_lite(OFFER));
        assert!(!is_ice_lite("v=0\r\nm=audio 9 X 0\r\na=ice-lite\r\n"));
        assert_eq!(
            audio_payload_types("m=audio 9 X 0\r\na=rtpmap:111 opus/48000/2\r\n"),
            (None, None)
        );
    }
}
