//! The sans-IO switchboard between the two SIP endpoints (WhatsApp side, PBX side) and the
//! calls: it is the transaction user of both endpoints. Endpoint events are routed to the
//! call they belong to (by leg and Call-ID, or by transaction id) or create a new call (an
//! out-of-dialog INVITE); call actions become endpoint operations with the right target.
//! Media actions and record updates are queued for the runtime.
//!
//! Guarantees: no I/O and no clock reads; every endpoint event is either routed, answered
//! (481 / 404 / 200 for OPTIONS) or dropped with a reason, never panics; a finished call's
//! mappings are removed with it. The runtime (tokio) only moves bytes between the transports
//! and `endpoint_mut(leg)`, sleeps until `poll_timeout`, and applies `poll_output`.
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, Secret, SecretSource, Transport};
use crate::sip::auth::{Challenge, Credentials, DigestServer, ServerConfig, UserSecret, Verdict};
use crate::sip::endpoint::{Destination, Endpoint, Event, Source, Target, TransportKind, TxnId};
use crate::sip::header::HeaderName;
use crate::sip::message::{Headers, Request};
use crate::sip::method::Method;
use crate::sip::uri::Uri;

use super::state::{
    Action, Call, CallConfig, CallDeps, CallState, Leg, LegEvent, MediaAction, Permission,
    RecordUpdate, ReqId, ServerTxn,
};
use super::translate;

/// Which inbound digest server checks a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DigestKey {
    /// WhatsApp profile index (challenge Meta, 407).
    WhatsApp(usize),
    /// Trunk name (challenge the PBX, 401).
    Trunk(String),
}

/// Identifies a call inside the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u64);

/// What the runtime must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Media(CallKey, MediaAction),
    Record(CallKey, RecordUpdate),
    State(CallKey, CallState),
    /// A trunk's qualify state changed (OPTIONS answered → up; two misses → down).
    Trunk {
        name: String,
        up: bool,
    },
    /// An inbound digest authentication failed on `leg` (wrong credentials, lockout, bad
    /// digest syntax).
    AuthFailure(Leg),
}

/// Builds the media/auth helpers of a new call.
pub type DepsFactory = Box<dyn FnMut(&CallConfig) -> CallDeps + Send>;

/// What the permission lookup knows for (business number, WhatsApp user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionAnswer {
    /// Answered now (from a cache, or `Unknown` when no lookup is possible).
    Known(Permission),
    /// A lookup is under way: its answer comes through [`Router::handle_permission`].
    Pending,
}

impl From<Permission> for PermissionAnswer {
    fn from(p: Permission) -> PermissionAnswer {
        PermissionAnswer::Known(p)
    }
}

/// Graph permission for (business number, WhatsApp user); must not block.
pub type PermissionLookup = Box<dyn FnMut(&str, &str) -> PermissionAnswer + Send>;

/// Resolves a configured secret (inbound digest passwords). Injected so the router does no
/// I/O; the default resolves only `{ literal = ... }`.
pub type SecretResolver = Box<dyn FnMut(&SecretSource) -> Option<Secret> + Send>;

/// How long the business-initiated INVITE waits for a pending Graph permission answer.
pub const DEFAULT_PERMISSION_WAIT: Duration = Duration::from_secs(2);

/// Consecutive unanswered OPTIONS after which a trunk is down.
pub const QUALIFY_FAILURES: u8 = 2;

/// OPTIONS qualify of one trunk (sans-IO).
#[derive(Debug)]
struct Qualify {
    trunk: String,
    interval: Duration,
    target: Target,
    uri: String,
    next: Option<Instant>,
    /// The ping in flight and when it counts as missed.
    outstanding: Option<(TxnId, Instant)>,
    failures: u8,
    up: bool,
    seq: u32,
}

/// A trunk's reachability as the qualify sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkState {
    pub name: String,
    /// `None`: not qualified (`options_ping_s = 0`).
    pub up: Option<bool>,
}

struct Entry {
    call: Call,
    /// Where Meta's INVITE came from (user-initiated): in-dialog requests reuse it.
    wa_source: Option<Source>,
    /// PBX peer of this call.
    pbx_target: Target,
    /// Meta's edge for requests we originate (business-initiated INVITE).
    wa_connect: crate::config::HostPort,
    call_ids: Vec<(Leg, String)>,
    server: Vec<(Leg, TxnId)>,
    client: Vec<(Leg, TxnId)>,
}

/// The B2BUA switchboard.
pub struct Router {
    config: Arc<Config>,
    wa: Endpoint,
    pbx: Endpoint,
    deps: DepsFactory,
    permission: PermissionLookup,
    id_prefix: String,
    next_key: u64,
    calls: HashMap<CallKey, Entry>,
    by_call_id: HashMap<(Leg, String), CallKey>,
    server: HashMap<(Leg, TxnId), CallKey>,
    client: HashMap<(Leg, TxnId), (CallKey, ReqId)>,
    client_rev: HashMap<(CallKey, ReqId), (Leg, TxnId)>,
    out: VecDeque<Output>,
    secrets: SecretResolver,
    /// Inbound digest servers: WhatsApp profile index / trunk name → server.
    wa_digest: HashMap<usize, DigestServer>,
    trunk_digest: HashMap<String, DigestServer>,
    qualify: Vec<Qualify>,
    qualify_txn: HashMap<TxnId, usize>,
    /// Shutting down: no new calls, no pings.
    draining: bool,
    permission_wait: Duration,
    /// Calls parked for a pending permission answer, by (business, user).
    parked: HashMap<(String, String), Vec<CallKey>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("calls", &self.calls.len())
            .finish_non_exhaustive()
    }
}

fn kind(t: Transport) -> TransportKind {
    match t {
        Transport::Udp => TransportKind::Udp,
        Transport::Tcp => TransportKind::Tcp,
        Transport::Tls => TransportKind::Tls,
    }
}

fn destination(host: &str, port: u16) -> Destination {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Destination::Addr(std::net::SocketAddr::new(ip, port)),
        Err(_) => Destination::Name {
            host: host.to_owned(),
            port,
        },
    }
}

impl Router {
    /// `wa` / `pbx`: the endpoints of the WhatsApp-side TLS listener and the PBX side.
    pub fn new(
        config: Arc<Config>,
        wa: Endpoint,
        pbx: Endpoint,
        deps: DepsFactory,
        permission: PermissionLookup,
        id_prefix: impl Into<String>,
    ) -> Router {
        Router {
            config,
            wa,
            pbx,
            deps,
            permission,
            id_prefix: id_prefix.into(),
            next_key: 0,
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            server: HashMap::new(),
            client: HashMap::new(),
            client_rev: HashMap::new(),
            out: VecDeque::new(),
            secrets: Box::new(|s: &SecretSource| match s {
                SecretSource::Literal(_) => s.resolve().ok(),
                _ => None,
            }),
            wa_digest: HashMap::new(),
            trunk_digest: HashMap::new(),
            qualify: Vec::new(),
            qualify_txn: HashMap::new(),
            draining: false,
            permission_wait: DEFAULT_PERMISSION_WAIT,
            parked: HashMap::new(),
        }
    }

