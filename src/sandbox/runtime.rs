//! The tokio glue of the sandbox's SIP edge: a TLS listener that presents `wa.meta.vc` (signed
//! by the sandbox CA) and refuses ALPN, the transaction layer (`sip::endpoint`), the edge
//! rules (`sandbox::edge::rules`) for business-initiated calls, and user-initiated calls
//! placed through the control API.
//!
//! Guarantees:
//! - A client offering any ALPN protocol (e.g. `sip`) gets TLS alert 120
//!   `no_application_protocol`; a client offering none completes the handshake.
//! - Every request gets the answer the rules decide; accepted business-initiated calls get
//!   100, 180 (with Meta's two Record-Route headers) and then what the user's behaviour says.
//! - User-initiated calls go to the number's configured SIP server over TLS, verified against
//!   its host name (SNI and certificate), answer the gateway's 401/407 with the number's
//!   password, check that the 200 OK echoes Record-Route unchanged (a violation otherwise),
//!   ACK and hang up with `x-wa-meta-call-duration`; unanswered calls are CANCELled after
//!   `unanswered_timeout`.
//! - Every message on the wire is recorded: in its call's transcript, or (refused requests,
//!   challenges before a call exists) in the call book's out-of-call exchange of its Call-ID;
//!   waits are bounded by transaction timers or the call's own deadlines.
//! - With a seed, the users' SDES keys come from a generator seeded per call (with
//!   `rtp_ports`, two runs of a scenario advertise byte-identical SDP); without one, from the
//!   OS-seeded RNG.
use crate::media::sdp::{self, AudioSession, LocalMedia};
use crate::media::webrtc::{MetaLikeConfig, Setup, WebrtcLeg};
use crate::sandbox::SandboxState;
use crate::sandbox::ca::SandboxCa;
use crate::sandbox::edge::calls::{
    AnswerMode, CallBook, CallDirection, CallState, MediaCounters, SipEntry,
};
use crate::sandbox::edge::media::{
    MediaHangup, MediaKeying, MediaParams, MediaStarter, apply_leg_report, media_user_agent,
};
use crate::sandbox::edge::rules::{self, EdgeConfig, EdgeRules, Refusal, RouteStyle, Verdict};
use crate::sip::auth::{DigestClient, RandomCnonce};
use crate::sip::dialog::Dialog;
use crate::sip::endpoint::{
    Destination, Endpoint, EndpointConfig, Event, Source, Target, Transmit, TransportKind, TxnId,
};
use crate::sip::header::HeaderName;
use crate::sip::message::{Framing, Message, Request, Response};
use crate::sip::method::Method;
use crate::sip::uri::{Host, Uri};
use crate::transport::{self, ConnId, Kind, Outgoing, Transport};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// ALPN value the edge "supports": no client ever offers it, so any offered protocol
/// mismatches and rustls answers alert 120 `no_application_protocol`, while clients that
/// offer no ALPN are served (rustls only enforces a match when the client offers ALPN).
pub const NO_ALPN_SENTINEL: &[u8] = b"x-whatsip-sandbox-refuses-alpn";

/// Sandbox runtime settings.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Edge TLS listener (default `127.0.0.1:5062`; port 0 for tests).
    pub edge: SocketAddr,
    /// Folder of the CA (`ca.pem`, `ca.key`).
    pub ca_dir: PathBuf,
    /// Seed for tags, Call-IDs, wacids and nonce keys (deterministic mode).
    pub seed: Option<u64>,
    pub edge_config: EdgeConfig,
    /// Where user-initiated calls connect for a SIP server host name (default
    /// `gateway.whatsip.test` → 127.0.0.1); names not listed are resolved by the system.
    pub hosts: HashMap<String, IpAddr>,
    /// Give up (CANCEL) on user-initiated calls not answered within this time.
    pub unanswered_timeout: Duration,
    /// Extra CA certificates (PEM) trusted when connecting to gateways, besides the sandbox CA.
    pub extra_roots_pem: Option<Vec<u8>>,
    /// UDP ports for the users' RTP sockets: calls take the even ports of this range in turn
    /// (wrapping, skipping busy ones). `None`: any free even port from the OS. With a seed and
    /// a range, two runs of the same scenario advertise the same SDP byte for byte.
    pub rtp_ports: Option<std::ops::RangeInclusive<u16>>,
    /// DTLS numbers: a call whose DTLS-SRTP is not up this long after the sandbox's answer
    /// (business-initiated) or the gateway's 200 OK (user-initiated) is hung up with BYE
    /// (`end_reason: "dtls_timeout"`). Default 10 s (Meta's DTLS retransmits 1/2/4 s).
    pub dtls_connect_timeout: Duration,
    /// DTLS numbers: `a=setup` of the sandbox user's answer to an `actpass` offer. `Passive`
    /// (default): the gateway must send the ClientHello, as Meta asks of businesses, and the
    /// sandbox never sends the first DTLS packet. `Active` mimics Meta's published sample
    /// answer (the sandbox then sends the ClientHello). An `active` offer is always
    /// answered `passive`.
    pub dtls_answer_setup: Setup,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            edge: "127.0.0.1:5062"
                .parse()
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 5062))),
            ca_dir: PathBuf::from(crate::sandbox::ca::DEFAULT_DIR),
            seed: None,
            edge_config: EdgeConfig::default(),
            hosts: HashMap::from([(
                crate::sandbox::ca::GATEWAY_HOST.to_string(),
                IpAddr::from([127, 0, 0, 1]),
            )]),
            unanswered_timeout: Duration::from_secs(60),
            extra_roots_pem: None,
            rtp_ports: None,
            dtls_connect_timeout: Duration::from_secs(10),
            dtls_answer_setup: Setup::Passive,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error(transparent)]
    Ca(#[from] crate::sandbox::ca::CaError),
    #[error("sandbox TLS: {0}")]
    Tls(String),
    #[error("sandbox edge transport: {0}")]
    Transport(String),
    #[error("sandbox digest: {0}")]
    Auth(#[from] crate::sip::auth::AuthError),
}

/// A user-initiated call to place (control API `POST /sandbox/calls`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct PlaceCall {
    /// The WhatsApp user: `+E164`, digits or a BSUID (`US.1349…`).
    pub from: String,
    /// The business number (`+15550001111`) or its phone_number_id.
    pub to: String,
    /// Hang up this many seconds after the answer (default: stay until the gateway hangs up).
    pub duration: Option<u64>,
    /// `x-wa-meta-cta-payload` header value.
    pub cta_payload: Option<String>,
    /// `x-wa-meta-deeplink-payload` header value.
    pub deeplink_payload: Option<String>,
    /// What the user sends once answered: `echo` (default: the caller's behaviour), `tone`,
    /// `silent`.
    pub media: Option<crate::sandbox::media_user::Mode>,
}

#[derive(Debug)]
enum Command {
    Place(PlaceCall, oneshot::Sender<Result<String, String>>),
    Hangup(String, oneshot::Sender<Result<(), String>>),
}

/// Handle to a running sandbox edge.
#[derive(Debug, Clone)]
pub struct EdgeHandle {
    pub edge_addr: SocketAddr,
    pub calls: CallBook,
    pub state: SandboxState,
    pub ca_path: PathBuf,
    commands: mpsc::Sender<Command>,
}

impl EdgeHandle {
    /// Places a user-initiated call; returns the call id.
    pub async fn place_call(&self, call: PlaceCall) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Place(call, tx))
            .await
            .map_err(|_| "sandbox edge stopped".to_string())?;
        rx.await.map_err(|_| "sandbox edge stopped".to_string())?
    }

    /// The user hangs up call `id` now (BYE if answered, CANCEL if ringing).
    pub async fn hangup(&self, id: &str) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Hangup(id.to_string(), tx))
            .await
            .map_err(|_| "sandbox edge stopped".to_string())?;
        rx.await.map_err(|_| "sandbox edge stopped".to_string())?
    }
}

