//! SIP over TCP and TLS: listeners, outbound connects, and the per-connection task.
//!
//! Guarantees: one task per connection owns the socket, a bounded framer and a
//! [`ConnectionState`]; it answers pings, sends our pings (outbound connections), closes idle
//! or failed connections and removes itself from the table before reporting
//! [`Event::Closed`]. Handshakes run in their own task under a timeout, so a slow peer never
//! stalls accepting. Listeners set `SO_REUSEADDR` (restart while old connections linger in
//! TIME_WAIT) through tokio's `TcpSocket`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::connection::{Action, CloseReason, ConnectionState};
use super::table::{Cmd, Entry};
use super::tls::TlsPeer;
use super::{
    ConnId, Event, Incoming, Inner, Kind, Malformed, Sent, Target, TransportError, bump, stopped,
    write_request,
};
use crate::sip::framing::{Frame, StreamFramer};

/// Bytes read from a socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// Queued writes per connection.
const CMD_QUEUE: usize = 64;

pub(super) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

pub(super) async fn accept_loop(inner: Arc<Inner>, kind: Kind, listener: TcpListener) {
    let mut shutdown = inner.shutdown_rx();
    let Ok(local) = listener.local_addr() else {
        return;
    };
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(%local, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => return,
        };
        if inner.table().is_full() {
            bump(&inner.counters.connections_rejected);
            tracing::warn!(%peer, "connection limit reached, refusing");
            continue;
        }
        bump(&inner.counters.accepted);
        let _ = tcp.set_nodelay(true);
        // The concrete address (not the wildcard) the peer reached.
        let local = tcp.local_addr().unwrap_or(local);
        let inner = inner.clone();
        match kind {
            Kind::Tls => {
                tokio::spawn(async move {
                    let Some(config) = inner.config.tls_server.clone() else {
                        return;
                    };
                    let acceptor = TlsAcceptor::from(config);
                    let hs = timeout(inner.config.tls_handshake_timeout, acceptor.accept(tcp));
                    match hs.await {
                        Ok(Ok(tls)) => {
                            let (_, conn) = tls.get_ref();
                            let info = TlsPeer {
                                server_name: conn.server_name().map(str::to_owned),
                                peer_certificates: conn
                                    .peer_certificates()
                                    .map(<[_]>::to_vec)
                                    .unwrap_or_default(),
                                alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
                            };
                            let _ = start(&inner, tls, Kind::Tls, peer, local, false, Some(info));
                        }
                        Ok(Err(e)) => {
                            bump(&inner.counters.handshake_failures);
                            tracing::info!(%peer, error = %e, "TLS accept failed");
                        }
                        Err(_) => {
                            bump(&inner.counters.handshake_failures);
                            tracing::info!(%peer, "TLS accept timed out");
                        }
                    }
                });
            }
            _ => {
                let _ = start(&inner, tcp, Kind::Tcp, peer, local, false, None);
            }
        }
    }
}

/// Register a connection and spawn its task.
fn start<S>(
    inner: &Arc<Inner>,
    stream: S,
    kind: Kind,
    peer: SocketAddr,
    local: SocketAddr,
    outbound: bool,
    tls: Option<TlsPeer>,
) -> Result<(ConnId, Entry), TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let id = inner.next_id();
    let (tx, rx) = mpsc::channel(CMD_QUEUE);
    let tls = tls.map(Arc::new);
    let entry = {
        let mut table = inner.table();
        if !table.insert(id, kind, peer, local, outbound, tls, tx) {
            bump(&inner.counters.connections_rejected);
            return Err(TransportError::TooManyConnections(
                inner.config.max_connections,
            ));
        }
        table.get(id).cloned()
    };
    let Some(entry) = entry else {
        return Err(TransportError::UnknownConnection(id));
    };
    tracing::debug!(%id, %kind, %peer, %local, outbound, "connection up");
    tokio::spawn(run(inner.clone(), stream, id, entry.clone(), rx));
    Ok((id, entry))
}

