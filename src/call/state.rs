//! The call state machine: one B2BUA call joining a WhatsApp leg (W, toward Meta) and a PBX
//! leg (P), sans-IO. States use WhatsApp's words: `Connecting → Ringing → (PreAccepted) →
//! Accepted → Completed`, or `Rejected` / `Failed` with a reason.
//!
//! Driven by [`Call::handle_event`] / [`Call::handle_timeout`] with the current instant and
//! drained by [`Call::poll_action`] / [`Call::poll_timeout`]. The runtime owns the endpoint:
//! it turns [`Action::SendRequest`] into a client transaction (remembering our [`ReqId`]),
//! [`Action::SendResponse`] into a response on the server transaction it named in
//! [`LegEvent::Request`], and feeds what the endpoint reports back as [`LegEvent`]s.
//!
//! Guarantees:
//! - Nothing but INVITE (the first), ACK, BYE, CANCEL and the 200/4xx/5xx answers to Meta's
//!   own requests is ever sent on the WhatsApp leg: PBX re-INVITEs, UPDATEs, INFOs, OPTIONS and
//!   session refreshes are answered on the PBX leg and never forwarded.
//! - The 200 OK to Meta's INVITE carries Meta's Record-Route header lines exactly as received;
//!   our in-dialog requests toward Meta follow that route set (via `sip::dialog`).
//! - Every BYE toward Meta carries `Reason: Q.850;cause=16`.
//! - A 2xx that arrives after we gave up on an INVITE (CANCEL race, answer deadline) is ACKed
//!   and then BYEd.
//! - No input panics the call; malformed messages are answered 400 (requests) or ignored
//!   (responses). All time is passed in.
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::{SessionTimer, Transport};
use crate::sip::dialog::Dialog;
use crate::sip::header::HeaderName;
use crate::sip::message::{Request, Response};
use crate::sip::method::Method;
use crate::sip::uri::Uri;

use super::meta_rules::{self, WaMetaInfo, WaUser};
use super::translate::{self, MappedFailure};

/// Which side of the B2BUA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// Toward Meta (TLS).
    WhatsApp,
    /// Toward the PBX / trunk.
    Pbx,
}

impl Leg {
    pub fn other(self) -> Leg {
        match self {
            Leg::WhatsApp => Leg::Pbx,
            Leg::Pbx => Leg::WhatsApp,
        }
    }
}

/// Who placed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// WhatsApp user → PBX (Meta's INVITE).
    UserInitiated,
    /// PBX → WhatsApp user (our INVITE to Meta).
    BusinessInitiated,
}

/// The runtime's id of a server transaction (a request we must answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerTxn(pub u64);

/// Our id of a request we asked the runtime to send (responses come back with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReqId(pub u32);

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndReason {
    /// The SIP status that ended it (sent or received), if any.
    pub sip_status: Option<u16>,
    /// Meta Graph error code (138006 …), if known.
    pub meta_code: Option<u32>,
    pub text: String,
    /// Which leg ended it (`None`: the gateway itself, e.g. a timer).
    pub by: Option<Leg>,
}

impl EndReason {
    fn new(sip_status: Option<u16>, text: impl Into<String>, by: Option<Leg>) -> EndReason {
        EndReason {
            sip_status,
            meta_code: None,
            text: text.into(),
            by,
        }
    }
}

/// Call state, in WhatsApp's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallState {
    Connecting,
    Ringing,
    /// Early media is set up (183 with SDP from Meta).
    PreAccepted,
    Accepted,
    Completed(EndReason),
    /// The called side declined (486/600/603).
    Rejected(EndReason),
    Failed(EndReason),
}

impl CallState {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            CallState::Completed(_) | CallState::Rejected(_) | CallState::Failed(_)
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            CallState::Connecting => "connecting",
            CallState::Ringing => "ringing",
            CallState::PreAccepted => "pre_accepted",
            CallState::Accepted => "accepted",
            CallState::Completed(_) => "completed",
            CallState::Rejected(_) => "rejected",
            CallState::Failed(_) => "failed",
        }
    }
}

/// Result of the Graph permission lookup for a business-initiated call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Allowed,
    /// No approved permission: 403 + `Warning` naming Meta 138006; nothing is sent to Meta.
    NoPermission,
    /// Lookup failed or not done: the INVITE is sent and Meta decides.
    Unknown,
}

/// What the runtime reports for one leg.
#[derive(Debug, Clone)]
pub enum LegEvent {
    /// A request on `leg` (not ACK / CANCEL) to be answered on server transaction `txn`.
    Request {
        leg: Leg,
        txn: ServerTxn,
        request: Request,
    },
    /// An ACK for a 2xx we sent on `leg`.
    Ack { leg: Leg, request: Request },
    /// The peer CANCELled our INVITE server transaction `txn` (the CANCEL was answered 200).
    Cancelled { leg: Leg, txn: ServerTxn },
    /// A response to request `id`.
    Response {
        leg: Leg,
        id: ReqId,
        response: Response,
    },
    /// Request `id` got no final response (Timer B/F) or could not be sent.
    Timeout { leg: Leg, id: ReqId },
    /// A 2xx we sent on `leg` was never ACKed.
    AckTimeout { leg: Leg },
    /// The media layer saw no media for its configured time.
    MediaTimeout,
    /// The media layer lost the WhatsApp leg (DTLS/ICE failure): the call ends with `reason`.
    MediaFailed { reason: String },
}

/// What the media layer should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaAction {
    /// Both legs negotiated: relay between them. `early` when started from a 183.
    Start {
        wa_local: Bytes,
        wa_remote: Bytes,
        pbx_local: Bytes,
        pbx_remote: Bytes,
        early: bool,
    },
    /// The PBX sent a new offer (re-INVITE/UPDATE/ACK): its address, codec or SSRC may change.
    UpdatePbxRemote { sdp: Bytes },
    /// The PBX put us on hold (`true`) or resumed; keep Meta fed with silence meanwhile.
    Hold(bool),
    /// Send one RFC 4733 digit toward Meta (from PBX INFO).
    SendDtmf { digit: char, duration_ms: u32 },
    /// Tear the relay down.
    Stop,
}

/// What the store should record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordUpdate {
    Started {
        at: Instant,
        direction: Direction,
        business: String,
        /// The WhatsApp user (E.164 or BSUID).
        user: String,
        wacid: Option<String>,
    },
    /// The leg Call-IDs, as far as known (emitted at start with the incoming leg's, and again
    /// once our INVITE on the other leg is built).
    CallIds {
        whatsapp_call_id: Option<String>,
        pbx_call_id: Option<String>,
    },
    /// The far leg's 200 OK arrived at `at`.
    Answered { at: Instant },
    Ended {
        at: Instant,
        state: CallState,
        /// `x-wa-meta-call-duration` from Meta's BYE.
        meta_duration_s: Option<u64>,
        wacid: Option<String>,
    },
}

/// Output of the call core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start a client transaction on `leg` (the endpoint adds Via).
    SendRequest {
        leg: Leg,
        id: ReqId,
        request: Request,
    },
    /// Send an ACK for a 2xx (no transaction).
    SendAck {
        leg: Leg,
        request: Request,
    },
    /// CANCEL our INVITE `invite` (the endpoint builds it from the INVITE).
    SendCancel {
        leg: Leg,
        invite: ReqId,
    },
    /// Answer server transaction `txn`.
    SendResponse {
        leg: Leg,
        txn: ServerTxn,
        response: Response,
    },
    Media(MediaAction),
    Record(RecordUpdate),
    /// The call changed state (for the live-calls API and metrics).
    State(CallState),
}

/// Why the media layer could not produce an SDP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct MediaError {
    /// SIP status for the failure (488 for an unacceptable offer/answer, 500/503 otherwise).
    pub status: u16,
    pub text: String,
}

