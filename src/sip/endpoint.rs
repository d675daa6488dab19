//! The transaction layer and the UA core rules around it (RFC 3261 §8.2, §13.3.1.4, §17,
//! §18.2.2; RFC 3581; RFC 6026), sans-IO.
//!
//! Guarantees:
//! - Every received request either matches a server transaction (retransmissions are absorbed
//!   or answered with the last response), is an ACK (matched to its INVITE transaction or to a
//!   2xx being retransmitted, otherwise dropped), is a CANCEL (answered 200 by the layer and
//!   reported as `Event::Cancelled` so the TU answers the INVITE 487; 481 when it matches
//!   nothing), or starts a new server transaction. New requests are validated first and the
//!   failures answered here, never reaching the TU: parse error / missing mandatory header /
//!   CSeq method mismatch → 400 with a Warning, Max-Forwards 0 → 483, our own branch and
//!   sent-by in a Via → 482 (loop), unknown URI scheme → 416, merged request → 482, unknown
//!   `Require` option → 420 with `Unsupported`.
//! - The top Via of every received request gets `received=` when the source IP differs from
//!   sent-by (always when `rport` is present) and `rport=` filled (RFC 3581); responses go to
//!   the §18.2.2 target: same connection for TCP/TLS, else `maddr`, else `received`+`rport`,
//!   else sent-by.
//! - A 2xx to INVITE sent by the TU is retransmitted by the core at T1, 2·T1, … capped at T2
//!   until the ACK arrives (this happens over reliable transports too, §13.3.1.4, because the
//!   2xx is end-to-end); without an ACK after 64·T1 `Event::AckTimeout` tells the TU to send BYE.
//! - Client transactions pass every response up, including 2xx retransmissions while the
//!   INVITE transaction is Accepted, so the TU re-sends its end-to-end ACK (`send_ack`,
//!   built by `Dialog::ack`). Responses matching no transaction are dropped.
//! - Nothing here reads the clock or touches a socket: `Transmit`s carry a `Message` and a
//!   `Target`; the shell serializes and sends them.
use crate::sip::dialog::DialogId;
use crate::sip::header::{HeaderName, Via};
use crate::sip::message::{Message, ParseError, Request, Response};
use crate::sip::method::Method;
use crate::sip::transaction::key::{default_port, first_element, sent_by};
use crate::sip::transaction::{
    ClientEvent, ClientInvite, ClientInviteState, ClientKey, ClientNonInvite, ServerEvent,
    ServerInvite, ServerInviteState, ServerKey, ServerNonInvite, TimerConfig, response_to,
};
use crate::sip::uri::Host;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Identifies one transaction (client or server) of an `Endpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxnId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
    Tls,
}

impl TransportKind {
    pub fn is_reliable(self) -> bool {
        !matches!(self, TransportKind::Udp)
    }

    /// Token written in Via (`UDP`, `TCP`, `TLS`).
    pub fn via_token(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
        }
    }

    pub fn from_via_token(token: &str) -> Option<TransportKind> {
        [TransportKind::Udp, TransportKind::Tcp, TransportKind::Tls]
            .into_iter()
            .find(|t| t.via_token().eq_ignore_ascii_case(token))
    }
}

/// Where a received message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub transport: TransportKind,
    pub remote: SocketAddr,
    /// The shell's id of the TCP/TLS connection it arrived on (opaque here).
    pub connection: Option<u64>,
}

/// Where to send: an address, or a host name the shell resolves (RFC 3263).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Addr(SocketAddr),
    Name { host: String, port: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub transport: TransportKind,
    /// For TCP/TLS responses this is the peer of the connection the request came on, which
    /// the shell must reuse (§18.2.2) and only reopen to this address if it is gone.
    pub destination: Destination,
    /// Prefer this connection (the one the request arrived on), else connect to `destination`.
    pub connection: Option<u64>,
}

/// A message for the shell to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub message: Message,
    pub target: Target,
    /// The transaction this belongs to (`None`: stateless answer or end-to-end ACK); report a
    /// send failure with `Endpoint::handle_transport_error(now, txn)`.
    pub txn: Option<TxnId>,
}

/// What the endpoint reports to the TU.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A new, validated request (never ACK or CANCEL). Answer it with `respond` or
    /// `send_response` on `id`.
    Request {
        id: TxnId,
        request: Box<Request>,
        source: Source,
    },
    /// An ACK for a 2xx we sent (§13.3.1.4): the core has stopped retransmitting the 2xx.
    Ack {
        request: Box<Request>,
        source: Source,
    },
    /// A CANCEL matched the INVITE server transaction `invite`, still without a final
    /// response; the layer answered the CANCEL 200. The TU must answer the INVITE 487
    /// (`respond(now, invite, 487)`).
    Cancelled { invite: TxnId, cancel: Box<Request> },
    /// A response for client transaction `id`.
    Response { id: TxnId, response: Box<Response> },
    /// Client transaction: Timer B/F fired (treat as 408). Server INVITE transaction: Timer H
    /// fired (no ACK for the non-2xx).
    Timeout { id: TxnId },
    /// The 2xx to INVITE `id` was never ACKed within 64·T1: the TU should send BYE
    /// (§13.3.1.4).
    AckTimeout { id: TxnId, response: Box<Response> },
    /// The transport failed for transaction `id`.
    TransportError { id: TxnId },
}

/// Errors of the TU-facing API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("no such transaction")]
    UnknownTransaction,
    #[error("the transaction's state does not allow this")]
    InvalidState,
    #[error("ACK is sent with send_ack, CANCEL with send_cancel")]
    WrongMethod,
}

impl EndpointError {
    pub fn sip_status(&self) -> u16 {
        match self {
            EndpointError::Parse(_) => 400,
            _ => 500,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub timers: TimerConfig,
    /// Host written as sent-by in our Via (and in Warning headers).
    pub via_host: String,
    pub via_port: Option<u16>,
    /// Unique to this instance; our branches are `z9hG4bK<instance>x<n>` and our tags
    /// `<instance>x<n>`. A received Via with our sent-by and this branch prefix is a loop.
    pub instance: String,
    /// Option tags we support; a `Require` with any other tag gets 420.
    pub supported: Vec<String>,
    /// Request-URI schemes we serve; anything else gets 416.
    pub schemes: Vec<String>,
    /// Path MTU toward peers: a request bound for UDP that is larger than MTU − 200 bytes goes
    /// over TCP instead (RFC 3261 §18.1.1). `None` never switches.
    pub path_mtu: Option<usize>,
}

impl EndpointConfig {
    pub fn new(
        via_host: impl Into<String>,
        via_port: Option<u16>,
        instance: impl Into<String>,
    ) -> Self {
        EndpointConfig {
            timers: TimerConfig::default(),
            via_host: via_host.into(),
            via_port,
            instance: instance.into(),
            supported: vec!["timer".into(), "replaces".into()],
            schemes: vec!["sip".into(), "sips".into(), "tel".into()],
            path_mtu: Some(1500),
        }
    }
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per live transaction; boxing buys nothing
enum ClientTxn {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

#[derive(Debug)]
struct ClientEntry {
    key: ClientKey,
    txn: ClientTxn,
    target: Target,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum ServerTxn {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

#[derive(Debug)]
struct ServerEntry {
    key: ServerKey,
    txn: ServerTxn,
    target: Target,
    source: Source,
    /// To tag of our responses.
    local_tag: String,
    merge_key: Option<MergeKey>,
}

/// §8.2.2.2: From tag, Call-ID, CSeq (number and method).
type MergeKey = (String, String, u32, Method);

/// What a scheduled deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Slot {
    Client(TxnId),
    Server(TxnId),
    /// The 2xx retransmission of INVITE server transaction `TxnId`.
    Pending(TxnId),
}

/// §13.3.1.4 ACK matching: Call-ID, CSeq number, To tag of the 2xx.
type AckKey = (String, u32, String);

#[derive(Debug)]
struct Pending2xx {
    key: AckKey,
    response: Response,
    target: Target,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

/// The sans-IO transaction layer + UA core rules.
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    next_id: u64,
    next_unique: u64,
    clients: HashMap<TxnId, ClientEntry>,
    client_keys: HashMap<ClientKey, TxnId>,
    servers: HashMap<TxnId, ServerEntry>,
    server_keys: HashMap<ServerKey, TxnId>,
    merged: HashMap<MergeKey, ServerKey>,
    pending_2xx: HashMap<TxnId, Pending2xx>,
    pending_by_ack: HashMap<AckKey, TxnId>,
    /// Deadlines, earliest first; an entry is live iff `scheduled[slot]` equals its instant
    /// (superseded entries are skipped when popped).
    heap: BinaryHeap<Reverse<(Instant, Slot)>>,
    scheduled: HashMap<Slot, Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Endpoint {
        Endpoint {
            config,
            next_id: 1,
            next_unique: 1,
            clients: HashMap::new(),
            client_keys: HashMap::new(),
            servers: HashMap::new(),
            server_keys: HashMap::new(),
            merged: HashMap::new(),
            pending_2xx: HashMap::new(),
            pending_by_ack: HashMap::new(),
            heap: BinaryHeap::new(),
            scheduled: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// A fresh tag for From (UAC) headers.
    pub fn new_tag(&mut self) -> String {
        let n = self.unique();
        format!("{}x{n:x}", self.config.instance)
    }

    /// Number of live transactions (client + server) and 2xx awaiting ACK.
    pub fn len(&self) -> usize {
        self.clients.len() + self.servers.len() + self.pending_2xx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // ------------------------------------------------------------------ input

    /// A message parsed by the shell from `source`.
    pub fn handle_incoming(&mut self, now: Instant, message: Message, source: Source) {
        match message {
            Message::Request(r) => self.handle_request(now, r, source),
            Message::Response(r) => self.handle_response(now, r),
        }
    }

    /// Bytes from `source` that `Message::parse` rejected with `error`. A request (not ACK)
    /// whose Via, From, To, Call-ID and CSeq lines can be found is answered statelessly with
    /// `error.sip_status()` (400, 505, 513) and a Warning carrying the reason; anything else
    /// (responses, ACKs, no Via) is dropped. Header lines are copied verbatim, not parsed.
    pub fn handle_malformed(
        &mut self,
        _now: Instant,
        bytes: &[u8],
        error: &ParseError,
        source: Source,
    ) {
        let head = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(bytes, |i| &bytes[..i]);
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let start = lines.next().unwrap_or_default();
        let method = start.split(' ').next().unwrap_or_default();
        if start.starts_with("SIP/") || method == "ACK" || method.is_empty() {
            return;
        }
        let mut headers = crate::sip::message::Headers::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = HeaderName::parse(name.trim());
            if matches!(
                name,
                HeaderName::Via
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
            ) && !line.starts_with([' ', '\t'])
            {
                headers.push(name, value.trim());
            }
        }
        if !headers.contains(&HeaderName::Via) {
            return;
        }
        let target = match headers.top_via() {
            Ok(mut via) => {
                stamp_via(&mut via, source);
                response_target(&via, source)
            }
            Err(_) => Target {
                transport: source.transport,
                destination: Destination::Addr(source.remote),
                connection: source.connection,
            },
        };
        let status = error.sip_status();
        let mut resp = Response {
            status,
            reason: crate::sip::transaction::default_reason(status).to_string(),
            headers,
            body: Default::default(),
        };
        let tag = self.new_tag();
        if let Some(h) = resp.headers.0.iter_mut().find(|h| h.name == HeaderName::To)
            && !h.value.contains(";tag=")
        {
            h.value = format!("{};tag={tag}", h.value);
        }
        resp.headers.push(
            HeaderName::Warning,
            format!("399 {} \"{}\"", self.config.via_host, error.warning_text()),
        );
        self.transmits.push_back(Transmit {
            message: Message::Response(resp),
            target,
            txn: None,
        });
    }

    fn handle_response(&mut self, now: Instant, response: Response) {
        let Ok(key) = ClientKey::from_response(&response) else {
            tracing::debug!("dropping response without usable Via/CSeq");
            return;
        };
        let Some(&id) = self.client_keys.get(&key) else {
            tracing::debug!(status = response.status, "dropping stray response");
            return;
        };
        if let Some(e) = self.clients.get_mut(&id) {
            match &mut e.txn {
                ClientTxn::Invite(t) => t.handle_response(now, response),
                ClientTxn::NonInvite(t) => t.handle_response(now, response),
            }
        }
        self.drain_client(id);
    }

    fn handle_request(&mut self, now: Instant, mut request: Request, source: Source) {
        let Ok(mut via) = request.headers.top_via() else {
            tracing::debug!("dropping request without a usable Via");
            return;
        };
        stamp_via(&mut via, source);
        replace_top_via(&mut request, &via);
        let key = match ServerKey::from_request(&request) {
            Ok(k) => k,
            Err(e) => {
                if request.method != Method::Ack {
                    // Cannot key it (bad From/To/Call-ID/CSeq): answer statelessly.
                    let target = response_target(&via, source);
                    let resp = self.error_response(&request, 400, &e.warning_text(), None);
                    self.transmits.push_back(Transmit {
                        message: Message::Response(resp),
                        target,
                        txn: None,
                    });
                }
                return;
            }
        };
        if request.method == Method::Ack {
            self.handle_ack(now, request, key, source);
            return;
        }
        if let Some(&id) = self.server_keys.get(&key) {
            if let Some(e) = self.servers.get_mut(&id) {
                match &mut e.txn {
                    ServerTxn::Invite(t) => t.handle_request(now, request),
                    ServerTxn::NonInvite(t) => t.handle_request(now, request),
                }
            }
            self.drain_server(id);
            return;
        }
        let target = response_target(&via, source);
        let local_tag = match request
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string))
        {
            Some(t) => t,
            None => self.new_tag(),
        };
        let reliable = source.transport.is_reliable();
        let is_invite = request.method == Method::Invite;
        let id = self.alloc_id();
        let txn = if is_invite {
            ServerTxn::Invite(ServerInvite::new(
                now,
                request.clone(),
                reliable,
                self.config.timers,
            ))
        } else {
            ServerTxn::NonInvite(ServerNonInvite::new(
                now,
                request.clone(),
                reliable,
                self.config.timers,
            ))
        };
        let mut entry = ServerEntry {
            key: key.clone(),
            txn,
            target,
            source,
            local_tag,
            merge_key: None,
        };
        if let Some((status, reason, extra)) = self.validate(&request, &key) {
            let mut resp = self.error_response(&request, status, &reason, Some(&entry.local_tag));
            if let Some((name, value)) = extra {
                resp.headers.push(name, value);
            }
            send_on(&mut entry.txn, now, resp);
            self.insert_server(id, entry);
            self.drain_server(id);
            return;
        }
        if let Some(mk) = merge_key(&request) {
            self.merged.insert(mk.clone(), key.clone());
            entry.merge_key = Some(mk);
        }
        if request.method == Method::Cancel {
            let invite = self.server_keys.get(&key.cancelled_invite()).copied();
            let invite_info = invite.and_then(|iid| {
                self.servers.get(&iid).map(|e| {
                    let pending = matches!(&e.txn, ServerTxn::Invite(t)
                        if t.state() == ServerInviteState::Proceeding);
                    (iid, e.local_tag.clone(), pending)
                })
            });
            match invite_info {
                Some((iid, tag, pending)) => {
                    entry.local_tag = tag;
                    let resp = self.build_response(&request, 200, "", Some(&entry.local_tag));
                    send_on(&mut entry.txn, now, resp);
                    self.insert_server(id, entry);
                    self.drain_server(id);
                    if pending {
                        self.events.push_back(Event::Cancelled {
                            invite: iid,
                            cancel: Box::new(request),
                        });
                    }
                }
                None => {
                    let resp = self.build_response(&request, 481, "", Some(&entry.local_tag));
                    send_on(&mut entry.txn, now, resp);
                    self.insert_server(id, entry);
                    self.drain_server(id);
                }
            }
            return;
        }
        self.insert_server(id, entry);
        self.events.push_back(Event::Request {
            id,
            request: Box::new(request),
            source,
        });
        self.drain_server(id);
    }

    fn handle_ack(&mut self, now: Instant, ack: Request, key: ServerKey, source: Source) {
        let call_id = ack.headers.call_id().ok().map(str::to_string);
        let seq = ack.headers.cseq().ok().map(|c| c.seq);
        let to_tag = ack
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        let ack_key = match (call_id, seq, to_tag) {
            (Some(c), Some(n), Some(t)) => Some((c, n, t)),
            _ => None,
        };
        if let Some(pid) = ack_key.and_then(|k| self.pending_by_ack.remove(&k)) {
            self.pending_2xx.remove(&pid);
            self.schedule(Slot::Pending(pid), None);
            self.events.push_back(Event::Ack {
                request: Box::new(ack),
                source,
            });
            return;
        }
        if let Some(&id) = self.server_keys.get(&key)
            && let Some(e) = self.servers.get_mut(&id)
            && let ServerTxn::Invite(t) = &mut e.txn
            && t.state() == ServerInviteState::Completed
        {
            t.handle_request(now, ack);
            self.drain_server(id);
            return;
        }
        tracing::debug!("dropping ACK that matches no transaction and no 2xx");
    }

    /// §8.2 checks on a new request; `Some((status, warning/reason, extra header))` to reject.
    #[allow(clippy::type_complexity)]
    fn validate(
        &self,
        req: &Request,
        key: &ServerKey,
    ) -> Option<(u16, String, Option<(HeaderName, String)>)> {
        let h = &req.headers;
        // Mandatory headers, each strictly parsed.
        let checks: [(&str, Result<(), ParseError>); 5] = [
            ("Via", h.vias().map(|_| ())),
            ("From", h.from().map(|_| ())),
            ("To", h.to().map(|_| ())),
            ("Call-ID", h.call_id().map(|_| ())),
            ("CSeq", h.cseq().map(|_| ())),
        ];
        for (_, r) in checks {
            if let Err(e) = r {
                return Some((400, e.warning_text(), None));
            }
        }
        let cseq = h.cseq().ok()?;
        if cseq.method != req.method {
            return Some((
                400,
                "CSeq method does not match the request method".into(),
                None,
            ));
        }
        match h.max_forwards() {
            Err(e) => return Some((400, e.warning_text(), None)),
            Ok(Some(0)) => return Some((483, String::new(), None)),
            Ok(_) => {}
        }
        if let Ok(vias) = h.vias() {
            let prefix = format!("z9hG4bK{}x", self.config.instance);
            let ours = self.our_sent_by();
            if vias.iter().any(|v| {
                v.branch().is_some_and(|b| b.starts_with(&prefix))
                    && sent_by(v).eq_ignore_ascii_case(&ours)
            }) {
                return Some((482, String::new(), None));
            }
        }
        let scheme = req.uri.scheme_str();
        if !self
            .config
            .schemes
            .iter()
            .any(|s| s.eq_ignore_ascii_case(scheme))
        {
            return Some((416, String::new(), None));
        }
        if let Some(mk) = merge_key(req)
            && let Some(existing) = self.merged.get(&mk)
            && existing != key
        {
            return Some((482, "Merged Request".into(), None));
        }
        if req.method != Method::Cancel {
            let unsupported: Vec<String> = h
                .tokens(&HeaderName::Require)
                .into_iter()
                .filter(|t| {
                    !self
                        .config
                        .supported
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(t))
                })
                .collect();
            if !unsupported.is_empty() {
                return Some((
                    420,
                    String::new(),
                    Some((HeaderName::Unsupported, unsupported.join(", "))),
                ));
            }
        }
        None
    }

    // ------------------------------------------------------------------ TU API: UAS

    /// A response to request `id` built from it (§8.2.6): Via/From/To/Call-ID/CSeq copied,
    /// our To tag added (except to 100), Record-Route for 101–299. The TU adds Contact, body…
    pub fn make_response(&self, id: TxnId, status: u16, reason: &str) -> Option<Response> {
        let e = self.servers.get(&id)?;
        let req = server_request(&e.txn);
        let tag = (status != 100).then_some(e.local_tag.as_str());
        Some(self.build_response(req, status, reason, tag))
    }

    /// To tag our responses on transaction `id` carry.
    pub fn local_tag(&self, id: TxnId) -> Option<&str> {
        self.servers.get(&id).map(|e| e.local_tag.as_str())
    }

    /// Where the request of server transaction `id` came from.
    pub fn server_source(&self, id: TxnId) -> Option<Source> {
        self.servers.get(&id).map(|e| e.source)
    }

    /// The request of server transaction `id`.
    pub fn server_request(&self, id: TxnId) -> Option<&Request> {
        self.servers.get(&id).map(|e| server_request(&e.txn))
    }

    /// One-liner answers: `respond(now, id, 481)`, `respond(now, id, 487)`, …
    pub fn respond(&mut self, now: Instant, id: TxnId, status: u16) -> Result<(), EndpointError> {
        let resp = self
            .make_response(id, status, "")
            .ok_or(EndpointError::UnknownTransaction)?;
        self.send_response(now, id, resp)
    }

    /// Sends a TU-built response on server transaction `id`. A 2xx to INVITE is then
    /// retransmitted by the core until its ACK (or `Event::AckTimeout`).
    pub fn send_response(
        &mut self,
        now: Instant,
        id: TxnId,
        response: Response,
    ) -> Result<(), EndpointError> {
        let t1 = self.config.timers.t1;
        let give_up = now + self.config.timers.t1x64();
        let e = self
            .servers
            .get_mut(&id)
            .ok_or(EndpointError::UnknownTransaction)?;
        let pending = match &e.txn {
            ServerTxn::Invite(t) if response.is_success() => {
                let req = t.request();
                let to_tag = response
                    .headers
                    .to()?
                    .tag()
                    .map(str::to_string)
                    .unwrap_or_default();
                Some(Pending2xx {
                    key: (
                        req.headers.call_id()?.to_string(),
                        req.headers.cseq()?.seq,
                        to_tag,
                    ),
                    response: response.clone(),
                    target: e.target.clone(),
                    next: now + t1,
                    interval: t1,
                    give_up,
                })
            }
            _ => None,
        };
        if !send_on(&mut e.txn, now, response) {
            return Err(EndpointError::InvalidState);
        }
        if let Some(p) = pending {
            if let Some(old) = self.pending_by_ack.insert(p.key.clone(), id)
                && old != id
            {
                self.pending_2xx.remove(&old);
                self.schedule(Slot::Pending(old), None);
            }
            // The TU re-sending the 2xx itself restarts nothing: keep the running schedule.
            if !self.pending_2xx.contains_key(&id) {
                self.schedule(Slot::Pending(id), Some(p.next));
                self.pending_2xx.insert(id, p);
            }
        }
        self.drain_server(id);
        Ok(())
    }

    // ------------------------------------------------------------------ TU API: UAC

    /// Starts a client transaction for `request` (not ACK/CANCEL): our Via (fresh branch,
    /// `rport`) is put on top, Max-Forwards 70 added if missing.
    pub fn send_request(
        &mut self,
        now: Instant,
        mut request: Request,
        mut target: Target,
    ) -> Result<TxnId, EndpointError> {
        if matches!(request.method, Method::Ack | Method::Cancel) {
            return Err(EndpointError::WrongMethod);
        }
        let branch = self.new_branch();
        request
            .headers
            .push_front(HeaderName::Via, self.via_value(target.transport, &branch));
        if !request.headers.contains(&HeaderName::MaxForwards) {
            request.headers.push(HeaderName::MaxForwards, "70");
        }
        // RFC 3261 §18.1.1: too large for UDP → the same destination over TCP (its Via says so).
        if target.transport == TransportKind::Udp
            && let Some(mtu) = self.config.path_mtu
            && crate::transport::needs_congestion_controlled(request.to_bytes().len(), mtu)
        {
            target.transport = TransportKind::Tcp;
            target.connection = None;
            let via = self.via_value(TransportKind::Tcp, &branch);
            request.headers.0[0].value = via;
        }
        Ok(self.start_client(now, request, branch, target))
    }

    /// Sends an end-to-end ACK for a 2xx (no transaction, fresh branch, §13.2.2.4).
    pub fn send_ack(
        &mut self,
        _now: Instant,
        mut ack: Request,
        target: Target,
    ) -> Result<(), EndpointError> {
        if ack.method != Method::Ack {
            return Err(EndpointError::WrongMethod);
        }
        let branch = self.new_branch();
        ack.headers
            .push_front(HeaderName::Via, self.via_value(target.transport, &branch));
        if !ack.headers.contains(&HeaderName::MaxForwards) {
            ack.headers.push(HeaderName::MaxForwards, "70");
        }
        self.transmits.push_back(Transmit {
            message: Message::Request(ack),
            target,
            txn: None,
        });
        Ok(())
    }

    /// CANCELs INVITE client transaction `invite` (§9.1): same Request-URI, top Via, From, To,
    /// Call-ID, CSeq number and Route. Allowed once a provisional response arrived
    /// (`InvalidState` before: retry after the first `Event::Response`).
    pub fn send_cancel(&mut self, now: Instant, invite: TxnId) -> Result<TxnId, EndpointError> {
        let e = self
            .clients
            .get(&invite)
            .ok_or(EndpointError::UnknownTransaction)?;
        let ClientTxn::Invite(t) = &e.txn else {
            return Err(EndpointError::WrongMethod);
        };
        if t.state() != ClientInviteState::Proceeding {
            return Err(EndpointError::InvalidState);
        }
        let inv = t.request();
        let mut cancel = Request {
            method: Method::Cancel,
            uri: inv.uri.clone(),
            headers: Default::default(),
            body: Default::default(),
        };
        let via = inv
            .headers
            .get(&HeaderName::Via)
            .map(first_element)
            .unwrap_or("");
        cancel.headers.push(HeaderName::Via, via);
        cancel.headers.push(HeaderName::MaxForwards, "70");
        for n in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
            if let Some(v) = inv.headers.get(&n) {
                cancel.headers.push(n, v);
            }
        }
        cancel.headers.push(
            HeaderName::CSeq,
            format!("{} CANCEL", inv.headers.cseq()?.seq),
        );
        for r in inv.headers.get_all(&HeaderName::Route) {
            cancel.headers.push(HeaderName::Route, r);
        }
        let branch = e.key.branch.clone();
        let target = e.target.clone();
        Ok(self.start_client(now, cancel, branch, target))
    }

    /// The request of client transaction `id` (with our Via).
    pub fn client_request(&self, id: TxnId) -> Option<&Request> {
        self.clients.get(&id).map(|e| match &e.txn {
            ClientTxn::Invite(t) => t.request(),
            ClientTxn::NonInvite(t) => t.request(),
        })
    }

    /// The shell reports that sending for transaction `id` failed.
    pub fn handle_transport_error(&mut self, now: Instant, id: TxnId) {
        if let Some(e) = self.clients.get_mut(&id) {
            match &mut e.txn {
                ClientTxn::Invite(t) => t.handle_transport_error(now),
                ClientTxn::NonInvite(t) => t.handle_transport_error(now),
            }
            self.drain_client(id);
        } else if let Some(e) = self.servers.get_mut(&id) {
            match &mut e.txn {
                ServerTxn::Invite(t) => t.handle_transport_error(now),
                ServerTxn::NonInvite(t) => t.handle_transport_error(now),
            }
            self.drain_server(id);
        }
    }

    // ------------------------------------------------------------------ output

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Earliest deadline (may be a superseded one: calling `handle_timeout` then is harmless).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, slot))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if self.scheduled.get(&slot) != Some(&at) {
                continue;
            }
            self.scheduled.remove(&slot);
            match slot {
                Slot::Client(id) => {
                    if let Some(e) = self.clients.get_mut(&id) {
                        match &mut e.txn {
                            ClientTxn::Invite(t) => t.handle_timeout(now),
                            ClientTxn::NonInvite(t) => t.handle_timeout(now),
                        }
                    }
                    self.drain_client(id);
                }
                Slot::Server(id) => {
                    if let Some(e) = self.servers.get_mut(&id) {
                        match &mut e.txn {
                            ServerTxn::Invite(t) => t.handle_timeout(now),
                            ServerTxn::NonInvite(t) => t.handle_timeout(now),
                        }
                    }
                    self.drain_server(id);
                }
                Slot::Pending(id) => self.pending_timeout(now, id),
            }
        }
    }

    fn pending_timeout(&mut self, now: Instant, id: TxnId) {
        let t2 = self.config.timers.t2;
        let Some(p) = self.pending_2xx.get_mut(&id) else {
            return;
        };
        if p.give_up <= now {
            if let Some(p) = self.pending_2xx.remove(&id) {
                self.pending_by_ack.remove(&p.key);
                self.events.push_back(Event::AckTimeout {
                    id,
                    response: Box::new(p.response),
                });
            }
            return;
        }
        while p.next <= now {
            self.transmits.push_back(Transmit {
                message: Message::Response(p.response.clone()),
                target: p.target.clone(),
                txn: Some(id),
            });
            p.interval = (p.interval * 2).min(t2);
            p.next += p.interval;
        }
        let at = p.next.min(p.give_up);
        self.schedule(Slot::Pending(id), Some(at));
    }

    /// Records `slot`'s next deadline (`None`: nothing pending).
    fn schedule(&mut self, slot: Slot, at: Option<Instant>) {
        match at {
            Some(at) => {
                if self.scheduled.insert(slot, at) != Some(at) {
                    self.heap.push(Reverse((at, slot)));
                }
            }
            None => {
                self.scheduled.remove(&slot);
            }
        }
    }

    // ------------------------------------------------------------------ internals

    fn alloc_id(&mut self) -> TxnId {
        let id = TxnId(self.next_id);
        self.next_id += 1;
        id
    }

    fn unique(&mut self) -> u64 {
        let n = self.next_unique;
        self.next_unique += 1;
        n
    }

    fn new_branch(&mut self) -> String {
        let n = self.unique();
        format!("z9hG4bK{}x{n:x}", self.config.instance)
    }

    fn our_sent_by(&self) -> String {
        let port = self.config.via_port.unwrap_or(5060);
        format!("{}:{port}", self.config.via_host.to_ascii_lowercase())
    }

    fn via_value(&self, transport: TransportKind, branch: &str) -> String {
        let port = self
            .config
            .via_port
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!(
            "SIP/2.0/{} {}{port};branch={branch};rport",
            transport.via_token(),
            self.config.via_host
        )
    }

    fn start_client(
        &mut self,
        now: Instant,
        request: Request,
        branch: String,
        target: Target,
    ) -> TxnId {
        let id = self.alloc_id();
        let reliable = target.transport.is_reliable();
        let method = request.method.clone();
        let txn = if method == Method::Invite {
            ClientTxn::Invite(ClientInvite::new(
                now,
                request,
                reliable,
                self.config.timers,
            ))
        } else {
            ClientTxn::NonInvite(ClientNonInvite::new(
                now,
                request,
                reliable,
                self.config.timers,
            ))
        };
        let key = ClientKey { branch, method };
        self.client_keys.insert(key.clone(), id);
        self.clients.insert(id, ClientEntry { key, txn, target });
        self.drain_client(id);
        id
    }

    fn insert_server(&mut self, id: TxnId, entry: ServerEntry) {
        self.server_keys.insert(entry.key.clone(), id);
        self.servers.insert(id, entry);
    }

    fn drain_client(&mut self, id: TxnId) {
        let Some(e) = self.clients.get_mut(&id) else {
            return;
        };
        loop {
            let out = match &mut e.txn {
                ClientTxn::Invite(t) => t.poll_transmit(),
                ClientTxn::NonInvite(t) => t.poll_transmit(),
            };
            let Some(r) = out else { break };
            self.transmits.push_back(Transmit {
                message: Message::Request(r),
                target: e.target.clone(),
                txn: Some(id),
            });
        }
        loop {
            let ev = match &mut e.txn {
                ClientTxn::Invite(t) => t.poll_event(),
                ClientTxn::NonInvite(t) => t.poll_event(),
            };
            let Some(ev) = ev else { break };
            self.events.push_back(match ev {
                ClientEvent::Response(response) => Event::Response {
                    id,
                    response: Box::new(response),
                },
                ClientEvent::Timeout => Event::Timeout { id },
                ClientEvent::TransportError => Event::TransportError { id },
            });
        }
        let done = match &e.txn {
            ClientTxn::Invite(t) => t.is_terminated(),
            ClientTxn::NonInvite(t) => t.is_terminated(),
        };
        let next = match &e.txn {
            ClientTxn::Invite(t) => t.poll_timeout(),
            ClientTxn::NonInvite(t) => t.poll_timeout(),
        };
        if done {
            let key = e.key.clone();
            self.clients.remove(&id);
            self.client_keys.remove(&key);
            self.schedule(Slot::Client(id), None);
        } else {
            self.schedule(Slot::Client(id), next);
        }
    }

    fn drain_server(&mut self, id: TxnId) {
        let Some(e) = self.servers.get_mut(&id) else {
            return;
        };
        loop {
            let out = match &mut e.txn {
                ServerTxn::Invite(t) => t.poll_transmit(),
                ServerTxn::NonInvite(t) => t.poll_transmit(),
            };
            let Some(r) = out else { break };
            self.transmits.push_back(Transmit {
                message: Message::Response(r),
                target: e.target.clone(),
                txn: Some(id),
            });
        }
        loop {
            let ev = match &mut e.txn {
                ServerTxn::Invite(t) => t.poll_event(),
                ServerTxn::NonInvite(t) => t.poll_event(),
            };
            let Some(ev) = ev else { break };
            match ev {
                // ACKs for 2xx are reported by the core (pending 2xx match), not twice.
                ServerEvent::Ack(_) => {}
                ServerEvent::Timeout => self.events.push_back(Event::Timeout { id }),
                ServerEvent::TransportError => self.events.push_back(Event::TransportError { id }),
            }
        }
        let done = match &e.txn {
            ServerTxn::Invite(t) => t.is_terminated(),
            ServerTxn::NonInvite(t) => t.is_terminated(),
        };
        let next = match &e.txn {
            ServerTxn::Invite(t) => t.poll_timeout(),
            ServerTxn::NonInvite(t) => t.poll_timeout(),
        };
        if done {
            let key = e.key.clone();
            let mk = e.merge_key.clone();
            self.servers.remove(&id);
            self.server_keys.remove(&key);
            if let Some(mk) = mk
                && self.merged.get(&mk) == Some(&key)
            {
                self.merged.remove(&mk);
            }
        }
        self.schedule(Slot::Server(id), if done { None } else { next });
    }

    fn build_response(
        &self,
        req: &Request,
        status: u16,
        reason: &str,
        tag: Option<&str>,
    ) -> Response {
        let mut resp = response_to(req, status, reason);
        if let Some(tag) = tag {
            add_to_tag(&mut resp, tag);
        }
        resp
    }

    fn error_response(
        &self,
        req: &Request,
        status: u16,
        text: &str,
        tag: Option<&str>,
    ) -> Response {
        let reason = if status == 482 && text == "Merged Request" {
            "Loop Detected (Merged Request)"
        } else {
            ""
        };
        let mut resp = self.build_response(req, status, reason, tag);
        if !text.is_empty() && text != "Merged Request" {
            resp.headers.push(
                HeaderName::Warning,
                format!(
                    "399 {} \"{}\"",
                    self.config.via_host,
                    text.replace('"', "'")
                ),
            );
        }
        resp
    }
}

/// Adds `;tag=` to the To header of `resp` unless it already has one.
pub fn add_to_tag(resp: &mut Response, tag: &str) {
    let has_tag = resp.headers.to().map(|t| t.tag().is_some()).unwrap_or(true);
    if has_tag {
        return;
    }
    if let Some(h) = resp.headers.0.iter_mut().find(|h| h.name == HeaderName::To) {
        h.value = format!("{};tag={tag}", h.value);
    }
}

fn server_request(txn: &ServerTxn) -> &Request {
    match txn {
        ServerTxn::Invite(t) => t.request(),
        ServerTxn::NonInvite(t) => t.request(),
    }
}

fn send_on(txn: &mut ServerTxn, now: Instant, resp: Response) -> bool {
    match txn {
        ServerTxn::Invite(t) => t.send_response(now, resp),
        ServerTxn::NonInvite(t) => t.send_response(now, resp),
    }
}

fn merge_key(req: &Request) -> Option<MergeKey> {
    let to = req.headers.to().ok()?;
    if to.tag().is_some() {
        return None;
    }
    let from = req.headers.from().ok()?;
    let cseq = req.headers.cseq().ok()?;
    Some((
        from.tag()?.to_string(),
        req.headers.call_id().ok()?.to_string(),
        cseq.seq,
        cseq.method,
    ))
}

/// RFC 3261 §18.2.1 + RFC 3581 §4: `received` when the source IP differs from sent-by (or
/// `rport` is present), `rport` filled with the source port.
pub fn stamp_via(via: &mut Via, source: Source) {
    let src_ip = source.remote.ip();
    let same_ip = match &via.host {
        Host::Ipv4(a) => IpAddr::V4(*a) == src_ip,
        Host::Ipv6(a) => IpAddr::V6(*a) == src_ip,
        Host::Domain(_) => false,
    };
    let has_rport = via.rport().is_some();
    if !same_ip || has_rport {
        via.params.set("received", Some(&src_ip.to_string()));
    }
    if has_rport {
        via.params
            .set("rport", Some(&source.remote.port().to_string()));
    }
}

/// §18.2.2 (with RFC 3581): where responses to a request with top Via `via` go.
pub fn response_target(via: &Via, source: Source) -> Target {
    let transport = source.transport;
    if transport.is_reliable() {
        return Target {
            transport,
            destination: Destination::Addr(source.remote),
            connection: source.connection,
        };
    }
    let default = default_port(&via.transport);
    if let Some(maddr) = via.params.value("maddr") {
        let port = via.port.unwrap_or(default);
        return Target {
            transport,
            destination: match maddr.parse::<IpAddr>() {
                Ok(ip) => Destination::Addr(SocketAddr::new(ip, port)),
                Err(_) => Destination::Name {
                    host: maddr.to_string(),
                    port,
                },
            },
            connection: None,
        };
    }
    let port = match via.rport() {
        Some(Some(p)) => p,
        _ => via.port.unwrap_or(default),
    };
    if let Some(ip) = via
        .received()
        .and_then(|r| r.trim_matches(['[', ']']).parse::<IpAddr>().ok())
    {
        return Target {
            transport,
            destination: Destination::Addr(SocketAddr::new(ip, port)),
            connection: None,
        };
    }
    let destination = match &via.host {
        Host::Ipv4(a) => Destination::Addr(SocketAddr::new(IpAddr::V4(*a), port)),
        Host::Ipv6(a) => Destination::Addr(SocketAddr::new(IpAddr::V6(*a), port)),
        Host::Domain(d) => Destination::Name {
            host: d.clone(),
            port,
        },
    };
    Target {
        transport,
        destination,
        connection: None,
    }
}

/// Rewrites the first element of the first Via line with `via`.
fn replace_top_via(req: &mut Request, via: &Via) {
    if let Some(h) = req.headers.0.iter_mut().find(|h| h.name == HeaderName::Via) {
        let first = first_element(&h.value);
        let rest_start = h
            .value
            .find(first)
            .map(|i| i + first.len())
            .unwrap_or(h.value.len());
        let rest = h.value[rest_start..].to_string();
        h.value = format!("{via}{rest}");
    }
}

/// Convenience for the TU: the id of the dialog an incoming request belongs to, `None` when out
/// of dialog (no To tag). A request with an id the TU does not know gets
/// `endpoint.respond(now, id, 481)`.
pub fn dialog_of(request: &Request) -> Option<DialogId> {
    DialogId::of_incoming_request(request).ok().flatten()
}