/// Open a connection to `target` (TLS: verify its certificate against `target.host`).
pub(super) async fn connect(
    inner: &Arc<Inner>,
    target: &Target,
) -> Result<(ConnId, Entry), TransportError> {
    let addr = target.addr;
    if inner.table().is_full() {
        bump(&inner.counters.connections_rejected);
        return Err(TransportError::TooManyConnections(
            inner.config.max_connections,
        ));
    }
    let server_name = if target.kind == Kind::Tls {
        let Some(config) = inner.config.tls_client.clone() else {
            return Err(TransportError::NoTlsConfig("client"));
        };
        let name = match &target.host {
            Some(h) => ServerName::try_from(h.clone())
                .map_err(|_| TransportError::InvalidServerName(h.clone()))?,
            None => ServerName::IpAddress(addr.ip().into()),
        };
        Some((config, name))
    } else {
        None
    };
    let tcp = match timeout(inner.config.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(TransportError::Connect { addr, source }),
        Err(_) => return Err(TransportError::ConnectTimeout { addr }),
    };
    let _ = tcp.set_nodelay(true);
    let local = tcp
        .local_addr()
        .map_err(|source| TransportError::Connect { addr, source })?;
    bump(&inner.counters.connected);
    let Some((config, name)) = server_name else {
        return start(inner, tcp, Kind::Tcp, addr, local, true, None);
    };
    let host = target.host.clone().unwrap_or_else(|| addr.ip().to_string());
    let connector = TlsConnector::from(config);
    let tls = match timeout(
        inner.config.tls_handshake_timeout,
        connector.connect(name, tcp),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            bump(&inner.counters.handshake_failures);
            return Err(handshake_error(addr, host, e));
        }
        Err(_) => {
            bump(&inner.counters.handshake_failures);
            return Err(TransportError::ConnectTimeout { addr });
        }
    };
    let (_, conn) = tls.get_ref();
    let info = TlsPeer {
        server_name: Some(host),
        peer_certificates: conn
            .peer_certificates()
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
    };
    start(inner, tls, Kind::Tls, addr, local, true, Some(info))
}

fn handshake_error(addr: SocketAddr, host: String, e: std::io::Error) -> TransportError {
    let rustls_err = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_err {
        Some(rustls::Error::InvalidCertificate(reason)) => TransportError::CertificateInvalid {
            addr,
            host,
            reason: format!("{reason:?}"),
        },
        Some(other) => TransportError::TlsHandshake {
            addr,
            reason: other.to_string(),
        },
        None => TransportError::TlsHandshake {
            addr,
            reason: e.to_string(),
        },
    }
}

/// Write `bytes` on a connection. `None` if the connection is gone before writing (the caller
/// may use another one); `Some(result)` once the write was attempted.
pub(super) async fn send_on(
    entry: &Entry,
    id: ConnId,
    bytes: Bytes,
) -> Option<Result<Sent, TransportError>> {
    let (cmd, rx) = write_request(bytes);
    entry.tx.send(cmd).await.ok()?;
    match rx.await {
        Ok(Ok(())) => Some(Ok(Sent {
            conn: Some(id),
            local: entry.local,
        })),
        Ok(Err(source)) => Some(Err(TransportError::Io {
            addr: entry.peer,
            source,
        })),
        // The task closed before writing.
        Err(_) => None,
    }
}

async fn write<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    limit: std::time::Duration,
) -> std::io::Result<()> {
    match timeout(limit, async {
        stream.write_all(bytes).await?;
        stream.flush().await
    })
    .await
    {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Carry out one command from the table (a write, or a close).
async fn serve<S: AsyncWrite + Unpin>(
    cmd: Option<Cmd>,
    stream: &mut S,
    state: &mut ConnectionState,
    write_timeout: std::time::Duration,
) {
    match cmd {
        Some(Cmd::Send { bytes, done }) => {
            let r = write(stream, &bytes, write_timeout).await;
            let now = Instant::now();
            if r.is_ok() {
                state.handle_message_sent(now);
            } else {
                state.handle_peer_closed(now);
            }
            let _ = done.send(r);
        }
        Some(Cmd::Close) | None => state.handle_close(Instant::now()),
    }
}

/// Queue an event for the SIP layer; while the queue is full, keep writing what the SIP layer
/// sends on this connection, so a SIP layer that awaits `send` before draining events cannot
/// deadlock against this task.
async fn emit_serving<S: AsyncWrite + Unpin>(
    inner: &Inner,
    ev: Event,
    stream: &mut S,
    state: &mut ConnectionState,
    cmds: &mut mpsc::Receiver<Cmd>,
) {
    let mut emit = std::pin::pin!(inner.emit(ev));
    let mut stop = inner.shutdown_rx();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            () = &mut emit => return,
            () = stopped(&mut stop) => return state.handle_close(Instant::now()),
            cmd = cmds.recv(), if open => {
                open = cmd.is_some();
                serve(cmd, stream, state, inner.config.write_timeout).await;
            }
        }
    }
}

