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
use std::time::Instant;

use crate::config::{Config, Transport};
use crate::sip::endpoint::{Destination, Endpoint, Event, Source, Target, TransportKind, TxnId};
use crate::sip::message::Request;
use crate::sip::method::Method;

use super::state::{
    Action, Call, CallConfig, CallDeps, CallState, Leg, LegEvent, MediaAction, Permission,
    RecordUpdate, ReqId, ServerTxn,
};
use super::translate;

/// Identifies a call inside the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey(pub u64);

/// What the runtime must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Media(CallKey, MediaAction),
    Record(CallKey, RecordUpdate),
    State(CallKey, CallState),
}

/// Builds the media/auth helpers of a new call.
pub type DepsFactory = Box<dyn FnMut(&CallConfig) -> CallDeps + Send>;
/// Cached Graph permission for (business number, WhatsApp user).
pub type PermissionLookup = Box<dyn FnMut(&str, &str) -> Permission + Send>;

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
        }
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
        self.calls
            .values()
            .filter_map(|e| e.call.poll_timeout())
            .chain(self.wa.poll_timeout())
            .chain(self.pbx.poll_timeout())
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.wa.handle_timeout(now);
        self.pbx.handle_timeout(now);
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
        if let Some(e) = self.calls.get_mut(&k) {
            e.call.handle_event(now, LegEvent::MediaTimeout);
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

    fn new_call(&mut self, now: Instant, leg: Leg, id: TxnId, req: Request, source: Source) {
        let in_call_id = req.headers.call_id().ok().map(str::to_owned);
        let config = Arc::clone(&self.config);
        let key = CallKey(self.next_key);
        self.next_key += 1;
        let prefix = format!("{}{:x}x", self.id_prefix, key.0);
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
                let Some(trunk) = config.trunk(&route.trunk) else {
                    return self.reject(now, leg, id, 404, "no trunk for this number");
                };
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
                let permission = match &user {
                    Some(u) => (self.permission)(&cfg.business, u.as_str()),
                    None => Permission::Unknown,
                };
                let deps = (self.deps)(&cfg);
                (
                    Call::business_initiated(
                        now,
                        cfg,
                        deps,
                        ServerTxn(id.0),
                        req.clone(),
                        permission,
                    ),
                    trunk,
                    wa.meta.connect.clone(),
                )
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
        self.drain_call(now, key);
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

    fn router() -> Router {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sip-profiles");
        let config = Arc::new(crate::config::load_dir(&dir).expect("shipped profiles"));
        Router::new(
            config,
            Endpoint::new(EndpointConfig::new("gateway.whatsip.test", Some(5061), "w")),
            Endpoint::new(EndpointConfig::new("127.0.0.1", Some(5080), "p")),
            Box::new(|_| CallDeps {
                sdp: Box::new(Sdp),
                wa_auth: None,
                pbx_auth: None,
            }),
            Box::new(|_, _| Permission::Allowed),
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
}
