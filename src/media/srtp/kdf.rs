//! SRTP key derivation (RFC 3711 §4.3, AES-CM PRF; RFC 6188 for AES-256; RFC 7714 §11 for the
//! 96-bit GCM salt), with key_derivation_rate = 0: keys are derived once per master key.
//!
//! Guarantees: output is bit-exact with RFC 3711 Appendix B.3; no heap allocation.

use aes::{Aes128, Aes256};
use ctr::cipher::{KeyIvInit, StreamCipher};

/// SRTP encryption key label.
pub const LABEL_RTP_ENCRYPTION: u8 = 0x00;
/// SRTP message authentication key label.
pub const LABEL_RTP_AUTH: u8 = 0x01;
/// SRTP salt label.
pub const LABEL_RTP_SALT: u8 = 0x02;
/// SRTCP encryption key label.
pub const LABEL_RTCP_ENCRYPTION: u8 = 0x03;
/// SRTCP message authentication key label.
pub const LABEL_RTCP_AUTH: u8 = 0x04;
/// SRTCP salt label.
pub const LABEL_RTCP_SALT: u8 = 0x05;

/// Fill `out` with PRF_n(master_key, (label || 0^48) XOR master_salt) for kdr = 0.
///
/// `master_key` is 16 or 32 bytes, `master_salt` is at most 14 bytes (a 12-byte GCM salt is
/// padded with zero octets on the right, as libsrtp and RFC 7714 do). Returns `false` on a
/// bad key length.
pub fn derive(master_key: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) -> bool {
    if master_salt.len() > 14 {
        return false;
    }
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    // x = (label || r) XOR salt, r = index DIV kdr = 0 (48 bits): label sits at octet 7.
    iv[7] ^= label;
    out.fill(0);
    match master_key.len() {
        16 => match ctr::Ctr128BE::<Aes128>::new_from_slices(master_key, &iv) {
            Ok(mut c) => c.apply_keystream(out),
            Err(_) => return false,
        },
        32 => match ctr::Ctr128BE::<Aes256>::new_from_slices(master_key, &iv) {
            Ok(mut c) => c.apply_keystream(out),
            Err(_) => return false,
        },
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::hex;

    // RFC 3711 Appendix B.3.
    const MASTER_KEY: &str = "E1F97A0D3E018BE0D64FA32C06DE4139";
    const MASTER_SALT: &str = "0EC675AD498AFEEBB6960B3AABE6";

    #[test]
    fn rfc3711_b3_cipher_key() {
        let mut out = [0u8; 16];
        assert!(derive(
            &hex(MASTER_KEY),
            &hex(MASTER_SALT),
            LABEL_RTP_ENCRYPTION,
            &mut out
        ));
        assert_eq!(out.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
    }

    #[test]
    fn rfc3711_b3_cipher_salt() {
        let mut out = [0u8; 14];
        assert!(derive(
            &hex(MASTER_KEY),
            &hex(MASTER_SALT),
            LABEL_RTP_SALT,
            &mut out
        ));
        assert_eq!(out.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    }

    #[test]
    fn rfc3711_b3_auth_key_94_octets() {
        let mut out = [0u8; 94];
        assert!(derive(
            &hex(MASTER_KEY),
            &hex(MASTER_SALT),
            LABEL_RTP_AUTH,
            &mut out
        ));
        let expected = hex(
            "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
             E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
             6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2",
        );
        assert_eq!(out.to_vec(), expected);
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut out = [0u8; 16];
        assert!(!derive(&[0u8; 15], &[0u8; 14], 0, &mut out));
        assert!(!derive(&[0u8; 16], &[0u8; 15], 0, &mut out));
    }
}