/// The media layer's offer/answer surface, as seen by the call core (SDP bytes in and out).
pub trait SdpPlane: Send {
    /// User-initiated: our offer toward the PBX for Meta's offer.
    fn pbx_offer(&mut self, wa_offer: &[u8]) -> Result<Bytes, MediaError>;
    /// User-initiated: our answer to Meta once the PBX answered.
    fn wa_answer(&mut self, wa_offer: &[u8], pbx_answer: &[u8]) -> Result<Bytes, MediaError>;
    /// Business-initiated: our offer toward Meta for the PBX's offer.
    fn wa_offer(&mut self, pbx_offer: &[u8]) -> Result<Bytes, MediaError>;
    /// Business-initiated: our answer to the PBX once Meta answered (183 or 200).
    fn pbx_answer(&mut self, pbx_offer: &[u8], wa_answer: &[u8]) -> Result<Bytes, MediaError>;
}

/// Answers a 401/407 for one leg (the digest client behind it: `sip::auth`).
pub trait ChallengeResponder: Send {
    /// `challenges`: every `WWW-Authenticate`/`Proxy-Authenticate` value; `previous`: the
    /// credentials the challenged request carried. Returns the credentials header value, or
    /// `None` to give up (wrong password, unsupported challenge).
    fn respond(
        &mut self,
        challenges: &[&str],
        method: &str,
        request_uri: &str,
        previous: Option<&str>,
    ) -> Option<String>;
}

/// Everything one call needs to know about its profiles (built by the runtime).
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// The business number, `+E.164`.
    pub business: String,
    /// Our From/Contact host toward Meta (`sip.public_host`) and port.
    pub public_host: String,
    pub public_port: u16,
    /// Meta's edge host (`wa.meta.vc`).
    pub edge_host: String,
    /// PBX peer host, port and transport.
    pub pbx_host: String,
    pub pbx_port: u16,
    pub pbx_transport: Transport,
    /// Our address on the PBX leg (From host and Contact).
    pub local_host: String,
    pub local_port: u16,
    /// Request-URI user toward the PBX for user-initiated calls.
    pub pbx_request_user: String,
    pub session_timer: SessionTimer,
    /// User-initiated: 480 toward Meta when the PBX has not answered by then.
    pub answer_deadline: Duration,
    /// How long a finished call lingers to absorb late responses (2xx after CANCEL).
    pub linger: Duration,
    /// Prefix of our tags and Call-IDs (unique per process, e.g. random hex).
    pub id_prefix: String,
}

impl CallConfig {
    /// The configuration of a call on business number `number` (of WhatsApp profile `wa`)
    /// through `trunk`. Our PBX-side address is the trunk's first listen socket of the peer's
    /// transport (an unspecified IP is replaced by `media.public_address`, else loopback).
    pub fn from_profiles(
        wa: &crate::config::WhatsAppProfile,
        number: &crate::config::BusinessNumber,
        trunk: &crate::config::TrunkProfile,
        id_prefix: impl Into<String>,
    ) -> CallConfig {
        let l = &trunk.listen;
        let socket = match trunk.peer.transport {
            Transport::Udp => l.udp.first(),
            Transport::Tcp => l.tcp.first(),
            Transport::Tls => l.tls.first(),
        }
        .or(l.udp.first())
        .or(l.tcp.first())
        .copied()
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 5080)));
        let ip = if socket.ip().is_unspecified() {
            trunk
                .media
                .public_address
                .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
        } else {
            socket.ip()
        };
        CallConfig {
            business: number.e164.clone(),
            public_host: wa.sip.public_host.clone(),
            public_port: wa.sip.public_port,
            edge_host: wa.meta.edge_host.clone(),
            pbx_host: trunk.peer.address.host.clone(),
            pbx_port: trunk.peer.address.port,
            pbx_transport: trunk.peer.transport,
            local_host: ip.to_string(),
            local_port: socket.port(),
            pbx_request_user: number.trunk_request_user(),
            session_timer: trunk.session_timer,
            answer_deadline: Duration::from_secs(u64::from(wa.sip.answer_deadline_s)),
            linger: Duration::from_secs(32),
            id_prefix: id_prefix.into(),
        }
    }
}

/// External helpers a call uses.
pub struct CallDeps {
    pub sdp: Box<dyn SdpPlane>,
    /// Answers Meta's 407 (business-initiated).
    pub wa_auth: Option<Box<dyn ChallengeResponder>>,
    /// Answers the PBX's 401/407 (user-initiated, trunk `outbound_auth`).
    pub pbx_auth: Option<Box<dyn ChallengeResponder>>,
}

impl std::fmt::Debug for CallDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallDeps")
            .field("wa_auth", &self.wa_auth.is_some())
            .field("pbx_auth", &self.pbx_auth.is_some())
            .finish_non_exhaustive()
    }
}

/// What one of our outstanding requests is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The INVITE toward the called leg.
    Invite,
    Bye,
    /// Session refresh re-INVITE toward the PBX.
    Refresh,
}

/// RFC 4028 state on the PBX leg.
#[derive(Debug, Clone, Copy)]
struct SessionTimerState {
    interval: Duration,
    /// We send the refreshes.
    we_refresh: bool,
    /// Next refresh (we_refresh) or expiry (peer refreshes).
    due: Instant,
}

/// Max challenges answered per INVITE (a second non-stale one means wrong credentials).
const MAX_AUTH: u8 = 2;

/// One B2BUA call.
pub struct Call {
    cfg: CallConfig,
    deps: CallDeps,
    direction: Direction,
    state: CallState,
    actions: VecDeque<Action>,
    next_id: u32,

    /// The leg whose INVITE we are answering.
    in_leg: Leg,
    in_txn: ServerTxn,
    in_invite: Request,
    in_tag: String,
    in_final_sent: bool,
    in_dialog: Option<Dialog>,
    /// Our Contact on the incoming leg.
    in_contact: String,

    /// The INVITE we sent on the other leg (without Via).
    out_invite: Request,
    out_id: ReqId,
    out_provisional: bool,
    out_final: bool,
    out_dialog: Option<Dialog>,
    /// We decided to stop the outgoing INVITE (CANCEL sent or due).
    out_cancelled: bool,
    cancel_sent: bool,
    auth_attempts: u8,
    pending: HashMap<ReqId, Pending>,

    wa_user: String,
    meta: WaMetaInfo,
    meta_duration_s: Option<u64>,

    wa_local: Bytes,
    wa_remote: Bytes,
    pbx_local: Bytes,
    pbx_remote: Bytes,
    media_started: bool,
    on_hold: bool,

    answer_deadline: Option<Instant>,
    /// Business-initiated: parked until the Graph permission answer, at most until then.
    permission_deadline: Option<Instant>,
    session: Option<SessionTimerState>,
    /// Session-Expires negotiated with the PBX (seconds, refresher is uac?) for responses.
    done_at: Option<Instant>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("direction", &self.direction)
            .field("state", &self.state)
            .field("user", &self.wa_user_masked())
            .finish_non_exhaustive()
    }
}

impl Call {
    fn blank(
        cfg: CallConfig,
        deps: CallDeps,
        direction: Direction,
        txn: ServerTxn,
        invite: Request,
    ) -> Call {
        let in_leg = match direction {
            Direction::UserInitiated => Leg::WhatsApp,
            Direction::BusinessInitiated => Leg::Pbx,
        };
        let mut c = Call {
            cfg,
            deps,
            direction,
            state: CallState::Connecting,
            actions: VecDeque::new(),
            next_id: 0,
            in_leg,
            in_txn: txn,
            in_invite: invite,
            in_tag: String::new(),
            in_final_sent: false,
            in_dialog: None,
            in_contact: String::new(),
            out_invite: Request {
                method: Method::Invite,
                uri: Uri::Other {
                    scheme: "invalid".into(),
                    rest: String::new(),
                },
                headers: Default::default(),
                body: Bytes::new(),
            },
            out_id: ReqId(0),
            out_provisional: false,
            out_final: false,
            out_dialog: None,
            out_cancelled: false,
            cancel_sent: false,
            auth_attempts: 0,
            pending: HashMap::new(),
            wa_user: String::new(),
            meta: WaMetaInfo::default(),
            meta_duration_s: None,
            wa_local: Bytes::new(),
            wa_remote: Bytes::new(),
            pbx_local: Bytes::new(),
            pbx_remote: Bytes::new(),
            media_started: false,
            on_hold: false,
            answer_deadline: None,
            permission_deadline: None,
            session: None,
            done_at: None,
        };
        c.in_tag = c.fresh("t");
        c
    }

