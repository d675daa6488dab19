//! The only SIP I/O of whatsip: UDP sockets, TCP and TLS listeners and connections.
//!
//! Guarantees:
//! - Every received SIP message is framed by [`crate::sip::framing`] and delivered as one
//!   [`Event::Message`]; unframeable input becomes [`Event::Malformed`] (carrying the raw header
//!   so the upper layer can answer 400/413/513), after which a stream connection is closed as
//!   soon as that answer is sent (or after a short linger).
//! - Connection reuse (RFC 5923): a stream connection is found by its peer address and by any
//!   alias registered with [`Transport::alias`]; [`Transport::send`] reuses it in both
//!   directions and opens a new (TLS: server-verified, SNI, no ALPN) connection only when none
//!   is usable. The table is capped.
//! - RFC 5626 keepalives are answered; optional pings on our client connections; idle
//!   connections are closed. Timing lives in the sans-IO [`connection::ConnectionState`].
//! - Memory is bounded: framer limits per connection, 64 KiB per UDP read, bounded queues.
//! - The transport never parses or builds SIP headers beyond framing.
//!
//! Use from the SIP layer:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::path::Path;
//! use whatsip::transport::{tls, Config, Event, Outgoing, Roots, Target, Transport};
//!
//! let (transport, mut events) = Transport::bind(Config {
//!     udp: vec!["127.0.0.1:5080".parse()?],
//!     tcp: vec!["127.0.0.1:5080".parse()?],
//!     tls: vec!["127.0.0.1:5061".parse()?],
//!     tls_server: Some(tls::server_config_from_pem_files(
//!         Path::new("gw.pem"),
//!         Path::new("gw.key"),
//!     )?),
//!     tls_client: Some(tls::client_config(&Roots::System)?),
//!     ..Config::default()
//! })
//! .await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         Event::Message(m) => {
//!             // Parse m.bytes; a Via with `;alias` lets the SIP layer register its sent-by:
//!             if let Some(conn) = m.conn {
//!                 transport.alias(conn, "127.0.0.1:5999".parse()?)?;
//!             }
//!             // Answer on the same connection / from the same UDP socket.
//!             let response = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec();
//!             transport.send(Outgoing::reply_to(&m, response)).await?;
//!             // A new request toward Meta: verified TLS, SNI wa.meta.vc, no ALPN.
//!             let target = Target::tls("157.240.0.1:5061".parse()?, "wa.meta.vc");
//!             let sent = transport.send(Outgoing::new(b"OPTIONS ...".to_vec(), target)).await;
//!             if let Err(e) = sent {
//!                 let _status = e.sip_status(); // 503 for connect/TLS failures
//!             }
//!         }
//!         Event::Malformed(bad) => {
//!             if let Some(status) = bad.error.sip_status() {
//!                 // Build `status` from bad.error.header and send it with `conn: bad.conn`;
//!                 // the connection closes right after.
//!                 let _ = (status, bad.conn);
//!             }
//!         }
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

pub mod connection;
mod stream;
pub mod table;
pub mod tls;
mod udp;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

pub use connection::{CloseReason, Timing};
pub use table::ConnectionInfo;
pub use tls::{Roots, TlsConfigError, TlsPeer};

use crate::sip::framing::{FramingError, Limits};
use table::{Cmd, Table};

/// A SIP transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Datagrams (RFC 3261 §18.1.1 size rule applies).
    Udp,
    /// Plain TCP stream.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Kind {
    /// Whether messages travel on a connection (TCP, TLS).
    pub fn is_stream(self) -> bool {
        !matches!(self, Kind::Udp)
    }

    /// The Via transport token (`UDP`, `TCP`, `TLS`).
    pub fn via_token(self) -> &'static str {
        match self {
            Kind::Udp => "UDP",
            Kind::Tcp => "TCP",
            Kind::Tls => "TLS",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// Identifies one stream connection for its lifetime (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// One framed SIP message received.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The whole message: header block and body.
    pub bytes: Bytes,
    /// The peer's address (the `received`/`rport` values).
    pub source: SocketAddr,
    /// Our address it arrived on.
    pub local: SocketAddr,
    /// How it arrived.
    pub transport: Kind,
    /// The connection it arrived on (streams only); send the response with it.
    pub conn: Option<ConnId>,
    /// TLS details (SNI, peer certificates) for TLS connections.
    pub tls: Option<Arc<TlsPeer>>,
}