    /// How inbound digest passwords are resolved (the gateway reads files/env here).
    pub fn with_secrets(mut self, secrets: SecretResolver) -> Router {
        self.secrets = secrets;
        self
    }

    /// How long a business-initiated INVITE waits for a pending permission answer (zero:
    /// never wait, a pending lookup counts as `Unknown`).
    pub fn with_permission_wait(mut self, wait: Duration) -> Router {
        self.permission_wait = wait;
        self
    }

    /// Arms the trunk qualify (first OPTIONS now); call once when the transports are up.
    pub fn start(&mut self, now: Instant) {
        self.qualify = self
            .config
            .trunks
            .iter()
            .filter_map(|t| {
                let interval = Duration::from_secs(u64::from(t.options_ping_s?));
                let (host, port) = (&t.peer.address.host, t.peer.address.port);
                let param = match t.peer.transport {
                    Transport::Udp => "",
                    Transport::Tcp => ";transport=tcp",
                    Transport::Tls => ";transport=tls",
                };
                let host_text = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                Some(Qualify {
                    trunk: t.name.clone(),
                    interval,
                    target: Target {
                        transport: kind(t.peer.transport),
                        destination: destination(host, port),
                        connection: None,
                    },
                    uri: format!("sip:{host_text}:{port}{param}"),
                    next: Some(now),
                    outstanding: None,
                    failures: 0,
                    up: true,
                    seq: 0,
                })
            })
            .collect();
    }

    /// Every trunk with its qualify state.
    pub fn trunks(&self) -> Vec<TrunkState> {
        self.config
            .trunks
            .iter()
            .map(|t| TrunkState {
                name: t.name.clone(),
                up: self
                    .qualify
                    .iter()
                    .find(|q| q.trunk == t.name)
                    .map(|q| q.up),
            })
            .collect()
    }

    fn trunk_up(&self, name: &str) -> bool {
        self.qualify
            .iter()
            .find(|q| q.trunk == name)
            .is_none_or(|q| q.up)
    }

    /// The Graph permission answer for (business, user): parked calls proceed.
    pub fn handle_permission(
        &mut self,
        now: Instant,
        business: &str,
        user: &str,
        permission: Permission,
    ) {
        let Some(keys) = self.parked.remove(&(business.to_owned(), user.to_owned())) else {
            return;
        };
        for k in keys {
            if let Some(e) = self.calls.get_mut(&k) {
                e.call.handle_permission(now, permission);
            }
            self.drain_call(now, k);
        }
    }

    /// Starts the shutdown: no new calls (503), no pings, every call ended properly (BYE on
    /// confirmed dialogs, CANCEL of our pending INVITEs, 503 to INVITEs still unanswered).
    pub fn begin_shutdown(&mut self, now: Instant) {
        self.draining = true;
        let keys: Vec<CallKey> = self.calls.keys().copied().collect();
        for k in keys {
            if let Some(e) = self.calls.get_mut(&k) {
                e.call.shutdown(now);
            }
            self.drain_call(now, k);
        }
    }

    /// True once every call ended and none awaits an answer to its BYE/CANCEL.
    pub fn is_drained(&self) -> bool {
        self.calls.values().all(|e| e.call.is_settled())
    }

    /// The endpoint of `leg` (feed it received messages, drain its transmits).
    pub fn endpoint_mut(&mut self, leg: Leg) -> &mut Endpoint {
        match leg {
            Leg::WhatsApp => &mut self.wa,
            Leg::Pbx => &mut self.pbx,
        }
    }

    pub fn calls(&self) -> impl Iterator<Item = (CallKey, &Call)> {
        self.calls.iter().map(|(k, e)| (*k, &e.call))
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Earliest deadline of both endpoints and every call.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pings = self.qualify.iter().flat_map(|q| {
            let next = if self.draining { None } else { q.next };
            next.into_iter().chain(q.outstanding.map(|(_, at)| at))
        });
        self.calls
            .values()
            .filter_map(|e| e.call.poll_timeout())
            .chain(self.wa.poll_timeout())
            .chain(self.pbx.poll_timeout())
            .chain(pings)
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.wa.handle_timeout(now);
        self.pbx.handle_timeout(now);
        self.qualify_timeout(now);
        let keys: Vec<CallKey> = self.calls.keys().copied().collect();
        for k in keys {
            if let Some(e) = self.calls.get_mut(&k) {
                e.call.handle_timeout(now);
            }
            self.drain_call(now, k);
        }
        self.process(now);
        self.reap(now);
    }

    /// The media relay of call `k` saw no media from Meta for its configured time: the call
    /// ends on both legs (BYE with a Reason).
    pub fn handle_media_timeout(&mut self, now: Instant, k: CallKey) {
        self.handle_media_event(now, k, LegEvent::MediaTimeout);
    }

    /// A media event for call `k` (`MediaTimeout`, `MediaFailed`).
    pub fn handle_media_event(&mut self, now: Instant, k: CallKey, ev: LegEvent) {
        if let Some(e) = self.calls.get_mut(&k) {
            e.call.handle_event(now, ev);
        }
        self.drain_call(now, k);
        self.process(now);
    }

    /// Handles every pending endpoint event of both legs (call after feeding messages).
    pub fn process(&mut self, now: Instant) {
        loop {
            let ev = match self.wa.poll_event() {
                Some(ev) => (Leg::WhatsApp, ev),
                None => match self.pbx.poll_event() {
                    Some(ev) => (Leg::Pbx, ev),
                    None => break,
                },
            };
            self.on_event(now, ev.0, ev.1);
        }
    }

    fn reap(&mut self, now: Instant) {
        let done: Vec<CallKey> = self
            .calls
            .iter()
            .filter(|(_, e)| e.call.is_done(now))
            .map(|(k, _)| *k)
            .collect();
        if !done.is_empty() && !self.parked.is_empty() {
            let calls = &self.calls;
            self.parked.retain(|_, v| {
                v.retain(|k| calls.contains_key(k) && !done.contains(k));
                !v.is_empty()
            });
        }
        for k in done {
            if let Some(e) = self.calls.remove(&k) {
                for c in e.call_ids {
                    self.by_call_id.remove(&c);
                }
                for s in e.server {
                    self.server.remove(&s);
                }
                for c in e.client {
                    if let Some((_, id)) = self.client.remove(&c) {
                        self.client_rev.remove(&(k, id));
                    }
                }
            }
        }
    }