    /// A user-initiated call: Meta's INVITE arrived on server transaction `txn` (already
    /// routed with `translate::route_inbound` and, if configured, digest-checked).
    pub fn user_initiated(
        now: Instant,
        cfg: CallConfig,
        deps: CallDeps,
        txn: ServerTxn,
        invite: Request,
    ) -> Call {
        let mut c = Call::blank(cfg, deps, Direction::UserInitiated, txn, invite);
        c.in_contact =
            meta_rules::contact_header(&c.cfg.business, &c.cfg.public_host, c.cfg.public_port);
        c.start_user_initiated(now);
        c
    }

    /// A business-initiated call: the PBX's INVITE arrived on `txn`; `permission` is the
    /// Graph lookup result for (business number, user).
    pub fn business_initiated(
        now: Instant,
        cfg: CallConfig,
        deps: CallDeps,
        txn: ServerTxn,
        invite: Request,
        permission: Permission,
    ) -> Call {
        let mut c = Call::blank(cfg, deps, Direction::BusinessInitiated, txn, invite);
        c.in_contact =
            translate::pbx_contact(&c.cfg.local_host, c.cfg.local_port, c.cfg.pbx_transport);
        if c.start_business_initiated(now) {
            c.continue_business_initiated(now, permission);
        }
        c
    }

    /// A business-initiated call whose Graph permission answer is not known yet: the PBX's
    /// INVITE is checked and answered 100, then parked until [`Call::handle_permission`] or
    /// until `deadline`, when it proceeds as [`Permission::Unknown`] (Meta decides).
    pub fn business_initiated_waiting(
        now: Instant,
        cfg: CallConfig,
        deps: CallDeps,
        txn: ServerTxn,
        invite: Request,
        deadline: Instant,
    ) -> Call {
        let mut c = Call::blank(cfg, deps, Direction::BusinessInitiated, txn, invite);
        c.in_contact =
            translate::pbx_contact(&c.cfg.local_host, c.cfg.local_port, c.cfg.pbx_transport);
        if c.start_business_initiated(now) {
            c.permission_deadline = Some(deadline);
        }
        c
    }

    /// True while the call is parked waiting for the Graph permission answer.
    pub fn waiting_for_permission(&self) -> bool {
        self.permission_deadline.is_some()
    }

    /// The Graph permission answer for a parked call (ignored when the call is not parked:
    /// it proceeded already, or ended, e.g. CANCELled by the PBX meanwhile).
    pub fn handle_permission(&mut self, now: Instant, permission: Permission) {
        if self.permission_deadline.take().is_some() && !self.state.is_terminal() {
            self.continue_business_initiated(now, permission);
        }
    }

    /// The gateway is shutting down: BYE every confirmed dialog, CANCEL our pending INVITE,
    /// answer an incoming INVITE still unanswered with 503, and end the call (its record is
    /// completed now). No-op for an ended call.
    pub fn shutdown(&mut self, now: Instant) {
        if self.state.is_terminal() {
            return;
        }
        self.permission_deadline = None;
        let text = "gateway shutting down";
        let pbx_reason = translate::q850_reason(41, text);
        for leg in [Leg::WhatsApp, Leg::Pbx] {
            self.send_bye(leg, Some(&pbx_reason));
        }
        let accepted = matches!(self.state, CallState::Accepted);
        if !accepted && !self.in_final_sent {
            self.respond_in(
                503,
                "",
                Some(vec![
                    (HeaderName::Reason, translate::sip_reason(503, text)),
                    (
                        HeaderName::Warning,
                        translate::warning_header(&self.warning_host(), text),
                    ),
                ]),
                Bytes::new(),
            );
        }
        if !accepted {
            self.cancel_out();
        }
        let reason = EndReason::new(Some(503), text, None);
        let state = if accepted {
            CallState::Completed(reason)
        } else {
            CallState::Failed(reason)
        };
        self.set_state(now, state);
    }

    /// True once the call ended and none of its requests (BYE, CANCELled INVITE) awaits a
    /// final response: a shutting-down gateway may stop.
    pub fn is_settled(&self) -> bool {
        self.state.is_terminal() && self.pending.is_empty()
    }