/// Bytes that could not be framed. For a request (`error.sip_status()` is `Some`), the upper
/// layer should answer with that status built from `error.header`, sent with `conn`; a
/// stream connection is closed right after that answer (or after [`Timing::linger`]).
#[derive(Debug, Clone)]
pub struct Malformed {
    /// What was wrong, with the start-line kind and raw header bytes.
    pub error: FramingError,
    /// The peer's address.
    pub source: SocketAddr,
    /// Our address.
    pub local: SocketAddr,
    /// How it arrived.
    pub transport: Kind,
    /// The connection (streams only).
    pub conn: Option<ConnId>,
}

/// What the transport reports to the SIP layer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A framed message.
    Message(Incoming),
    /// Input that could not be framed.
    Malformed(Malformed),
    /// A stream connection closed (flows using it are gone).
    Closed {
        /// Which one.
        conn: ConnId,
        /// Its peer.
        peer: SocketAddr,
        /// TCP or TLS.
        transport: Kind,
        /// Why.
        reason: CloseReason,
    },
}

/// Where to send a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Transport protocol.
    pub kind: Kind,
    /// Destination address (already resolved).
    pub addr: SocketAddr,
    /// Host name for TLS: SNI and the name the certificate must match (`None`: the IP).
    pub host: Option<String>,
}

impl Target {
    /// A target without a host name.
    pub fn new(kind: Kind, addr: SocketAddr) -> Self {
        Self {
            kind,
            addr,
            host: None,
        }
    }

    /// A TLS target whose certificate must match `host` (also sent as SNI).
    pub fn tls(addr: SocketAddr, host: impl Into<String>) -> Self {
        Self {
            kind: Kind::Tls,
            addr,
            host: Some(host.into()),
        }
    }
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The whole message.
    pub bytes: Bytes,
    /// Where it goes (used when `conn` is absent or gone).
    pub target: Target,
    /// Prefer this connection (e.g. the one a request arrived on).
    pub conn: Option<ConnId>,
    /// UDP: send from the socket bound to this address (e.g. the one a request arrived on).
    pub local: Option<SocketAddr>,
}

impl Outgoing {
    /// A message to `target`.
    pub fn new(bytes: impl Into<Bytes>, target: Target) -> Self {
        Self {
            bytes: bytes.into(),
            target,
            conn: None,
            local: None,
        }
    }

    /// The reply to `incoming`: same connection, or (UDP) back to its source from its local
    /// socket. Apply the RFC 3261 §18.2.2 / RFC 3581 address rules in the upper layer if the
    /// Via says otherwise, by editing `target`.
    pub fn reply_to(incoming: &Incoming, bytes: impl Into<Bytes>) -> Self {
        Self {
            bytes: bytes.into(),
            target: Target::new(incoming.transport, incoming.source),
            conn: incoming.conn,
            local: Some(incoming.local),
        }
    }
}

/// How a message was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The connection used (streams).
    pub conn: Option<ConnId>,
    /// Our address it left from.
    pub local: SocketAddr,
}

/// RFC 3261 §18.1.1: a request within 200 bytes of the path MTU (or larger) must go over a
/// congestion-controlled transport. `mtu` is the path MTU (1500 if unknown).
pub fn needs_congestion_controlled(len: usize, mtu: usize) -> bool {
    len > mtu.saturating_sub(200)
}

