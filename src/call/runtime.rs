//! The tokio shell of the B2BUA signalling: one task owns the [`Router`] (both SIP endpoints
//! and every call) and the two SIP transports (WhatsApp side, PBX side). It parses what the
//! transports deliver, feeds the endpoints, sleeps until the router's next deadline, sends
//! what the endpoints queue, and hands media actions, record updates and state changes to
//! the rest of the gateway on a channel. No per-packet media work happens here.
//!
//! Guarantees: no protocol decision is made here (that is `router`, `state`, `endpoint`);
//! unparsable input goes to `Endpoint::handle_malformed`; a failed send is reported to its
//! transaction; the loop ends when both transports are gone or `shutdown` is set.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::sip::endpoint::{Destination, Source, Transmit, TransportKind};
use crate::sip::message::{Framing, Message};
use crate::transport::{self, ConnId, Kind, Outgoing, Transport};

use crate::media::io::EngineEvent;

use super::router::{CallKey, Output, Router};
use super::state::{Leg, LegEvent, Permission};

/// One side's transport and its event stream.
#[derive(Debug)]
pub struct Side {
    pub transport: Transport,
    pub events: mpsc::Receiver<transport::Event>,
    /// SNI / certificate name for new TLS connections from this side (`wa.meta.vc`).
    pub tls_name: Option<String>,
}

/// A Graph permission answer for (business number, WhatsApp user), from the lookup task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionNotice {
    pub business: String,
    pub user: String,
    pub permission: Permission,
}

/// How long a shutdown waits for the answers to its BYEs/CANCELs (and for the 503s to go
/// out) before the task ends.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(2);

/// The signalling task.
#[derive(Debug)]
pub struct Runtime {
    router: Router,
    wa: Side,
    pbx: Side,
    outputs: mpsc::Sender<Output>,
    media: Option<mpsc::UnboundedReceiver<EngineEvent>>,
    permissions: Option<mpsc::UnboundedReceiver<PermissionNotice>>,
    drain: Duration,
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

async fn resolve(d: &Destination) -> Option<SocketAddr> {
    match d {
        Destination::Addr(a) => Some(*a),
        Destination::Name { host, port } => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .ok()?
            .next(),
    }
}

impl Runtime {
    pub fn new(router: Router, wa: Side, pbx: Side, outputs: mpsc::Sender<Output>) -> Runtime {
        Runtime {
            router,
            wa,
            pbx,
            outputs,
            media: None,
            permissions: None,
            drain: DEFAULT_DRAIN,
        }
    }

    /// Media timeouts reported by the media workers end their calls.
    pub fn with_media_events(mut self, rx: mpsc::UnboundedReceiver<EngineEvent>) -> Runtime {
        self.media = Some(rx);
        self
    }

    /// Where pending permission lookups deliver their answers (see
    /// [`Router::handle_permission`]).
    pub fn with_permission_answers(
        mut self,
        rx: mpsc::UnboundedReceiver<PermissionNotice>,
    ) -> Runtime {
        self.permissions = Some(rx);
        self
    }

    /// Bound of the shutdown drain (default [`DEFAULT_DRAIN`]).
    pub fn with_drain(mut self, drain: Duration) -> Runtime {
        self.drain = drain;
        self
    }

    fn side(&self, leg: Leg) -> &Side {
        match leg {
            Leg::WhatsApp => &self.wa,
            Leg::Pbx => &self.pbx,
        }
    }

    async fn send(&mut self, leg: Leg, t: Transmit) {
        let Some(addr) = resolve(&t.target.destination).await else {
            tracing::debug!(?leg, "cannot resolve destination");
            if let Some(id) = t.txn {
                self.router
                    .endpoint_mut(leg)
                    .handle_transport_error(Instant::now(), id);
            }
            return;
        };
        let side = self.side(leg);
        let target = match (t.target.transport, &side.tls_name) {
            (TransportKind::Tls, Some(name)) => transport::Target::tls(addr, name.clone()),
            (k, _) => transport::Target::new(kind(k), addr),
        };
        let mut out = Outgoing::new(t.message.to_bytes(), target);
        out.conn = t.target.connection.map(ConnId);
        if let Err(e) = side.transport.send(out).await {
            tracing::debug!(?leg, error = %e, "send failed");
            if let Some(id) = t.txn {
                self.router
                    .endpoint_mut(leg)
                    .handle_transport_error(Instant::now(), id);
            }
        }
    }