    pub fn state(&self) -> &CallState {
        &self.state
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The WhatsApp user (E.164 with `+` or BSUID).
    pub fn wa_user(&self) -> &str {
        &self.wa_user
    }

    pub fn wa_user_masked(&self) -> String {
        WaUser::parse(&self.wa_user)
            .map(|u| u.masked())
            .unwrap_or_else(|| "?".into())
    }

    /// Meta's call id (`x-wa-meta-wacid`), when known.
    pub fn wacid(&self) -> Option<&str> {
        self.meta.wacid.as_deref()
    }

    /// True once the call ended and its linger time (late 2xx absorption) is over: the
    /// runtime can drop it.
    pub fn is_done(&self, now: Instant) -> bool {
        self.done_at.is_some_and(|t| now >= t)
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest instant `handle_timeout` has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.answer_deadline,
            self.permission_deadline,
            self.session.map(|s| s.due),
            self.done_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(t) = self.permission_deadline
            && now >= t
        {
            // No Graph answer in time: Meta decides.
            self.handle_permission(now, Permission::Unknown);
        }
        if let Some(t) = self.answer_deadline
            && now >= t
        {
            self.answer_deadline = None;
            self.on_answer_deadline(now);
        }
        if let Some(s) = self.session
            && now >= s.due
        {
            if s.we_refresh {
                self.send_refresh(now, s.interval);
            } else {
                self.session = None;
                self.teardown(
                    now,
                    None,
                    EndReason::new(None, "session expired (no refresh from the PBX)", None),
                );
            }
        }
    }

    pub fn handle_event(&mut self, now: Instant, ev: LegEvent) {
        match ev {
            LegEvent::Request { leg, txn, request } => self.on_request(now, leg, txn, request),
            LegEvent::Ack { leg, request } => self.on_ack(leg, request),
            LegEvent::Cancelled { leg, txn } => self.on_cancelled(now, leg, txn),
            LegEvent::Response { leg, id, response } => self.on_response(now, leg, id, response),
            LegEvent::Timeout { leg, id } => self.on_timeout(now, leg, id),
            LegEvent::AckTimeout { leg } => {
                if !self.state.is_terminal() {
                    self.teardown(
                        now,
                        None,
                        EndReason::new(Some(408), "no ACK for our 200 OK", Some(leg)),
                    );
                }
            }
            LegEvent::MediaTimeout => {
                if !self.state.is_terminal() {
                    self.teardown(now, None, EndReason::new(None, "media timeout", None));
                }
            }
            LegEvent::MediaFailed { reason } => {
                if !self.state.is_terminal() {
                    self.teardown(now, None, EndReason::new(None, reason, None));
                }
            }
        }
    }

    // ------------------------------------------------------------------ start

    fn start_user_initiated(&mut self, now: Instant) {
        let h = &self.in_invite.headers;
        self.meta = WaMetaInfo::from_headers(h);
        let from = match h.from() {
            Ok(f) => f,
            Err(e) => return self.reject_start(now, 400, &e.warning_text()),
        };
        if !matches!(h.contacts(), Ok(c) if !c.is_empty()) {
            return self.reject_start(now, 400, "INVITE without a usable Contact");
        }
        let caller_user = from
            .uri
            .as_sip()
            .and_then(|u| u.user.as_deref())
            .map(meta_rules::user_base)
            .unwrap_or_default()
            .to_owned();
        // BSUIDs and E.164 are carried through; anything else is carried as written.
        self.wa_user = WaUser::parse(&caller_user)
            .map(|u| u.as_str().to_owned())
            .unwrap_or(caller_user);
        self.record_started(now);
        self.respond_in(100, "", None, Bytes::new());
        self.wa_remote = self.in_invite.body.clone();
        let offer = match self.deps.sdp.pbx_offer(&self.wa_remote) {
            Ok(o) => o,
            Err(e) => return self.reject_start(now, e.status, &e.text),
        };
        self.pbx_local = offer.clone();
        let st = self.cfg.session_timer;
        let extra = self.meta.pbx_headers(&self.wa_user, &self.cfg.business);
        let call_id = format!("{}@{}", self.fresh("c"), self.cfg.local_host);
        let from_tag = self.fresh("f");
        let display = from.display_name.clone();
        let Some(invite) = translate::pbx_invite(&translate::PbxInvite {
            request_user: &self.cfg.pbx_request_user,
            peer_host: &self.cfg.pbx_host,
            peer_port: self.cfg.pbx_port,
            transport: self.cfg.pbx_transport,
            local_host: &self.cfg.local_host,
            local_port: self.cfg.local_port,
            caller: &self.wa_user,
            display_name: display.as_deref(),
            call_id: &call_id,
            from_tag: &from_tag,
            cseq: 1,
            session_timer: st.enabled.then_some((st.session_expires_s, st.min_se_s)),
            extra,
            sdp: offer,
        }) else {
            return self.reject_start(now, 500, "cannot build the INVITE toward the PBX");
        };
        self.answer_deadline = Some(now + self.cfg.answer_deadline);
        self.send_out_invite(invite);
    }

    /// Checks the PBX's INVITE and answers 100; false when the call already failed.
    fn start_business_initiated(&mut self, now: Instant) -> bool {
        let target = self
            .in_invite
            .uri
            .as_sip()
            .and_then(|u| u.user.as_deref())
            .map(meta_rules::user_base)
            .and_then(WaUser::parse);
        self.wa_user = target
            .as_ref()
            .map(|u| u.as_str().to_owned())
            .unwrap_or_default();
        self.record_started(now);
        self.respond_in(100, "", None, Bytes::new());
        if !matches!(self.in_invite.headers.contacts(), Ok(c) if !c.is_empty()) {
            self.reject_start(now, 400, "INVITE without a usable Contact");
            return false;
        }
        if target.is_none() {
            self.reject_start(now, 404, "not a WhatsApp number or BSUID");
            return false;
        }
        if let Some(resp) = self.session_timer_check_422() {
            self.reject_start_with(now, resp, "Session-Expires below our Min-SE");
            return false;
        }
        if self.in_invite.body.is_empty() {
            self.reject_start(now, 488, "an SDP offer is required");
            return false;
        }
        true
    }

    /// The permission is known: refuse (403 + 138006) or send our INVITE to Meta.
    fn continue_business_initiated(&mut self, now: Instant, permission: Permission) {
        let Some(user) = WaUser::parse(&self.wa_user) else {
            return self.reject_start(now, 404, "not a WhatsApp number or BSUID");
        };
        if permission == Permission::NoPermission {
            let f = translate::no_permission_failure();
            return self.fail_in_leg(now, &f, CallStateKind::Failed, None);
        }
        self.pbx_remote = self.in_invite.body.clone();
        let offer = match self.deps.sdp.wa_offer(&self.pbx_remote) {
            Ok(o) => o,
            Err(e) => return self.reject_start(now, e.status, &e.text),
        };
        self.wa_local = offer.clone();
        let call_id = format!("{}@{}", self.fresh("c"), self.cfg.public_host);
        let from_tag = self.fresh("f");
        let Some(invite) = translate::meta_invite(&translate::MetaInvite {
            user: &user,
            business: &self.cfg.business,
            public_host: &self.cfg.public_host,
            public_port: self.cfg.public_port,
            edge_host: &self.cfg.edge_host,
            call_id: &call_id,
            from_tag: &from_tag,
            cseq: 1,
            sdp: offer,
        }) else {
            return self.reject_start(now, 404, "not a WhatsApp number or BSUID");
        };
        self.send_out_invite(invite);
    }

    fn send_out_invite(&mut self, invite: Request) {
        if self.pending.is_empty() && self.out_id == ReqId(0) {
            self.record_call_ids(Some(&invite));
        }
        let id = self.next_req();
        self.out_invite = invite.clone();
        self.out_id = id;
        self.out_provisional = false;
        self.pending.insert(id, Pending::Invite);
        self.actions.push_back(Action::SendRequest {
            leg: self.in_leg.other(),
            id,
            request: invite,
        });
    }

    // ------------------------------------------------------------------ helpers

    fn fresh(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("{}{kind}{:x}", self.cfg.id_prefix, self.next_id)
    }

    fn next_req(&mut self) -> ReqId {
        self.next_id += 1;
        ReqId(self.next_id)
    }

    fn out_leg(&self) -> Leg {
        self.in_leg.other()
    }

    fn warning_host(&self) -> String {
        match self.in_leg {
            Leg::WhatsApp => self.cfg.public_host.clone(),
            Leg::Pbx => self.cfg.local_host.clone(),
        }
    }

    fn set_state(&mut self, now: Instant, s: CallState) {
        if self.state == s || self.state.is_terminal() {
            return;
        }
        tracing::debug!(
            state = s.name(),
            direction = ?self.direction,
            user = %self.wa_user_masked(),
            "call state"
        );
        self.state = s.clone();
        self.actions.push_back(Action::State(s.clone()));
        if s.is_terminal() {
            self.answer_deadline = None;
            self.session = None;
            self.done_at = Some(now + self.cfg.linger);
            if self.media_started {
                self.actions.push_back(Action::Media(MediaAction::Stop));
            }
            self.actions.push_back(Action::Record(RecordUpdate::Ended {
                at: now,
                state: s,
                meta_duration_s: self.meta_duration_s,
                wacid: self.meta.wacid.clone(),
            }));
        }
    }

    fn record_started(&mut self, now: Instant) {
        self.actions
            .push_back(Action::Record(RecordUpdate::Started {
                at: now,
                direction: self.direction,
                business: self.cfg.business.clone(),
                user: self.wa_user.clone(),
                wacid: self.meta.wacid.clone(),
            }));
        self.record_call_ids(None);
    }

    /// `RecordUpdate::CallIds` with the incoming leg's Call-ID and, once built, ours.
    fn record_call_ids(&mut self, out: Option<&Request>) {
        let id_of = |r: &Request| r.headers.call_id().ok().map(str::to_owned);
        let (inc, out) = (id_of(&self.in_invite), out.and_then(id_of));
        let (whatsapp_call_id, pbx_call_id) = match self.in_leg {
            Leg::WhatsApp => (inc, out),
            Leg::Pbx => (out, inc),
        };
        self.actions
            .push_back(Action::Record(RecordUpdate::CallIds {
                whatsapp_call_id,
                pbx_call_id,
            }));
    }

    /// A response on the incoming INVITE's server transaction.
    fn respond_in(
        &mut self,
        status: u16,
        reason: &str,
        extra: Option<Vec<(HeaderName, String)>>,
        body: Bytes,
    ) {
        let mut r = translate::make_response(&self.in_invite, status, reason, Some(&self.in_tag));
        for (n, v) in extra.unwrap_or_default() {
            r.headers.push(n, v);
        }
        if (101..300).contains(&status) {
            r.headers.push(HeaderName::Contact, self.in_contact.clone());
        }
        if !body.is_empty() {
            r.headers.push(HeaderName::ContentType, "application/sdp");
        }
        r.body = body;
        if status >= 200 {
            self.in_final_sent = true;
        }
        self.actions.push_back(Action::SendResponse {
            leg: self.in_leg,
            txn: self.in_txn,
            response: r,
        });
    }

    fn reject_start(&mut self, now: Instant, status: u16, text: &str) {
        let warning = translate::warning_header(&self.warning_host(), text);
        self.respond_in(
            status,
            "",
            Some(vec![(HeaderName::Warning, warning)]),
            Bytes::new(),
        );
        self.set_state(
            now,
            CallState::Failed(EndReason::new(Some(status), text, None)),
        );
    }

    fn reject_start_with(&mut self, now: Instant, resp: Response, text: &str) {
        let status = resp.status;
        self.in_final_sent = true;
        self.actions.push_back(Action::SendResponse {
            leg: self.in_leg,
            txn: self.in_txn,
            response: resp,
        });
        self.set_state(
            now,
            CallState::Failed(EndReason::new(Some(status), text, None)),
        );
    }

    /// Answers the incoming INVITE with a mapped failure and ends the call.
    fn fail_in_leg(
        &mut self,
        now: Instant,
        f: &MappedFailure,
        kind: CallStateKind,
        by: Option<Leg>,
    ) {
        if !self.in_final_sent {
            let mut extra = vec![(HeaderName::Reason, f.reason.clone())];
            if let Some(w) = &f.warning {
                extra.push((
                    HeaderName::Warning,
                    translate::warning_header(&self.warning_host(), w),
                ));
            }
            self.respond_in(f.status, "", Some(extra), Bytes::new());
        }
        let reason = EndReason {
            sip_status: Some(f.status),
            meta_code: f.meta_code,
            text: f.warning.clone().unwrap_or_default(),
            by,
        };
        self.set_state(now, kind.with(reason));
    }

    // ------------------------------------------------------------------ incoming requests

    fn on_request(&mut self, now: Instant, leg: Leg, txn: ServerTxn, req: Request) {
        let method = req.method.clone();
        // Route the request to the dialog it belongs to.
        let dialog = match leg == self.in_leg {
            true => self.in_dialog.as_mut(),
            false => self.out_dialog.as_mut(),
        };
        let Some(dialog) = dialog else {
            // No dialog yet on this leg: only a BYE for an early call is meaningful.
            return self.answer(leg, txn, &req, 481, "", vec![], Bytes::new());
        };
        if dialog.state == crate::sip::dialog::DialogState::Terminated {
            // The call is over on this leg (we sent or got a BYE).
            return self.answer(leg, txn, &req, 481, "", vec![], Bytes::new());
        }
        if let Err(e) = dialog.handle_request(&req) {
            return self.answer(leg, txn, &req, e.sip_status(), "", vec![], Bytes::new());
        }
        match method {
            Method::Bye => self.on_bye(now, leg, txn, req),
            Method::Invite | Method::Update => self.on_offer(now, leg, txn, req),
            Method::Info => self.on_info(leg, txn, req),
            Method::Options => {
                let allow = self.allow_for(leg);
                self.answer(
                    leg,
                    txn,
                    &req,
                    200,
                    "",
                    vec![(HeaderName::Allow, allow)],
                    Bytes::new(),
                )
            }
            Method::Refer | Method::Message | Method::Notify | Method::Subscribe => {
                self.answer(leg, txn, &req, 501, "", vec![], Bytes::new())
            }
            _ => {
                let allow = self.allow_for(leg);
                self.answer(
                    leg,
                    txn,
                    &req,
                    405,
                    "",
                    vec![(HeaderName::Allow, allow)],
                    Bytes::new(),
                )
            }
        }
    }

    fn allow_for(&self, leg: Leg) -> String {
        match leg {
            Leg::WhatsApp => meta_rules::META_ALLOW.to_owned(),
            Leg::Pbx => translate::PBX_ALLOW.to_owned(),
        }
    }

    fn local_tag_of(&self, leg: Leg) -> Option<String> {
        let d = if leg == self.in_leg {
            self.in_dialog.as_ref()
        } else {
            self.out_dialog.as_ref()
        };
        d.map(|d| d.id.local_tag.clone())
    }

    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        leg: Leg,
        txn: ServerTxn,
        req: &Request,
        status: u16,
        reason: &str,
        extra: Vec<(HeaderName, String)>,
        body: Bytes,
    ) {
        let tag = self.local_tag_of(leg);
        let mut r = translate::make_response(req, status, reason, tag.as_deref());
        for (n, v) in extra {
            r.headers.push(n, v);
        }
        if !body.is_empty() {
            r.headers.push(HeaderName::ContentType, "application/sdp");
        }
        r.body = body;
        self.actions.push_back(Action::SendResponse {
            leg,
            txn,
            response: r,
        });
    }

