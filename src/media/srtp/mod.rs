//! SRTP and SRTCP (RFC 3711, RFC 7714 AES-GCM, RFC 6188 AES-256) for one direction of one
//! media leg: a [`SrtpSession`] holds the session keys derived from one master key and a
//! small table of per-SSRC states (rollover counter, replay windows, SRTCP index).
//!
//! Guarantees:
//! - Protect and unprotect work in place on a caller buffer; the packet path allocates
//!   nothing (a new SSRC costs one table slot, bounded by [`MAX_STREAMS`]).
//! - Unprotect authenticates before it decrypts or changes any state; a forged, truncated,
//!   replayed or too-old packet leaves the session untouched and returns an error.
//! - The ROC is estimated per RFC 3711 §3.3.1, so sequence rollover (65535 → 0) and late
//!   packets from before a rollover are handled on both sides.
//! - Never panics on any input.

mod kdf;
mod replay;
mod transform;

pub use kdf::{
    LABEL_RTCP_AUTH, LABEL_RTCP_ENCRYPTION, LABEL_RTCP_SALT, LABEL_RTP_AUTH, LABEL_RTP_ENCRYPTION,
    LABEL_RTP_SALT, derive as kdf_derive,
};
pub use replay::{ReplayCheck, ReplayWindow, WINDOW as REPLAY_WINDOW};

use std::fmt;

use thiserror::Error;
use transform::Transform;

use crate::media::rtp;

/// Most SSRCs one session tracks (protects against SSRC spraying).
pub const MAX_STREAMS: usize = 32;
/// Longest MKI supported, in bytes.
pub const MAX_MKI_LEN: usize = 8;

/// SRTP protection profile / SDES crypto suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SrtpProfile {
    /// RFC 4568 / RFC 3711 default.
    AesCm128HmacSha1_80,
    /// 32-bit RTP tag (SRTCP keeps the 80-bit tag, RFC 4568 §6.2.2).
    AesCm128HmacSha1_32,
    /// RFC 6188.
    AesCm256HmacSha1_80,
    /// RFC 6188.
    AesCm256HmacSha1_32,
    /// RFC 7714.
    AeadAes128Gcm,
    /// RFC 7714.
    AeadAes256Gcm,
}

impl SrtpProfile {
    /// All profiles, in our default preference order (strongest widely-deployed first).
    pub const ALL: [SrtpProfile; 6] = [
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::AesCm256HmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32,
        SrtpProfile::AesCm256HmacSha1_32,
    ];

    /// The RFC 4568 / RFC 6188 / RFC 7714 SDES suite name.
    pub fn sdes_name(self) -> &'static str {
        match self {
            SrtpProfile::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpProfile::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            SrtpProfile::AesCm256HmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            SrtpProfile::AesCm256HmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            SrtpProfile::AeadAes128Gcm => "AEAD_AES_128_GCM",
            SrtpProfile::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// Parse an SDES suite name (case-sensitive, as RFC 4568 registers them).
    pub fn from_sdes_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.sdes_name() == name)
    }

    /// DTLS-SRTP protection profile id (RFC 5764 §4.1.2, RFC 7714 §14.2).
    pub fn dtls_id(self) -> Option<u16> {
        match self {
            SrtpProfile::AesCm128HmacSha1_80 => Some(0x0001),
            SrtpProfile::AesCm128HmacSha1_32 => Some(0x0002),
            SrtpProfile::AeadAes128Gcm => Some(0x0007),
            SrtpProfile::AeadAes256Gcm => Some(0x0008),
            _ => None,
        }
    }

    pub fn master_key_len(self) -> usize {
        match self {
            SrtpProfile::AesCm128HmacSha1_80
            | SrtpProfile::AesCm128HmacSha1_32
            | SrtpProfile::AeadAes128Gcm => 16,
            _ => 32,
        }
    }

    pub fn master_salt_len(self) -> usize {
        if self.is_aead() { 12 } else { 14 }
    }

    pub fn is_aead(self) -> bool {
        matches!(
            self,
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm
        )
    }

    /// SRTP authentication tag length.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            SrtpProfile::AesCm128HmacSha1_32 | SrtpProfile::AesCm256HmacSha1_32 => 4,
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => 16,
            _ => 10,
        }
    }

    /// SRTCP authentication tag length.
    pub fn rtcp_tag_len(self) -> usize {
        if self.is_aead() { 16 } else { 10 }
    }
}