/// Transport failures, with their SIP meaning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A listen address could not be bound.
    #[error("bind {kind} {addr}: {source}")]
    Bind {
        kind: Kind,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// TLS listening or sending needs a configuration that was not given.
    #[error("no TLS {0} configuration")]
    NoTlsConfig(&'static str),
    /// No UDP socket of the target's address family (or at the requested local address).
    #[error("no UDP socket to send to {0}")]
    NoUdpSocket(SocketAddr),
    /// A UDP message over the configured limit: send it over TCP/TLS instead.
    #[error("message of {len} bytes exceeds the UDP limit of {limit}")]
    MessageTooLarge { len: usize, limit: usize },
    /// TCP connect failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// TCP connect or TLS handshake did not finish in time.
    #[error("timeout connecting to {addr}")]
    ConnectTimeout { addr: SocketAddr },
    /// The server's certificate did not verify (unknown issuer, wrong name, expired…).
    #[error("certificate of {addr} (expected {host}) rejected: {reason}")]
    CertificateInvalid {
        addr: SocketAddr,
        host: String,
        reason: String,
    },
    /// The TLS handshake failed otherwise (alert, protocol error).
    #[error("TLS handshake with {addr}: {reason}")]
    TlsHandshake { addr: SocketAddr, reason: String },
    /// The target host is not a valid DNS name or IP address.
    #[error("invalid TLS server name {0:?}")]
    InvalidServerName(String),
    /// The connection table is full.
    #[error("connection limit of {0} reached")]
    TooManyConnections(usize),
    /// Writing to the peer failed.
    #[error("send to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The connection named in an alias/close call does not exist.
    #[error("unknown connection {0}")]
    UnknownConnection(ConnId),
    /// The transport is shut down.
    #[error("transport shut down")]
    Shutdown,
}

impl TransportError {
    /// The SIP status a transaction should report for this failure (RFC 3261 §8.1.3.1: a
    /// transport error is treated as 503; oversize is 513).
    pub fn sip_status(&self) -> u16 {
        match self {
            TransportError::MessageTooLarge { .. } => 513,
            TransportError::Bind { .. }
            | TransportError::NoTlsConfig(_)
            | TransportError::InvalidServerName(_)
            | TransportError::UnknownConnection(_) => 500,
            _ => 503,
        }
    }
}

/// Listen addresses, TLS material, limits and timers.
#[derive(Debug, Clone)]
pub struct Config {
    /// UDP sockets to bind.
    pub udp: Vec<SocketAddr>,
    /// TCP listeners.
    pub tcp: Vec<SocketAddr>,
    /// TLS listeners (need `tls_server`).
    pub tls: Vec<SocketAddr>,
    /// Server certificate for TLS listeners ([`tls::server_config_from_pem_files`]).
    pub tls_server: Option<Arc<rustls::ServerConfig>>,
    /// Verification for outbound TLS ([`tls::client_config`]).
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
    /// Framing limits (stream and datagram).
    pub limits: Limits,
    /// Idle/keepalive/linger timers of stream connections.
    pub timing: Timing,
    /// Most simultaneous stream connections (both directions).
    pub max_connections: usize,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// TLS handshake timeout (both directions).
    pub tls_handshake_timeout: Duration,
    /// Timeout for writing one message to a stream.
    pub write_timeout: Duration,
    /// Largest message sent over UDP; larger ones fail with [`TransportError::MessageTooLarge`].
    pub max_udp_message: usize,
    /// Capacity of the event queue.
    pub event_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            udp: Vec::new(),
            tcp: Vec::new(),
            tls: Vec::new(),
            tls_server: None,
            tls_client: None,
            limits: Limits::default(),
            timing: Timing::default(),
            max_connections: 4096,
            connect_timeout: Duration::from_secs(5),
            tls_handshake_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_udp_message: 65_507,
            event_capacity: 1024,
        }
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams larger than the framing limits, dropped.
    pub udp_oversize_dropped: u64,
    /// Framing errors (stream and datagram).
    pub framing_errors: u64,
    /// Connections refused because the table was full.
    pub connections_rejected: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections we opened.
    pub connected: u64,
    /// TLS handshakes that failed.
    pub handshake_failures: u64,
    /// STUN keepalive datagrams ignored on UDP sockets.
    pub stun_ignored: u64,
}