    fn on_bye(&mut self, now: Instant, leg: Leg, txn: ServerTxn, req: Request) {
        if leg == Leg::WhatsApp {
            let info = WaMetaInfo::from_headers(&req.headers);
            self.meta_duration_s = info.call_duration_s;
            if self.meta.wacid.is_none() {
                self.meta.wacid = info.wacid;
            }
        }
        self.answer(leg, txn, &req, 200, "", vec![], Bytes::new());
        if let Some(d) = if leg == self.in_leg {
            self.in_dialog.as_mut()
        } else {
            self.out_dialog.as_mut()
        } {
            d.terminate();
        }
        let text = match leg {
            Leg::WhatsApp => "BYE from the WhatsApp user",
            Leg::Pbx => "BYE from the PBX",
        };
        self.teardown(now, Some(leg), EndReason::new(None, text, Some(leg)));
    }

    /// BYE every confirmed dialog except the one on `except`, and end the call.
    fn teardown(&mut self, now: Instant, except: Option<Leg>, reason: EndReason) {
        // The PBX learns why the call ended (RFC 3326): the SIP status when one caused it,
        // Q.850 16 (normal clearing) when WhatsApp hung up, else Q.850 41 (temporary failure:
        // media timeout, dead leg, DTLS failure).
        let pbx_reason = match (reason.sip_status, reason.by) {
            (Some(s), _) => translate::sip_reason(s, &reason.text),
            // The other side hung up: normal clearing.
            (None, Some(_)) => translate::q850_reason(16, &reason.text),
            (None, None) => translate::q850_reason(41, &reason.text),
        };
        for leg in [Leg::WhatsApp, Leg::Pbx] {
            if Some(leg) != except {
                self.send_bye(leg, Some(&pbx_reason));
            }
        }
        let accepted = matches!(self.state, CallState::Accepted);
        if !accepted && !self.in_final_sent {
            // Not answered yet: end the incoming INVITE and stop the outgoing one.
            let status = if self.in_leg == Leg::WhatsApp {
                480
            } else {
                408
            };
            self.respond_in(
                status,
                "",
                Some(vec![(
                    HeaderName::Reason,
                    translate::sip_reason(status, &reason.text),
                )]),
                Bytes::new(),
            );
        }
        if !accepted {
            self.cancel_out();
        }
        let state = if accepted {
            CallState::Completed(reason)
        } else {
            CallState::Failed(reason)
        };
        self.set_state(now, state);
    }