    fn on_event(&mut self, now: Instant, leg: Leg, ev: Event) {
        match ev {
            Event::Request {
                id,
                request,
                source,
            } => self.on_request(now, leg, id, *request, source),
            Event::Ack { request, .. } => {
                if let Some(k) = self.call_of(leg, &request) {
                    self.feed(
                        now,
                        k,
                        LegEvent::Ack {
                            leg,
                            request: *request,
                        },
                    );
                }
            }
            Event::Cancelled { invite, .. } => {
                if let Some(k) = self.server.get(&(leg, invite)).copied() {
                    self.feed(
                        now,
                        k,
                        LegEvent::Cancelled {
                            leg,
                            txn: ServerTxn(invite.0),
                        },
                    );
                }
            }
            Event::Response { id, response }
                if leg == Leg::Pbx && self.qualify_txn.contains_key(&id) =>
            {
                if response.is_final() {
                    self.qualify_result(now, id, true);
                }
            }
            Event::Timeout { id } | Event::TransportError { id }
                if leg == Leg::Pbx && self.qualify_txn.contains_key(&id) =>
            {
                self.qualify_result(now, id, false);
            }
            Event::Response { id, response } => {
                if let Some((k, req)) = self.client.get(&(leg, id)).copied() {
                    self.feed(
                        now,
                        k,
                        LegEvent::Response {
                            leg,
                            id: req,
                            response: *response,
                        },
                    );
                }
            }
            Event::Timeout { id } | Event::TransportError { id } => {
                if let Some((k, req)) = self.client.get(&(leg, id)).copied() {
                    self.feed(now, k, LegEvent::Timeout { leg, id: req });
                }
            }
            Event::AckTimeout { id, .. } => {
                if let Some(k) = self.server.get(&(leg, id)).copied() {
                    self.feed(now, k, LegEvent::AckTimeout { leg });
                }
            }
        }
    }

    fn call_of(&self, leg: Leg, req: &Request) -> Option<CallKey> {
        let cid = req.headers.call_id().ok()?;
        self.by_call_id.get(&(leg, cid.to_owned())).copied()
    }

    fn on_request(&mut self, now: Instant, leg: Leg, id: TxnId, req: Request, source: Source) {
        if let Some(k) = self.call_of(leg, &req) {
            self.server.insert((leg, id), k);
            if let Some(e) = self.calls.get_mut(&k) {
                e.server.push((leg, id));
            }
            return self.feed(
                now,
                k,
                LegEvent::Request {
                    leg,
                    txn: ServerTxn(id.0),
                    request: req,
                },
            );
        }
        let out_of_dialog = req.headers.to().is_ok_and(|t| t.tag().is_none());
        match req.method {
            Method::Invite if out_of_dialog => self.new_call(now, leg, id, req, source),
            Method::Options if out_of_dialog => {
                let _ = self.endpoint_mut(leg).respond(now, id, 200);
            }
            _ => {
                let _ = self.endpoint_mut(leg).respond(now, id, 481);
            }
        }
    }

    fn reject(&mut self, now: Instant, leg: Leg, id: TxnId, status: u16, text: &str) {
        let ep = self.endpoint_mut(leg);
        if let Some(mut r) = ep.make_response(id, status, "") {
            let host = ep.config().via_host.clone();
            r.headers.push(
                crate::sip::header::HeaderName::Warning,
                translate::warning_header(&host, text),
            );
            let _ = ep.send_response(now, id, r);
        }
    }

    /// A failure response with `Warning` and `Reason` (and any `extra` headers).
    fn reject_with(
        &mut self,
        now: Instant,
        leg: Leg,
        id: TxnId,
        status: u16,
        text: &str,
        extra: Vec<(HeaderName, String)>,
    ) {
        let ep = self.endpoint_mut(leg);
        if let Some(mut r) = ep.make_response(id, status, "") {
            let host = ep.config().via_host.clone();
            r.headers
                .push(HeaderName::Reason, translate::sip_reason(status, text));
            r.headers
                .push(HeaderName::Warning, translate::warning_header(&host, text));
            for (n, v) in extra {
                r.headers.push(n, v);
            }
            let _ = ep.send_response(now, id, r);
        }
    }

    /// Inbound digest check of a new INVITE. True when authenticated; otherwise the request
    /// has been answered: 401/407 (no credentials for our realm, or a stale nonce), 403
    /// (wrong username or password — identical for both —, or a locked-out source), 400
    /// (malformed credentials, digest `uri` not the Request-URI).
    #[allow(clippy::too_many_arguments)]
    fn check_digest(
        &mut self,
        now: Instant,
        leg: Leg,
        id: TxnId,
        req: &Request,
        source: Source,
        server: DigestKey,
        username: &str,
        password: &SecretSource,
    ) -> bool {
        let (realm, proxy) = match &server {
            DigestKey::WhatsApp(i) => (self.config.whatsapp[*i].inbound_auth.realm.clone(), true),
            DigestKey::Trunk(name) => match self
                .config
                .trunk(name)
                .and_then(|t| t.inbound_auth.as_ref())
            {
                Some(a) => (a.realm.clone(), false),
                None => return true,
            },
        };
        let secret = (self.secrets)(password);
        if secret.is_none() {
            tracing::warn!(
                ?leg,
                "inbound digest password unavailable: every attempt fails"
            );
        }
        let server_ref = match &server {
            DigestKey::WhatsApp(i) => self.wa_digest.get_mut(i),
            DigestKey::Trunk(n) => self.trunk_digest.get_mut(n),
        };
        let digest = match server_ref {
            Some(d) => d,
            None => {
                let mut sc = ServerConfig::new(realm.clone());
                sc.proxy = proxy;
                if !proxy {
                    // Toward PBXes MD5 comes first: many (SIPp, older Asterisk) answer only the
                    // first challenge and know no SHA-256. Meta gets SHA-256 first.
                    sc.algorithms.reverse();
                }
                match DigestServer::with_random_secret(sc, now) {
                    Ok(d) => match server.clone() {
                        DigestKey::WhatsApp(i) => self.wa_digest.entry(i).or_insert(d),
                        DigestKey::Trunk(n) => self.trunk_digest.entry(n).or_insert(d),
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot build the inbound digest server");
                        self.reject_with(now, leg, id, 500, "digest server unavailable", vec![]);
                        return false;
                    }
                }
            }
        };
        let cred_name = if proxy {
            HeaderName::ProxyAuthorization
        } else {
            HeaderName::Authorization
        };
        let values: Vec<&str> = req.headers.get_all(&cred_name).collect();
        let ours = values
            .iter()
            .filter_map(|v| Credentials::parse(v).ok())
            .find(|c| c.realm == realm);
        // Meta's digest `uri` must name this request's Request-URI (compared as URIs). PBXes
        // are not held to it: many (SIPp, for one) digest `sip:host:port`; the response still
        // covers the uri they name and the nonce is single-use.
        if proxy
            && let Some(c) = &ours
            && Uri::parse(&c.uri).ok().as_ref() != Some(&req.uri)
        {
            self.out.push_back(Output::AuthFailure(leg));
            self.reject_with(
                now,
                leg,
                id,
                400,
                "digest uri does not match the Request-URI",
                vec![],
            );
            return false;
        }
        let store = |u: &str, _realm: &str, _h: crate::sip::auth::DigestHash| {
            (u == username)
                .then(|| {
                    secret
                        .as_ref()
                        .map(|s| UserSecret::Password(s.expose().to_owned()))
                })
                .flatten()
        };
        let verdict = digest.authenticate(
            now,
            source.remote.ip(),
            "INVITE",
            None,
            values.iter().copied(),
            &store,
        );
        match verdict {
            Verdict::Accepted { .. } => true,
            Verdict::Challenge(reply) => {
                let stale = reply
                    .values
                    .first()
                    .and_then(|v| Challenge::parse(v).ok())
                    .is_some_and(|c| c.stale);
                if ours.is_some() && !stale {
                    tracing::info!(?leg, remote = %source.remote.ip(), "inbound digest: wrong credentials");
                    self.out.push_back(Output::AuthFailure(leg));
                    self.reject_with(now, leg, id, 403, "wrong credentials", vec![]);
                    return false;
                }
                let ep = self.endpoint_mut(leg);
                if let Some(mut r) = ep.make_response(id, reply.status, reply.reason_phrase()) {
                    let name = HeaderName::parse(reply.header_name);
                    for v in reply.values {
                        r.headers.push(name.clone(), v);
                    }
                    let _ = ep.send_response(now, id, r);
                }
                false
            }
            Verdict::Refused(e) => {
                self.out.push_back(Output::AuthFailure(leg));
                let extra = e
                    .retry_after_secs()
                    .map(|s| vec![(HeaderName::parse("Retry-After"), s.to_string())])
                    .unwrap_or_default();
                self.reject_with(now, leg, id, e.sip_status(), &e.to_string(), extra);
                false
            }
        }
    }