#[derive(Debug, Default)]
struct Counters {
    udp_oversize_dropped: AtomicU64,
    framing_errors: AtomicU64,
    connections_rejected: AtomicU64,
    accepted: AtomicU64,
    connected: AtomicU64,
    handshake_failures: AtomicU64,
    stun_ignored: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Serializes connects to one (kind, address).
type ConnectGate = Arc<tokio::sync::Mutex<()>>;

struct Inner {
    config: Config,
    events: mpsc::Sender<Event>,
    table: Mutex<Table>,
    udp: Vec<Arc<UdpSocket>>,
    locals: Mutex<Vec<(Kind, SocketAddr)>>,
    next_id: AtomicU64,
    counters: Counters,
    shutdown: watch::Sender<bool>,
    /// One connect at a time per (kind, address).
    connecting: Mutex<HashMap<(Kind, SocketAddr), ConnectGate>>,
}

impl Inner {
    fn table(&self) -> MutexGuard<'_, Table> {
        // A poisoned lock only means another task panicked mid-update; the table stays usable.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next_id(&self) -> ConnId {
        ConnId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    async fn emit(&self, ev: Event) {
        // The receiver being gone means nobody listens any more; dropping is correct then.
        let _ = self.events.send(ev).await;
    }

    fn shutdown_rx(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// Shuts the transport down when the last [`Transport`] handle is dropped.
struct Guard(Arc<Inner>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.shutdown.send_replace(true);
    }
}

/// Handle to the running transport (cheap to clone). Dropping the last one shuts it down.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
    _guard: Arc<Guard>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("locals", &self.local_addrs())
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Bind every configured socket and start serving. Events arrive on the returned receiver.
    pub async fn bind(
        config: Config,
    ) -> Result<(Transport, mpsc::Receiver<Event>), TransportError> {
        if !config.tls.is_empty() && config.tls_server.is_none() {
            return Err(TransportError::NoTlsConfig("server"));
        }
        let mut udp = Vec::new();
        let mut locals = Vec::new();
        for &addr in &config.udp {
            let sock = UdpSocket::bind(addr)
                .await
                .map_err(|source| TransportError::Bind {
                    kind: Kind::Udp,
                    addr,
                    source,
                })?;
            let local = sock.local_addr().map_err(|source| TransportError::Bind {
                kind: Kind::Udp,
                addr,
                source,
            })?;
            locals.push((Kind::Udp, local));
            udp.push(Arc::new(sock));
        }
        let mut listeners = Vec::new();
        for (kind, addrs) in [(Kind::Tcp, &config.tcp), (Kind::Tls, &config.tls)] {
            for &addr in addrs {
                let l = stream::listen(addr).map_err(|source| TransportError::Bind {
                    kind,
                    addr,
                    source,
                })?;
                let local =
                    l.local_addr()
                        .map_err(|source| TransportError::Bind { kind, addr, source })?;
                locals.push((kind, local));
                listeners.push((kind, l));
            }
        }
        let (events, rx) = mpsc::channel(config.event_capacity.max(1));
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            table: Mutex::new(Table::new(config.max_connections)),
            config,
            events,
            udp: udp.clone(),
            locals: Mutex::new(locals),
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
            shutdown,
            connecting: Mutex::new(HashMap::new()),
        });
        for sock in udp {
            tokio::spawn(udp::recv_loop(inner.clone(), sock));
        }
        for (kind, l) in listeners {
            tokio::spawn(stream::accept_loop(inner.clone(), kind, l));
        }
        let guard = Arc::new(Guard(inner.clone()));
        Ok((
            Transport {
                inner,
                _guard: guard,
            },
            rx,
        ))
    }

    /// The bound addresses (with the ports the OS chose for port 0).
    pub fn local_addrs(&self) -> Vec<(Kind, SocketAddr)> {
        self.inner
            .locals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The first bound address of `kind`.
    pub fn local_addr(&self, kind: Kind) -> Option<SocketAddr> {
        self.local_addrs()
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| a)
    }

    /// Send one message: on `out.conn` if it is still open, else (streams) on a connection
    /// registered for the target address or alias, else on a new connection.
    pub async fn send(&self, out: Outgoing) -> Result<Sent, TransportError> {
        if *self.inner.shutdown.borrow() {
            return Err(TransportError::Shutdown);
        }
        if let Some(id) = out.conn {
            let entry = self.inner.table().get(id).cloned();
            if let Some(entry) = entry
                && let Some(r) = stream::send_on(&entry, id, out.bytes.clone()).await
            {
                return r;
            }
        }
        match out.target.kind {
            Kind::Udp => udp::send(&self.inner, &out).await,
            kind => {
                let found = self
                    .inner
                    .table()
                    .lookup(kind, out.target.addr)
                    .map(|(id, e)| (id, e.clone()));
                if let Some((id, entry)) = found
                    && let Some(r) = stream::send_on(&entry, id, out.bytes.clone()).await
                {
                    return r;
                }
                let (id, entry) = self.connect_once(&out.target).await?;
                stream::send_on(&entry, id, out.bytes)
                    .await
                    .unwrap_or(Err(TransportError::Io {
                        addr: out.target.addr,
                        source: std::io::ErrorKind::ConnectionAborted.into(),
                    }))
            }
        }
    }

    /// Open a connection to `target`, or use the one another sender opened meanwhile: sends to
    /// the same (kind, address) wait for a single connect instead of racing.
    async fn connect_once(
        &self,
        target: &Target,
    ) -> Result<(ConnId, table::Entry), TransportError> {
        let key = (target.kind, target.addr);
        let gate = self
            .inner
            .connecting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let result = {
            let _turn = gate.lock().await;
            let existing = self
                .inner
                .table()
                .lookup(target.kind, target.addr)
                .map(|(id, e)| (id, e.clone()));
            match existing {
                Some(found) => Ok(found),
                None => stream::connect(&self.inner, target).await,
            }
        };
        let mut connecting = self
            .inner
            .connecting
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Drop the gate once nobody else holds it (the map plus our clone).
        if Arc::strong_count(&gate) <= 2 {
            connecting.remove(&key);
        }
        result
    }

    /// Register `addr` (e.g. the Via sent-by of a request carrying `;alias`, RFC 5923) as
    /// another address reaching `conn`, so sends to it reuse the connection.
    pub fn alias(&self, conn: ConnId, addr: SocketAddr) -> Result<(), TransportError> {
        if self.inner.table().alias(conn, addr) {
            Ok(())
        } else {
            Err(TransportError::UnknownConnection(conn))
        }
    }

    /// Close a connection (after messages already queued to it are written).
    pub async fn close(&self, conn: ConnId) -> Result<(), TransportError> {
        let tx = self.inner.table().get(conn).map(|e| e.tx.clone());
        match tx {
            Some(tx) => {
                let _ = tx.send(Cmd::Close).await;
                Ok(())
            }
            None => Err(TransportError::UnknownConnection(conn)),
        }
    }

    /// Details of a live connection.
    pub fn connection(&self, conn: ConnId) -> Option<ConnectionInfo> {
        self.inner.table().info(conn)
    }

    /// All live connections.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let t = self.inner.table();
        t.ids().into_iter().filter_map(|id| t.info(id)).collect()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            udp_oversize_dropped: get(&c.udp_oversize_dropped),
            framing_errors: get(&c.framing_errors),
            connections_rejected: get(&c.connections_rejected),
            accepted: get(&c.accepted),
            connected: get(&c.connected),
            handshake_failures: get(&c.handshake_failures),
            stun_ignored: get(&c.stun_ignored),
        }
    }

    /// Stop listening and close every connection.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

/// Resolves once shutdown was requested (holds no watch guard across awaits).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Helper shared by the tasks: a oneshot pair for one write.
fn write_request(bytes: Bytes) -> (Cmd, oneshot::Receiver<std::io::Result<()>>) {
    let (done, rx) = oneshot::channel();
    (Cmd::Send { bytes, done }, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_rule() {
        assert!(!needs_congestion_controlled(1300, 1500));
        assert!(needs_congestion_controlled(1301, 1500));
        assert!(needs_congestion_controlled(1, 100));
    }

    #[test]
    fn error_statuses() {
        let e = TransportError::MessageTooLarge {
            len: 70000,
            limit: 65507,
        };
        assert_eq!(e.sip_status(), 513);
        let e = TransportError::ConnectTimeout {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
        };
        assert_eq!(e.sip_status(), 503);
    }
}
