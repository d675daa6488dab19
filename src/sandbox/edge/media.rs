//! The media hook of a sandbox call and its built-in agent.
//!
//! When a call is answered the edge hands a [`MediaParams`] (the bound RTP socket and the
//! negotiated SDP/SDES parameters, or the call's Meta-like DTLS-SRTP + ICE leg) to a
//! [`MediaStarter`]. The default starter,
//! [`echo_agent`], is a small SRTP echo endpoint: it decrypts what arrives (counting packets,
//! bytes, decrypt failures and RFC 4733 digits into the call book) and, unless the user is
//! silent, sends each decrypted packet back re-encrypted with the sandbox's own key and its
//! own single SSRC. Like Meta, it never sends first: the business side sends the first
//! packet. The full sandbox media user agent (`sandbox::media_user`, Opus tone, no-media
//! hang-up) plugs in through the same [`MediaStarter`].
//!
//! Guarantees: malformed or undecryptable packets are counted, never fatal; the task ends when
//! its `AbortHandle` is aborted (call end) or its socket fails.
use crate::media::dtmf::DtmfReceiver;
use crate::media::rtp::RtpPacket;
use crate::media::sdp::Negotiated;
use crate::media::srtp::SrtpSession;
use crate::media::webrtc::{FailReason, LegReport, LegState, Side, SrtpProfile, WebrtcLeg};
use crate::sandbox::edge::calls::CallBook;
use std::sync::Arc;
use tokio::task::AbortHandle;

/// How a call's SRTP is keyed.
pub enum MediaKeying {
    /// `RTP/SAVP` with `a=crypto`: the negotiated parameters and keys.
    Sdes(Box<Negotiated>),
    /// `UDP/TLS/RTP/SAVPF`: the call's Meta-like leg (ICE-lite, DTLS), already negotiated
    /// (`meta_answer`, or `meta_offer` + `accept_answer`), not yet driven.
    Dtls(Box<WebrtcLeg>),
}

impl std::fmt::Debug for MediaKeying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaKeying::Sdes(n) => f.debug_tuple("Sdes").field(n).finish(),
            MediaKeying::Dtls(l) => f
                .debug_tuple("Dtls")
                .field(&(l.kind(), l.state(), l.local_addr()))
                .finish(),
        }
    }
}

/// A media agent's report that the user hangs up (the edge then sends BYE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaHangup {
    /// The call's SIP Call-ID.
    pub call_id: String,
    /// The call's `end_reason`: `no_media` (WhatsApp's 20 s / 30 s timers), `dtls_timeout`
    /// (no DTLS-SRTP within the connect timeout), `dtls_failed` (another fatal leg error).
    pub reason: String,
}

/// What a media agent gets when its call is answered.
#[derive(Debug)]
pub struct MediaParams {
    /// The call's RTP socket (bound, non-blocking), advertised in the sandbox's SDP.
    pub socket: std::net::UdpSocket,
    pub keying: MediaKeying,
    /// What the user sends: `Echo`, `Tone`, or `Silent` (receive and count, send nothing).
    pub mode: crate::sandbox::media_user::Mode,
    /// Where to report counters (`CallBook::with_call_id(call_id, …)`).
    pub calls: CallBook,
    pub call_id: String,
    /// SSRC of everything the agent sends.
    pub ssrc: u32,
}

/// Starts a media agent for a call; the edge aborts the returned handle when the call ends.
pub type MediaStarter = Arc<dyn Fn(MediaParams) -> AbortHandle + Send + Sync>;