impl fmt::Display for SrtpProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sdes_name())
    }
}

/// Master key and salt for one profile. `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    profile: SrtpProfile,
    bytes: [u8; 46],
}

impl MasterKey {
    /// From separate key and salt.
    pub fn new(profile: SrtpProfile, key: &[u8], salt: &[u8]) -> Result<Self, SrtpError> {
        if key.len() != profile.master_key_len() {
            return Err(SrtpError::BadKeyLength);
        }
        if salt.len() != profile.master_salt_len() {
            return Err(SrtpError::BadSaltLength);
        }
        let mut bytes = [0u8; 46];
        bytes[..key.len()].copy_from_slice(key);
        bytes[key.len()..key.len() + salt.len()].copy_from_slice(salt);
        Ok(Self { profile, bytes })
    }

    /// From `key || salt` (SDES `inline:` after base64 decoding).
    pub fn from_concat(profile: SrtpProfile, key_salt: &[u8]) -> Result<Self, SrtpError> {
        let k = profile.master_key_len();
        if key_salt.len() != k + profile.master_salt_len() {
            return Err(SrtpError::BadKeyLength);
        }
        Self::new(profile, &key_salt[..k], &key_salt[k..])
    }

    /// Fresh random key and salt from the OS-seeded thread RNG.
    pub fn random(profile: SrtpProfile) -> Self {
        let mut bytes = [0u8; 46];
        let n = profile.master_key_len() + profile.master_salt_len();
        rand::fill(&mut bytes[..n]);
        Self { profile, bytes }
    }

