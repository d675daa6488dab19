//! SIP over UDP: one datagram is one message (RFC 3261 §18.3).
//!
//! Guarantees: reads use one 64 KiB buffer per socket; datagrams larger than the framing limits
//! are dropped and counted; unframeable datagrams become [`Event::Malformed`]; CRLF keepalive
//! datagrams and STUN keepalives are ignored; sends larger than `max_udp_message` fail with a typed error.
//! UDP sockets are bound without `SO_REUSEADDR` (on Linux it would let a second process share
//! the port and steal datagrams).

use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;

use super::{
    Event, Incoming, Inner, Kind, Malformed, Outgoing, Sent, TransportError, bump, stopped,
};
use crate::sip::framing::{Frame, frame_datagram};

const RECV_BUFFER: usize = 65_535;

pub(super) async fn recv_loop(inner: Arc<Inner>, sock: Arc<UdpSocket>) {
    let Ok(local) = sock.local_addr() else {
        return;
    };
    let mut shutdown = inner.shutdown_rx();
    let mut buf = vec![0u8; RECV_BUFFER];
    let limits = inner.config.limits;
    let max = limits.max_header.saturating_add(limits.max_body);
    loop {
        let (n, source) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                // ICMP port unreachable and the like surface here; the socket stays usable.
                Err(e) => {
                    tracing::debug!(%local, error = %e, "udp recv error");
                    continue;
                }
            },
            () = stopped(&mut shutdown) => return,
        };
        let Some(data) = buf.get(..n) else { continue };
        if n > max {
            bump(&inner.counters.udp_oversize_dropped);
            tracing::debug!(%source, len = n, "oversized datagram dropped");
            continue;
        }
        if is_stun(data) {
            // RFC 5626 §4.4.2 STUN keepalives share the SIP port; they are not SIP.
            bump(&inner.counters.stun_ignored);
            continue;
        }
        match frame_datagram(Bytes::copy_from_slice(data), &limits) {
            Ok(Frame::Message(bytes)) => {
                inner
                    .emit(Event::Message(Incoming {
                        bytes,
                        source,
                        local,
                        transport: Kind::Udp,
                        conn: None,
                        tls: None,
                    }))
                    .await
            }
            Ok(Frame::Ping | Frame::Pong) => {}
            Err(error) => {
                bump(&inner.counters.framing_errors);
                tracing::debug!(%source, %error, "unframeable datagram");
                inner
                    .emit(Event::Malformed(Malformed {
                        error,
                        source,
                        local,
                        transport: Kind::Udp,
                        conn: None,
                    }))
                    .await
            }
        }
    }
}

/// A STUN message (RFC 5389 §6): top two bits zero and the magic cookie at offset 4.
fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20
        && data.first().is_some_and(|b| b & 0xC0 == 0)
        && data.get(4..8) == Some(&[0x21, 0x12, 0xA4, 0x42][..])
}

pub(super) async fn send(inner: &Inner, out: &Outgoing) -> Result<Sent, TransportError> {
    let limit = inner.config.max_udp_message;
    if out.bytes.len() > limit {
        return Err(TransportError::MessageTooLarge {
            len: out.bytes.len(),
            limit,
        });
    }
    let target = out.target.addr;
    let sock = inner
        .udp
        .iter()
        .filter_map(|s| s.local_addr().ok().map(|a| (s, a)))
        .find(|(_, a)| match out.local {
            Some(l) => *a == l,
            None => a.is_ipv4() == target.is_ipv4(),
        })
        .ok_or(TransportError::NoUdpSocket(target))?;
    sock.0
        .send_to(&out.bytes, target)
        .await
        .map_err(|source| TransportError::Io {
            addr: target,
            source,
        })?;
    Ok(Sent {
        conn: None,
        local: sock.1,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn stun_is_recognised() {
        let mut binding = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
        binding.extend_from_slice(&[7; 12]);
        assert!(super::is_stun(&binding));
        assert!(!super::is_stun(&binding[..19]));
        assert!(!super::is_stun(
            b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 0\r\n\r\n"
        ));
    }
}