/// A [`MediaStarter`] running the sandbox media user agent (`sandbox::media_user`): Opus
/// (or G.711) `mode` audio, SRTP/SRTCP, RFC 4733 digits, audio-level evidence, and
/// WhatsApp's no-media timers. Its counters are copied into the call book every 100 ms; when
/// the user hangs up on a media timeout, `on_hangup` receives a [`MediaHangup`] (the
/// edge then sends BYE). A call that cannot run it (unknown codec) falls back to
/// [`echo_agent`]'s loop. DTLS calls run [`run_dtls`] (same user on the Meta-like leg).
pub fn media_user_agent(
    mode: crate::sandbox::media_user::Mode,
    on_hangup: tokio::sync::mpsc::UnboundedSender<MediaHangup>,
) -> MediaStarter {
    use crate::sandbox::media_user::{MediaSocket, MediaUserConfig, Mode};
    Arc::new(move |p: MediaParams| {
        let on_hangup = on_hangup.clone();
        // per-call choice (user behaviour / placed call) over the agent's default
        let mode = if p.mode == Mode::Echo { mode } else { p.mode };
        tokio::spawn(async move {
            let Ok(local) = p.socket.local_addr() else {
                return;
            };
            let negotiated = match &p.keying {
                MediaKeying::Sdes(n) => n,
                MediaKeying::Dtls(_) => {
                    run_dtls(p, mode, Some(on_hangup)).await;
                    return;
                }
            };
            let cfg = match MediaUserConfig::from_negotiated(negotiated, mode) {
                Ok(mut c) => {
                    c.ssrc = p.ssrc;
                    c
                }
                Err(e) => {
                    tracing::info!(call_id = %p.call_id, error = %e, "media user unusable; echo agent instead");
                    run_echo(p).await;
                    return;
                }
            };
            // The media user owns its socket: release ours and bind the same loopback port
            // (the one in our SDP) at once.
            let MediaParams { socket, calls, call_id, .. } = p;
            drop(socket);
            let Ok(ms) = MediaSocket::bind(local).await else {
                tracing::warn!(%call_id, %local, "cannot rebind the media port");
                return;
            };
            let Ok(handle) = ms.start_with(std::time::Instant::now(), cfg) else {
                return;
            };
            let mut hung = handle.hangup();
            loop {
                let c = handle.counters();
                calls.with_call_id(&call_id, |r| {
                    r.media.rx_packets = c.rx_packets;
                    r.media.tx_packets = c.tx_packets;
                    r.media.rx_bytes = c.rx_bytes;
                    r.media.tx_bytes = c.tx_bytes;
                    r.media.decrypt_failures = c.decrypt_failures;
                    r.media.dtmf = c.dtmf.clone();
                    r.media.non_silent_rx_packets = Some(c.non_silent_rx_packets);
                    r.media.hangup = c.hangup.map(|h| format!("{h:?}"));
                });
                if hung.borrow().is_some() {
                    let _ = on_hangup.send(MediaHangup {
                        call_id: call_id.clone(),
                        reason: "no_media".into(),
                    });
                    return;
                }
                tokio::select! {
                    _ = hung.changed() => {}
                    () = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                }
            }
        })
        .abort_handle()
    })
}

/// The default [`MediaStarter`] (DTLS calls: [`run_dtls`], no hang-up reports).
pub fn echo_agent() -> MediaStarter {
    Arc::new(|p: MediaParams| tokio::spawn(run_echo(p)).abort_handle())
}