    fn new_call(&mut self, now: Instant, leg: Leg, id: TxnId, req: Request, source: Source) {
        if self.draining {
            return self.reject_with(
                now,
                leg,
                id,
                503,
                "gateway shutting down",
                vec![(HeaderName::parse("Retry-After"), "5".into())],
            );
        }
        let in_call_id = req.headers.call_id().ok().map(str::to_owned);
        let config = Arc::clone(&self.config);
        let key = CallKey(self.next_key);
        let prefix = format!("{}{:x}x", self.id_prefix, key.0);
        let mut parked = None;
        let (call, trunk, wa_connect) = match leg {
            Leg::WhatsApp => {
                let route = match translate::route_inbound(&config, &req.uri) {
                    Ok(r) => r,
                    Err(e) => return self.reject(now, leg, id, e.sip_status(), &e.to_string()),
                };
                let wa = &config.whatsapp[route.profile];
                if !wa.meta.allowed_sources.contains(source.remote.ip()) {
                    return self.reject(now, leg, id, 403, "source is not an allowed Meta address");
                }
                let number = &wa.numbers[route.number];
                if wa.inbound_auth.challenge
                    && !self.check_digest(
                        now,
                        leg,
                        id,
                        &req,
                        source,
                        DigestKey::WhatsApp(route.profile),
                        number.digest_username(),
                        &number.sip_password,
                    )
                {
                    return;
                }
                let Some(trunk) = config.trunk(&route.trunk) else {
                    return self.reject(now, leg, id, 404, "no trunk for this number");
                };
                if !self.trunk_up(&trunk.name) {
                    let text = format!("trunk {} is down (OPTIONS unanswered)", trunk.name);
                    return self.reject_with(now, leg, id, 503, &text, vec![]);
                }
                let cfg = CallConfig::from_profiles(wa, number, trunk, prefix);
                let deps = (self.deps)(&cfg);
                (
                    Call::user_initiated(now, cfg, deps, ServerTxn(id.0), req),
                    trunk,
                    wa.meta.connect.clone(),
                )
            }
            Leg::Pbx => {
                // The PBX side: the trunk whose allowed sources include the sender.
                let Some(trunk) = config
                    .trunks
                    .iter()
                    .find(|t| t.allowed_sources.contains(source.remote.ip()))
                else {
                    return self.reject(now, leg, id, 403, "source is not a configured trunk");
                };
                if let Some(a) = trunk.inbound_auth.as_ref().filter(|a| a.challenge)
                    && !self.check_digest(
                        now,
                        leg,
                        id,
                        &req,
                        source,
                        DigestKey::Trunk(trunk.name.clone()),
                        &a.username,
                        &a.password,
                    )
                {
                    return;
                }
                let chosen = translate::choose_business_number(
                    &trunk.business_number,
                    trunk.default_number.as_deref(),
                    &req,
                    |n| config.number(n).is_some(),
                );
                let Some((wa, number)) = chosen.as_deref().and_then(|n| config.number(n)) else {
                    return self.reject(now, leg, id, 404, "no business number for this trunk");
                };
                let cfg = CallConfig::from_profiles(wa, number, trunk, prefix);
                let user = req
                    .uri
                    .as_sip()
                    .and_then(|u| u.user.as_deref())
                    .map(super::meta_rules::user_base)
                    .and_then(super::meta_rules::WaUser::parse);
                let answer = match &user {
                    Some(u) => (self.permission)(&cfg.business, u.as_str()),
                    None => PermissionAnswer::Known(Permission::Unknown),
                };
                let business = cfg.business.clone();
                let deps = (self.deps)(&cfg);
                let call = match (answer, &user) {
                    (PermissionAnswer::Pending, Some(u)) if !self.permission_wait.is_zero() => {
                        let c = Call::business_initiated_waiting(
                            now,
                            cfg,
                            deps,
                            ServerTxn(id.0),
                            req.clone(),
                            now + self.permission_wait,
                        );
                        if c.waiting_for_permission() {
                            parked = Some((business, u.as_str().to_owned()));
                        }
                        c
                    }
                    (answer, _) => {
                        let permission = match answer {
                            PermissionAnswer::Known(p) => p,
                            PermissionAnswer::Pending => Permission::Unknown,
                        };
                        Call::business_initiated(
                            now,
                            cfg,
                            deps,
                            ServerTxn(id.0),
                            req.clone(),
                            permission,
                        )
                    }
                };
                (call, trunk, wa.meta.connect.clone())
            }
        };
        let pbx_target = Target {
            transport: kind(trunk.peer.transport),
            destination: destination(&trunk.peer.address.host, trunk.peer.address.port),
            connection: if leg == Leg::Pbx {
                source.connection
            } else {
                None
            },
        };
        let mut entry = Entry {
            call,
            wa_source: (leg == Leg::WhatsApp).then_some(source),
            pbx_target,
            wa_connect,
            call_ids: vec![],
            server: vec![(leg, id)],
            client: vec![],
        };
        if let Some(cid) = in_call_id {
            entry.call_ids.push((leg, cid.clone()));
            self.by_call_id.insert((leg, cid), key);
        }
        self.server.insert((leg, id), key);
        self.calls.insert(key, entry);
        self.next_key += 1;
        if let Some(p) = parked {
            self.parked.entry(p).or_default().push(key);
        }
        self.drain_call(now, key);
    }

    // ------------------------------------------------------------------ trunk qualify

    fn qualify_timeout(&mut self, now: Instant) {
        for i in 0..self.qualify.len() {
            if let Some((txn, at)) = self.qualify[i].outstanding
                && now >= at
            {
                self.qualify_result(now, txn, false);
            }
            let q = &self.qualify[i];
            if self.draining || q.outstanding.is_some() || q.next.is_none_or(|t| now < t) {
                continue;
            }
            self.send_ping(now, i);
        }
    }