    /// Key and salt drawn from `rng`: [`MasterKey::random`] with the generator chosen by the
    /// caller (the sandbox passes a seeded one so that deterministic runs repeat their SDP).
    pub fn from_rng<R: rand::CryptoRng + ?Sized>(profile: SrtpProfile, rng: &mut R) -> Self {
        let mut bytes = [0u8; 46];
        let n = profile.master_key_len() + profile.master_salt_len();
        rng.fill_bytes(&mut bytes[..n]);
        Self { profile, bytes }
    }

    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }
    pub fn key(&self) -> &[u8] {
        &self.bytes[..self.profile.master_key_len()]
    }
    pub fn salt(&self) -> &[u8] {
        let k = self.profile.master_key_len();
        &self.bytes[k..k + self.profile.master_salt_len()]
    }
    /// `key || salt`.
    pub fn concat(&self) -> &[u8] {
        &self.bytes[..self.profile.master_key_len() + self.profile.master_salt_len()]
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("profile", &self.profile)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Master Key Identifier carried in each packet (RFC 3711 §3.1, RFC 4568 `|MKI:len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mki {
    pub value: u64,
    /// Length on the wire in bytes, 1..=[`MAX_MKI_LEN`].
    pub len: u8,
}

impl Mki {
    fn bytes(&self) -> ([u8; MAX_MKI_LEN], usize) {
        let len = usize::from(self.len).min(MAX_MKI_LEN);
        let mut out = [0u8; MAX_MKI_LEN];
        out[..len].copy_from_slice(&self.value.to_be_bytes()[MAX_MKI_LEN - len..]);
        (out, len)
    }
}

/// Why a packet could not be protected or unprotected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SrtpError {
    #[error("master key length does not match the profile")]
    BadKeyLength,
    #[error("master salt length does not match the profile")]
    BadSaltLength,
    #[error("MKI length {0} unsupported")]
    BadMki(u8),
    #[error("buffer lacks room for the SRTP trailer")]
    BufferTooSmall,
    #[error("not an RTP packet: {0}")]
    Rtp(#[from] rtp::RtpError),
    #[error("packet too short for SRTP/SRTCP")]
    TooShort,
    #[error("not an RTCP packet")]
    NotRtcp,
    #[error("authentication failed")]
    AuthFailed,
    #[error("replayed packet")]
    Replayed,
    #[error("packet older than the replay window")]
    TooOld,
    #[error("MKI does not match")]
    MkiMismatch,
    #[error("too many SSRCs on one SRTP session")]
    TooManyStreams,
    #[error("packet index space exhausted; rekey required")]
    IndexExhausted,
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

#[derive(Debug, Clone, Copy, Default)]
struct Stream {
    ssrc: u32,
    /// SRTP: highest index sent/received; the window is used on receive only.
    rtp: ReplayWindow,
    /// SRTCP index of the next packet to send.
    rtcp_tx: u32,
    /// SRTCP indices received.
    rtcp_rx: ReplayWindow,
}

/// RFC 3711 §3.3.1: the packet index for sequence `seq` given the highest index seen.
/// `None` when the guess would be before index 0 or beyond 2^48 - 1.
pub fn estimate_index(highest: Option<u64>, seq: u16, initial_roc: u32) -> Option<u64> {
    let Some(highest) = highest else {
        return Some((u64::from(initial_roc) << 16) | u64::from(seq));
    };
    let roc = highest >> 16;
    let s_l = highest as u16;
    let v = if s_l < 32768 {
        if seq > s_l && seq - s_l > 32768 {
            roc.checked_sub(1)?
        } else {
            roc
        }
    } else if s_l - 32768 > seq {
        roc + 1
    } else {
        roc
    };
    if v > u64::from(u32::MAX) {
        return None;
    }
    Some((v << 16) | u64::from(seq))
}

/// SRTP/SRTCP state for one direction under one master key.
pub struct SrtpSession {
    profile: SrtpProfile,
    rtp: Transform,
    rtcp: Transform,
    mki: Option<([u8; MAX_MKI_LEN], usize)>,
    initial_roc: u32,
    streams: Vec<Stream>,
}

impl fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpSession")
            .field("profile", &self.profile)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl SrtpSession {
    /// Derive session keys (kdr = 0) for SRTP and SRTCP.
    pub fn new(key: &MasterKey) -> Result<Self, SrtpError> {
        Self::with_mki(key, None)
    }

    /// As [`SrtpSession::new`], with an MKI written to (and required in) every packet.
    pub fn with_mki(key: &MasterKey, mki: Option<Mki>) -> Result<Self, SrtpError> {
        let p = key.profile();
        let mki = match mki {
            Some(m) if m.len == 0 || usize::from(m.len) > MAX_MKI_LEN => {
                return Err(SrtpError::BadMki(m.len));
            }
            Some(m) => Some(m.bytes()),
            None => None,
        };
        Ok(Self {
            profile: p,
            rtp: Transform::derive(key.key(), key.salt(), p.is_aead(), p.rtp_tag_len(), false)?,
            rtcp: Transform::derive(key.key(), key.salt(), p.is_aead(), p.rtcp_tag_len(), true)?,
            mki,
            initial_roc: 0,
            streams: Vec::with_capacity(4),
        })
    }

    /// Set the ROC assumed for SSRCs not seen yet (RFC 4568 leaves it 0; needed when joining
    /// a stream mid-way, e.g. after a re-key).
    pub fn set_initial_roc(&mut self, roc: u32) {
        self.initial_roc = roc;
    }

    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    fn mki(&self) -> &[u8] {
        match &self.mki {
            Some((b, n)) => &b[..*n],
            None => &[],
        }
    }

    /// Bytes `protect_rtp` appends (tag + MKI); reserve this much headroom.
    pub fn rtp_overhead(&self) -> usize {
        self.rtp.tag_len() + self.mki().len()
    }

    /// Bytes `protect_rtcp` appends (E||index + tag + MKI).
    pub fn rtcp_overhead(&self) -> usize {
        4 + self.rtcp.tag_len() + self.mki().len()
    }

    /// Rollover counter of `ssrc` (highest index >> 16), if the SSRC is known.
    pub fn roc(&self, ssrc: u32) -> Option<u32> {
        self.find(ssrc)
            .and_then(|i| self.streams[i].rtp.highest())
            .map(|h| (h >> 16) as u32)
    }

    /// SSRCs this session has state for.
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.streams.iter().map(|s| s.ssrc)
    }

    fn find(&self, ssrc: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.ssrc == ssrc)
    }

    fn find_or_insert(&mut self, ssrc: u32) -> Result<usize, SrtpError> {
        if let Some(i) = self.find(ssrc) {
            return Ok(i);
        }
        if self.streams.len() >= MAX_STREAMS {
            return Err(SrtpError::TooManyStreams);
        }
        self.streams.push(Stream {
            ssrc,
            ..Stream::default()
        });
        Ok(self.streams.len() - 1)
    }

    /// Protect the RTP packet in `buf[..len]` in place; `buf` must have at least
    /// [`rtp_overhead`](Self::rtp_overhead) bytes after `len`. Returns the SRTP length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let pkt = buf.get(..len).ok_or(SrtpError::TooShort)?;
        let hl = rtp::header_len(pkt)?;
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        let out_len = len + self.rtp_overhead();
        if buf.len() < out_len {
            return Err(SrtpError::BufferTooSmall);
        }
        let i = self.find_or_insert(ssrc)?;
        let index = estimate_index(self.streams[i].rtp.highest(), seq, self.initial_roc)
            .ok_or(SrtpError::IndexExhausted)?;
        let mki_len = self.mki().len();
        let tag_at = if self.profile.is_aead() {
            len
        } else {
            len + mki_len
        };
        self.rtp.protect_rtp(buf, hl, len, tag_at, ssrc, index)?;
        let mki_at = if self.profile.is_aead() {
            len + self.rtp.tag_len()
        } else {
            len
        };
        if let Some((m, n)) = self.mki {
            buf[mki_at..mki_at + n].copy_from_slice(&m[..n]);
        }
        if self.streams[i].rtp.highest().is_none_or(|h| index > h) {
            self.streams[i].rtp.commit(index);
        }
        Ok(out_len)
    }

    /// Unprotect the SRTP packet that fills `buf`, in place. Returns the RTP length.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let len = buf.len();
        let overhead = self.rtp_overhead();
        let hl = rtp::header_len(buf)?;
        if len < hl + overhead {
            return Err(SrtpError::TooShort);
        }
        let body_end = len - overhead;
        let tag_len = self.rtp.tag_len();
        let (tag_at, mki_at) = if self.profile.is_aead() {
            (body_end, body_end + tag_len)
        } else {
            (body_end + self.mki().len(), body_end)
        };
        if buf[mki_at..mki_at + self.mki().len()] != *self.mki() {
            return Err(SrtpError::MkiMismatch);
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let found = self.find(ssrc);
        let window = found.map(|i| self.streams[i].rtp).unwrap_or_default();
        let index =
            estimate_index(window.highest(), seq, self.initial_roc).ok_or(SrtpError::TooOld)?;
        match window.check(index) {
            ReplayCheck::Fresh => {}
            ReplayCheck::Replayed => return Err(SrtpError::Replayed),
            ReplayCheck::TooOld => return Err(SrtpError::TooOld),
        }
        if found.is_none() && self.streams.len() >= MAX_STREAMS {
            return Err(SrtpError::TooManyStreams);
        }
        let n = self
            .rtp
            .unprotect_rtp(buf, hl, body_end, tag_at, ssrc, index)?;
        let i = self.find_or_insert(ssrc)?;
        self.streams[i].rtp.commit(index);
        Ok(n)
    }

    /// Protect the (compound) RTCP packet in `buf[..len]` in place; `buf` must have
    /// [`rtcp_overhead`](Self::rtcp_overhead) spare bytes after `len`. Returns the SRTCP length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let pkt = buf.get(..len).ok_or(SrtpError::TooShort)?;
        if len < 8 {
            return Err(SrtpError::TooShort);
        }
        if pkt[0] >> 6 != 2 {
            return Err(SrtpError::NotRtcp);
        }
        let ssrc = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        if buf.len() < len + self.rtcp_overhead() {
            return Err(SrtpError::BufferTooSmall);
        }
        let i = self.find_or_insert(ssrc)?;
        let index = self.streams[i].rtcp_tx;
        if index > 0x7fff_ffff {
            return Err(SrtpError::IndexExhausted);
        }
        let (m, n) = self.mki.unwrap_or(([0; MAX_MKI_LEN], 0));
        let out = self.rtcp.protect_rtcp(buf, len, ssrc, index, &m[..n])?;
        self.streams[i].rtcp_tx = index + 1;
        Ok(out)
    }

    /// Unprotect the SRTCP packet that fills `buf`, in place. Returns the RTCP length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let len = buf.len();
        let mki_len = self.mki().len();
        let tag_len = self.rtcp.tag_len();
        if len < 8 + 4 + mki_len + tag_len {
            return Err(SrtpError::TooShort);
        }
        if buf[0] >> 6 != 2 {
            return Err(SrtpError::NotRtcp);
        }
        let (trailer, mki_at) = if self.profile.is_aead() {
            (len - mki_len - 4, len - mki_len)
        } else {
            (len - tag_len - mki_len - 4, len - tag_len - mki_len)
        };
        if buf[mki_at..mki_at + mki_len] != *self.mki() {
            return Err(SrtpError::MkiMismatch);
        }
        if self.profile.is_aead() && trailer < 8 + tag_len {
            return Err(SrtpError::TooShort);
        }
        let word = u32::from_be_bytes([
            buf[trailer],
            buf[trailer + 1],
            buf[trailer + 2],
            buf[trailer + 3],
        ]);
        let encrypted = word & 0x8000_0000 != 0;
        let index = word & 0x7fff_ffff;
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let found = self.find(ssrc);
        let window = found.map(|i| self.streams[i].rtcp_rx).unwrap_or_default();
        match window.check(u64::from(index)) {
            ReplayCheck::Fresh => {}
            ReplayCheck::Replayed => return Err(SrtpError::Replayed),
            ReplayCheck::TooOld => return Err(SrtpError::TooOld),
        }
        if found.is_none() && self.streams.len() >= MAX_STREAMS {
            return Err(SrtpError::TooManyStreams);
        }
        let n = self
            .rtcp
            .unprotect_rtcp(buf, mki_len, ssrc, index, encrypted)?;
        let i = self.find_or_insert(ssrc)?;
        self.streams[i].rtcp_rx.commit(u64::from(index));
        Ok(n)
    }

    /// [`protect_rtp`](Self::protect_rtp) on a `Vec` (grows within capacity when the caller
    /// reserved [`rtp_overhead`](Self::rtp_overhead) bytes; no allocation then).
    pub fn protect_rtp_vec(&mut self, pkt: &mut Vec<u8>) -> Result<(), SrtpError> {
        let len = pkt.len();
        pkt.resize(len + self.rtp_overhead(), 0);
        match self.protect_rtp(pkt, len) {
            Ok(n) => {
                pkt.truncate(n);
                Ok(())
            }
            Err(e) => {
                pkt.truncate(len);
                Err(e)
            }
        }
    }

    /// [`unprotect_rtp`](Self::unprotect_rtp) on a `Vec`; truncates to the RTP packet.
    pub fn unprotect_rtp_vec(&mut self, pkt: &mut Vec<u8>) -> Result<(), SrtpError> {
        let n = self.unprotect_rtp(pkt)?;
        pkt.truncate(n);
        Ok(())
    }

    /// [`protect_rtcp`](Self::protect_rtcp) on a `Vec`.
    pub fn protect_rtcp_vec(&mut self, pkt: &mut Vec<u8>) -> Result<(), SrtpError> {
        let len = pkt.len();
        pkt.resize(len + self.rtcp_overhead(), 0);
        match self.protect_rtcp(pkt, len) {
            Ok(n) => {
                pkt.truncate(n);
                Ok(())
            }
            Err(e) => {
                pkt.truncate(len);
                Err(e)
            }
        }
    }

    /// [`unprotect_rtcp`](Self::unprotect_rtcp) on a `Vec`.
    pub fn unprotect_rtcp_vec(&mut self, pkt: &mut Vec<u8>) -> Result<(), SrtpError> {
        let n = self.unprotect_rtcp(pkt)?;
        pkt.truncate(n);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