/// The DTLS-SRTP + ICE shell: drives the call's Meta-like leg and media user
/// (`media_user::DtlsUser`) on the call's socket with the wall clock, copies counters and the
/// leg's facts into the call book (every 100 ms and at the end), and reports a no-media
/// hang-up or a fatal leg failure on `on_hangup`. Ends then, or when aborted.
pub async fn run_dtls(
    p: MediaParams,
    mode: crate::sandbox::media_user::Mode,
    on_hangup: Option<tokio::sync::mpsc::UnboundedSender<MediaHangup>>,
) {
    use crate::sandbox::media_user::{DtlsEvent, DtlsUser, MediaUserConfig};
    use std::time::{Duration, Instant};
    let MediaParams {
        socket,
        keying,
        calls,
        call_id,
        ..
    } = p;
    let MediaKeying::Dtls(leg) = keying else {
        return;
    };
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let Ok(sock) = tokio::net::UdpSocket::from_std(socket) else {
        tracing::warn!(%call_id, "sandbox DTLS media: socket unusable");
        return;
    };
    let report = leg.report();
    let Some(opus_pt) = report.opus_pt else {
        return;
    };
    let cfg = MediaUserConfig::unprotected_opus(mode, local, opus_pt, report.telephone_event_pt);
    let now = Instant::now();
    let Ok(mut user) = DtlsUser::new(now, *leg, cfg) else {
        return;
    };
    let publish = |user: &DtlsUser| {
        let c = user.counters();
        let r = user.report();
        calls.with_call_id(&call_id, |rec| {
            let m = &mut rec.media;
            m.rx_packets = c.rx_packets;
            m.tx_packets = c.tx_packets;
            m.rx_bytes = c.rx_bytes;
            m.tx_bytes = c.tx_bytes;
            m.decrypt_failures = c.decrypt_failures;
            m.dtmf = c.dtmf.clone();
            m.non_silent_rx_packets = Some(c.non_silent_rx_packets);
            m.hangup = c.hangup.map(|h| format!("{h:?}"));
            apply_leg_report(m, &r);
        });
    };
    let mut buf = vec![0u8; 2048];
    let mut next_publish = now;
    loop {
        let now = Instant::now();
        user.handle_timeout(now);
        while let Some(t) = user.poll_transmit() {
            if let Err(e) = sock.send_to(&t.contents, t.destination).await {
                tracing::debug!(%call_id, error = %e, dst = %t.destination, "sandbox DTLS send failed");
            }
        }
        let mut end: Option<String> = None;
        while let Some(ev) = user.poll_event() {
            match ev {
                DtlsEvent::Connected(c) => {
                    tracing::info!(%call_id, remote = %c.remote, "sandbox user: DTLS-SRTP up");
                }
                DtlsEvent::Media(crate::sandbox::media_user::MediaEvent::HangUp { reason }) => {
                    tracing::info!(%call_id, ?reason, "sandbox user hangs up: no media");
                    end = Some("no_media".into());
                }
                DtlsEvent::Media(_) => {}
                DtlsEvent::Failed(why) => {
                    tracing::info!(%call_id, %why, "sandbox user: DTLS leg failed");
                    end = Some(
                        match why {
                            FailReason::ConnectTimeout { .. } => "dtls_timeout",
                            _ => "dtls_failed",
                        }
                        .into(),
                    );
                }
            }
        }
        if let Some(reason) = end {
            publish(&user);
            if let Some(tx) = &on_hangup {
                let _ = tx.send(MediaHangup {
                    call_id: call_id.clone(),
                    reason,
                });
            }
            return;
        }
        if now >= next_publish {
            publish(&user);
            next_publish = now + Duration::from_millis(100);
        }
        let wake = user
            .poll_timeout()
            .map_or(next_publish, |t| t.min(next_publish));
        tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    if let Some(d) = buf.get(..n) {
                        user.handle_datagram(Instant::now(), from, local, d);
                    }
                }
                Err(e) => tracing::debug!(%call_id, error = %e, "sandbox DTLS recv failed"),
            },
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

/// Copies a Meta-like leg's facts into the call's media report.
pub fn apply_leg_report(m: &mut crate::sandbox::edge::calls::MediaCounters, r: &LegReport) {
    m.key_exchange = Some("dtls".into());
    let d = &mut m.dtls;
    d.stun_requests_received = Some(r.stun_requests_received);
    d.ice_role_seen = (r.stun_requests_received > 0).then(|| {
        if r.remote_ice_controlling_seen {
            "controlling".to_string()
        } else {
            "controlled".to_string()
        }
    });
    d.regular_nomination_seen = Some(r.regular_nomination_seen);
    d.client_hello_from = r.client_hello_from.map(|s| {
        match s {
            Side::Local => "sandbox",
            Side::Remote => "gateway",
        }
        .to_string()
    });
    d.srtp_profile = r.srtp_profile.map(srtp_profile_name);
    d.dtls_state = Some(
        match r.state {
            LegState::AwaitingAnswer | LegState::Connecting => "connecting",
            LegState::Connected => "connected",
            LegState::Failed => "failed",
        }
        .to_string(),
    );
    d.dtls_failure = r.failure.as_ref().map(ToString::to_string);
    if let Some(at) = r.opus_pt {
        m.payload_type.get_or_insert(at);
        m.codec.get_or_insert_with(|| "opus/48000".to_string());
    }
}

