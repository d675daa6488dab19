//! The media hook of a sandbox call and its built-in agent.
//!
//! When a call is answered the edge hands a [`MediaParams`] (the bound RTP socket and the
//! negotiated SDP/SDES parameters) to a [`MediaStarter`]. The default starter,
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
use crate::sandbox::edge::calls::CallBook;
use std::sync::Arc;
use tokio::task::AbortHandle;

/// What a media agent gets when its call is answered.
#[derive(Debug)]
pub struct MediaParams {
    /// The call's RTP socket (bound, non-blocking), advertised in the sandbox's SDP.
    pub socket: std::net::UdpSocket,
    pub negotiated: Negotiated,
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
/// the user hangs up on a media timeout, `on_hangup` receives the call's SIP Call-ID (the
/// edge then sends BYE). A call that cannot run it (not SDES, unknown codec) falls back to
/// [`echo_agent`]'s loop.
pub fn media_user_agent(
    mode: crate::sandbox::media_user::Mode,
    on_hangup: tokio::sync::mpsc::UnboundedSender<String>,
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
            let cfg = match MediaUserConfig::from_negotiated(&p.negotiated, mode) {
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
                    let _ = on_hangup.send(call_id.clone());
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

/// The default [`MediaStarter`].
pub fn echo_agent() -> MediaStarter {
    Arc::new(|p: MediaParams| tokio::spawn(run_echo(p)).abort_handle())
}

/// RFC 5761 §4: with rtcp-mux, packet types 200–206 are RTCP (RTP avoids PTs 72–78).
fn is_rtcp(pkt: &[u8]) -> bool {
    pkt.get(1).is_some_and(|b| (200..=206).contains(b))
}

async fn run_echo(p: MediaParams) {
    let MediaParams {
        socket,
        negotiated,
        mode,
        calls,
        call_id,
        ssrc,
    } = p;
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
