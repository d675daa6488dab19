//! SDP Security Descriptions (RFC 4568) `a=crypto` attributes: parse, format, and the
//! answerer's choice of one offered suite with a fresh local key.
//!
//! Guarantees: parsing never panics; keys are length-checked against their suite; unknown
//! suites parse (so an offer with several lines still works) but are never selected; the
//! answer always carries a freshly generated key, never the offer's; `Debug` never prints
//! key material.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use thiserror::Error;

use crate::media::srtp::{MAX_MKI_LEN, MasterKey, Mki, SrtpProfile};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SdesError {
    #[error("a=crypto: missing {0}")]
    Missing(&'static str),
    #[error("a=crypto: bad tag")]
    BadTag,
    #[error("a=crypto: bad key parameter")]
    BadKeyParam,
    #[error("a=crypto: key is not valid base64")]
    BadBase64,
    #[error("a=crypto: key length does not match {0}")]
    BadKeyLength(SrtpProfile),
    #[error("a=crypto: bad lifetime")]
    BadLifetime,
    #[error("a=crypto: bad MKI")]
    BadMki,
    #[error("no acceptable crypto suite offered")]
    NoAcceptableSuite,
}

impl SdesError {
    /// SIP status for an offer we cannot accept because of this (RFC 4568 §7.1.3 → 488).
    pub fn sip_status(&self) -> u16 {
        488
    }
}

/// The suite named in an `a=crypto` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoSuite {
    Known(SrtpProfile),
    Unknown(String),
}

impl fmt::Display for CryptoSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoSuite::Known(p) => f.write_str(p.sdes_name()),
            CryptoSuite::Unknown(s) => f.write_str(s),
        }
    }
}

/// Key lifetime (`|2^31` or `|1048576`), in packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    PowerOfTwo(u8),
    Packets(u64),
}

impl Lifetime {
    pub fn packets(self) -> u64 {
        match self {
            Lifetime::PowerOfTwo(e) => 1u64.checked_shl(u32::from(e)).unwrap_or(u64::MAX),
            Lifetime::Packets(n) => n,
        }
    }
}

/// One `inline:` key parameter.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyParam {
    /// key || salt as sent (raw bytes after base64).
    pub key_salt: Vec<u8>,
    pub lifetime: Option<Lifetime>,
    pub mki: Option<Mki>,
}

impl fmt::Debug for KeyParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyParam")
            .field(
                "key_salt",
                &format_args!("<{} bytes redacted>", self.key_salt.len()),
            )
            .field("lifetime", &self.lifetime)
            .field("mki", &self.mki)
            .finish()
    }
}

/// A parsed `a=crypto` attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    pub tag: u32,
    pub suite: CryptoSuite,
    pub keys: Vec<KeyParam>,
    /// Session parameters (e.g. `KDR=`, `UNENCRYPTED_SRTP`), kept verbatim.
    pub session_params: Vec<String>,
}

fn decode_b64(s: &str) -> Result<Vec<u8>, SdesError> {
    STANDARD
        .decode(s)
        .or_else(|_| STANDARD_NO_PAD.decode(s))
        .map_err(|_| SdesError::BadBase64)
}

fn parse_key_param(s: &str, suite: &CryptoSuite) -> Result<KeyParam, SdesError> {
    let inline = s.strip_prefix("inline:").ok_or(SdesError::BadKeyParam)?;
    let mut parts = inline.split('|');
    let key_salt = decode_b64(parts.next().ok_or(SdesError::BadKeyParam)?)?;
    if let CryptoSuite::Known(p) = suite
        && key_salt.len() != p.master_key_len() + p.master_salt_len()
    {
        return Err(SdesError::BadKeyLength(*p));
    }
    let mut lifetime = None;
    let mut mki = None;
    for part in parts {
        if let Some((v, l)) = part.split_once(':') {
            if mki.is_some() {
                return Err(SdesError::BadMki);
            }
            let value: u64 = v.parse().map_err(|_| SdesError::BadMki)?;
            let len: u8 = l.parse().map_err(|_| SdesError::BadMki)?;
            if len == 0 || usize::from(len) > MAX_MKI_LEN {
                return Err(SdesError::BadMki);
            }
            if len < 8 && value >> (8 * u32::from(len)) != 0 {
                return Err(SdesError::BadMki);
            }
            mki = Some(Mki { value, len });
        } else {
            if lifetime.is_some() || mki.is_some() {
                return Err(SdesError::BadLifetime);
            }
            lifetime = Some(if let Some(e) = part.strip_prefix("2^") {
                let e: u8 = e.parse().map_err(|_| SdesError::BadLifetime)?;
                if e > 63 {
                    return Err(SdesError::BadLifetime);
                }
                Lifetime::PowerOfTwo(e)
            } else {
                Lifetime::Packets(part.parse().map_err(|_| SdesError::BadLifetime)?)
            });
        }
    }
    Ok(KeyParam {
        key_salt,
        lifetime,
        mki,
    })
}