/// Starts the edge on its own task with the sandbox media user agent echoing audio
/// (`media_user::Mode::Echo`); returns once the listener is bound.
pub async fn start_edge(
    config: RuntimeConfig,
    state: SandboxState,
    calls: CallBook,
) -> Result<EdgeHandle, RuntimeError> {
    start_edge_with_media(config, state, calls, |hangups| {
        media_user_agent(crate::sandbox::media_user::Mode::Echo, hangups)
    })
    .await
}

/// [`start_edge`] with another media agent. `media` gets the sender on which an agent reports
/// a [`MediaHangup`] when a call's user hangs up (the edge then sends BYE with its reason).
pub async fn start_edge_with_media(
    config: RuntimeConfig,
    state: SandboxState,
    calls: CallBook,
    media: impl FnOnce(mpsc::UnboundedSender<MediaHangup>) -> MediaStarter,
) -> Result<EdgeHandle, RuntimeError> {
    let (hangup_tx, hangups) = mpsc::unbounded_channel();
    let media = media(hangup_tx);
    let ca = SandboxCa::load_or_create(&config.ca_dir)?;
    let edge_cert = ca.issue_edge()?;
    let server = edge_server_config(&edge_cert.chain_pem, &edge_cert.key_pem)?;
    let mut roots = ca.ca_pem().as_bytes().to_vec();
    if let Some(extra) = &config.extra_roots_pem {
        roots.extend_from_slice(extra);
    }
    let client = transport::tls::client_config(&transport::tls::Roots::CaPem(roots))
        .map_err(|e| RuntimeError::Tls(e.to_string()))?;
    let (transport, rx) = Transport::bind(transport::Config {
        tls: vec![config.edge],
        tls_server: Some(server),
        tls_client: Some(client),
        ..transport::Config::default()
    })
    .await
    .map_err(|e| RuntimeError::Transport(e.to_string()))?;
    let edge_addr = transport
        .local_addr(Kind::Tls)
        .ok_or_else(|| RuntimeError::Transport("no TLS listener".into()))?;
    let seed = config.seed.unwrap_or_else(rand::random);
    let mut econf = EndpointConfig::new(
        edge_addr.ip().to_string(),
        Some(edge_addr.port()),
        format!("wa{seed:x}"),
    );
    econf.supported = vec!["timer".into()];
    let endpoint = Endpoint::new(econf);
    let now = Instant::now();
    let mut secret = [0u8; 32];
    let h = sha2_bytes(&format!("sandbox-nonce-{seed}"));
    secret.copy_from_slice(&h);
    let rules = EdgeRules::new(config.edge_config.clone(), secret, now)?;
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let mut edge_style = config.edge_config.route_style.clone();
    if let RouteStyle::Loopback(a) = &mut edge_style
        && a.port() == 0
    {
        *a = edge_addr;
    }
    let core = Core {
        endpoint,
        transport,
        rx,
        commands: cmd_rx,
        rules,
        state: state.clone(),
        calls: calls.clone(),
        config,
        record_route: edge_style.record_route(),
        route_style: edge_style,
        edge_addr,
        seed,
        counter: 0,
        rtp_next: 0,
        uas: HashMap::new(),
        uac: HashMap::new(),
        timers: Vec::new(),
        media,
        hangups,
    };
    tokio::spawn(core.run());
    tracing::info!(%edge_addr, "sandbox SIP edge (TLS, wa.meta.vc) listening");
    Ok(EdgeHandle {
        edge_addr,
        calls,
        state,
        ca_path: ca.ca_path(),
        commands: cmd_tx,
    })
}

