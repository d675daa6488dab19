//! Thin tokio glue between `transport::Transport` (the only SIP I/O) and the sans-IO
//! `sip::endpoint::Endpoint`: received bytes are parsed and fed in with the wall-clock
//! `Instant`, queued `Transmit`s are serialized and sent, timers are slept on.
//!
//! Guarantees: no protocol decision is made here: parsed messages go to
//! `Endpoint::handle_incoming`, unparsable ones to `Endpoint::handle_malformed` (which answers
//! 400/505/513 when it can); a failed send is reported to its transaction
//! (`Event::TransportError` for the TU).
use crate::sip::endpoint::{Destination, Endpoint, Event, Source, Target, Transmit, TransportKind};
use crate::sip::message::{Framing, Message};
use crate::transport::{self, ConnId, Kind, Outgoing, Transport};
use std::net::SocketAddr;
use std::time::Instant;
use tokio::sync::mpsc;

pub struct Driver {
    endpoint: Endpoint,
    transport: Transport,
    rx: mpsc::Receiver<transport::Event>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

/// What `Driver::next` returns.
#[derive(Debug)]
pub enum Step {
    /// An endpoint event for the TU.
    Event(Event),
    /// The deadline passed (the TU's own timer).
    Deadline,
    /// The transport is gone.
    Closed,
}

impl Driver {
    pub fn new(
        endpoint: Endpoint,
        transport: Transport,
        rx: mpsc::Receiver<transport::Event>,
    ) -> Driver {
        Driver {
            endpoint,
            transport,
            rx,
        }
    }

    pub fn endpoint(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }

    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Sends everything the endpoint queued.
    pub async fn flush(&mut self) {
        while let Some(t) = self.endpoint.poll_transmit() {
            self.send(t).await;
        }
    }

    async fn send(&mut self, t: Transmit) {
        let Some(addr) = resolve(&t.target.destination).await else {
            tracing::debug!(?t.target, "cannot resolve destination");
            if let Some(id) = t.txn {
                self.endpoint.handle_transport_error(Instant::now(), id);
            }
            return;
        };
        let mut out = Outgoing::new(
            t.message.to_bytes(),
            transport::Target::new(kind(t.target.transport), addr),
        );
        out.conn = t.target.connection.map(ConnId);
        if let Err(e) = self.transport.send(out).await {
            tracing::debug!(error = %e, "send failed");
            if let Some(id) = t.txn {
                self.endpoint.handle_transport_error(Instant::now(), id);
            }
        }
    }

    /// Runs the endpoint (input, timers, output) until it has an event for the TU, `deadline`
    /// passes, or the transport closes.
    pub async fn next(&mut self, deadline: Option<Instant>) -> Step {
        loop {
            self.flush().await;
            if let Some(e) = self.endpoint.poll_event() {
                return Step::Event(e);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return Step::Deadline;
            }
            if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.endpoint.handle_timeout(now);
                continue;
            }
            let wake = match (self.endpoint.poll_timeout(), deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = self.rx.recv() => match ev {
                    None => return Step::Closed,
                    Some(transport::Event::Message(m)) => {
                        let framing = if m.transport.is_stream() { Framing::Stream } else { Framing::Datagram };
                        let source = Source {
                            transport: transport_kind(m.transport),
                            remote: m.source,
                            connection: m.conn.map(|c| c.0),
                        };
                        match Message::parse(&m.bytes, framing) {
                            Ok(msg) => self.endpoint.handle_incoming(Instant::now(), msg, source),
                            Err(e) => {
                                tracing::debug!(error = %e, "unparsable message");
                                self.endpoint.handle_malformed(Instant::now(), &m.bytes, &e, source);
                            }
                        }
                    }
                    Some(_) => {}
                },
                () = sleep => {
                    self.endpoint.handle_timeout(Instant::now());
                }
            }
        }
    }
}

fn kind(t: TransportKind) -> Kind {
    match t {
        TransportKind::Udp => Kind::Udp,
        TransportKind::Tcp => Kind::Tcp,
        TransportKind::Tls => Kind::Tls,
    }
}

fn transport_kind(k: Kind) -> TransportKind {
    match k {
        Kind::Udp => TransportKind::Udp,
        Kind::Tcp => TransportKind::Tcp,
        Kind::Tls => TransportKind::Tls,
    }
}

/// `Destination` → address (host names via the system resolver, A/AAAA only).
async fn resolve(d: &Destination) -> Option<SocketAddr> {
    match d {
        Destination::Addr(a) => Some(*a),
        Destination::Name { host, port } => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .ok()?
            .next(),
    }
}

/// Convenience for tests and examples: a `Target` for an address.
pub fn target(transport: TransportKind, addr: SocketAddr) -> Target {
    Target {
        transport,
        destination: Destination::Addr(addr),
        connection: None,
    }
}
