//! The media relay core never panics on any datagram, on either leg or socket, in any order,
//! and keeps producing well-formed output (checked by the relay's own buffer bounds).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use whatsip::media::relay::{
    MAX_DATAGRAM, MediaCounters, RelayCall, RelaySpec, Side, Socket, StreamIds,
};
use whatsip::media::sdes::CryptoAttribute;
use whatsip::media::sdp::{self, AudioSession, Codec, LocalMedia};
use whatsip::media::srtp::SrtpSession;

const META_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 3480 RTP/SAVP 111 126\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:126 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\na=rtcp-mux\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n";
const PBX_ANSWER: &str = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 111 101\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

fn spec() -> &'static RelaySpec {
    static SPEC: OnceLock<RelaySpec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let lo = IpAddr::from([127, 0, 0, 1]);
        let offer = AudioSession::parse(META_OFFER.as_bytes()).unwrap();
        let (answer, _) =
            sdp::build_answer(&offer, &LocalMedia::whatsapp(lo, 40000, false)).unwrap();
        let pbx = sdp::build_offer(&LocalMedia::pbx(lo, 30000, vec![Codec::opus(111)]));
        RelaySpec::from_sdps(
            answer.to_sdp().as_bytes(),
            META_OFFER.as_bytes(),
            pbx.sdp.to_sdp().as_bytes(),
            PBX_ANSWER.as_bytes(),
        )
        .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let ids = StreamIds { ssrc: 1, seq: 65535, ts: 0 };
    let mut relay = RelayCall::new(
        t0,
        SystemTime::UNIX_EPOCH,
        spec().clone(),
        ids,
        true,
        Arc::new(MediaCounters::default()),
    );
    let mut out = vec![0u8; MAX_DATAGRAM];
    let from: SocketAddr = "127.0.0.1:20000".parse().unwrap();
    // Each chunk: one selector byte (leg, socket, time step), then a datagram.
    // "Meta" protects with the key of its offer, so WhatsApp-side input also reaches the RTP
    // path behind SRTP authentication (selector bit 7).
    let key = CryptoAttribute::parse(
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
    )
    .unwrap()
    .master_key()
    .unwrap()
    .0;
    let mut meta = SrtpSession::new(&key).unwrap();
    let mut now = t0;
    for chunk in data.split(|b| *b == 0xa5) {
        let Some((&sel, rest)) = chunk.split_first() else { continue };
        let side = if sel & 1 == 0 { Side::Pbx } else { Side::WhatsApp };
        let socket = if sel & 2 == 0 { Socket::Rtp } else { Socket::Rtcp };
        now += Duration::from_millis(u64::from((sel >> 2) & 0x1f) * 5);
        let mut d = rest.to_vec();
        if side == Side::WhatsApp && sel & 0x80 != 0 {
            let _ = meta.protect_rtp_vec(&mut d);
        }
        if let Some(tx) = relay.handle_datagram(now, side, socket, from, &mut d, &mut out) {
            assert!(tx.len <= out.len());
        }
        while let Some(tx) = relay.handle_timeout(now, &mut out) {
            assert!(tx.len <= out.len());
        }
    }
});