/// The connection task.
async fn run<S>(
    inner: Arc<Inner>,
    mut stream: S,
    id: ConnId,
    entry: Entry,
    mut cmds: mpsc::Receiver<Cmd>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = &inner.config;
    let mut framer = StreamFramer::new(cfg.limits);
    let mut state = ConnectionState::new(Instant::now(), cfg.timing, entry.outbound);
    let mut shutdown = inner.shutdown_rx();
    let mut buf = vec![0u8; READ_CHUNK];
    let reason = 'conn: loop {
        while let Some(action) = state.poll_action() {
            match action {
                Action::SendPing => {
                    if write(&mut stream, b"\r\n\r\n", cfg.write_timeout)
                        .await
                        .is_ok()
                    {
                        framer.expect_pong();
                    } else {
                        state.handle_peer_closed(Instant::now());
                    }
                }
                Action::SendPong => {
                    if write(&mut stream, b"\r\n", cfg.write_timeout)
                        .await
                        .is_err()
                    {
                        state.handle_peer_closed(Instant::now());
                    }
                }
                Action::Close(reason) => break 'conn reason,
            }
        }
        let deadline = state.poll_timeout();
        let sleep = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = stream.read(&mut buf), if state.reading() => {
                let now = Instant::now();
                match r {
                    Ok(0) | Err(_) => state.handle_peer_closed(now),
                    Ok(n) => {
                        let data = buf.get(..n).unwrap_or_default();
                        let mut result: Result<Option<()>, _> = framer.push(data).map(|()| None);
                        while let Ok(None) = result {
                            match framer.poll() {
                                Ok(Some(Frame::Message(bytes))) => {
                                    state.handle_message_received(now);
                                    let ev = Event::Message(Incoming {
                                        bytes,
                                        source: entry.peer,
                                        local: entry.local,
                                        transport: entry.kind,
                                        conn: Some(id),
                                        tls: entry.tls.clone(),
                                    });
                                    emit_serving(&inner, ev, &mut stream, &mut state, &mut cmds).await;
                                }
                                Ok(Some(Frame::Ping)) => state.handle_ping(now),
                                Ok(Some(Frame::Pong)) => state.handle_pong(now),
                                Ok(None) => break,
                                Err(e) => result = Err(e),
                            }
                        }
                        if let Err(error) = result {
                            bump(&inner.counters.framing_errors);
                            tracing::info!(%id, peer = %entry.peer, %error, "framing error");
                            state.handle_framing_error(now, error.sip_status().is_some());
                            let ev = Event::Malformed(Malformed {
                                error,
                                source: entry.peer,
                                local: entry.local,
                                transport: entry.kind,
                                conn: Some(id),
                            });
                            emit_serving(&inner, ev, &mut stream, &mut state, &mut cmds).await;
                        }
                    }
                }
            }
            cmd = cmds.recv() => serve(cmd, &mut stream, &mut state, cfg.write_timeout).await,
            () = sleep => state.handle_timeout(Instant::now()),
            () = stopped(&mut shutdown) => state.handle_close(Instant::now()),
        }
    };
    inner.table().remove(id);
    cmds.close();
    // Writes queued after the close decision are answered "gone" by dropping them.
    while cmds.try_recv().is_ok() {}
    let _ = timeout(cfg.write_timeout, stream.shutdown()).await;
    tracing::debug!(%id, peer = %entry.peer, ?reason, "connection closed");
    if reason != CloseReason::Local || !*inner.shutdown.borrow() {
        inner
            .emit(Event::Closed {
                conn: id,
                peer: entry.peer,
                transport: entry.kind,
                reason,
            })
            .await;
    }
}