impl CryptoAttribute {
    /// Parse the attribute value (`1 AES_CM_128_HMAC_SHA1_80 inline:…`); a leading
    /// `a=crypto:` or `crypto:` is accepted too.
    pub fn parse(s: &str) -> Result<Self, SdesError> {
        let s = s.trim();
        let s = s.strip_prefix("a=").unwrap_or(s);
        let s = s.strip_prefix("crypto:").unwrap_or(s);
        let mut fields = s.split_ascii_whitespace();
        let tag_s = fields.next().ok_or(SdesError::Missing("tag"))?;
        if tag_s.is_empty() || tag_s.len() > 9 || !tag_s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SdesError::BadTag);
        }
        let tag: u32 = tag_s.parse().map_err(|_| SdesError::BadTag)?;
        let suite_s = fields.next().ok_or(SdesError::Missing("crypto-suite"))?;
        let suite = match SrtpProfile::from_sdes_name(suite_s) {
            Some(p) => CryptoSuite::Known(p),
            None => CryptoSuite::Unknown(suite_s.to_owned()),
        };
        let keys_s = fields.next().ok_or(SdesError::Missing("key-params"))?;
        let keys = keys_s
            .split(';')
            .map(|k| parse_key_param(k, &suite))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            tag,
            suite,
            keys,
            session_params: fields.map(str::to_owned).collect(),
        })
    }

    /// A single-key attribute for `key`.
    pub fn new(tag: u32, key: &MasterKey) -> Self {
        Self {
            tag,
            suite: CryptoSuite::Known(key.profile()),
            keys: vec![KeyParam {
                key_salt: key.concat().to_vec(),
                lifetime: None,
                mki: None,
            }],
            session_params: Vec::new(),
        }
    }

    /// The first key as a [`MasterKey`] with its MKI, when the suite is known.
    pub fn master_key(&self) -> Result<(MasterKey, Option<Mki>), SdesError> {
        let CryptoSuite::Known(p) = self.suite else {
            return Err(SdesError::NoAcceptableSuite);
        };
        let k = self.keys.first().ok_or(SdesError::Missing("key-params"))?;
        let key = MasterKey::from_concat(p, &k.key_salt).map_err(|_| SdesError::BadKeyLength(p))?;
        Ok((key, k.mki))
    }
}

impl fmt::Display for CryptoAttribute {
    /// The attribute value (without `a=crypto:`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.tag, self.suite)?;
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "inline:{}", STANDARD.encode(&k.key_salt))?;
            match k.lifetime {
                Some(Lifetime::PowerOfTwo(e)) => write!(f, "|2^{e}")?,
                Some(Lifetime::Packets(n)) => write!(f, "|{n}")?,
                None => {}
            }
            if let Some(m) = k.mki {
                write!(f, "|{}:{}", m.value, m.len)?;
            }
        }
        for p in &self.session_params {
            write!(f, " {p}")?;
        }
        Ok(())
    }
}

/// Result of answering an SDES offer.
#[derive(Debug, Clone)]
pub struct SdesAnswer {
    /// The `a=crypto` line to put in our answer (same tag and suite, our fresh key).
    pub answer: CryptoAttribute,
    /// Key to unprotect what the offerer sends.
    pub remote_key: MasterKey,
    pub remote_mki: Option<Mki>,
    /// Key to protect what we send.
    pub local_key: MasterKey,
}

/// Choose the offered crypto line we prefer (order of `preference`), generate a fresh key
/// for our direction, and return the answer line. Offers with unknown suites, session
/// parameters we do not implement, or malformed keys are skipped.
pub fn answer_offer(
    offered: &[CryptoAttribute],
    preference: &[SrtpProfile],
) -> Result<SdesAnswer, SdesError> {
    answer_offer_keyed(offered, preference, &mut MasterKey::random)
}