/// RFC 5764 / RFC 7714 name of a DTLS-SRTP protection profile.
pub fn srtp_profile_name(p: SrtpProfile) -> String {
    match p {
        SrtpProfile::Aes128CmSha1_80 => "SRTP_AES128_CM_SHA1_80".into(),
        SrtpProfile::Aes128CmSha1_32 => "SRTP_AES128_CM_SHA1_32".into(),
        SrtpProfile::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM".into(),
        SrtpProfile::AeadAes256Gcm => "SRTP_AEAD_AES_256_GCM".into(),
        SrtpProfile::Other(id) => format!("0x{id:04x}"),
    }
}

/// RFC 5761 §4: with rtcp-mux, packet types 200–206 are RTCP (RTP avoids PTs 72–78).
fn is_rtcp(pkt: &[u8]) -> bool {
    pkt.get(1).is_some_and(|b| (200..=206).contains(b))
}

async fn run_echo(p: MediaParams) {
    if matches!(p.keying, MediaKeying::Dtls(_)) {
        let mode = p.mode;
        run_dtls(p, mode, None).await;
        return;
    }
    let MediaParams {
        socket,
        keying,
        mode,
        calls,
        call_id,
        ssrc,
    } = p;
    let MediaKeying::Sdes(negotiated) = keying else {
        return;
    };
    let Ok(sock) = tokio::net::UdpSocket::from_std(socket) else {
        return;
    };
    let (mut rx, mut tx) = match &negotiated.srtp {
        Some(k) => match (SrtpSession::new(&k.remote), SrtpSession::new(&k.local)) {
            (Ok(r), Ok(t)) => (Some(r), Some(t)),
            _ => {
                tracing::warn!(%call_id, "sandbox media: unusable SRTP keys");
                return;
            }
        },
        None => (None, None),
    };
    let dtmf_pt = negotiated.dtmf.as_ref().map(|c| c.payload_type);
    let mut dtmf = DtmfReceiver::new();
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            return;
        };
        let Some(data) = buf.get(..n) else { continue };
        let mut pkt = data.to_vec();
        if is_rtcp(&pkt) {
            if let Some(r) = rx.as_mut()
                && r.unprotect_rtcp_vec(&mut pkt).is_err()
            {
                calls.with_call_id(&call_id, |c| c.media.decrypt_failures += 1);
            }
            continue;
        }
        if let Some(r) = rx.as_mut()
            && r.unprotect_rtp_vec(&mut pkt).is_err()
        {
            calls.with_call_id(&call_id, |c| c.media.decrypt_failures += 1);
            continue;
        }
        let Ok(rtp) = RtpPacket::parse(&pkt) else {
            calls.with_call_id(&call_id, |c| c.media.decrypt_failures += 1);
            continue;
        };
        let payload_len = rtp.payload().len() as u64;
        let mut digits = String::new();
        if Some(rtp.payload_type()) == dtmf_pt {
            let _ = dtmf.handle_packet(rtp.timestamp(), rtp.payload());
            while let Some(d) = dtmf.poll_digit() {
                digits.push(d.digit);
            }
        }
        calls.with_call_id(&call_id, |c| {
            c.media.rx_packets += 1;
            c.media.rx_bytes += payload_len;
            c.media.dtmf.push_str(&digits);
        });
        if mode == crate::sandbox::media_user::Mode::Silent {
            continue;
        }
        // Echo: same payload, our SSRC, re-encrypted with our key, back to the sender
        // (symmetric RTP).
        if let Some(s) = pkt.get_mut(8..12) {
            s.copy_from_slice(&ssrc.to_be_bytes());
        }
        if let Some(t) = tx.as_mut()
            && t.protect_rtp_vec(&mut pkt).is_err()
        {
            continue;
        }
        if sock.send_to(&pkt, from).await.is_ok() {
            calls.with_call_id(&call_id, |c| {
                c.media.tx_packets += 1;
                c.media.tx_bytes += payload_len;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_rtcp;

    #[test]
    fn rtcp_is_told_from_rtp_by_packet_type() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 201, 0, 1]));
        assert!(!is_rtcp(&[0x80, 111, 0, 1]));
        assert!(!is_rtcp(&[0x80, 0x80 | 111, 0, 1]));
        assert!(!is_rtcp(&[0x80]));
    }
}
