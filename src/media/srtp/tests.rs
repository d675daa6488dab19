use super::transform::{Aes, Transform};
use super::*;
use crate::media::hex;
use proptest::prelude::*;

fn rtp_packet(seq: u16, ssrc: u32, payload_len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; 12];
    rtp::RtpHeader::new(111, seq, u32::from(seq) * 960, ssrc)
        .write(&[], &mut buf)
        .unwrap();
    buf.extend((0..payload_len).map(|i| (i as u8) ^ (seq as u8)));
    buf
}

fn pair(profile: SrtpProfile) -> (SrtpSession, SrtpSession) {
    let key = MasterKey::random(profile);
    (
        SrtpSession::new(&key).unwrap(),
        SrtpSession::new(&key).unwrap(),
    )
}

/// RFC 3711 Appendix B.2: AES-CM keystream, including the blocks after 0xFEFF.
#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let aes = Aes::new(&hex("2B7E151628AED2A6ABF7158809CF4F3C")).unwrap();
    let salt: [u8; 14] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap();
    let iv = Transform::cm_iv(&salt, 0, 0);
    assert_eq!(iv.to_vec(), hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"));
    let mut ks = vec![0u8; 65282 * 16];
    aes.apply(&iv, &mut ks);
    assert_eq!(ks[..16].to_vec(), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
    assert_eq!(ks[16..32].to_vec(), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
    assert_eq!(ks[32..48].to_vec(), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
    let at = |block: usize| ks[block * 16..block * 16 + 16].to_vec();
    assert_eq!(at(0xfeff), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
    assert_eq!(at(0xff00), hex("362B7C3C6773516318A077D7FC5073AE"));
    assert_eq!(at(0xff01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));
}

const GCM_SALT: &str = "517569642070726f2071756f";
const GCM_RTP: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
                       20646976 69736120 696e2070 61727465 73207472 6573";

fn gcm_vector(key: &str, expected: &str) {
    let t = Transform::from_session_gcm(&hex(key), hex(GCM_SALT).try_into().unwrap());
    let plain = hex(GCM_RTP);
    let mut buf = plain.clone();
    let len = buf.len();
    buf.resize(len + 16, 0);
    t.protect_rtp(&mut buf, 12, len, len, 0x5501_a0b2, 0xf17b)
        .unwrap();
    assert_eq!(buf, hex(expected));
    // §16.x.2 decryption, then a one-bit tamper anywhere is rejected.
    let mut dec = buf.clone();
    let n = t
        .unprotect_rtp(&mut dec, 12, len, len, 0x5501_a0b2, 0xf17b)
        .unwrap();
    assert_eq!(dec[..n], plain[..]);
    for flip in [0, 11, 12, len - 1, len, len + 15] {
        let mut bad = buf.clone();
        bad[flip] ^= 1;
        assert_eq!(
            t.unprotect_rtp(&mut bad, 12, len, len, 0x5501_a0b2, 0xf17b),
            Err(SrtpError::AuthFailed)
        );
    }
}

/// RFC 7714 §16.1.1 / §16.1.2: AEAD_AES_128_GCM SRTP encryption and decryption.
#[test]
fn rfc7714_16_1_aes_128_gcm() {
    gcm_vector(
        "000102030405060708090a0b0c0d0e0f",
        "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca
         be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1
         6a9152cf 765ee439 0cce",
    );
}

/// RFC 7714 §16.2.1 / §16.2.2: AEAD_AES_256_GCM SRTP encryption and decryption.
#[test]
fn rfc7714_16_2_aes_256_gcm() {
    gcm_vector(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "8040f17b 8041f8d3 5501a0b2 32b1de78 a822fe12 ef9f78fa 332e33aa
         b1801238 9a58e2f3 b50b2a02 76ffae0f 1ba63799 b87b7aa3 db36dfff
         d6b0f9bb 7878d7a7 6c13",
    );
}

/// Known-answer vectors from libsrtp's `srtp_driver.c` (an independent implementation):
/// AES_CM_128_HMAC_SHA1_80 with the RFC 3711 B.3 master key, SRTP and SRTCP (index 1).
#[test]
fn libsrtp_aes_cm_128_hmac_sha1_80_known_answer() {
    let key = MasterKey::new(
        SrtpProfile::AesCm128HmacSha1_80,
        &hex("e1f97a0d3e018be0d64fa32c06de4139"),
        &hex("0ec675ad498afeebb6960b3aabe6"),
    )
    .unwrap();
    let mut tx = SrtpSession::new(&key).unwrap();
    let plain = hex("800f1234decafbad cafebabeabababab abababababababab abababab");
    let srtp =
        hex("800f1234decafbad cafebabe4e55dc4c e79978d88ca4d215 949d2402b78d6acc 99ea179b8dbb");
    let mut pkt = plain.clone();
    tx.protect_rtp_vec(&mut pkt).unwrap();
    assert_eq!(pkt, srtp);

    let mut rx = SrtpSession::new(&key).unwrap();
    rx.unprotect_rtp_vec(&mut pkt).unwrap();
    assert_eq!(pkt, plain);

    let rtcp = hex("81c8000bcafebabe abababababababab abababababababab");
    let srtcp =
        hex("81c8000bcafebabe 7128035be487b9bd bef89041f977a5a8 80000001993e08cd 54d6c1230798");
    // Our first SRTCP index is 0 (RFC 3711 §3.4); libsrtp's vector uses index 1.
    let mut first = rtcp.clone();
    tx.protect_rtcp_vec(&mut first).unwrap();
    assert_eq!(first[first.len() - 14..first.len() - 10], [0x80, 0, 0, 0]);
    let mut second = rtcp.clone();
    tx.protect_rtcp_vec(&mut second).unwrap();
    assert_eq!(second, srtcp);
    let mut got = srtcp.clone();
    rx.unprotect_rtcp_vec(&mut got).unwrap();
    assert_eq!(got, rtcp);
    // Every truncation of the valid packet is rejected.
    for cut in 1..srtp.len() {
        let mut rx = SrtpSession::new(&key).unwrap();
        assert!(
            rx.unprotect_rtp(&mut srtp.clone()[..cut]).is_err(),
            "cut {cut}"
        );
    }
}

#[test]
fn round_trip_every_profile_rtp_and_rtcp() {
    for profile in SrtpProfile::ALL {
        let (mut tx, mut rx) = pair(profile);
        for seq in 0..50u16 {
            let plain = rtp_packet(seq, 0x1234_5678, 160);
            let mut pkt = Vec::with_capacity(plain.len() + tx.rtp_overhead());
            pkt.extend_from_slice(&plain);
            let cap = pkt.capacity();
            tx.protect_rtp_vec(&mut pkt).unwrap();
            assert_eq!(pkt.capacity(), cap, "protect must not reallocate");
            assert_eq!(pkt.len(), plain.len() + profile.rtp_tag_len());
            assert_ne!(
                pkt[12..172],
                plain[12..],
                "{profile}: payload must be encrypted"
            );
            rx.unprotect_rtp_vec(&mut pkt).unwrap();
            assert_eq!(pkt, plain, "{profile}");
        }
        let mut sr = Vec::new();
        sr.extend_from_slice(&hex(
            "80c80006 12345678 00000001 00000002 00000003 00000004 00000005",
        ));
        for _ in 0..3 {
            let mut pkt = sr.clone();
            tx.protect_rtcp_vec(&mut pkt).unwrap();
            assert_eq!(pkt.len(), sr.len() + 4 + profile.rtcp_tag_len());
            assert_ne!(pkt[8..28], sr[8..]);
            rx.unprotect_rtcp_vec(&mut pkt).unwrap();
            assert_eq!(pkt, sr, "{profile}");
        }
    }
}

#[test]
fn tampered_packets_are_rejected_without_state_change() {
    for profile in SrtpProfile::ALL {
        let (mut tx, mut rx) = pair(profile);
        let mut pkt = rtp_packet(7, 42, 40);
        tx.protect_rtp_vec(&mut pkt).unwrap();
        for i in [1, 3, 11, 12, pkt.len() / 2, pkt.len() - 1] {
            let mut bad = pkt.clone();
            bad[i] ^= 0x40;
            assert!(
                rx.unprotect_rtp_vec(&mut bad).is_err(),
                "{profile} byte {i}"
            );
        }
        // The genuine packet still authenticates: failures changed nothing.
        rx.unprotect_rtp_vec(&mut pkt).unwrap();
        let mut rtcp = hex("80c90001 0000002a");
        tx.protect_rtcp_vec(&mut rtcp).unwrap();
        let mut bad = rtcp.clone();
        bad[9] ^= 1;
        assert_eq!(rx.unprotect_rtcp_vec(&mut bad), Err(SrtpError::AuthFailed));
        rx.unprotect_rtcp_vec(&mut rtcp).unwrap();
    }
}

#[test]
fn wrong_key_fails_authentication() {
    let mut tx = SrtpSession::new(&MasterKey::random(SrtpProfile::AesCm128HmacSha1_80)).unwrap();
    let mut rx = SrtpSession::new(&MasterKey::random(SrtpProfile::AesCm128HmacSha1_80)).unwrap();
    let mut pkt = rtp_packet(1, 1, 20);
    tx.protect_rtp_vec(&mut pkt).unwrap();
    assert_eq!(rx.unprotect_rtp_vec(&mut pkt), Err(SrtpError::AuthFailed));
}

#[test]
fn replays_are_rejected_rtp_and_rtcp() {
    let (mut tx, mut rx) = pair(SrtpProfile::AesCm128HmacSha1_80);
    let mut pkt = rtp_packet(100, 9, 20);
    tx.protect_rtp_vec(&mut pkt).unwrap();
    let copy = pkt.clone();
    rx.unprotect_rtp_vec(&mut pkt).unwrap();
    assert_eq!(
        rx.unprotect_rtp_vec(&mut copy.clone()),
        Err(SrtpError::Replayed)
    );
    // Far ahead, then the old one is outside the window.
    for seq in 101..=400u16 {
        let mut p = rtp_packet(seq, 9, 20);
        tx.protect_rtp_vec(&mut p).unwrap();
        if seq == 400 {
            rx.unprotect_rtp_vec(&mut p).unwrap();
        }
    }
    assert_eq!(
        rx.unprotect_rtp_vec(&mut copy.clone()),
        Err(SrtpError::TooOld)
    );

    let mut rtcp = hex("80c90001 00000009");
    tx.protect_rtcp_vec(&mut rtcp).unwrap();
    let copy = rtcp.clone();
    rx.unprotect_rtcp_vec(&mut rtcp).unwrap();
    assert_eq!(
        rx.unprotect_rtcp_vec(&mut copy.clone()),
        Err(SrtpError::Replayed)
    );
}

#[test]
fn rollover_increments_roc_and_late_packets_use_the_old_roc() {
    for profile in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        let (mut tx, mut rx) = pair(profile);
        let ssrc = 0xabcd;
        let seqs: Vec<u16> = (65530..=65535).chain(0..6).collect();
        let mut protected = Vec::new();
        for &seq in &seqs {
            let mut p = rtp_packet(seq, ssrc, 30);
            tx.protect_rtp_vec(&mut p).unwrap();
            protected.push((seq, p));
        }
        assert_eq!(tx.roc(ssrc), Some(1));
        // The receiver sees 65530 first, then everything after the wrap, then the late ones
        // from before the wrap (ROC 0), which must still authenticate and decrypt.
        let first = protected.remove(0);
        let (before, after): (Vec<_>, Vec<_>) =
            protected.into_iter().partition(|(s, _)| *s >= 65530);
        for (seq, mut p) in std::iter::once(first).chain(after).chain(before) {
            rx.unprotect_rtp_vec(&mut p)
                .unwrap_or_else(|e| panic!("{profile} seq {seq}: {e}"));
            assert_eq!(p, rtp_packet(seq, ssrc, 30));
        }
        assert_eq!(rx.roc(ssrc), Some(1));
    }
}

#[test]
fn long_stream_crosses_several_rollovers() {
    let (mut tx, mut rx) = pair(SrtpProfile::AesCm128HmacSha1_32);
    let mut seq = 0u16;
    for n in 0..(3 * 65536 + 10u32) {
        // Send every 100th packet through the receiver to keep it cheap but in sync.
        let mut p = rtp_packet(seq, 5, 4);
        tx.protect_rtp_vec(&mut p).unwrap();
        if n % 100 == 0 || n == 3 * 65536 + 9 {
            rx.unprotect_rtp_vec(&mut p).unwrap();
        }
        seq = seq.wrapping_add(1);
    }
    assert_eq!(tx.roc(5), Some(3));
    assert_eq!(rx.roc(5), Some(3));
}

#[test]
fn srtcp_index_increments_per_packet() {
    let (mut tx, mut rx) = pair(SrtpProfile::AeadAes128Gcm);
    for expected in 0u32..5 {
        let mut p = hex("80c90001 00000077");
        tx.protect_rtcp_vec(&mut p).unwrap();
        let n = p.len();
        // GCM layout: header | ciphertext | tag | E||index
        assert_eq!(p[n - 4..], (0x8000_0000 | expected).to_be_bytes());
        rx.unprotect_rtcp_vec(&mut p).unwrap();
    }
}

#[test]
fn gcm_srtcp_iv_matches_rfc7714_section_17() {
    // RFC 7714 §17: SSRC "Mars" (0x4d617273), SRTCP index 0x5d4 → IV 517524055203726f207170bb;
    // §16: SSRC 0x5501a0b2, ROC 0, SEQ 0xf17b → IV 51753c6580c2726f20718414.
    let salt: [u8; 12] = hex(GCM_SALT).try_into().unwrap();
    let index = 0x5d4u32;
    let iv = Transform::gcm_iv(&salt, 0x4d61_7273, index >> 16, index as u16);
    assert_eq!(iv.to_vec(), hex("517524055203726f207170bb"));
    let iv = Transform::gcm_iv(&salt, 0x5501_a0b2, 0, 0xf17b);
    assert_eq!(iv.to_vec(), hex("51753c6580c2726f20718414"));
}

#[test]
fn per_ssrc_state_is_independent() {
    let (mut tx, mut rx) = pair(SrtpProfile::AesCm128HmacSha1_80);
    for ssrc in [1u32, 2, 3] {
        for seq in [10u16, 11] {
            let mut p = rtp_packet(seq, ssrc, 10);
            tx.protect_rtp_vec(&mut p).unwrap();
            rx.unprotect_rtp_vec(&mut p).unwrap();
        }
    }
    assert_eq!(rx.ssrcs().collect::<Vec<_>>(), vec![1, 2, 3]);
}

#[test]
fn ssrc_table_is_bounded_and_forgeries_do_not_fill_it() {
    let (mut tx, mut rx) = pair(SrtpProfile::AesCm128HmacSha1_80);
    for ssrc in 0..MAX_STREAMS as u32 {
        let mut forged = rtp_packet(1, 1000 + ssrc, 20);
        forged.extend_from_slice(&[0; 10]);
        assert_eq!(
            rx.unprotect_rtp_vec(&mut forged),
            Err(SrtpError::AuthFailed)
        );
    }
    assert_eq!(rx.ssrcs().count(), 0);
    for ssrc in 0..MAX_STREAMS as u32 {
        let mut p = rtp_packet(1, ssrc, 20);
        tx.protect_rtp_vec(&mut p).unwrap();
        rx.unprotect_rtp_vec(&mut p).unwrap();
    }
    let mut p = rtp_packet(1, 999, 20);
    assert_eq!(tx.protect_rtp_vec(&mut p), Err(SrtpError::TooManyStreams));
}

#[test]
fn mki_is_written_and_checked() {
    for profile in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes256Gcm] {
        let key = MasterKey::random(profile);
        let mki = Some(Mki {
            value: 0x0102,
            len: 2,
        });
        let mut tx = SrtpSession::with_mki(&key, mki).unwrap();
        let mut rx = SrtpSession::with_mki(&key, mki).unwrap();
        let mut other = SrtpSession::with_mki(&key, Some(Mki { value: 3, len: 2 })).unwrap();
        let mut p = rtp_packet(1, 1, 20);
        tx.protect_rtp_vec(&mut p).unwrap();
        assert_eq!(p.len(), 32 + 2 + profile.rtp_tag_len());
        assert_eq!(
            other.unprotect_rtp_vec(&mut p.clone()),
            Err(SrtpError::MkiMismatch)
        );
        rx.unprotect_rtp_vec(&mut p).unwrap();
        let mut r = hex("80c90001 00000001");
        tx.protect_rtcp_vec(&mut r).unwrap();
        rx.unprotect_rtcp_vec(&mut r).unwrap();
        assert_eq!(r, hex("80c90001 00000001"));
    }
}

#[test]
fn index_estimation_follows_rfc3711() {
    assert_eq!(estimate_index(None, 5, 0), Some(5));
    assert_eq!(estimate_index(Some(65535), 0, 0), Some(65536));
    assert_eq!(estimate_index(Some(65536 + 2), 65534, 0), Some(65534));
    assert_eq!(estimate_index(Some(10), 65000, 0), None);
    assert_eq!(estimate_index(Some(40000), 100, 0), Some(65536 + 100));
    assert_eq!(estimate_index(Some(40000), 20000, 0), Some(20000));
}

#[test]
fn rejects_bad_keys_and_short_buffers() {
    assert!(MasterKey::new(SrtpProfile::AeadAes128Gcm, &[0; 16], &[0; 14]).is_err());
    assert!(MasterKey::from_concat(SrtpProfile::AesCm128HmacSha1_80, &[0; 29]).is_err());
    let (mut tx, _) = pair(SrtpProfile::AesCm128HmacSha1_80);
    let mut p = rtp_packet(1, 1, 10);
    let n = p.len();
    assert_eq!(tx.protect_rtp(&mut p, n), Err(SrtpError::BufferTooSmall));
    assert!(
        format!("{:?}", MasterKey::random(SrtpProfile::AesCm128HmacSha1_80)).contains("redacted")
    );
}

proptest! {
    #[test]
    fn unprotect_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..120), gcm in any::<bool>()) {
        let profile = if gcm { SrtpProfile::AeadAes128Gcm } else { SrtpProfile::AesCm128HmacSha1_32 };
        let key = MasterKey::new(profile, &[7; 16], &vec![9; profile.master_salt_len()]).unwrap();
        let mut s = SrtpSession::with_mki(&key, Some(Mki { value: 1, len: 1 })).unwrap();
        let _ = s.unprotect_rtp(&mut buf.clone());
        let _ = s.unprotect_rtcp(&mut buf.clone());
        let mut b = buf.clone();
        let n = b.len();
        b.resize(n + 64, 0);
        let _ = s.protect_rtp(&mut b, n);
        let _ = s.protect_rtcp(&mut b, n);
    }

    #[test]
    fn any_payload_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..300), seq in any::<u16>(), idx in 0usize..6) {
        let (mut tx, mut rx) = pair(SrtpProfile::ALL[idx]);
        let mut p = rtp_packet(seq, 77, 0);
        p.extend_from_slice(&payload);
        let plain = p.clone();
        tx.protect_rtp_vec(&mut p).unwrap();
        rx.unprotect_rtp_vec(&mut p).unwrap();
        prop_assert_eq!(p, plain);
    }
}