    fn send_ping(&mut self, now: Instant, i: usize) {
        let host = self.pbx.config().via_host.clone();
        let q = &mut self.qualify[i];
        q.seq += 1;
        q.next = Some(now + q.interval);
        let Ok(uri) = Uri::parse(&q.uri) else {
            return;
        };
        let mut headers = Headers::default();
        headers.push(
            HeaderName::From,
            format!("<sip:whatsip@{host}>;tag={}q{i}", self.id_prefix),
        );
        headers.push(HeaderName::To, format!("<{}>", q.uri));
        headers.push(
            HeaderName::CallId,
            format!("{}q{i}x{}@{host}", self.id_prefix, q.seq),
        );
        headers.push(HeaderName::CSeq, format!("{} OPTIONS", q.seq));
        headers.push(HeaderName::parse("Accept"), "application/sdp");
        let request = Request {
            method: Method::Options,
            uri,
            headers,
            body: bytes::Bytes::new(),
        };
        // Missed when unanswered by the next ping (at most Timer F).
        let miss = now + q.interval.min(self.pbx.config().timers.t1x64());
        let target = q.target.clone();
        match self.pbx.send_request(now, request, target) {
            Ok(txn) => {
                self.qualify[i].outstanding = Some((txn, miss));
                self.qualify_txn.insert(txn, i);
            }
            Err(_) => self.qualify_failed(i),
        }
    }

    fn qualify_result(&mut self, _now: Instant, txn: TxnId, answered: bool) {
        let Some(i) = self.qualify_txn.remove(&txn) else {
            return;
        };
        if self.qualify[i].outstanding.is_some_and(|(t, _)| t == txn) {
            self.qualify[i].outstanding = None;
        }
        if answered {
            let q = &mut self.qualify[i];
            q.failures = 0;
            if !q.up {
                q.up = true;
                tracing::info!(trunk = %q.trunk, "trunk up (OPTIONS answered)");
                self.out.push_back(Output::Trunk {
                    name: q.trunk.clone(),
                    up: true,
                });
            }
        } else {
            self.qualify_failed(i);
        }
    }

    fn qualify_failed(&mut self, i: usize) {
        let q = &mut self.qualify[i];
        q.failures = q.failures.saturating_add(1);
        if q.up && q.failures >= QUALIFY_FAILURES {
            q.up = false;
            tracing::warn!(trunk = %q.trunk, failures = q.failures, "trunk down (OPTIONS unanswered)");
            self.out.push_back(Output::Trunk {
                name: q.trunk.clone(),
                up: false,
            });
        }
    }

    fn feed(&mut self, now: Instant, k: CallKey, ev: LegEvent) {
        if let Some(e) = self.calls.get_mut(&k) {
            e.call.handle_event(now, ev);
        }
        self.drain_call(now, k);
    }

    fn target(&self, k: CallKey, leg: Leg) -> Option<Target> {
        let e = self.calls.get(&k)?;
        Some(match leg {
            Leg::Pbx => e.pbx_target.clone(),
            Leg::WhatsApp => match e.wa_source {
                Some(s) => Target {
                    transport: s.transport,
                    destination: Destination::Addr(s.remote),
                    connection: s.connection,
                },
                None => Target {
                    transport: TransportKind::Tls,
                    destination: destination(&e.wa_connect.host, e.wa_connect.port),
                    connection: None,
                },
            },
        })
    }

