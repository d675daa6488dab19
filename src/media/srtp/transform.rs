//! Per-packet SRTP/SRTCP cryptographic transforms: AES-CM + HMAC-SHA1 (RFC 3711 §4.1.1,
//! §4.2.1; RFC 6188 for AES-256) and AEAD AES-GCM (RFC 7714).
//!
//! Guarantees: keys are expanded once at construction; per packet the expanded AES key
//! schedule and the keyed HMAC state are copied on the stack, so nothing is allocated.
//! Tags are compared in constant time.

use aes::{Aes128, Aes256};
use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit};
use ctr::CtrCore;
use ctr::cipher::{InnerIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use super::SrtpError;
use super::kdf;

/// GCM tag length (RFC 7714: 16 octets).
pub const GCM_TAG_LEN: usize = 16;

#[derive(Clone)]
pub(crate) enum Aes {
    A128(Aes128),
    A256(Aes256),
}

impl Aes {
    pub(crate) fn new(key: &[u8]) -> Result<Self, SrtpError> {
        match key.len() {
            16 => Aes128::new_from_slice(key)
                .map(Aes::A128)
                .map_err(|_| SrtpError::BadKeyLength),
            32 => Aes256::new_from_slice(key)
                .map(Aes::A256)
                .map_err(|_| SrtpError::BadKeyLength),
            _ => Err(SrtpError::BadKeyLength),
        }
    }

    /// XOR the AES-CM keystream starting at counter block `iv` into `data`.
    pub(crate) fn apply(&self, iv: &[u8; 16], data: &mut [u8]) {
        match self {
            Aes::A128(k) => {
                ctr::Ctr128BE::<Aes128>::from_core(CtrCore::inner_iv_init(k.clone(), iv.into()))
                    .apply_keystream(data)
            }
            Aes::A256(k) => {
                ctr::Ctr128BE::<Aes256>::from_core(CtrCore::inner_iv_init(k.clone(), iv.into()))
                    .apply_keystream(data)
            }
        }
    }
}

pub(crate) enum Gcm {
    G128(Box<Aes128Gcm>),
    G256(Box<Aes256Gcm>),
}

/// One direction's keys for one of SRTP or SRTCP.
pub(crate) enum Transform {
    CmHmac {
        aes: Box<Aes>,
        salt: [u8; 14],
        mac: Box<Hmac<Sha1>>,
        tag_len: usize,
    },
    Gcm {
        aead: Gcm,
        salt: [u8; 12],
    },
}

impl Transform {
    /// Derive session keys from the master key for SRTP (`rtcp = false`) or SRTCP.
    pub(crate) fn derive(
        master_key: &[u8],
        master_salt: &[u8],
        gcm: bool,
        tag_len: usize,
        rtcp: bool,
    ) -> Result<Self, SrtpError> {
        let (l_enc, l_auth, l_salt) = if rtcp {
            (
                kdf::LABEL_RTCP_ENCRYPTION,
                kdf::LABEL_RTCP_AUTH,
                kdf::LABEL_RTCP_SALT,
            )
        } else {
            (
                kdf::LABEL_RTP_ENCRYPTION,
                kdf::LABEL_RTP_AUTH,
                kdf::LABEL_RTP_SALT,
            )
        };
        let mut enc = [0u8; 32];
        let enc = &mut enc[..master_key.len()];
        if !kdf::derive(master_key, master_salt, l_enc, enc) {
            return Err(SrtpError::BadKeyLength);
        }
        if gcm {
            let mut salt = [0u8; 12];
            if !kdf::derive(master_key, master_salt, l_salt, &mut salt) {
                return Err(SrtpError::BadKeyLength);
            }
            let aead = match enc.len() {
                16 => Gcm::G128(Box::new(
                    Aes128Gcm::new_from_slice(enc).map_err(|_| SrtpError::BadKeyLength)?,
                )),
                _ => Gcm::G256(Box::new(
                    Aes256Gcm::new_from_slice(enc).map_err(|_| SrtpError::BadKeyLength)?,
                )),
            };
            Ok(Transform::Gcm { aead, salt })
        } else {
            let mut salt = [0u8; 14];
            let mut auth = [0u8; 20];
            if !kdf::derive(master_key, master_salt, l_salt, &mut salt)
                || !kdf::derive(master_key, master_salt, l_auth, &mut auth)
            {
                return Err(SrtpError::BadKeyLength);
            }
            Ok(Transform::CmHmac {
                aes: Box::new(Aes::new(enc)?),
                salt,
                mac: Box::new(
                    <Hmac<Sha1> as KeyInit>::new_from_slice(&auth)
                        .map_err(|_| SrtpError::BadKeyLength)?,
                ),
                tag_len,
            })
        }
    }

    /// Build a transform directly from session keys (used by RFC test vectors).
    #[cfg(test)]
    pub(crate) fn from_session_gcm(key: &[u8], salt: [u8; 12]) -> Self {
        let aead = match key.len() {
            16 => Gcm::G128(Box::new(Aes128Gcm::new_from_slice(key).unwrap())),
            _ => Gcm::G256(Box::new(Aes256Gcm::new_from_slice(key).unwrap())),
        };
        Transform::Gcm { aead, salt }
    }

    /// Authentication tag length on the wire.
    pub(crate) fn tag_len(&self) -> usize {
        match self {
            Transform::CmHmac { tag_len, .. } => *tag_len,
            Transform::Gcm { .. } => GCM_TAG_LEN,
        }
    }

    pub(crate) fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
        // IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(salt);
        for (d, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *d ^= s;
        }
        for (d, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..8]) {
            *d ^= s;
        }
        iv
    }

    pub(crate) fn gcm_iv(salt: &[u8; 12], ssrc: u32, hi: u32, lo: u16) -> [u8; 12] {
        // RTP:  00 00 || SSRC || ROC || SEQ; RTCP: 00 00 || SSRC || 00 00 || index (31 bits)
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&hi.to_be_bytes());
        iv[10..12].copy_from_slice(&lo.to_be_bytes());
        for (d, s) in iv.iter_mut().zip(salt) {
            *d ^= s;
        }
        iv
    }

    fn hmac(mac: &Hmac<Sha1>, parts: [&[u8]; 2]) -> [u8; 20] {
        let mut m = mac.clone();
        m.update(parts[0]);
        m.update(parts[1]);
        m.finalize().into_bytes().into()
    }

    /// SRTP protect: `buf[..hl]` header, `buf[hl..len]` payload; writes the tag at
    /// `buf[tag_at..tag_at + tag_len]` (the caller reserved the room; for GCM `tag_at == len`).
    pub(crate) fn protect_rtp(
        &self,
        buf: &mut [u8],
        hl: usize,
        len: usize,
        tag_at: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<(), SrtpError> {
        let roc = (index >> 16) as u32;
        match self {
            Transform::CmHmac {
                aes,
                salt,
                mac,
                tag_len,
            } => {
                aes.apply(&Self::cm_iv(salt, ssrc, index), &mut buf[hl..len]);
                let tag = Self::hmac(mac, [&buf[..len], &roc.to_be_bytes()]);
                buf[tag_at..tag_at + tag_len].copy_from_slice(&tag[..*tag_len]);
                Ok(())
            }
            Transform::Gcm { aead, salt } => {
                let iv = Self::gcm_iv(salt, ssrc, roc, index as u16);
                let (aad, rest) = buf.split_at_mut(hl);
                let (body, tail) = rest.split_at_mut(len - hl);
                let tag = gcm_seal(aead, &iv, aad, body)?;
                tail[tag_at - len..tag_at - len + GCM_TAG_LEN].copy_from_slice(&tag);
                Ok(())
            }
        }
    }

    /// SRTP unprotect: `buf[..auth_end]` is header + ciphertext (for CM, the authenticated
    /// portion), tag at `buf[tag_at..tag_at + tag_len]`. Decrypts in place; returns the
    /// plaintext length.
    pub(crate) fn unprotect_rtp(
        &self,
        buf: &mut [u8],
        hl: usize,
        body_end: usize,
        tag_at: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<usize, SrtpError> {
        let roc = (index >> 16) as u32;
        match self {
            Transform::CmHmac {
                aes,
                salt,
                mac,
                tag_len,
            } => {
                let tag = Self::hmac(mac, [&buf[..body_end], &roc.to_be_bytes()]);
                if !bool::from(tag[..*tag_len].ct_eq(&buf[tag_at..tag_at + tag_len])) {
                    return Err(SrtpError::AuthFailed);
                }
                aes.apply(&Self::cm_iv(salt, ssrc, index), &mut buf[hl..body_end]);
                Ok(body_end)
            }
            Transform::Gcm { aead, salt } => {
                let iv = Self::gcm_iv(salt, ssrc, roc, index as u16);
                let (aad, rest) = buf.split_at_mut(hl);
                let (body, tail) = rest.split_at_mut(body_end - hl);
                let tag = &tail[tag_at - body_end..tag_at - body_end + GCM_TAG_LEN];
                gcm_open(aead, &iv, aad, body, tag)?;
                Ok(body_end)
            }
        }
    }

    /// SRTCP protect of `buf[..len]` (len >= 8) with SRTCP `index` (31 bits), always
    /// encrypting (E = 1). Appends E||index and the tag. Returns the new length.
    pub(crate) fn protect_rtcp(
        &self,
        buf: &mut [u8],
        len: usize,
        ssrc: u32,
        index: u32,
        mki: &[u8],
    ) -> Result<usize, SrtpError> {
        let e_index = (0x8000_0000 | index).to_be_bytes();
        match self {
            Transform::CmHmac {
                aes,
                salt,
                mac,
                tag_len,
            } => {
                aes.apply(&Self::cm_iv(salt, ssrc, u64::from(index)), &mut buf[8..len]);
                buf[len..len + 4].copy_from_slice(&e_index);
                buf[len + 4..len + 4 + mki.len()].copy_from_slice(mki);
                let tag = Self::hmac(mac, [&buf[..len + 4], &[]]);
                let at = len + 4 + mki.len();
                buf[at..at + tag_len].copy_from_slice(&tag[..*tag_len]);
                Ok(at + tag_len)
            }
            Transform::Gcm { aead, salt } => {
                let iv = Self::gcm_iv(salt, ssrc, index >> 16, index as u16);
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&e_index);
                let tag = gcm_seal(aead, &iv, &aad, &mut buf[8..len])?;
                buf[len..len + GCM_TAG_LEN].copy_from_slice(&tag);
                let at = len + GCM_TAG_LEN;
                buf[at..at + 4].copy_from_slice(&e_index);
                buf[at + 4..at + 4 + mki.len()].copy_from_slice(mki);
                Ok(at + 4 + mki.len())
            }
        }
    }

    /// SRTCP unprotect of a whole packet `buf` with the MKI length `mki_len`. Returns the
    /// plaintext RTCP length and the SRTCP index (checked by the caller for replay *after*
    /// this returns only if authentication passed — authentication happens here).
    pub(crate) fn unprotect_rtcp(
        &self,
        buf: &mut [u8],
        mki_len: usize,
        ssrc: u32,
        index: u32,
        encrypted: bool,
    ) -> Result<usize, SrtpError> {
        let len = buf.len();
        match self {
            Transform::CmHmac {
                aes,
                salt,
                mac,
                tag_len,
            } => {
                let tag_at = len - tag_len;
                let trailer = tag_at - mki_len - 4;
                let tag = Self::hmac(mac, [&buf[..trailer + 4], &[]]);
                if !bool::from(tag[..*tag_len].ct_eq(&buf[tag_at..])) {
                    return Err(SrtpError::AuthFailed);
                }
                if encrypted {
                    aes.apply(
                        &Self::cm_iv(salt, ssrc, u64::from(index)),
                        &mut buf[8..trailer],
                    );
                }
                Ok(trailer)
            }
            Transform::Gcm { aead, salt } => {
                let trailer = len - mki_len - 4;
                let body_end = trailer - GCM_TAG_LEN;
                let iv = Self::gcm_iv(salt, ssrc, index >> 16, index as u16);
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&buf[trailer..trailer + 4]);
                if !encrypted {
                    // RFC 7714 §9.3: unencrypted SRTCP authenticates the whole packet as AAD.
                    return Err(SrtpError::Unsupported("unencrypted AEAD SRTCP"));
                }
                let (head, tail) = buf.split_at_mut(body_end);
                let tag = &tail[..GCM_TAG_LEN];
                gcm_open(aead, &iv, &aad, &mut head[8..], tag)?;
                Ok(body_end)
            }
        }
    }
}

fn gcm_seal(aead: &Gcm, iv: &[u8; 12], aad: &[u8], body: &mut [u8]) -> Result<[u8; 16], SrtpError> {
    let nonce = (*iv).into();
    let tag = match aead {
        Gcm::G128(a) => a.encrypt_inout_detached(&nonce, aad, body.into()),
        Gcm::G256(a) => a.encrypt_inout_detached(&nonce, aad, body.into()),
    }
    .map_err(|_| SrtpError::AuthFailed)?;
    Ok(tag.into())
}

fn gcm_open(
    aead: &Gcm,
    iv: &[u8; 12],
    aad: &[u8],
    body: &mut [u8],
    tag: &[u8],
) -> Result<(), SrtpError> {
    let nonce = (*iv).into();
    let mut t = [0u8; GCM_TAG_LEN];
    t.copy_from_slice(tag);
    let tag = t.into();
    match aead {
        Gcm::G128(a) => a.decrypt_inout_detached(&nonce, aad, body.into(), &tag),
        Gcm::G256(a) => a.decrypt_inout_detached(&nonce, aad, body.into(), &tag),
    }
    .map_err(|_| SrtpError::AuthFailed)
}