    /// `pbx_reason`: a `Reason` value for a BYE toward the PBX (Meta always gets its own).
    fn send_bye(&mut self, leg: Leg, pbx_reason: Option<&str>) {
        let dialog = if leg == self.in_leg {
            self.in_dialog.as_mut()
        } else {
            self.out_dialog.as_mut()
        };
        let Some(d) = dialog else { return };
        if d.state == crate::sip::dialog::DialogState::Terminated {
            return;
        }
        let mut bye = d.new_request(Method::Bye);
        d.terminate();
        match (leg, pbx_reason) {
            (Leg::WhatsApp, _) => bye.headers.push(HeaderName::Reason, meta_rules::BYE_REASON),
            (Leg::Pbx, Some(r)) => bye.headers.push(HeaderName::Reason, r),
            (Leg::Pbx, None) => {}
        }
        let id = self.next_req();
        self.pending.insert(id, Pending::Bye);
        self.actions.push_back(Action::SendRequest {
            leg,
            id,
            request: bye,
        });
    }

    /// Stop the outgoing INVITE: CANCEL now if a provisional arrived, else as soon as one does.
    fn cancel_out(&mut self) {
        if self.out_final || self.out_cancelled {
            return;
        }
        self.out_cancelled = true;
        self.maybe_send_cancel();
    }

    fn maybe_send_cancel(&mut self) {
        if self.out_cancelled && self.out_provisional && !self.cancel_sent && !self.out_final {
            self.cancel_sent = true;
            self.actions.push_back(Action::SendCancel {
                leg: self.out_leg(),
                invite: self.out_id,
            });
        }
    }

    /// re-INVITE / UPDATE: absorbed on the leg it came from, answered with our current SDP
    /// (direction adjusted), never forwarded.
    fn on_offer(&mut self, now: Instant, leg: Leg, txn: ServerTxn, req: Request) {
        let offer = req.body.clone();
        let current = match leg {
            Leg::Pbx => self.pbx_local.clone(),
            Leg::WhatsApp => self.wa_local.clone(),
        };
        let mut extra = vec![(HeaderName::Allow, self.allow_for(leg))];
        if leg == Leg::Pbx {
            match self.session_timer_answer(now, &req) {
                Ok(headers) => extra.extend(headers),
                Err(min_se) => {
                    return self.answer(
                        leg,
                        txn,
                        &req,
                        422,
                        "",
                        vec![(HeaderName::MinSe, min_se.to_string())],
                        Bytes::new(),
                    );
                }
            }
        }
        let is_invite = req.method == Method::Invite;
        if is_invite {
            let contact = if leg == self.in_leg {
                self.in_contact.clone()
            } else {
                self.out_invite
                    .headers
                    .get(&HeaderName::Contact)
                    .unwrap_or_default()
                    .to_owned()
            };
            extra.push((HeaderName::Contact, contact));
        }
        let body = if offer.is_empty() {
            // No offer (late-offer re-INVITE or a bare refresh): a re-INVITE gets our SDP as
            // the offer (the answer comes in the ACK); an UPDATE needs no SDP.
            if is_invite { current } else { Bytes::new() }
        } else {
            let want = translate::sdp_direction(&offer).answer();
            let answer = if translate::sdp_direction(&current) == want {
                current
            } else {
                translate::sdp_with_direction(&current, want)
            };
            match leg {
                Leg::Pbx => {
                    self.pbx_local = answer.clone();
                    self.apply_pbx_offer(offer);
                }
                Leg::WhatsApp => self.wa_local = answer.clone(),
            }
            answer
        };
        self.answer(leg, txn, &req, 200, "", extra, body);
    }

    fn apply_pbx_offer(&mut self, offer: Bytes) {
        if offer != self.pbx_remote {
            self.pbx_remote = offer.clone();
            self.actions
                .push_back(Action::Media(MediaAction::UpdatePbxRemote {
                    sdp: offer.clone(),
                }));
        }
        let hold = translate::sdp_is_hold(&offer);
        if hold != self.on_hold {
            self.on_hold = hold;
            self.actions
                .push_back(Action::Media(MediaAction::Hold(hold)));
        }
    }

    fn on_info(&mut self, leg: Leg, txn: ServerTxn, req: Request) {
        let ct = req.headers.content_type();
        match translate::info_dtmf(ct.as_deref(), &req.body) {
            Some(d) if leg == Leg::Pbx => {
                self.actions.push_back(Action::Media(MediaAction::SendDtmf {
                    digit: d.digit,
                    duration_ms: d.duration_ms,
                }));
                self.answer(leg, txn, &req, 200, "", vec![], Bytes::new())
            }
            _ if req.body.is_empty() => self.answer(leg, txn, &req, 200, "", vec![], Bytes::new()),
            _ => self.answer(leg, txn, &req, 415, "", vec![], Bytes::new()),
        }
    }

    fn on_ack(&mut self, leg: Leg, req: Request) {
        // An ACK carrying the answer to our offer in a late-offer re-INVITE from the PBX.
        if leg == Leg::Pbx && !req.body.is_empty() {
            self.apply_pbx_offer(req.body);
        }
    }

    fn on_cancelled(&mut self, now: Instant, leg: Leg, txn: ServerTxn) {
        if leg != self.in_leg || txn != self.in_txn || self.in_final_sent {
            return;
        }
        self.respond_in(487, "", None, Bytes::new());
        self.cancel_out();
        self.set_state(
            now,
            CallState::Failed(EndReason::new(Some(487), "caller cancelled", Some(leg))),
        );
    }

    fn on_answer_deadline(&mut self, now: Instant) {
        if self.in_final_sent || self.state.is_terminal() {
            return;
        }
        let f = MappedFailure {
            status: 480,
            reason: translate::sip_reason(480, "No answer from the PBX"),
            warning: Some("no answer from the PBX within the answer deadline".into()),
            meta_code: None,
        };
        self.fail_in_leg(now, &f, CallStateKind::Failed, None);
        self.cancel_out();
    }

    // ------------------------------------------------------------------ responses

    fn on_response(&mut self, now: Instant, leg: Leg, id: ReqId, resp: Response) {
        let Some(kind) = self.pending.get(&id).copied() else {
            // A 2xx retransmission for the INVITE we already ACKed: ACK again.
            if leg == self.out_leg() && resp.is_success() {
                self.re_ack(leg, &resp);
            }
            return;
        };
        if resp.is_final() {
            self.pending.remove(&id);
        }
        match kind {
            Pending::Invite if id == self.out_id => self.on_invite_response(now, resp),
            Pending::Invite => {
                // A superseded INVITE (answered a challenge since): only a 2xx matters.
                if resp.is_success() {
                    self.ack_and_bye(leg, &resp);
                }
            }
            Pending::Bye => {}
            Pending::Refresh => self.on_refresh_response(now, leg, resp),
        }
    }

    fn re_ack(&mut self, leg: Leg, resp: &Response) {
        let Some(d) = self.out_dialog.as_ref() else {
            return;
        };
        let same = crate::sip::dialog::DialogId::of_incoming_response(resp)
            .ok()
            .flatten()
            .is_some_and(|i| i == d.id);
        if same
            && resp
                .headers
                .cseq()
                .is_ok_and(|c| c.method == Method::Invite)
        {
            let ack = d.ack(d.invite_seq);
            self.actions
                .push_back(Action::SendAck { leg, request: ack });
        }
    }

    /// A 2xx we do not want (after CANCEL, deadline, or for a superseded INVITE): ACK it,
    /// then BYE it.
    fn ack_and_bye(&mut self, leg: Leg, resp: &Response) {
        let Ok(mut d) = Dialog::uac(&self.out_invite, resp) else {
            return;
        };
        let seq = resp.headers.cseq().map(|c| c.seq).unwrap_or(d.invite_seq);
        // The superseded INVITE had another CSeq; the 2xx names the one to ACK.
        d.invite_seq = seq;
        d.local_seq = d.local_seq.max(seq);
        self.actions.push_back(Action::SendAck {
            leg,
            request: d.ack(seq),
        });
        let mut bye = d.new_request(Method::Bye);
        if leg == Leg::WhatsApp {
            bye.headers.push(HeaderName::Reason, meta_rules::BYE_REASON);
        }
        let id = self.next_req();
        self.pending.insert(id, Pending::Bye);
        self.actions.push_back(Action::SendRequest {
            leg,
            id,
            request: bye,
        });
    }