/// [`answer_offer`] with our key drawn from `rng` instead of the OS-seeded thread RNG.
pub fn answer_offer_with_rng<R: rand::CryptoRng + ?Sized>(
    offered: &[CryptoAttribute],
    preference: &[SrtpProfile],
    rng: &mut R,
) -> Result<SdesAnswer, SdesError> {
    answer_offer_keyed(offered, preference, &mut |p| MasterKey::from_rng(p, rng))
}

fn answer_offer_keyed(
    offered: &[CryptoAttribute],
    preference: &[SrtpProfile],
    new_key: &mut dyn FnMut(SrtpProfile) -> MasterKey,
) -> Result<SdesAnswer, SdesError> {
    for want in preference {
        for offer in offered {
            if offer.suite != CryptoSuite::Known(*want) || !offer.session_params.is_empty() {
                continue;
            }
            let Ok((remote_key, remote_mki)) = offer.master_key() else {
                continue;
            };
            let local_key = new_key(*want);
            return Ok(SdesAnswer {
                answer: CryptoAttribute::new(offer.tag, &local_key),
                remote_key,
                remote_mki,
                local_key,
            });
        }
    }
    Err(SdesError::NoAcceptableSuite)
}

/// Offer lines (tags 1..) with a fresh key per suite; returns the attributes and keys.
pub fn make_offer(suites: &[SrtpProfile]) -> Vec<(CryptoAttribute, MasterKey)> {
    make_offer_keyed(suites, &mut MasterKey::random)
}

/// [`make_offer`] with the keys drawn from `rng` instead of the OS-seeded thread RNG.
pub fn make_offer_with_rng<R: rand::CryptoRng + ?Sized>(
    suites: &[SrtpProfile],
    rng: &mut R,
) -> Vec<(CryptoAttribute, MasterKey)> {
    make_offer_keyed(suites, &mut |p| MasterKey::from_rng(p, rng))
}

fn make_offer_keyed(
    suites: &[SrtpProfile],
    new_key: &mut dyn FnMut(SrtpProfile) -> MasterKey,
) -> Vec<(CryptoAttribute, MasterKey)> {
    suites
        .iter()
        .zip(1u32..)
        .map(|(p, tag)| {
            let k = new_key(*p);
            (CryptoAttribute::new(tag, &k), k)
        })
        .collect()
}