fn sha2_bytes(s: &str) -> [u8; 32] {
    use sha2::Digest;
    let d = sha2::Sha256::digest(s.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(&d);
    out
}

/// The edge's rustls server config: the `wa.meta.vc` chain, no client auth, ALPN refused.
pub fn edge_server_config(
    chain_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, RuntimeError> {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RuntimeError::Tls(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| RuntimeError::Tls(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| RuntimeError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| RuntimeError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![NO_ALPN_SENTINEL.to_vec()];
    Ok(Arc::new(config))
}

/// Phase of a business-initiated call (edge = UAS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UasPhase {
    Ringing,
    Answered,
    Confirmed,
    Ended,
}

#[derive(Debug)]
struct UasCall {
    txn: TxnId,
    dialog: Dialog,
    phase: UasPhase,
    business: String,
    user: String,
    answer_sdp: Option<String>,
    answered_at: Option<Instant>,
    conn: Option<u64>,
    media: MediaSlot,
}

/// A call's media: the socket advertised in our SDP until the agent takes it, the
/// negotiated parameters (SDES) or the Meta-like leg (DTLS), the running agent.
#[derive(Debug)]
struct MediaSlot {
    socket: Option<std::net::UdpSocket>,
    keying: Option<MediaKeying>,
    /// User-initiated DTLS calls: the leg of our offer until the 200 OK's answer.
    offer_leg: Option<Box<WebrtcLeg>>,
    offer: Option<sdp::Offer>,
    task: Option<tokio::task::AbortHandle>,
    mode: crate::sandbox::media_user::Mode,
}

impl Default for MediaSlot {
    fn default() -> Self {
        MediaSlot {
            socket: None,
            keying: None,
            offer_leg: None,
            offer: None,
            task: None,
            mode: crate::sandbox::media_user::Mode::Echo,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UacPhase {
    Calling,
    Ringing,
    Answered,
    Ending,
    Ended,
}

#[derive(Debug)]
struct UacCall {
    invite_txn: TxnId,
    /// The INVITE as we built it (without Via), for re-sends with credentials.
    invite: Request,
    target: Target,
    digest: DigestClient,
    auth_rounds: u32,
    phase: UacPhase,
    dialog: Option<Dialog>,
    duration: Option<Duration>,
    answered_at: Option<Instant>,
    conn: Option<u64>,
    wacid: String,
    bye_txn: Option<TxnId>,
    media: MediaSlot,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Timer {
    /// Business-initiated: the user's behaviour acts (answer, reject, give up).
    UasAct(String),
    /// User-initiated: the user hangs up.
    UacHangup(String),
    /// User-initiated: nobody answered in time; CANCEL.
    UacGiveUp(String),
}

struct Core {
    endpoint: Endpoint,
    transport: Transport,
    rx: mpsc::Receiver<transport::Event>,
    commands: mpsc::Receiver<Command>,
    rules: EdgeRules,
    state: SandboxState,
    calls: CallBook,
    config: RuntimeConfig,
    route_style: RouteStyle,
    record_route: [String; 2],
    edge_addr: SocketAddr,
    seed: u64,
    counter: u64,
    /// Offset in `config.rtp_ports` of the next RTP port to try.
    rtp_next: u32,
    /// By SIP Call-ID.
    uas: HashMap<String, UasCall>,
    uac: HashMap<String, UacCall>,
    timers: Vec<(Instant, Timer)>,
    media: MediaStarter,
    /// Call-IDs whose media agent hung up (no-media timers).
    hangups: mpsc::UnboundedReceiver<MediaHangup>,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn entry(dir: &str, msg: &Message, at_ms: u64) -> SipEntry {
    let first_line = match msg {
        Message::Request(r) => format!("{} {} SIP/2.0", r.method, r.uri),
        Message::Response(r) => format!("SIP/2.0 {} {}", r.status, r.reason),
    };
    SipEntry {
        dir: dir.to_string(),
        at_ms,
        first_line,
        headers: msg
            .headers()
            .0
            .iter()
            .map(|h| (h.name.as_str().to_string(), h.value.clone()))
            .collect(),
        body: String::from_utf8_lossy(msg.body()).into_owned(),
    }
}

fn call_id_of(msg: &Message) -> Option<String> {
    msg.headers().call_id().ok().map(str::to_string)
}

impl Core {
    async fn run(mut self) {
        let started = Instant::now();
        loop {
            self.flush(started).await;
            while let Some(e) = self.endpoint.poll_event() {
                self.handle_event(Instant::now(), e);
                self.flush(started).await;
            }
            let now = Instant::now();
            if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                self.endpoint.handle_timeout(now);
                continue;
            }
            if let Some(pos) = self.timers.iter().position(|(at, _)| *at <= now) {
                let (_, t) = self.timers.remove(pos);
                self.handle_timer(now, t);
                continue;
            }
            let wake = self
                .timers
                .iter()
                .map(|(at, _)| *at)
                .chain(self.endpoint.poll_timeout())
                .min();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = self.rx.recv() => match ev {
                    None => return,
                    Some(transport::Event::Message(m)) => self.incoming(m, started),
                    Some(_) => {}
                },
                cmd = self.commands.recv() => match cmd {
                    None => return,
                    Some(Command::Place(call, reply)) => {
                        let r = self.place(Instant::now(), call);
                        let _ = reply.send(r);
                    }
                    Some(Command::Hangup(id, reply)) => {
                        let r = self.user_hangup(Instant::now(), &id);
                        let _ = reply.send(r);
                    }
                },
                Some(h) = self.hangups.recv() => {
                    let now = Instant::now();
                    if self.uas.contains_key(&h.call_id) {
                        self.uas_bye(now, &h.call_id, &h.reason);
                    } else {
                        let _ = self.uac_hangup(now, &h.call_id, &h.reason);
                    }
                }
                () = sleep => {}
            }
        }
    }

    fn incoming(&mut self, m: transport::Incoming, started: Instant) {
        let source = Source {
            transport: match m.transport {
                Kind::Udp => TransportKind::Udp,
                Kind::Tcp => TransportKind::Tcp,
                Kind::Tls => TransportKind::Tls,
            },
            remote: m.source,
            connection: m.conn.map(|c| c.0),
        };
        let framing = if m.transport.is_stream() {
            Framing::Stream
        } else {
            Framing::Datagram
        };
        match Message::parse(&m.bytes, framing) {
            Ok(msg) => {
                // RFC 5923: a Via `alias` lets us reuse this connection toward its sent-by.
                if let (Some(conn), Message::Request(r)) = (m.conn, &msg)
                    && let Ok(via) = r.headers.top_via()
                    && via.params.contains("alias")
                    && let Host::Ipv4(ip) = via.host
                {
                    let port = via.port.unwrap_or(5061);
                    let _ = self.transport.alias(conn, SocketAddr::from((ip, port)));
                }
                if let Some(cid) = call_id_of(&msg) {
                    let at = started.elapsed().as_millis() as u64;
                    self.calls.record(&cid, entry("received", &msg, at));
                }
                self.endpoint.handle_incoming(Instant::now(), msg, source);
            }
            Err(e) => {
                tracing::debug!(error = %e, "sandbox edge: unparsable message");
                self.endpoint
                    .handle_malformed(Instant::now(), &m.bytes, &e, source);
            }
        }
    }

    async fn flush(&mut self, started: Instant) {
        while let Some(t) = self.endpoint.poll_transmit() {
            if let Some(cid) = call_id_of(&t.message) {
                let at = started.elapsed().as_millis() as u64;
                self.calls.record(&cid, entry("sent", &t.message, at));
            }
            self.send(t).await;
        }
    }

    async fn send(&mut self, t: Transmit) {
        let kind = match t.target.transport {
            TransportKind::Udp => Kind::Udp,
            TransportKind::Tcp => Kind::Tcp,
            TransportKind::Tls => Kind::Tls,
        };
        let target = match &t.target.destination {
            Destination::Addr(a) => transport::Target::new(kind, *a),
            Destination::Name { host, port } => {
                let ip = match self.config.hosts.get(&host.to_ascii_lowercase()) {
                    Some(ip) => Some(*ip),
                    None => tokio::net::lookup_host((host.as_str(), *port))
                        .await
                        .ok()
                        .and_then(|mut a| a.next())
                        .map(|a| a.ip()),
                };
                let Some(ip) = ip else {
                    tracing::info!(%host, "sandbox edge: cannot resolve");
                    if let Some(cid) = call_id_of(&t.message) {
                        self.transport_failed(&cid, &format!("cannot resolve {host}"));
                    }
                    if let Some(id) = t.txn {
                        self.endpoint.handle_transport_error(Instant::now(), id);
                    }
                    return;
                };
                let addr = SocketAddr::new(ip, *port);
                if kind == Kind::Tls {
                    transport::Target::tls(addr, host.clone())
                } else {
                    transport::Target::new(kind, addr)
                }
            }
        };
        let mut out = Outgoing::new(t.message.to_bytes(), target);
        out.conn = t.target.connection.map(ConnId);
        if let Err(e) = self.transport.send(out).await {
            tracing::info!(error = %e, "sandbox edge: send failed");
            if let Some(cid) = call_id_of(&t.message) {
                self.transport_failed(&cid, &e.to_string());
            }
            if let Some(id) = t.txn {
                self.endpoint.handle_transport_error(Instant::now(), id);
            }
        }
    }

    fn transport_failed(&mut self, call_id: &str, why: &str) {
        if let Some(c) = self.uac.get_mut(call_id)
            && c.phase == UacPhase::Calling
        {
            c.phase = UacPhase::Ended;
            let why = why.to_string();
            self.calls.with_call_id(call_id, |r| {
                r.state = CallState::Failed;
                r.end_reason = Some(format!("transport: {why}"));
            });
        }
    }

    fn next_n(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    // ------------------------------------------------------------------ events

    fn handle_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Request {
                id,
                request,
                source,
            } => self.request(now, id, *request, source),
            Event::Ack { request, .. } => self.ack(&request),
            Event::Cancelled { invite, cancel } => {
                let _ = self.endpoint.respond(now, invite, 487);
                if let Ok(cid) = cancel.headers.call_id()
                    && let Some(c) = self.uas.get_mut(cid)
                {
                    c.phase = UasPhase::Ended;
                    self.calls.with_call_id(cid, |r| {
                        r.state = CallState::Rejected;
                        r.status = Some(487);
                        r.end_reason = Some("cancel".into());
                    });
                }
            }
            Event::Response { id, response } => self.response(now, id, *response),
            Event::Timeout { id } | Event::TransportError { id } => self.txn_failed(id),
            Event::AckTimeout { response, .. } => {
                if let Ok(cid) = response.headers.call_id() {
                    let cid = cid.to_string();
                    self.calls.violation(
                        &cid,
                        "no ACK for the 200 OK within 64*T1 (ACK not routed through Meta's Record-Route?)",
                    );
                    self.uas_bye(now, &cid, "no_ack");
                }
            }
        }
    }

    fn reply(&mut self, now: Instant, id: TxnId, refusal: &Refusal) {
        if let Some(mut resp) = self
            .endpoint
            .make_response(id, refusal.status, &refusal.reason)
        {
            for (n, v) in &refusal.headers {
                resp.headers.push(n.clone(), v.clone());
            }
            let _ = self.endpoint.send_response(now, id, resp);
        }
    }

    fn request(&mut self, now: Instant, id: TxnId, req: Request, source: Source) {
        let cid = req.headers.call_id().unwrap_or_default().to_string();
        let has_to_tag = req.headers.to().ok().is_some_and(|t| t.tag().is_some());
        if has_to_tag {
            if self.uas.contains_key(&cid) || self.uac.contains_key(&cid) {
                self.in_dialog(now, id, &req, &cid);
            } else {
                let _ = self.endpoint.respond(now, id, 481);
            }
            return;
        }
        let verdict = self
            .rules
            .decide(now, source.remote.ip(), &req, &self.state, now_unix());
        match verdict {
            Verdict::Refuse(r) => {
                tracing::info!(status = r.status, method = %req.method, "sandbox edge refuses");
                self.reply(now, id, &r);
            }
            Verdict::Challenge(c) => {
                if let Some(mut resp) = self.endpoint.make_response(id, c.status, c.reason_phrase())
                {
                    for v in &c.values {
                        resp.headers
                            .push(HeaderName::parse(c.header_name), v.clone());
                    }
                    let _ = self.endpoint.send_response(now, id, resp);
                }
            }
            Verdict::Options => {
                if let Some(mut resp) = self.endpoint.make_response(id, 200, "OK") {
                    resp.headers.push(HeaderName::Allow, rules::ALLOW);
                    let _ = self.endpoint.send_response(now, id, resp);
                }
            }
            Verdict::Accept(call) => self.accept(now, id, &req, source, call),
        }
    }

    fn meta_headers(&self, resp: &mut Response) {
        for rr in &self.record_route {
            resp.headers.push(HeaderName::RecordRoute, rr.clone());
        }
        resp.headers.push(HeaderName::Allow, rules::ALLOW);
        resp.headers
            .push(HeaderName::parse("X-FB-External-Domain"), "wa.meta.vc");
    }

    fn edge_contact(&self, user: &str) -> String {
        match &self.route_style {
            RouteStyle::Meta => format!("sip:{user}@wa.meta.vc;transport=tls;ob"),
            RouteStyle::Loopback(a) => format!("sip:{user}@{a};transport=tls;ob"),
        }
    }

    fn accept(
        &mut self,
        now: Instant,
        id: TxnId,
        req: &Request,
        source: Source,
        call: rules::BusinessCall,
    ) {
        let cid = req.headers.call_id().unwrap_or_default().to_string();
        let Some(tag) = self.endpoint.local_tag(id).map(str::to_string) else {
            return;
        };
        let contact =
            Uri::parse(&self.edge_contact(&call.user)).unwrap_or_else(|_| req.uri.clone());
        let dialog = match Dialog::uas(req, &tag, contact) {
            Ok(d) => d,
            Err(e) => {
                let r = Refusal {
                    status: e.sip_status(),
                    reason: String::new(),
                    headers: vec![(HeaderName::Allow, rules::ALLOW.to_string())],
                };
                self.reply(now, id, &r);
                return;
            }
        };
        // SDP answer mirroring the offer's payload types (SDES).
        let target = self.state.sip_target(&call.business);
        let g711 = target
            .as_ref()
            .is_some_and(|t| !t.additional_codecs.is_empty());
        let dtls_number = target.as_ref().is_some_and(is_dtls_target);
        let key = self
            .state
            .lock()
            .user_key(&call.user)
            .unwrap_or_else(|| call.user.trim_start_matches('+').to_string());
        let behaviour = self.calls.behaviour(&key);
        let mut media = MediaCounters::default();
        let mut slot = MediaSlot::default();
        let answer_sdp = match AudioSession::parse(&req.body) {
            Ok(offer) => {
                // The number's key exchange decides; Meta's answer to the other kind is
                // undocumented: 488 (docs/sandbox.md).
                if offer.proto.is_dtls() != dtls_number {
                    let why = format!(
                        "SDP: {} uses {} key exchange, the offer is {}",
                        call.business,
                        if dtls_number { "DTLS" } else { "SDES" },
                        offer.proto.as_str()
                    );
                    self.reply(now, id, &not_acceptable(&why));
                    return;
                }
                let Some((socket, port)) = self.bind_media() else {
                    let r = Refusal {
                        status: 503,
                        reason: "Service Unavailable".into(),
                        headers: vec![(HeaderName::Allow, rules::ALLOW.to_string())],
                    };
                    self.reply(now, id, &r);
                    return;
                };
                slot.socket = Some(socket);
                let local_rtp = SocketAddr::new(self.edge_addr.ip(), port);
                if dtls_number {
                    // The leg's connect timer starts now; the gateway learns our answer only
                    // with the 200 OK, `answer_delay_ms` later.
                    let delay = Duration::from_millis(behaviour.answer_delay_ms);
                    match self.meta_answer(now, local_rtp, &req.body, delay) {
                        Ok((leg, answer)) => {
                            media.key_exchange = Some("dtls".into());
                            media.local_rtp = Some(local_rtp.to_string());
                            media.remote_rtp = Some(offer.rtp_addr().to_string());
                            apply_leg_report(&mut media, &leg.report());
                            slot.keying = Some(MediaKeying::Dtls(Box::new(leg)));
                            Some(answer)
                        }
                        Err(e) => {
                            self.reply(now, id, &not_acceptable(&format!("SDP: {e}")));
                            return;
                        }
                    }
                } else {
                    media.key_exchange = Some("sdes".into());
                    let local = LocalMedia::whatsapp(self.edge_addr.ip(), port, g711);
                    let built = match self.key_rng() {
                        Some(mut rng) => sdp::build_answer_with_rng(&offer, &local, &mut rng),
                        None => sdp::build_answer(&offer, &local),
                    };
                    match built {
                        Ok((answer, neg)) => {
                            media.remote_rtp = Some(neg.remote_rtp.to_string());
                            media.local_rtp =
                                Some(SocketAddr::new(self.edge_addr.ip(), port).to_string());
                            media.codec =
                                Some(format!("{}/{}", neg.codec.name, neg.codec.clock_rate));
                            media.payload_type = Some(neg.codec.payload_type);
                            slot.keying = Some(MediaKeying::Sdes(Box::new(neg)));
                            Some(answer.to_sdp())
                        }
                        Err(e) => {
                            self.reply(now, id, &not_acceptable(&format!("SDP: {e}")));
                            return;
                        }
                    }
                }
            }
            Err(_) if req.body.is_empty() => None,
            Err(e) => {
                let r = Refusal {
                    status: 488,
                    reason: "Not Acceptable Here".into(),
                    headers: vec![
                        (HeaderName::Allow, rules::ALLOW.to_string()),
                        (HeaderName::Warning, format!("399 wa.meta.vc \"SDP: {e}\"")),
                    ],
                };
                self.reply(now, id, &r);
                return;
            }
        };
        self.next_n();
        self.calls.create(
            CallDirection::BusinessInitiated,
            &call.business,
            &call.user,
            &cid,
        );
        self.calls.with_call_id(&cid, |r| {
            r.media = media;
            // `incoming` recorded the INVITE (and any 407 before it) under its Call-ID, which
            // `create` moved here; only an evicted exchange leaves the transcript empty
            if r.sip.is_empty() {
                r.sip
                    .push(entry("received", &Message::Request(req.clone()), 0));
            }
        });
        // 100 Trying, then (unless busy) 180 Ringing with Meta's headers.
        let _ = self.endpoint.respond(now, id, 100);
        let at = match behaviour.answer {
            AnswerMode::Busy => now,
            AnswerMode::NoAnswer => now + Duration::from_millis(behaviour.ring_timeout_ms),
            _ => now + Duration::from_millis(behaviour.answer_delay_ms),
        };
        if behaviour.answer != AnswerMode::Busy
            && let Some(mut r180) = self.endpoint.make_response(id, 180, "Ringing")
        {
            self.meta_headers(&mut r180);
            r180.headers.push(
                HeaderName::Contact,
                format!("<{}>", self.edge_contact(&call.user)),
            );
            let _ = self.endpoint.send_response(now, id, r180);
            self.calls
                .with_call_id(&cid, |r| r.state = CallState::Ringing);
        }
        self.uas.insert(
            cid.clone(),
            UasCall {
                txn: id,
                dialog,
                phase: UasPhase::Ringing,
                business: call.business,
                user: key,
                answer_sdp,
                answered_at: None,
                conn: source.connection,
                media: MediaSlot {
                    mode: if behaviour.answer == AnswerMode::Silent {
                        crate::sandbox::media_user::Mode::Silent
                    } else {
                        behaviour.media
                    },
                    ..slot
                },
            },
        );
        self.timers.push((at, Timer::UasAct(cid)));
    }

    fn handle_timer(&mut self, now: Instant, t: Timer) {
        match t {
            Timer::UasAct(cid) => self.uas_act(now, &cid),
            Timer::UacHangup(cid) => {
                let _ = self.uac_hangup(now, &cid, "user_hangup");
            }
            Timer::UacGiveUp(cid) => {
                if let Some(c) = self.uac.get(&cid)
                    && matches!(c.phase, UacPhase::Calling | UacPhase::Ringing)
                {
                    let txn = c.invite_txn;
                    let _ = self.endpoint.send_cancel(now, txn);
                    self.calls.with_call_id(&cid, |r| {
                        r.end_reason = Some("unanswered_timeout".into());
                    });
                }
            }
        }
    }

    fn uas_act(&mut self, now: Instant, cid: &str) {
        let Some(c) = self.uas.get(cid) else { return };
        if c.phase != UasPhase::Ringing {
            return;
        }
        let behaviour = self.calls.behaviour(&c.user);
        let txn = c.txn;
        let (status, reason, state) = match behaviour.answer {
            AnswerMode::Answer | AnswerMode::Silent => (200, "OK", CallState::Accepted),
            AnswerMode::Reject => (486, "Declined", CallState::Rejected),
            AnswerMode::Busy => (486, "Busy Here", CallState::Rejected),
            AnswerMode::NoAnswer => (480, "Temporarily Unavailable", CallState::Rejected),
        };
        let Some(mut resp) = self.endpoint.make_response(txn, status, reason) else {
            return;
        };
        resp.headers.push(HeaderName::Allow, rules::ALLOW);
        if status == 200 {
            self.meta_headers_200(&mut resp, cid);
        }
        if self.endpoint.send_response(now, txn, resp).is_err() {
            return;
        }
        let business = c.business.clone();
        let user = c.user.clone();
        if let Some(c) = self.uas.get_mut(cid) {
            if status == 200 {
                c.phase = UasPhase::Answered;
                c.answered_at = Some(now);
                c.dialog.confirm();
            } else {
                c.phase = UasPhase::Ended;
            }
        }
        if status == 200 {
            self.state
                .record_connected_call(&business, &user, now_unix());
            self.start_media(cid);
        }
        self.calls.with_call_id(cid, |r| {
            r.state = state;
            r.status = Some(status);
            if status != 200 {
                r.end_reason = Some(format!("{:?}", behaviour.answer).to_lowercase());
            }
        });
    }

    fn meta_headers_200(&self, resp: &mut Response, cid: &str) {
        // 200 OK: Record-Route ×2, Allow, Supported, X-FB-External-Domain, Contact, SDP.
        for rr in &self.record_route {
            resp.headers.push(HeaderName::RecordRoute, rr.clone());
        }
        resp.headers.push(HeaderName::Supported, "timer");
        resp.headers
            .push(HeaderName::parse("X-FB-External-Domain"), "wa.meta.vc");
        if let Some(c) = self.uas.get(cid) {
            let user = c
                .dialog
                .local_uri
                .uri
                .as_sip()
                .and_then(|u| u.user.clone())
                .unwrap_or_default();
            resp.headers.push(
                HeaderName::Contact,
                format!(
                    "<{};X-FB-Sip-Smc-Tier=collaboration.sip_gateway.sip.prod>;isfocus",
                    self.edge_contact(&user)
                ),
            );
            // Since BSUIDs, Meta names the user in its 200 OK (header names as Meta spells them).
            let bsuid = self
                .state
                .lock()
                .users
                .get(&c.user)
                .and_then(|u| u.bsuid.clone());
            if let Some(b) = bsuid {
                resp.headers
                    .push(HeaderName::parse("x-wa-meta-user-id"), b.clone());
                resp.headers
                    .push(HeaderName::parse("x-wa_meta-parent-user-id"), b);
            }
            if let Some(sdp) = &c.answer_sdp {
                resp.headers
                    .push(HeaderName::ContentType, "application/sdp");
                resp.body = sdp.clone().into_bytes().into();
            }
        }
    }

    /// Checks that an in-dialog request from the gateway carries Meta's route set.
    fn check_route(&self, req: &Request, cid: &str, uas_side: bool) {
        let routes: Vec<String> = req
            .headers
            .list(&HeaderName::Route)
            .iter()
            .map(|s| s.trim().to_string())
            .collect();
        let mut expected: Vec<String> = self.record_route.to_vec();
        if uas_side {
            // the gateway was UAC: its route set is the 200's Record-Route reversed
            expected.reverse();
        }
        if routes != expected {
            self.calls.violation(
                cid,
                format!(
                    "{} not routed through Meta's Record-Route: Route {:?}, expected {:?}",
                    req.method, routes, expected
                ),
            );
        }
    }

    fn ack(&mut self, req: &Request) {
        let cid = req.headers.call_id().unwrap_or_default().to_string();
        if let Some(c) = self.uas.get_mut(&cid) {
            if c.phase == UasPhase::Answered {
                c.phase = UasPhase::Confirmed;
            }
            self.check_route(req, &cid, true);
        }
    }

    fn in_dialog(&mut self, now: Instant, id: TxnId, req: &Request, cid: &str) {
        if let Some(r) = rules::in_dialog(&req.method) {
            self.reply(now, id, &r);
            return;
        }
        let uas_side = self.uas.contains_key(cid);
        match req.method {
            Method::Bye => {
                self.check_route(req, cid, uas_side);
                let _ = self.endpoint.respond(now, id, 200);
                let answered = if uas_side {
                    self.uas.get_mut(cid).map(|c| {
                        c.phase = UasPhase::Ended;
                        c.answered_at
                    })
                } else {
                    self.uac.get_mut(cid).map(|c| {
                        c.phase = UacPhase::Ended;
                        c.answered_at
                    })
                }
                .flatten();
                let duration = answered.map(|a| now.saturating_duration_since(a).as_secs());
                self.calls.with_call_id(cid, |r| {
                    r.state = CallState::Completed;
                    r.end_reason = Some("bye_from_gateway".into());
                    r.duration_s = duration;
                });
                self.stop_media(cid);
            }
            _ => {
                if let Some(mut resp) = self.endpoint.make_response(id, 200, "OK") {
                    resp.headers.push(HeaderName::Allow, rules::ALLOW);
                    let _ = self.endpoint.send_response(now, id, resp);
                }
            }
        }
    }

    fn txn_failed(&mut self, id: TxnId) {
        let cid = self
            .uac
            .iter()
            .find(|(_, c)| {
                c.invite_txn == id && matches!(c.phase, UacPhase::Calling | UacPhase::Ringing)
            })
            .map(|(k, _)| k.clone());
        if let Some(cid) = cid {
            if let Some(c) = self.uac.get_mut(&cid) {
                c.phase = UacPhase::Ended;
            }
            self.calls.with_call_id(&cid, |r| {
                r.state = CallState::Failed;
                r.status = Some(408);
                r.end_reason.get_or_insert_with(|| "timeout".into());
            });
        }
    }

    /// Target for an in-dialog request toward the gateway: its Contact, over the call's
    /// connection when still open.
    fn dialog_target(uri: &Uri, conn: Option<u64>) -> Target {
        let (destination, transport) = match uri.as_sip() {
            Some(u) => {
                let port = u.port.unwrap_or(5061);
                let dest = match &u.host {
                    Host::Domain(d) => Destination::Name {
                        host: d.clone(),
                        port,
                    },
                    Host::Ipv4(ip) => Destination::Addr(SocketAddr::from((*ip, port))),
                    Host::Ipv6(ip) => Destination::Addr(SocketAddr::from((*ip, port))),
                };
                (dest, TransportKind::Tls)
            }
            None => (
                Destination::Name {
                    host: String::new(),
                    port: 5061,
                },
                TransportKind::Tls,
            ),
        };
        Target {
            transport,
            destination,
            connection: conn,
        }
    }

    /// Removes the Route entries that are Meta's own proxies (the edge itself): Meta's hops
    /// consume them before the request reaches the gateway.
    fn strip_own_routes(&self, req: &mut Request) {
        let own: Vec<String> = self.record_route.to_vec();
        let kept: Vec<String> = req
            .headers
            .list(&HeaderName::Route)
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|r| !own.contains(r))
            .collect();
        req.headers.remove(&HeaderName::Route);
        for r in kept {
            req.headers.push(HeaderName::Route, r);
        }
    }

    fn uas_bye(&mut self, now: Instant, cid: &str, reason: &str) {
        let Some(c) = self.uas.get_mut(cid) else {
            return;
        };
        if c.phase == UasPhase::Ended {
            return;
        }
        c.phase = UasPhase::Ended;
        let mut bye = c.dialog.new_request(Method::Bye);
        let target = Self::dialog_target(&c.dialog.remote_target, c.conn);
        let answered = c.answered_at;
        bye.headers.push(HeaderName::Reason, "Q.850;cause=16");
        if let Some(a) = answered {
            bye.headers.push(
                HeaderName::parse("x-wa-meta-call-duration"),
                now.saturating_duration_since(a).as_secs().to_string(),
            );
        }
        self.strip_own_routes(&mut bye);
        let _ = self.endpoint.send_request(now, bye, target);
        self.stop_media(cid);
        let reason = reason.to_string();
        self.calls.with_call_id(cid, |r| {
            r.state = CallState::Completed;
            r.end_reason = Some(reason);
        });
    }

    // ------------------------------------------------------------------ user-initiated

    fn wacid(&mut self) -> String {
        let n = self.next_n();
        let h = sha2_bytes(&format!("wacid-{}-{n}", self.seed));
        use base64::Engine;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&h[..18]);
        format!("HBgL{b}")
    }

    fn place(&mut self, now: Instant, call: PlaceCall) -> Result<String, String> {
        let target = self
            .state
            .sip_target(&call.to)
            .ok_or_else(|| format!("{} is not a sandbox business number", call.to))?;
        if !(target.calling_enabled && target.sip_enabled) {
            return Err(format!("calling/SIP is not enabled on {}", target.e164));
        }
        let host = target
            .hostname
            .clone()
            .ok_or_else(|| format!("no SIP server configured on {}", target.e164))?;
        let password = target.password.clone().unwrap_or_default();
        let from_user = {
            let f = call.from.trim();
            if f.contains('.') {
                f.to_string()
            } else {
                format!("+{}", f.trim_start_matches('+'))
            }
        };
        if from_user.len() < 2 {
            return Err("from: empty user".into());
        }
        let mut user_part = target.e164.clone();
        for (k, v) in &target.request_uri_user_params {
            user_part.push_str(&format!(";{k}={v}"));
        }
        let ruri_text = format!("sip:{user_part}@{host}:{};transport=tls", target.port);
        let ruri = Uri::parse(&ruri_text).map_err(|e| format!("Request-URI {ruri_text}: {e}"))?;
        let wacid = self.wacid();
        let call_id = format!("outgoing:wacid.{wacid}");
        let tag = self.endpoint.new_tag();
        let display = from_user.trim_start_matches('+').to_string();
        let mut inv = Request::new(Method::Invite, ruri);
        // Meta's proxies prepend their Record-Route: the last hop (wa.meta.vc) is on top.
        for rr in self.record_route.iter().rev() {
            inv.headers.push(HeaderName::RecordRoute, rr.clone());
        }
        inv.headers.push(
            HeaderName::From,
            format!("\"{display}\" <sip:{from_user}@wa.meta.vc>;tag={tag}"),
        );
        inv.headers
            .push(HeaderName::To, format!("<sip:{}@{host}>", target.e164));
        inv.headers.push(HeaderName::CallId, call_id.clone());
        inv.headers.push(HeaderName::CSeq, "1 INVITE");
        inv.headers.push(
            HeaderName::Contact,
            format!("<{}>;isfocus", self.edge_contact(&from_user)),
        );
        inv.headers.push(HeaderName::Allow, rules::ALLOW);
        inv.headers
            .push(HeaderName::UserAgent, "Facebook SipGateway");
        inv.headers
            .push(HeaderName::parse("X-FB-External-Domain"), "wa.meta.vc");
        inv.headers
            .push(HeaderName::parse("x-wa-meta-wacid"), wacid.clone());
        if from_user.contains('.') {
            inv.headers
                .push(HeaderName::parse("x-wa-meta-user-id"), from_user.clone());
        }
        if let Some(p) = &call.cta_payload {
            inv.headers
                .push(HeaderName::parse("x-wa-meta-cta-payload"), p.clone());
        }
        if let Some(p) = &call.deeplink_payload {
            inv.headers
                .push(HeaderName::parse("x-wa-meta-deeplink-payload"), p.clone());
        }
        let (socket, port) = self.bind_media().ok_or("cannot bind an RTP socket")?;
        let dtls = is_dtls_target(&target);
        let (body, sdes_offer, offer_leg) = if dtls {
            // DTLS number: Meta's offer (ICE-lite, actpass, IPv4 + unreachable IPv6 host
            // candidates); the leg waits for the 200 OK's answer.
            let local_rtp = SocketAddr::new(self.edge_addr.ip(), port);
            let (leg, text) =
                WebrtcLeg::meta_offer(now, &self.meta_config(local_rtp, Duration::ZERO))
                    .map_err(|e| format!("DTLS offer: {e}"))?;
            (text, None, Some(Box::new(leg)))
        } else {
            let local = LocalMedia::whatsapp(
                self.edge_addr.ip(),
                port,
                !target.additional_codecs.is_empty(),
            );
            let offer = match self.key_rng() {
                Some(mut rng) => sdp::build_offer_with_rng(&local, &mut rng),
                None => sdp::build_offer(&local),
            };
            (offer.sdp.to_sdp(), Some(offer), None)
        };
        inv.headers.push(HeaderName::ContentType, "application/sdp");
        inv.body = body.into_bytes().into();
        let dest = Target {
            transport: TransportKind::Tls,
            destination: Destination::Name {
                host: host.clone(),
                port: target.port,
            },
            connection: None,
        };
        let id = self.calls.create(
            CallDirection::UserInitiated,
            &from_user,
            &target.e164,
            &call_id,
        );
        self.calls.with_call_id(&call_id, |r| {
            r.wacid = Some(wacid.clone());
            r.media.local_rtp = Some(SocketAddr::new(self.edge_addr.ip(), port).to_string());
            r.media.key_exchange = Some(if dtls { "dtls" } else { "sdes" }.into());
        });
        let txn = self
            .endpoint
            .send_request(now, inv.clone(), dest.clone())
            .map_err(|e| e.to_string())?;
        let digest = DigestClient::new(target.e164.trim_start_matches('+'), password);
        self.uac.insert(
            call_id.clone(),
            UacCall {
                invite_txn: txn,
                invite: inv,
                target: dest,
                digest,
                auth_rounds: 0,
                phase: UacPhase::Calling,
                dialog: None,
                duration: call.duration.map(Duration::from_secs),
                answered_at: None,
                conn: None,
                wacid,
                bye_txn: None,
                media: MediaSlot {
                    socket: Some(socket),
                    offer: sdes_offer,
                    offer_leg,
                    mode: call.media.unwrap_or_else(|| {
                        let key = from_user.trim_start_matches('+').to_string();
                        let key = self.state.lock().user_key(&from_user).unwrap_or(key);
                        self.calls.behaviour(&key).media
                    }),
                    ..MediaSlot::default()
                },
            },
        );
        self.timers.push((
            now + self.config.unanswered_timeout,
            Timer::UacGiveUp(call_id),
        ));
        Ok(id)
    }

    fn user_hangup(&mut self, now: Instant, id: &str) -> Result<(), String> {
        let cid = self
            .calls
            .with_id(id, |r| r.call_id.clone())
            .ok_or_else(|| format!("no call {id}"))?;
        if self.uac.contains_key(&cid) {
            let phase = self.uac.get(&cid).map(|c| (c.phase, c.invite_txn));
            match phase {
                Some((UacPhase::Calling | UacPhase::Ringing, txn)) => self
                    .endpoint
                    .send_cancel(now, txn)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                _ => self.uac_hangup(now, &cid, "user_hangup"),
            }
        } else if self.uas.contains_key(&cid) {
            self.uas_bye(now, &cid, "user_hangup");
            Ok(())
        } else {
            Err(format!("call {id} is not active"))
        }
    }

    fn uac_hangup(&mut self, now: Instant, cid: &str, reason: &str) -> Result<(), String> {
        let Some(c) = self.uac.get_mut(cid) else {
            return Err("unknown call".into());
        };
        if c.phase != UacPhase::Answered {
            return Err("call not answered".into());
        }
        let Some(d) = c.dialog.as_mut() else {
            return Err("no dialog".into());
        };
        let mut bye = d.new_request(Method::Bye);
        let target = Self::dialog_target(&d.remote_target, c.conn);
        let secs = c
            .answered_at
            .map(|a| now.saturating_duration_since(a).as_secs())
            .unwrap_or(0);
        bye.headers
            .push(HeaderName::parse("x-wa-meta-wacid"), c.wacid.clone());
        bye.headers.push(
            HeaderName::parse("x-wa-meta-call-duration"),
            secs.to_string(),
        );
        bye.headers.push(HeaderName::Reason, "Q.850;cause=16");
        c.phase = UacPhase::Ending;
        self.strip_own_routes(&mut bye);
        self.stop_media(cid);
        let txn = self
            .endpoint
            .send_request(now, bye, target)
            .map_err(|e| e.to_string())?;
        if let Some(c) = self.uac.get_mut(cid) {
            c.bye_txn = Some(txn);
        }
        let reason = reason.to_string();
        self.calls.with_call_id(cid, |r| {
            r.end_reason = Some(reason);
            r.duration_s = Some(secs);
        });
        Ok(())
    }

    fn response(&mut self, now: Instant, id: TxnId, resp: Response) {
        let cid = resp.headers.call_id().unwrap_or_default().to_string();
        let Some(c) = self.uac.get_mut(&cid) else {
            // responses to our BYEs of business-initiated calls
            return;
        };
        if c.bye_txn == Some(id) {
            if resp.is_final() {
                c.phase = UacPhase::Ended;
                let status = resp.status;
                self.calls.with_call_id(&cid, |r| {
                    r.state = CallState::Completed;
                    if status >= 300 {
                        r.violations
                            .push(format!("gateway answered our BYE {status}"));
                    }
                });
            }
            return;
        }
        if c.invite_txn != id {
            return;
        }
        let status = resp.status;
        match status {
            100 => {}
            101..=199 => {
                c.phase = UacPhase::Ringing;
                self.calls
                    .with_call_id(&cid, |r| r.state = CallState::Ringing);
            }
            200..=299 => self.uac_answered(now, &cid, resp),
            401 | 407 if c.auth_rounds < 2 => {
                c.auth_rounds += 1;
                let challenges: Vec<&str> = if status == 401 {
                    resp.headers.www_authenticate()
                } else {
                    resp.headers.proxy_authenticate()
                };
                let cred_header = if status == 401 {
                    HeaderName::Authorization
                } else {
                    HeaderName::ProxyAuthorization
                };
                let previous = c.invite.headers.get(&cred_header).map(str::to_string);
                let uri = c.invite.uri.to_string();
                let answer = c.digest.respond(
                    challenges.iter().copied(),
                    "INVITE",
                    &uri,
                    previous.as_deref(),
                    &mut RandomCnonce,
                );
                match answer {
                    Ok(value) => {
                        let mut inv = c.invite.clone();
                        inv.headers.set(cred_header, value);
                        let seq = inv.headers.cseq().map(|c| c.seq).unwrap_or(1) + 1;
                        inv.headers.set(HeaderName::CSeq, format!("{seq} INVITE"));
                        let target = c.target.clone();
                        match self.endpoint.send_request(now, inv.clone(), target) {
                            Ok(txn) => {
                                if let Some(c) = self.uac.get_mut(&cid) {
                                    c.invite = inv;
                                    c.invite_txn = txn;
                                }
                            }
                            Err(e) => self.uac_failed(&cid, 500, &e.to_string()),
                        }
                    }
                    Err(e) => self.uac_failed(&cid, status, &format!("digest: {e}")),
                }
            }
            _ => self.uac_failed(&cid, status, &format!("{status} {}", resp.reason)),
        }
    }

    fn uac_failed(&mut self, cid: &str, status: u16, why: &str) {
        if let Some(c) = self.uac.get_mut(cid) {
            c.phase = UacPhase::Ended;
        }
        self.stop_media(cid);
        let why = why.to_string();
        self.calls.with_call_id(cid, |r| {
            r.state = if status == 487 || (400..700).contains(&status) {
                CallState::Rejected
            } else {
                CallState::Failed
            };
            r.status = Some(status);
            r.end_reason.get_or_insert(why);
        });
    }

    fn uac_answered(&mut self, now: Instant, cid: &str, resp: Response) {
        let Some(c) = self.uac.get_mut(cid) else {
            return;
        };
        if let Some(d) = &c.dialog {
            // 2xx retransmission: re-ACK.
            let mut ack = d.ack(c.invite.headers.cseq().map(|s| s.seq).unwrap_or(1));
            let target = Self::dialog_target(&d.remote_target, c.conn);
            let own: Vec<String> = self.record_route.to_vec();
            strip_routes(&mut ack, &own);
            let _ = self.endpoint.send_ack(now, ack, target);
            return;
        }
        // Record-Route echo check: exactly the lines we sent, in the same order.
        let sent: Vec<String> = c
            .invite
            .headers
            .list(&HeaderName::RecordRoute)
            .iter()
            .map(|s| s.trim().to_string())
            .collect();
        let got: Vec<String> = resp
            .headers
            .list(&HeaderName::RecordRoute)
            .iter()
            .map(|s| s.trim().to_string())
            .collect();
        let echoed = got.len() >= sent.len() && got[got.len() - sent.len()..] == sent[..];
        if !echoed {
            self.calls.violation(
                cid,
                format!(
                    "200 OK did not echo Meta's Record-Route unchanged: sent {sent:?}, got {got:?}"
                ),
            );
        }
        let invite_with_via = self
            .endpoint
            .client_request(c.invite_txn)
            .cloned()
            .unwrap_or_else(|| c.invite.clone());
        let dialog = match Dialog::uac(&invite_with_via, &resp) {
            Ok(d) => d,
            Err(e) => {
                self.calls
                    .violation(cid, format!("200 OK unusable for a dialog: {e}"));
                return;
            }
        };
        let seq = c.invite.headers.cseq().map(|s| s.seq).unwrap_or(1);
        let mut ack = dialog.ack(seq);
        let target = Self::dialog_target(&dialog.remote_target, c.conn);
        let own: Vec<String> = self.record_route.to_vec();
        strip_routes(&mut ack, &own);
        let _ = self.endpoint.send_ack(now, ack, target);
        c.dialog = Some(dialog);
        c.phase = UacPhase::Answered;
        c.answered_at = Some(now);
        let duration = c.duration;
        let mut media = None;
        let mut leg_report = None;
        let mut media_failed = false;
        if let Some(mut leg) = c.media.offer_leg.take() {
            // DTLS number: the gateway's answer goes to the Meta-like leg of our offer; its
            // connect timer starts now.
            let accepted = std::str::from_utf8(&resp.body)
                .map_err(|_| "answer is not UTF-8".to_string())
                .and_then(|a| leg.accept_answer(now, a).map_err(|e| e.to_string()));
            match accepted {
                Ok(()) => {
                    leg_report = Some(leg.report());
                    c.media.keying = Some(MediaKeying::Dtls(leg));
                }
                Err(e) => {
                    media_failed = true;
                    self.calls
                        .violation(cid, format!("SDP answer not acceptable: {e}"));
                }
            }
            if let Ok(ans) = AudioSession::parse(&resp.body) {
                media = Some((
                    ans.rtp_addr().to_string(),
                    ans.audio_codecs()
                        .next()
                        .map(|c| (format!("{}/{}", c.name, c.clock_rate), c.payload_type)),
                ));
            }
        } else if let (Ok(ans), Some(offer)) =
            (AudioSession::parse(&resp.body), c.media.offer.as_ref())
        {
            match sdp::accept_answer(offer, &ans) {
                Ok(neg) => c.media.keying = Some(MediaKeying::Sdes(Box::new(neg))),
                Err(e) => self
                    .calls
                    .violation(cid, format!("SDP answer not acceptable: {e}")),
            }
            media = Some((
                ans.rtp_addr().to_string(),
                ans.audio_codecs()
                    .next()
                    .map(|c| (format!("{}/{}", c.name, c.clock_rate), c.payload_type)),
            ));
        } else {
            self.calls
                .violation(cid, "200 OK without a usable SDP answer");
        }
        self.calls.with_call_id(cid, |r| {
            r.state = CallState::Accepted;
            r.status = Some(200);
            if let Some((rtp, codec)) = media {
                r.media.remote_rtp = Some(rtp);
                if let Some((c, pt)) = codec {
                    r.media.codec = Some(c);
                    r.media.payload_type = Some(pt);
                }
            }
            if let Some(rep) = &leg_report {
                apply_leg_report(&mut r.media, rep);
            }
        });
        if media_failed {
            // Meta's reaction to an unusable DTLS answer is undocumented: the user hangs up.
            let _ = self.uac_hangup(now, cid, "media_failed");
            return;
        }
        self.start_media(cid);
        if let Some(d) = duration {
            self.timers
                .push((now + d, Timer::UacHangup(cid.to_string())));
        }
    }
}

/// Whether a number's calling settings ask for DTLS-SRTP (`srtp_key_exchange_protocol`).
fn is_dtls_target(t: &crate::sandbox::SipTarget) -> bool {
    t.srtp_key_exchange_protocol.eq_ignore_ascii_case("DTLS")
}

/// `488 Not Acceptable Here` with Meta's `Allow` and a `Warning: 399 wa.meta.vc "<why>"`.
fn not_acceptable(why: &str) -> Refusal {
    let why = why.replace('"', "'");
    Refusal {
        status: 488,
        reason: "Not Acceptable Here".into(),
        headers: vec![
            (HeaderName::Allow, rules::ALLOW.to_string()),
            (HeaderName::Warning, format!("399 wa.meta.vc \"{why}\"")),
        ],
    }
}

fn strip_routes(req: &mut Request, own: &[String]) {
    let kept: Vec<String> = req
        .headers
        .list(&HeaderName::Route)
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|r| !own.contains(r))
        .collect();
    req.headers.remove(&HeaderName::Route);
    for r in kept {
        req.headers.push(HeaderName::Route, r);
    }
}

/// A non-blocking UDP socket on `ip` with an even port (RTP convention), and its port.
fn bind_media(ip: IpAddr) -> Option<(std::net::UdpSocket, u16)> {
    for _ in 0..16 {
        let s = std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).ok()?;
        let port = s.local_addr().ok()?.port();
        if port % 2 == 0 && s.set_nonblocking(true).is_ok() {
            return Some((s, port));
        }
    }
    None
}

impl Core {
    /// In deterministic mode (`seed` given), the generator for the next call's SDES keys:
    /// ChaCha12 keyed by SHA-256 of the seed and a call counter, so a run repeats its keys.
    /// Without a seed, `None`: keys come from the OS-seeded RNG, as the gateway's do.
    fn key_rng(&mut self) -> Option<rand::rngs::StdRng> {
        use rand::SeedableRng;
        self.config.seed?;
        let n = self.next_n();
        Some(rand::rngs::StdRng::from_seed(sha2_bytes(&format!(
            "srtp-keys-{}-{n}",
            self.seed
        ))))
    }

    /// An RTP socket on the edge's address: from `config.rtp_ports` in turn, else any even
    /// port the OS gives.
    fn bind_media(&mut self) -> Option<(std::net::UdpSocket, u16)> {
        let ip = self.edge_addr.ip();
        let Some(range) = self.config.rtp_ports.clone() else {
            return bind_media(ip);
        };
        let first = range.start().checked_add(range.start() % 2)?;
        if first > *range.end() {
            return None;
        }
        let evens = u32::from(range.end() - first) / 2 + 1;
        for i in 0..evens {
            let k = (self.rtp_next + i) % evens;
            let Ok(port) = u16::try_from(u32::from(first) + 2 * k) else {
                continue;
            };
            if let Ok(s) = std::net::UdpSocket::bind(SocketAddr::new(ip, port))
                && s.set_nonblocking(true).is_ok()
            {
                self.rtp_next = (k + 1) % evens;
                return Some((s, port));
            }
        }
        None
    }

    /// The Meta-like leg's settings for a call on `local` (the RTP socket in our SDP).
    fn meta_config(&self, local: SocketAddr, extra_timeout: Duration) -> MetaLikeConfig {
        let mut cfg = MetaLikeConfig::new(local);
        cfg.leg.connect_timeout = self.config.dtls_connect_timeout + extra_timeout;
        cfg.answer_setup = self.config.dtls_answer_setup;
        cfg
    }

    /// The sandbox user's DTLS-SRTP answer to a gateway offer (`meta_answer`): ICE-lite,
    /// two host candidates, PTs mirrored; `a=setup` per `dtls_answer_setup` for `actpass`,
    /// the RFC 4145 inverse for `active`/`passive` offers.
    fn meta_answer(
        &self,
        now: Instant,
        local: SocketAddr,
        body: &[u8],
        extra_timeout: Duration,
    ) -> Result<(WebrtcLeg, String), String> {
        let offer = std::str::from_utf8(body).map_err(|_| "offer is not UTF-8".to_string())?;
        let mut cfg = self.meta_config(local, extra_timeout);
        cfg.answer_setup = match crate::media::webrtc::sdp::setup_of(offer) {
            Some(Setup::Active) => Setup::Passive,
            Some(Setup::Passive) => Setup::Active,
            _ => cfg.answer_setup,
        };
        WebrtcLeg::meta_answer(now, &cfg, offer).map_err(|e| e.to_string())
    }

    fn ssrc(&mut self) -> u32 {
        let n = self.next_n();
        let h = sha2_bytes(&format!("ssrc-{}-{n}", self.seed));
        u32::from_be_bytes([h[0], h[1], h[2], h[3]])
    }

    /// Hands the answered call's socket and parameters to the media agent.
    fn start_media(&mut self, cid: &str) {
        let ssrc = self.ssrc();
        let slot = if let Some(c) = self.uas.get_mut(cid) {
            &mut c.media
        } else if let Some(c) = self.uac.get_mut(cid) {
            &mut c.media
        } else {
            return;
        };
        let (Some(socket), Some(keying)) = (slot.socket.take(), slot.keying.take()) else {
            return;
        };
        let params = MediaParams {
            socket,
            keying,
            mode: slot.mode,
            calls: self.calls.clone(),
            call_id: cid.to_string(),
            ssrc,
        };
        slot.task = Some((self.media)(params));
    }

    /// Stops the call's media agent (call ended).
    fn stop_media(&mut self, cid: &str) {
        let slot = if let Some(c) = self.uas.get_mut(cid) {
            &mut c.media
        } else if let Some(c) = self.uac.get_mut(cid) {
            &mut c.media
        } else {
            return;
        };
        if let Some(t) = slot.task.take() {
            t.abort();
        }
        slot.socket = None;
    }
}