    fn on_invite_response(&mut self, now: Instant, resp: Response) {
        let leg = self.out_leg();
        let status = resp.status;
        if resp.is_provisional() {
            self.out_provisional = true;
            self.maybe_send_cancel();
            if status == 100 || self.out_cancelled || self.in_final_sent {
                return;
            }
            return self.relay_provisional(now, resp);
        }
        self.out_final = true;
        if resp.is_success() {
            if self.out_cancelled || self.in_final_sent || self.state.is_terminal() {
                return self.ack_and_bye(leg, &resp);
            }
            return self.on_answered(now, resp);
        }
        // Failure.
        if self.out_cancelled || self.in_final_sent {
            return;
        }
        if matches!(status, 401 | 407) && self.retry_with_credentials(&resp) {
            return;
        }
        if status == 422 && leg == Leg::Pbx && self.retry_with_min_se(&resp) {
            return;
        }
        match self.direction {
            Direction::BusinessInitiated => {
                let warning = resp.headers.get(&HeaderName::Warning);
                let f = translate::meta_failure_to_pbx(status, &resp.reason, warning);
                let kind = if matches!(status, 486 | 600 | 603) {
                    CallStateKind::Rejected
                } else {
                    CallStateKind::Failed
                };
                self.fail_in_leg(now, &f, kind, Some(leg));
            }
            Direction::UserInitiated => {
                let mapped = translate::pbx_failure_to_meta(status);
                let f = MappedFailure {
                    status: mapped,
                    reason: translate::sip_reason(status, &resp.reason),
                    warning: None,
                    meta_code: None,
                };
                let kind = if mapped == 486 {
                    CallStateKind::Rejected
                } else {
                    CallStateKind::Failed
                };
                self.fail_in_leg(now, &f, kind, Some(leg));
            }
        }
    }

    fn relay_provisional(&mut self, now: Instant, resp: Response) {
        match self.direction {
            Direction::UserInitiated => {
                // PBX 180/183 → 180 toward Meta, never early media.
                if self.state == CallState::Connecting {
                    self.respond_in(180, "", None, Bytes::new());
                    self.set_state(now, CallState::Ringing);
                }
            }
            Direction::BusinessInitiated => {
                if resp.status == 183 && !resp.body.is_empty() && !self.media_started {
                    self.wa_remote = resp.body.clone();
                    if let Ok(ans) = self.deps.sdp.pbx_answer(&self.pbx_remote, &resp.body) {
                        self.pbx_local = ans.clone();
                        self.respond_in(183, "", None, ans);
                        self.start_media(true);
                        self.set_state(now, CallState::PreAccepted);
                        return;
                    }
                }
                let status = if resp.status == 183 { 183 } else { 180 };
                self.respond_in(status, "", None, Bytes::new());
                if self.state == CallState::Connecting {
                    self.set_state(now, CallState::Ringing);
                }
            }
        }
    }

    fn start_media(&mut self, early: bool) {
        self.media_started = true;
        self.actions.push_back(Action::Media(MediaAction::Start {
            wa_local: self.wa_local.clone(),
            wa_remote: self.wa_remote.clone(),
            pbx_local: self.pbx_local.clone(),
            pbx_remote: self.pbx_remote.clone(),
            early,
        }));
    }