    async fn flush(&mut self) {
        loop {
            let next = match self.router.endpoint_mut(Leg::WhatsApp).poll_transmit() {
                Some(t) => Some((Leg::WhatsApp, t)),
                None => self
                    .router
                    .endpoint_mut(Leg::Pbx)
                    .poll_transmit()
                    .map(|t| (Leg::Pbx, t)),
            };
            let Some((leg, t)) = next else { break };
            self.send(leg, t).await;
            self.router.process(Instant::now());
        }
        while let Some(o) = self.router.poll_output() {
            if self.outputs.send(o).await.is_err() {
                tracing::debug!("output receiver gone");
            }
        }
    }

    fn incoming(&mut self, leg: Leg, ev: transport::Event) {
        let transport::Event::Message(m) = ev else {
            return;
        };
        let framing = if m.transport.is_stream() {
            Framing::Stream
        } else {
            Framing::Datagram
        };
        let source = Source {
            transport: transport_kind(m.transport),
            remote: m.source,
            connection: m.conn.map(|c| c.0),
        };
        let now = Instant::now();
        let ep = self.router.endpoint_mut(leg);
        match Message::parse(&m.bytes, framing) {
            Ok(msg) => ep.handle_incoming(now, msg, source),
            Err(e) => {
                tracing::debug!(?leg, error = %e, "unparsable message");
                ep.handle_malformed(now, &m.bytes, &e, source);
            }
        }
        self.router.process(now);
    }

    /// Runs until both transports close or `shutdown` becomes true. On shutdown every call
    /// is ended properly ([`Router::begin_shutdown`]) and the loop goes on until the router
    /// is drained (BYE/CANCEL answered) or the drain bound passes.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let (mut wa_open, mut pbx_open) = (true, true);
        let mut perms = self.permissions.take();
        let mut drain_until: Option<Instant> = None;
        self.router.start(Instant::now());
        while wa_open || pbx_open {
            if drain_until.is_none() && *shutdown.borrow() {
                let now = Instant::now();
                tracing::info!("shutdown: ending calls in progress");
                self.router.begin_shutdown(now);
                drain_until = Some(now + self.drain);
            }
            self.flush().await;
            if let Some(until) = drain_until
                && (self.router.is_drained() || Instant::now() >= until)
            {
                if !self.router.is_drained() {
                    tracing::warn!("shutdown: drain period over with requests unanswered");
                }
                break;
            }
            let wake = match (self.router.poll_timeout(), drain_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let permission = async {
                match perms.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = self.wa.events.recv(), if wa_open => match ev {
                    Some(ev) => self.incoming(Leg::WhatsApp, ev),
                    None => wa_open = false,
                },
                ev = self.pbx.events.recv(), if pbx_open => match ev {
                    Some(ev) => self.incoming(Leg::Pbx, ev),
                    None => pbx_open = false,
                },
                ev = async {
                    match self.media.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => match ev {
                    Some(EngineEvent::MediaTimeout { call, silent_for }) => {
                        tracing::info!(call, ?silent_for, "no media from WhatsApp: ending the call");
                        self.router.handle_media_timeout(Instant::now(), CallKey(call));
                    }
                    Some(EngineEvent::MediaFailed { call, reason }) => {
                        tracing::info!(call, reason, "WhatsApp media leg failed: ending the call");
                        self.router.handle_media_event(
                            Instant::now(),
                            CallKey(call),
                            LegEvent::MediaFailed { reason: reason.to_owned() },
                        );
                    }
                    None => self.media = None,
                },
                p = permission => match p {
                    Some(PermissionNotice { business, user, permission }) => {
                        self.router.handle_permission(Instant::now(), &business, &user, permission);
                    }
                    None => perms = None,
                },
                () = sleep => self.router.handle_timeout(Instant::now()),
                r = shutdown.changed(), if drain_until.is_none() => if r.is_err() { break },
            }
        }
    }
}
