//! SRTP/SRTCP unprotect on attacker bytes never panics and never succeeds without the key;
//! protect→unprotect of any valid RTP/RTCP input round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use whatsip::media::srtp::{MasterKey, Mki, SrtpProfile, SrtpSession};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, data)) = data.split_first() else {
        return;
    };
    let profile = SrtpProfile::ALL[usize::from(sel) % SrtpProfile::ALL.len()];
    let key = MasterKey::new(
        profile,
        &vec![0x42; profile.master_key_len()],
        &vec![0x17; profile.master_salt_len()],
    )
    .expect("fixed key");
    let mki = (sel & 0x80 != 0).then_some(Mki { value: 7, len: 2 });
    let mut rx = SrtpSession::with_mki(&key, mki).expect("session");
    let _ = rx.unprotect_rtp(&mut data.to_vec());
    let _ = rx.unprotect_rtcp(&mut data.to_vec());

    let mut tx = SrtpSession::with_mki(&key, mki).expect("session");
    let mut rx = SrtpSession::with_mki(&key, mki).expect("session");
    let mut buf = data.to_vec();
    if tx.protect_rtp_vec(&mut buf).is_ok() {
        rx.unprotect_rtp_vec(&mut buf).expect("own packet unprotects");
        assert_eq!(buf, data);
    }
    let mut buf = data.to_vec();
    if tx.protect_rtcp_vec(&mut buf).is_ok() {
        rx.unprotect_rtcp_vec(&mut buf).expect("own packet unprotects");
        assert_eq!(buf, data);
    }
});