    fn on_answered(&mut self, now: Instant, resp: Response) {
        let leg = self.out_leg();
        let mut d = match Dialog::uac(&self.out_invite, &resp) {
            Ok(d) => d,
            Err(_) => {
                // A 2xx we cannot build a dialog from (no Contact): give up on both legs.
                let f = MappedFailure {
                    status: 502,
                    reason: translate::sip_reason(resp.status, "unusable 2xx"),
                    warning: Some("the answer had no usable Contact".into()),
                    meta_code: None,
                };
                return self.fail_in_leg(now, &f, CallStateKind::Failed, Some(leg));
            }
        };
        d.confirm();
        self.actions.push_back(Action::SendAck {
            leg,
            request: d.ack(d.invite_seq),
        });
        self.out_dialog = Some(d);
        // Our answer on the incoming leg.
        let answer = match self.direction {
            Direction::UserInitiated => {
                self.pbx_remote = resp.body.clone();
                self.deps.sdp.wa_answer(&self.wa_remote, &resp.body)
            }
            Direction::BusinessInitiated => {
                // Meta may name the call (x-wa-meta-wacid) and the user's BSUID in its 200.
                let info = WaMetaInfo::from_headers(&resp.headers);
                if self.meta.wacid.is_none() {
                    self.meta.wacid = info.wacid;
                }
                if self.meta.user_id.is_none() {
                    self.meta.user_id = info.user_id;
                }
                let early = self.media_started && resp.body.is_empty();
                if !resp.body.is_empty() {
                    self.wa_remote = resp.body.clone();
                }
                if early {
                    Ok(self.pbx_local.clone())
                } else {
                    self.deps.sdp.pbx_answer(&self.pbx_remote, &self.wa_remote)
                }
            }
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                self.send_bye(leg, None);
                let f = MappedFailure {
                    status: e.status,
                    reason: translate::sip_reason(e.status, &e.text),
                    warning: Some(e.text),
                    meta_code: None,
                };
                return self.fail_in_leg(now, &f, CallStateKind::Failed, None);
            }
        };
        let mut extra = vec![];
        match self.direction {
            Direction::UserInitiated => {
                self.wa_local = answer.clone();
                extra.push((HeaderName::Allow, meta_rules::META_ALLOW.to_owned()));
                self.session_timer_from_answer(now, &resp);
            }
            Direction::BusinessInitiated => {
                self.pbx_local = answer.clone();
                extra.push((HeaderName::Allow, translate::PBX_ALLOW.to_owned()));
                let inv = self.in_invite.clone();
                if let Ok(h) = self.session_timer_answer(now, &inv) {
                    extra.extend(h);
                }
            }
        }
        self.respond_in(200, "", Some(extra), answer);
        let contact = self.in_contact_uri();
        if let Ok(mut d) = Dialog::uas(&self.in_invite, &self.in_tag, contact) {
            d.confirm();
            self.in_dialog = Some(d);
        }
        self.answer_deadline = None;
        if self.media_started {
            // Early media ran already; the relay keeps going (PBX SDP may be new).
            if !self.pbx_remote.is_empty() {
                self.actions.push_back(Action::Media(MediaAction::Start {
                    wa_local: self.wa_local.clone(),
                    wa_remote: self.wa_remote.clone(),
                    pbx_local: self.pbx_local.clone(),
                    pbx_remote: self.pbx_remote.clone(),
                    early: false,
                }));
            }
        } else {
            self.start_media(false);
        }
        self.actions
            .push_back(Action::Record(RecordUpdate::Answered { at: now }));
        self.set_state(now, CallState::Accepted);
    }

    fn in_contact_uri(&self) -> Uri {
        let s = self
            .in_contact
            .trim_start_matches('<')
            .trim_end_matches('>');
        Uri::parse(s).unwrap_or(Uri::Other {
            scheme: "sip".into(),
            rest: String::new(),
        })
    }

    fn retry_with_credentials(&mut self, resp: &Response) -> bool {
        if self.auth_attempts >= MAX_AUTH {
            return false;
        }
        let (challenge_name, cred_name) = if resp.status == 401 {
            (HeaderName::WwwAuthenticate, HeaderName::Authorization)
        } else {
            (
                HeaderName::ProxyAuthenticate,
                HeaderName::ProxyAuthorization,
            )
        };
        let challenges: Vec<&str> = resp.headers.get_all(&challenge_name).collect();
        let uri = self.out_invite.uri.to_string();
        let previous = self.out_invite.headers.get(&cred_name);
        let responder = match self.out_leg() {
            Leg::WhatsApp => self.deps.wa_auth.as_mut(),
            Leg::Pbx => self.deps.pbx_auth.as_mut(),
        };
        let Some(responder) = responder else {
            return false;
        };
        let Some(value) = responder.respond(&challenges, "INVITE", &uri, previous) else {
            return false;
        };
        self.auth_attempts += 1;
        let seq = self.out_invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
        let again = translate::with_credentials(&self.out_invite, seq + 1, cred_name, value);
        self.out_final = false;
        self.send_out_invite(again);
        true
    }

    fn retry_with_min_se(&mut self, resp: &Response) -> bool {
        let Ok(Some(min_se)) = resp.headers.min_se() else {
            return false;
        };
        let current = self
            .out_invite
            .headers
            .session_expires()
            .ok()
            .flatten()
            .map(|(s, _)| s)
            .unwrap_or(0);
        if min_se <= current || min_se > 86_400 {
            return false;
        }
        let mut again = self.out_invite.clone();
        let seq = again.headers.cseq().map(|c| c.seq).unwrap_or(1);
        again
            .headers
            .set(HeaderName::CSeq, format!("{} INVITE", seq + 1));
        again.headers.set(
            HeaderName::SessionExpires,
            format!("{min_se};refresher=uac"),
        );
        again.headers.set(HeaderName::MinSe, min_se.to_string());
        self.out_final = false;
        self.send_out_invite(again);
        true
    }

    fn on_timeout(&mut self, now: Instant, leg: Leg, id: ReqId) {
        let Some(kind) = self.pending.remove(&id) else {
            return;
        };
        match kind {
            Pending::Invite if id == self.out_id => {
                self.out_final = true;
                if self.out_cancelled || self.in_final_sent {
                    return;
                }
                let f = match self.direction {
                    Direction::BusinessInitiated => {
                        translate::meta_failure_to_pbx(408, "Request Timeout", None)
                    }
                    Direction::UserInitiated => MappedFailure {
                        status: 480,
                        reason: translate::sip_reason(408, "PBX did not respond"),
                        warning: None,
                        meta_code: None,
                    },
                };
                self.fail_in_leg(now, &f, CallStateKind::Failed, Some(leg));
            }
            Pending::Refresh => {
                self.teardown(
                    now,
                    None,
                    EndReason::new(Some(408), "session refresh timed out", Some(leg)),
                );
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------------ session timers (PBX leg)

    /// PBX's INVITE asks for a Session-Expires below our Min-SE: the 422 to send.
    fn session_timer_check_422(&self) -> Option<Response> {
        let st = self.cfg.session_timer;
        if !st.enabled {
            return None;
        }
        let (se, _) = self.in_invite.headers.session_expires().ok().flatten()?;
        (se < st.min_se_s).then(|| {
            let mut r = translate::make_response(&self.in_invite, 422, "", Some(&self.in_tag));
            r.headers.push(HeaderName::MinSe, st.min_se_s.to_string());
            r
        })
    }

    /// The PBX sent us an INVITE/UPDATE (we are UAS): negotiate RFC 4028 and return the
    /// headers for our 2xx, or `Err(min_se)` for a 422.
    fn session_timer_answer(
        &mut self,
        now: Instant,
        req: &Request,
    ) -> Result<Vec<(HeaderName, String)>, u32> {
        let st = self.cfg.session_timer;
        if !st.enabled {
            return Ok(vec![]);
        }
        let supported = req
            .headers
            .tokens(&HeaderName::Supported)
            .iter()
            .any(|t| t.eq_ignore_ascii_case("timer"));
        let asked = req.headers.session_expires().ok().flatten();
        let (se, refresher) = match asked {
            Some((se, _)) if se < st.min_se_s => return Err(st.min_se_s),
            Some((se, r)) => (se, r.unwrap_or_else(|| "uac".into())),
            None if supported => (st.session_expires_s, "uac".into()),
            None => return Ok(vec![]),
        };
        let refresher = if refresher.eq_ignore_ascii_case("uas") {
            "uas"
        } else {
            "uac"
        };
        // In this transaction the PBX is the UAC: refresher=uas means we refresh.
        self.arm_session(now, se, refresher == "uas");
        let mut h = vec![(
            HeaderName::SessionExpires,
            format!("{se};refresher={refresher}"),
        )];
        if supported {
            h.push((HeaderName::Require, "timer".into()));
        }
        Ok(h)
    }

    /// The PBX's 2xx to our INVITE (we are UAC).
    fn session_timer_from_answer(&mut self, now: Instant, resp: &Response) {
        if !self.cfg.session_timer.enabled {
            return;
        }
        if let Ok(Some((se, r))) = resp.headers.session_expires() {
            let we = !r.is_some_and(|r| r.eq_ignore_ascii_case("uas"));
            self.arm_session(now, se.max(90), we);
        }
    }

    fn arm_session(&mut self, now: Instant, se: u32, we_refresh: bool) {
        let interval = Duration::from_secs(u64::from(se));
        let due = if we_refresh {
            now + interval / 2
        } else {
            // RFC 4028 §10: BYE at SE − min(32 s, SE/3) without a refresh.
            now + interval - Duration::from_secs(u64::from((se / 3).min(32)))
        };
        self.session = Some(SessionTimerState {
            interval,
            we_refresh,
            due,
        });
    }

    fn send_refresh(&mut self, now: Instant, interval: Duration) {
        let Some(d) = self.pbx_dialog_mut() else {
            self.session = None;
            return;
        };
        let mut req = d.new_request(Method::Invite);
        let se = interval.as_secs();
        req.headers.push(HeaderName::Supported, "timer");
        req.headers
            .push(HeaderName::SessionExpires, format!("{se};refresher=uac"));
        req.headers.push(HeaderName::ContentType, "application/sdp");
        req.body = self.pbx_local.clone();
        let id = self.next_req();
        self.pending.insert(id, Pending::Refresh);
        self.actions.push_back(Action::SendRequest {
            leg: Leg::Pbx,
            id,
            request: req,
        });
        // Until the answer re-arms it, give up at the expiry.
        self.session = Some(SessionTimerState {
            interval,
            we_refresh: false,
            due: now + interval / 2 - Duration::from_secs((se / 3).min(32)),
        });
    }

    fn pbx_dialog_mut(&mut self) -> Option<&mut Dialog> {
        if self.in_leg == Leg::Pbx {
            self.in_dialog.as_mut()
        } else {
            self.out_dialog.as_mut()
        }
    }

    fn on_refresh_response(&mut self, now: Instant, leg: Leg, resp: Response) {
        if resp.is_provisional() {
            return;
        }
        if resp.is_success() {
            if let Some(d) = self.pbx_dialog_mut() {
                let ack = d.ack(d.invite_seq);
                self.actions
                    .push_back(Action::SendAck { leg, request: ack });
            }
            let se = resp
                .headers
                .session_expires()
                .ok()
                .flatten()
                .map(|(s, _)| s)
                .unwrap_or(self.cfg.session_timer.session_expires_s);
            if !self.state.is_terminal() {
                self.arm_session(now, se.max(90), true);
            }
            return;
        }
        if matches!(resp.status, 408 | 481) {
            self.teardown(
                now,
                None,
                EndReason::new(Some(resp.status), "session refresh failed", Some(leg)),
            );
        }
        // Other failures (491, 500 …) leave the dialog; the expiry timer stays armed.
    }
}

/// Which terminal state a failure ends in.
#[derive(Debug, Clone, Copy)]
enum CallStateKind {
    Rejected,
    Failed,
}

impl CallStateKind {
    fn with(self, r: EndReason) -> CallState {
        match self {
            CallStateKind::Rejected => CallState::Rejected(r),
            CallStateKind::Failed => CallState::Failed(r),
        }
    }
}

#[allow(dead_code)]
fn assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Call>();
}