/// Given our offer and the answer's line, the keys for (sending, receiving).
pub fn accept_answer(
    our_offer: &[(CryptoAttribute, MasterKey)],
    answer: &CryptoAttribute,
) -> Result<(MasterKey, MasterKey, Option<Mki>), SdesError> {
    let (_, local) = our_offer
        .iter()
        .find(|(a, _)| a.tag == answer.tag && a.suite == answer.suite)
        .ok_or(SdesError::NoAcceptableSuite)?;
    let (remote, mki) = answer.master_key()?;
    Ok((local.clone(), remote, mki))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RFC4568_EXAMPLE: &str =
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4";

    #[test]
    fn seeded_rng_repeats_offer_and_answer_keys_and_other_seeds_differ() {
        use rand::SeedableRng;
        let suites = [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm];
        let offer = |seed: u64| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            make_offer_with_rng(&suites, &mut rng)
                .iter()
                .map(|(a, _)| a.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(offer(1), offer(1));
        assert_ne!(offer(1), offer(2));
        // the two suites of one offer get different keys
        let o = offer(1);
        assert_ne!(o[0].split("inline:").nth(1), o[1].split("inline:").nth(1));
        let offered: Vec<CryptoAttribute> =
            make_offer(&suites).into_iter().map(|(a, _)| a).collect();
        let answer = |seed: u64| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            answer_offer_with_rng(&offered, &[SrtpProfile::AeadAes128Gcm], &mut rng)
                .unwrap()
                .answer
                .to_string()
        };
        assert_eq!(answer(5), answer(5));
        assert_ne!(answer(5), answer(6));
        assert!(
            answer(5).starts_with("2 AEAD_AES_128_GCM inline:"),
            "{}",
            answer(5)
        );
    }

    #[test]
    fn parses_rfc4568_example() {
        let a = CryptoAttribute::parse(&format!("a=crypto:{RFC4568_EXAMPLE}")).unwrap();
        assert_eq!(a.tag, 1);
        assert_eq!(
            a.suite,
            CryptoSuite::Known(SrtpProfile::AesCm128HmacSha1_80)
        );
        assert_eq!(a.keys.len(), 1);
        assert_eq!(a.keys[0].key_salt.len(), 30);
        assert_eq!(a.keys[0].lifetime, Some(Lifetime::PowerOfTwo(20)));
        assert_eq!(a.keys[0].lifetime.unwrap().packets(), 1 << 20);
        assert_eq!(a.keys[0].mki, Some(Mki { value: 1, len: 4 }));
        assert_eq!(a.to_string(), RFC4568_EXAMPLE);
    }

    #[test]
    fn parses_decimal_lifetime_session_params_and_multiple_keys() {
        let k = STANDARD.encode([7u8; 30]);
        let s = format!(
            "2 AES_CM_128_HMAC_SHA1_32 inline:{k}|1048576;inline:{k}|2^31 KDR=1 UNENCRYPTED_SRTCP"
        );
        let a = CryptoAttribute::parse(&s).unwrap();
        assert_eq!(a.keys[0].lifetime, Some(Lifetime::Packets(1_048_576)));
        assert_eq!(a.keys[1].lifetime, Some(Lifetime::PowerOfTwo(31)));
        assert_eq!(a.session_params, vec!["KDR=1", "UNENCRYPTED_SRTCP"]);
        assert_eq!(a.to_string(), s);
    }

    #[test]
    fn gcm_and_256_keys() {
        let gcm = MasterKey::random(SrtpProfile::AeadAes128Gcm);
        let line = CryptoAttribute::new(3, &gcm).to_string();
        assert!(line.starts_with("3 AEAD_AES_128_GCM inline:"));
        let back = CryptoAttribute::parse(&line).unwrap();
        assert_eq!(back.master_key().unwrap().0, gcm);
        let k256 = MasterKey::random(SrtpProfile::AesCm256HmacSha1_80);
        let back = CryptoAttribute::parse(&CryptoAttribute::new(1, &k256).to_string()).unwrap();
        assert_eq!(back.master_key().unwrap().0, k256);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "1 AES_CM_128_HMAC_SHA1_80",
            "1 AES_CM_128_HMAC_SHA1_80 PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVe",
            "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!",
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^99",
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|1:0",
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|256:1",
        ] {
            assert!(CryptoAttribute::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answer_picks_preferred_suite_with_fresh_key() {
        let offer = make_offer(&[
            SrtpProfile::AesCm128HmacSha1_32,
            SrtpProfile::AesCm128HmacSha1_80,
        ]);
        let mut lines: Vec<CryptoAttribute> = offer.iter().map(|(a, _)| a.clone()).collect();
        lines.insert(
            0,
            CryptoAttribute::parse("9 F8_128_HMAC_SHA1_80 inline:AAAA").unwrap(),
        );
        let ans = answer_offer(&lines, &[SrtpProfile::AesCm128HmacSha1_80]).unwrap();
        assert_eq!(ans.answer.tag, 2);
        assert_eq!(ans.remote_key, offer[1].1);
        assert_ne!(ans.local_key, ans.remote_key, "never echo the offer's key");
        assert_ne!(ans.answer.keys[0].key_salt, lines[2].keys[0].key_salt);
        // The offerer sees our key.
        let (send, recv, _) = accept_answer(&offer, &ans.answer).unwrap();
        assert_eq!(send, offer[1].1);
        assert_eq!(recv, ans.local_key);
        assert_eq!(
            answer_offer(&lines, &[SrtpProfile::AeadAes256Gcm]).unwrap_err(),
            SdesError::NoAcceptableSuite
        );
    }

    #[test]
    fn debug_redacts_keys() {
        let a = CryptoAttribute::parse(RFC4568_EXAMPLE).unwrap();
        assert!(!format!("{a:?}").contains("PS1u"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,120}") {
            let _ = CryptoAttribute::parse(&s);
        }

        #[test]
        fn format_parse_round_trip(tag in 0u32..1_000_000, idx in 0usize..6, life in proptest::option::of(prop_oneof![
                (0u8..64).prop_map(Lifetime::PowerOfTwo), any::<u64>().prop_map(Lifetime::Packets)]),
                mki in proptest::option::of((any::<u8>(), 1u8..=8))) {
            let key = MasterKey::random(SrtpProfile::ALL[idx]);
            let mut a = CryptoAttribute::new(tag, &key);
            a.keys[0].lifetime = life;
            a.keys[0].mki = mki.map(|(v, len)| Mki { value: u64::from(v), len });
            let back = CryptoAttribute::parse(&a.to_string()).unwrap();
            prop_assert_eq!(back, a);
        }
    }
}