    fn drain_call(&mut self, now: Instant, k: CallKey) {
        loop {
            let Some(action) = self.calls.get_mut(&k).and_then(|e| e.call.poll_action()) else {
                break;
            };
            match action {
                Action::SendRequest { leg, id, request } => {
                    let Some(target) = self.target(k, leg) else {
                        continue;
                    };
                    let cid = request.headers.call_id().ok().map(str::to_owned);
                    match self.endpoint_mut(leg).send_request(now, request, target) {
                        Ok(txn) => {
                            self.client.insert((leg, txn), (k, id));
                            self.client_rev.insert((k, id), (leg, txn));
                            if let Some(e) = self.calls.get_mut(&k) {
                                e.client.push((leg, txn));
                                if let Some(cid) = cid
                                    && !e.call_ids.contains(&(leg, cid.clone()))
                                {
                                    e.call_ids.push((leg, cid.clone()));
                                    self.by_call_id.insert((leg, cid), k);
                                }
                            }
                        }
                        Err(_) => {
                            // The endpoint refused the request: a timeout for the call.
                            if let Some(e) = self.calls.get_mut(&k) {
                                e.call.handle_event(now, LegEvent::Timeout { leg, id });
                            }
                        }
                    }
                }
                Action::SendAck { leg, request } => {
                    if let Some(target) = self.target(k, leg) {
                        let _ = self.endpoint_mut(leg).send_ack(now, request, target);
                    }
                }
                Action::SendCancel { leg, invite } => {
                    // The CANCEL's own 200 needs no handling; the INVITE's 487 arrives as usual.
                    if let Some((l, txn)) = self.client_rev.get(&(k, invite)).copied() {
                        debug_assert_eq!(l, leg);
                        let _ = self.endpoint_mut(l).send_cancel(now, txn);
                    }
                }
                Action::SendResponse { leg, txn, response } => {
                    let _ = self
                        .endpoint_mut(leg)
                        .send_response(now, TxnId(txn.0), response);
                }
                Action::Media(m) => self.out.push_back(Output::Media(k, m)),
                Action::Record(r) => self.out.push_back(Output::Record(k, r)),
                Action::State(s) => self.out.push_back(Output::State(k, s)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::state::{MediaError, SdpPlane};
    use crate::sip::endpoint::EndpointConfig;
    use crate::sip::header::HeaderName;
    use crate::sip::message::{Framing, Message, Response};
    use bytes::Bytes;

    struct Sdp;
    impl SdpPlane for Sdp {
        fn pbx_offer(&mut self, _: &[u8]) -> Result<Bytes, MediaError> {
            Ok(Bytes::from_static(b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"))
        }
        fn wa_answer(&mut self, _: &[u8], _: &[u8]) -> Result<Bytes, MediaError> {
            Ok(Bytes::from_static(b"v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\n"))
        }
        fn wa_offer(&mut self, _: &[u8]) -> Result<Bytes, MediaError> {
            Ok(Bytes::from_static(b"v=0\r\no=- 3 1 IN IP4 127.0.0.1\r\n"))
        }
        fn pbx_answer(&mut self, _: &[u8], _: &[u8]) -> Result<Bytes, MediaError> {
            Ok(Bytes::from_static(b"v=0\r\no=- 4 1 IN IP4 127.0.0.1\r\n"))
        }
    }

    /// The shipped profiles, without the challenge of Meta's INVITEs.
    fn router() -> Router {
        router_with(
            |c| c.whatsapp[0].inbound_auth.challenge = false,
            Box::new(|_, _| Permission::Allowed.into()),
        )
    }

    fn router_with(edit: impl FnOnce(&mut Config), permission: PermissionLookup) -> Router {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-profiles");
        let mut config = crate::config::load_dir(&dir).expect("shipped profiles");
        edit(&mut config);
        Router::new(
            Arc::new(config),
            Endpoint::new(EndpointConfig::new("gateway.whatsip.test", Some(5061), "w")),
            Endpoint::new(EndpointConfig::new("127.0.0.1", Some(5080), "p")),
            Box::new(|_| CallDeps {
                sdp: Box::new(Sdp),
                wa_auth: None,
                pbx_auth: None,
            }),
            permission,
            "r",
        )
    }

    fn msg(text: &str) -> Message {
        let text = text.replace('\n', "\r\n");
        Message::parse(text.as_bytes(), Framing::Stream).unwrap()
    }

    const RR: &str = "Record-Route: <sip:wa.meta.vc;transport=tls;lr>\r\nRecord-Route: <sip:onevc-sip-proxy.fbinfra.net:8191;transport=tls;lr>\r\n";

    #[test]
    fn user_initiated_call_through_both_endpoints() {
        let now = Instant::now();
        let mut r = router();
        let meta = Source {
            transport: TransportKind::Tls,
            remote: "157.240.19.130:40000".parse().unwrap(),
            connection: Some(7),
        };
        let invite = msg(
            "INVITE sip:+15550001111@gateway.whatsip.test:5061;transport=tls SIP/2.0
Via: SIP/2.0/TLS 157.240.19.130:5061;branch=z9hG4bKm1;alias;rport
Max-Forwards: 69
Record-Route: <sip:wa.meta.vc;transport=tls;lr>
Record-Route: <sip:onevc-sip-proxy.fbinfra.net:8191;transport=tls;lr>
From: \"15551234567\" <sip:+15551234567@wa.meta.vc>;tag=mt
To: <sip:+15550001111@gateway.whatsip.test>
Call-ID: outgoing:wacid.ABC
CSeq: 1 INVITE
Contact: <sip:+15551234567@wa.meta.vc;transport=tls;ob>;isfocus
x-wa-meta-wacid: wacid.ABC
Content-Type: application/sdp
Content-Length: 5

v=0
",
        );
        r.endpoint_mut(Leg::WhatsApp)
            .handle_incoming(now, invite, meta);
        r.process(now);
        let to_meta: Vec<_> =
            std::iter::from_fn(|| r.endpoint_mut(Leg::WhatsApp).poll_transmit()).collect();
        assert!(matches!(&to_meta[0].message, Message::Response(x) if x.status == 100));
        assert_eq!(to_meta[0].target.connection, Some(7));
        let t = r
            .endpoint_mut(Leg::Pbx)
            .poll_transmit()
            .expect("INVITE toward the PBX");
        assert_eq!(
            t.target.destination,
            Destination::Addr("127.0.0.1:5060".parse().unwrap())
        );
        assert_eq!(t.target.transport, TransportKind::Udp);
        let Message::Request(pbx_inv) = t.message else {
            panic!()
        };
        assert_eq!(
            pbx_inv.headers.get(&HeaderName::parse("X-WA-Call-Id")),
            Some("wacid.ABC")
        );

        // The PBX answers.
        let mut ok: Response = translate::make_response(&pbx_inv, 200, "", Some("pbxt"));
        ok.headers
            .push(HeaderName::Contact, "<sip:100@127.0.0.1:5060>");
        ok.headers.push(HeaderName::ContentType, "application/sdp");
        ok.body = Bytes::from_static(b"v=0\r\n");
        let pbx = Source {
            transport: TransportKind::Udp,
            remote: "127.0.0.1:5060".parse().unwrap(),
            connection: None,
        };
        r.endpoint_mut(Leg::Pbx)
            .handle_incoming(now, Message::Response(ok), pbx);
        r.process(now);
        let to_pbx: Vec<_> =
            std::iter::from_fn(|| r.endpoint_mut(Leg::Pbx).poll_transmit()).collect();
        assert!(
            to_pbx
                .iter()
                .any(|t| matches!(&t.message, Message::Request(a) if a.method == Method::Ack))
        );
        let to_meta: Vec<_> =
            std::iter::from_fn(|| r.endpoint_mut(Leg::WhatsApp).poll_transmit()).collect();
        let ok = to_meta
            .iter()
            .find_map(|t| match &t.message {
                Message::Response(x) if x.status == 200 => Some((x.clone(), t.target.clone())),
                _ => None,
            })
            .expect("200 toward Meta");
        assert_eq!(ok.1.connection, Some(7));
        let wire = String::from_utf8(ok.0.to_bytes()).unwrap();
        assert!(wire.contains(RR), "{wire}");
        let (_, call) = r.calls().next().unwrap();
        assert_eq!(call.state(), &CallState::Accepted);
        let outputs: Vec<Output> = std::iter::from_fn(|| r.poll_output()).collect();
        assert!(
            outputs
                .iter()
                .any(|o| matches!(o, Output::Media(_, MediaAction::Start { .. })))
        );

        // Meta hangs up: 200 to Meta, BYE to the PBX; the call is reaped after its linger.
        let tag = ok.0.headers.to().unwrap().tag().unwrap().to_owned();
        let bye = msg(&format!(
            "BYE sip:+15550001111@gateway.whatsip.test:5061;transport=tls SIP/2.0
Via: SIP/2.0/TLS 157.240.19.130:5061;branch=z9hG4bKm2;alias;rport
Max-Forwards: 69
From: <sip:+15551234567@wa.meta.vc>;tag=mt
To: <sip:+15550001111@gateway.whatsip.test>;tag={tag}
Call-ID: outgoing:wacid.ABC
CSeq: 2 BYE
x-wa-meta-call-duration: 12
Content-Length: 0

"
        ));
        r.endpoint_mut(Leg::WhatsApp)
            .handle_incoming(now, bye, meta);
        r.process(now);
        let to_pbx: Vec<_> =
            std::iter::from_fn(|| r.endpoint_mut(Leg::Pbx).poll_transmit()).collect();
        assert!(
            to_pbx
                .iter()
                .any(|t| matches!(&t.message, Message::Request(b) if b.method == Method::Bye))
        );
        let to_meta: Vec<_> =
            std::iter::from_fn(|| r.endpoint_mut(Leg::WhatsApp).poll_transmit()).collect();
        assert!(
            to_meta
                .iter()
                .any(|t| matches!(&t.message, Message::Response(x) if x.status == 200))
        );
        let later = now + std::time::Duration::from_secs(40);
        r.handle_timeout(later);
        assert_eq!(r.calls().count(), 0);
        assert!(r.by_call_id.is_empty() && r.server.is_empty() && r.client.is_empty());
    }

    #[test]
    fn unknown_number_and_stray_requests_are_answered() {
        let now = Instant::now();
        let mut r = router();
        let meta = Source {
            transport: TransportKind::Tls,
            remote: "157.240.19.130:40000".parse().unwrap(),
            connection: Some(1),
        };
        let invite = msg("INVITE sip:+15559999999@gateway.whatsip.test SIP/2.0
Via: SIP/2.0/TLS 157.240.19.130:5061;branch=z9hG4bKu1
Max-Forwards: 69
From: <sip:+15551234567@wa.meta.vc>;tag=mt
To: <sip:+15559999999@gateway.whatsip.test>
Call-ID: c-unknown
CSeq: 1 INVITE
Contact: <sip:+15551234567@wa.meta.vc>
Content-Length: 0

");
        r.endpoint_mut(Leg::WhatsApp)
            .handle_incoming(now, invite, meta);
        r.process(now);
        let to_meta: Vec<_> =
            std::iter::from_fn(|| r.endpoint_mut(Leg::WhatsApp).poll_transmit()).collect();
        assert!(
            to_meta
                .iter()
                .any(|t| matches!(&t.message, Message::Response(x) if x.status == 404))
        );
        assert_eq!(r.calls().count(), 0);
        let bye = msg("BYE sip:x@gateway.whatsip.test SIP/2.0
Via: SIP/2.0/TLS 157.240.19.130:5061;branch=z9hG4bKu2
Max-Forwards: 69
From: <sip:+15551234567@wa.meta.vc>;tag=mt
To: <sip:+15550001111@gateway.whatsip.test>;tag=zz
Call-ID: c-none
CSeq: 2 BYE
Content-Length: 0

");
        r.endpoint_mut(Leg::WhatsApp)
            .handle_incoming(now, bye, meta);
        r.process(now);
        let to_meta: Vec<_> =
            std::iter::from_fn(|| r.endpoint_mut(Leg::WhatsApp).poll_transmit()).collect();
        assert!(
            to_meta
                .iter()
                .any(|t| matches!(&t.message, Message::Response(x) if x.status == 481))
        );
    }

    fn transmits(r: &mut Router, leg: Leg) -> Vec<crate::sip::endpoint::Transmit> {
        std::iter::from_fn(|| r.endpoint_mut(leg).poll_transmit()).collect()
    }

    fn statuses(t: &[crate::sip::endpoint::Transmit]) -> Vec<u16> {
        t.iter()
            .filter_map(|t| match &t.message {
                Message::Response(x) => Some(x.status),
                _ => None,
            })
            .collect()
    }

    fn requests(t: &[crate::sip::endpoint::Transmit]) -> Vec<Request> {
        t.iter()
            .filter_map(|t| match &t.message {
                Message::Request(x) => Some(x.clone()),
                _ => None,
            })
            .collect()
    }

    const META: &str = "157.240.19.130:40000";

    fn meta_source() -> Source {
        Source {
            transport: TransportKind::Tls,
            remote: META.parse().unwrap(),
            connection: Some(7),
        }
    }

    fn pbx_source() -> Source {
        Source {
            transport: TransportKind::Udp,
            remote: "127.0.0.1:5060".parse().unwrap(),
            connection: None,
        }
    }

    fn meta_invite(call_id: &str, cseq: u32, branch: &str, auth: Option<&str>) -> Message {
        let auth = auth
            .map(|a| format!("Proxy-Authorization: {a}\n"))
            .unwrap_or_default();
        msg(&format!(
            "INVITE sip:+15550001111@gateway.whatsip.test:5061;transport=tls SIP/2.0
Via: SIP/2.0/TLS 157.240.19.130:5061;branch=z9hG4bK{branch};alias;rport
Max-Forwards: 69
From: <sip:+15551234567@wa.meta.vc>;tag=mt{call_id}
To: <sip:+15550001111@gateway.whatsip.test>
Call-ID: {call_id}
CSeq: {cseq} INVITE
Contact: <sip:+15551234567@wa.meta.vc;transport=tls;ob>
{auth}Content-Length: 0

"
        ))
    }

    fn answer(challenges: &[&str], user: &str, password: &str, uri: &str) -> String {
        crate::sip::auth::DigestClient::new(user, password)
            .respond(challenges.iter().copied(), "INVITE", uri, None, &mut || {
                "c0ffee".to_owned()
            })
            .unwrap()
    }

    #[test]
    fn meta_invite_is_challenged_407_then_admitted_and_a_wrong_password_gets_403() {
        let now = Instant::now();
        let mut r = router_with(
            |c| {
                c.whatsapp[0].numbers[0].sip_password =
                    crate::config::SecretSource::Literal("s3cret".into())
            },
            Box::new(|_, _| Permission::Allowed.into()),
        );
        let uri = "sip:+15550001111@gateway.whatsip.test:5061;transport=tls";
        for (call, password, want) in [("ok", "s3cret", None), ("bad", "guess", Some(403))] {
            r.endpoint_mut(Leg::WhatsApp).handle_incoming(
                now,
                meta_invite(call, 1, &format!("{call}1"), None),
                meta_source(),
            );
            r.process(now);
            let t = transmits(&mut r, Leg::WhatsApp);
            let Message::Response(c) = &t.last().unwrap().message else {
                panic!()
            };
            assert_eq!(c.status, 407);
            let challenges: Vec<&str> = c.headers.get_all(&HeaderName::ProxyAuthenticate).collect();
            assert_eq!(challenges.len(), 2, "SHA-256 and MD5");
            assert!(challenges[0].contains("realm=\"gateway.whatsip.test\""));
            assert!(challenges[0].contains("SHA-256") && challenges[1].contains("MD5"));
            assert!(
                transmits(&mut r, Leg::Pbx).is_empty(),
                "no call before auth"
            );
            let creds = answer(&challenges, "15550001111", password, uri);
            r.endpoint_mut(Leg::WhatsApp).handle_incoming(
                now,
                meta_invite(call, 2, &format!("{call}2"), Some(&creds)),
                meta_source(),
            );
            r.process(now);
            let to_meta = statuses(&transmits(&mut r, Leg::WhatsApp));
            let to_pbx = requests(&transmits(&mut r, Leg::Pbx));
            match want {
                None => {
                    assert_eq!(to_meta, vec![100]);
                    assert_eq!(to_pbx.len(), 1);
                    assert_eq!(to_pbx[0].method, Method::Invite);
                }
                Some(status) => {
                    assert_eq!(to_meta, vec![status]);
                    assert!(to_pbx.is_empty());
                }
            }
        }
        let failures = std::iter::from_fn(|| r.poll_output())
            .filter(|o| matches!(o, Output::AuthFailure(Leg::WhatsApp)))
            .count();
        assert_eq!(failures, 1);
        assert_eq!(r.calls().count(), 1);
    }

    fn pbx_invite(call_id: &str, cseq: u32, auth: Option<&str>) -> Message {
        let auth = auth
            .map(|a| format!("Authorization: {a}\n"))
            .unwrap_or_default();
        msg(&format!(
            "INVITE sip:+15551234567@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{call_id}{cseq}
Max-Forwards: 70
From: <sip:100@127.0.0.1>;tag=p{call_id}
To: <sip:+15551234567@127.0.0.1>
Call-ID: {call_id}
CSeq: {cseq} INVITE
Contact: <sip:100@127.0.0.1:5060>
{auth}Content-Type: application/sdp
Content-Length: 5

v=0
"
        ))
    }

    #[test]
    fn trunk_inbound_auth_challenges_the_pbx_401() {
        let now = Instant::now();
        let mut r = router_with(
            |c| {
                c.whatsapp[0].inbound_auth.challenge = false;
                c.trunks[0].inbound_auth = Some(crate::config::TrunkInboundAuth {
                    challenge: true,
                    realm: "whatsip".into(),
                    username: "pbx".into(),
                    password: crate::config::SecretSource::Literal("pbxpw".into()),
                });
            },
            Box::new(|_, _| Permission::Allowed.into()),
        );
        for (call, password, ok) in [("a", "pbxpw", true), ("b", "nope", false)] {
            r.endpoint_mut(Leg::Pbx)
                .handle_incoming(now, pbx_invite(call, 1, None), pbx_source());
            r.process(now);
            let t = transmits(&mut r, Leg::Pbx);
            let Message::Response(c) = &t.last().unwrap().message else {
                panic!()
            };
            assert_eq!(c.status, 401);
            let challenges: Vec<&str> = c.headers.get_all(&HeaderName::WwwAuthenticate).collect();
            assert!(challenges[0].contains("realm=\"whatsip\"") && challenges[0].contains("MD5"));
            let creds = answer(
                &challenges,
                "pbx",
                password,
                "sip:+15551234567@127.0.0.1:5080",
            );
            r.endpoint_mut(Leg::Pbx).handle_incoming(
                now,
                pbx_invite(call, 2, Some(&creds)),
                pbx_source(),
            );
            r.process(now);
            let to_pbx = statuses(&transmits(&mut r, Leg::Pbx));
            let to_meta = requests(&transmits(&mut r, Leg::WhatsApp));
            if ok {
                assert_eq!(to_pbx, vec![100]);
                assert_eq!(to_meta.len(), 1, "INVITE toward Meta");
            } else {
                assert_eq!(to_pbx, vec![403]);
                assert!(to_meta.is_empty());
            }
        }
    }

    #[test]
    fn trunk_qualify_goes_down_after_two_misses_refuses_calls_503_and_comes_back() {
        let t0 = Instant::now();
        let mut r = router();
        r.start(t0);
        assert_eq!(r.poll_timeout(), Some(t0));
        r.handle_timeout(t0);
        let pings = requests(&transmits(&mut r, Leg::Pbx));
        assert_eq!(pings.len(), 1);
        assert_eq!(pings[0].method, Method::Options);
        assert_eq!(pings[0].uri.to_string(), "sip:127.0.0.1:5060");
        // Shipped: every 30 s. First miss at 30 s (a new ping goes out), second at 60 s.
        let t1 = t0 + std::time::Duration::from_secs(30);
        r.handle_timeout(t1);
        assert!(
            std::iter::from_fn(|| r.poll_output()).next().is_none(),
            "one miss: still up"
        );
        let t2 = t0 + std::time::Duration::from_secs(60);
        r.handle_timeout(t2);
        let outs: Vec<Output> = std::iter::from_fn(|| r.poll_output()).collect();
        assert!(
            outs.contains(&Output::Trunk {
                name: "pbx".into(),
                up: false
            }),
            "{outs:?}"
        );
        assert_eq!(r.trunks()[0].up, Some(false));

        // A user-initiated call for a number on that trunk: 503 with a Reason, no INVITE.
        transmits(&mut r, Leg::Pbx);
        r.endpoint_mut(Leg::WhatsApp).handle_incoming(
            t2,
            meta_invite("down", 1, "d1", None),
            meta_source(),
        );
        r.process(t2);
        let t = transmits(&mut r, Leg::WhatsApp);
        let Message::Response(refusal) = &t.last().unwrap().message else {
            panic!()
        };
        assert_eq!(refusal.status, 503);
        assert!(
            refusal
                .headers
                .get(&HeaderName::Reason)
                .unwrap()
                .contains("cause=503"),
            "{refusal:?}"
        );
        assert!(requests(&transmits(&mut r, Leg::Pbx)).is_empty());

        // The peer answers the next ping (any response): up again.
        let t3 = t0 + std::time::Duration::from_secs(90);
        r.handle_timeout(t3);
        let ping = requests(&transmits(&mut r, Leg::Pbx)).pop().unwrap();
        let resp = translate::make_response(&ping, 404, "", Some("peer"));
        r.endpoint_mut(Leg::Pbx)
            .handle_incoming(t3, Message::Response(resp), pbx_source());
        r.process(t3);
        let outs: Vec<Output> = std::iter::from_fn(|| r.poll_output()).collect();
        assert!(
            outs.contains(&Output::Trunk {
                name: "pbx".into(),
                up: true
            }),
            "{outs:?}"
        );
        assert_eq!(r.trunks()[0].up, Some(true));
    }

    #[test]
    fn pending_permission_parks_the_pbx_invite_until_graph_answers() {
        let now = Instant::now();
        let mut r = router_with(
            |c| c.whatsapp[0].inbound_auth.challenge = false,
            Box::new(|_, _| PermissionAnswer::Pending),
        );
        r.endpoint_mut(Leg::Pbx)
            .handle_incoming(now, pbx_invite("park", 1, None), pbx_source());
        r.process(now);
        assert_eq!(statuses(&transmits(&mut r, Leg::Pbx)), vec![100]);
        assert!(transmits(&mut r, Leg::WhatsApp).is_empty(), "parked");
        // Another user's answer does not resume it.
        r.handle_permission(
            now,
            "+15550001111",
            "+15557654321",
            Permission::NoPermission,
        );
        assert!(transmits(&mut r, Leg::Pbx).is_empty());
        r.handle_permission(
            now,
            "+15550001111",
            "+15551234567",
            Permission::NoPermission,
        );
        let t = transmits(&mut r, Leg::Pbx);
        let Message::Response(f) = &t.last().unwrap().message else {
            panic!()
        };
        assert_eq!(f.status, 403);
        assert!(
            f.headers
                .get(&HeaderName::Warning)
                .unwrap()
                .contains("138006")
        );
        assert!(
            transmits(&mut r, Leg::WhatsApp).is_empty(),
            "nothing to Meta"
        );
        assert!(r.parked.is_empty());
    }

    #[test]
    fn shutdown_refuses_new_calls_and_drains() {
        let now = Instant::now();
        let mut r = router();
        r.endpoint_mut(Leg::Pbx)
            .handle_incoming(now, pbx_invite("s1", 1, None), pbx_source());
        r.process(now);
        transmits(&mut r, Leg::Pbx);
        let invite = requests(&transmits(&mut r, Leg::WhatsApp)).pop().unwrap();
        assert!(!r.is_drained());
        r.begin_shutdown(now);
        // The INVITE to Meta had no provisional yet: the PBX gets 503 now, the CANCEL waits
        // for Meta's 100.
        assert_eq!(statuses(&transmits(&mut r, Leg::Pbx)), vec![503]);
        assert!(!r.is_drained());
        let trying = translate::make_response(&invite, 100, "", None);
        let meta = Source {
            transport: TransportKind::Tls,
            remote: "127.0.0.1:5062".parse().unwrap(),
            connection: None,
        };
        r.endpoint_mut(Leg::WhatsApp)
            .handle_incoming(now, Message::Response(trying), meta);
        r.process(now);
        let cancel = requests(&transmits(&mut r, Leg::WhatsApp)).pop().unwrap();
        assert_eq!(cancel.method, Method::Cancel);
        let terminated = translate::make_response(&invite, 487, "", Some("m"));
        r.endpoint_mut(Leg::WhatsApp)
            .handle_incoming(now, Message::Response(terminated), meta);
        r.process(now);
        assert!(r.is_drained());
        // New calls are refused while draining.
        r.endpoint_mut(Leg::Pbx)
            .handle_incoming(now, pbx_invite("s2", 1, None), pbx_source());
        r.process(now);
        assert_eq!(statuses(&transmits(&mut r, Leg::Pbx)), vec![503]);
    }
}
