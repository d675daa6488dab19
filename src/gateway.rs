//! Start-up glue of `whatsip run`: opens the call-record store, serves the HTTP API, starts the
//! in-process sandbox when the WhatsApp profile asks for it, obtains the TLS identity, binds the
//! WhatsApp TLS and trunk UDP/TCP transports, and runs the call [`Runtime`] with real adapters
//! (digest responders, SDP offer/answer on `media::sdp` or `media::webrtc`, record/registry
//! consumer) and the media workers (`gateway/media.rs`) until `shutdown` resolves.
//!
//! Guarantees: nothing is started unless every listener binds; on shutdown the signalling task
//! ends every call in progress (BYE/CANCEL/503, records completed) and stops after a bounded
//! drain (≤ 2 s), then every queued record is flushed (bounded wait) before `run` returns.
//! Media: each call's RTP ports are bound before they are advertised; the relay runs in the
//! media workers from the call's first `MediaAction::Start` to its `Stop`; the workers stop
//! after the signalling task.
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod media;

use bytes::Bytes;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::sync::{mpsc, watch};

use crate::api::{self, ActiveCall, ApiState, NewCall, Readiness};
use crate::call::router::{CallKey, Output, PermissionAnswer, Router};
use crate::call::runtime::{PermissionNotice, Runtime, Side};
use crate::call::state::{
    CallConfig, CallDeps, CallState, ChallengeResponder, Direction, MediaError, Permission,
    RecordUpdate, SdpPlane,
};
use crate::config::KeyExchange;
use crate::config::{Config, TlsIdentity, TrunkCodec};
use crate::media::sdp::{self, AudioSession, Codec, LocalMedia, Offer};
use crate::media::webrtc::{WebrtcConfig, WebrtcLeg};
use crate::sip::auth::{DigestClient, RandomCnonce, meta_client};
use crate::sip::endpoint::{Endpoint, EndpointConfig};
use crate::store::{self, Recorder, StoreConfig, Timestamp};
use crate::transport::{self, Transport, tls};
use crate::whatsapp::errors::MetaCode;
use crate::whatsapp::graph;

/// Folder of the sandbox CA (`ca.pem`, `ca.key`), shared with the sandbox's own CA code.
pub const SANDBOX_DIR: &str = "var/sandbox";

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    #[error("config: {0}")]
    Config(String),
    #[error("call records: {0}")]
    Store(#[from] store::StoreError),
    #[error("HTTP API: {0}")]
    Api(#[from] api::ApiError),
    #[error("TLS identity: {0}")]
    Tls(String),
    #[error("SIP transport: {0}")]
    Transport(#[from] transport::TransportError),
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error("media workers: {0}")]
    Media(std::io::Error),
}

/// The gateway's certificate chain and key.
pub struct TlsCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for TlsCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCert")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// For `tls.mode = "sandbox"`: a certificate for `host` signed by the sandbox CA in `dir`
/// (created when missing, otherwise reused so earlier processes keep trusting it); see
/// [`crate::sandbox::ca`]. Returns the chain (leaf, CA) and the leaf key as PEM.
pub fn tls_identity(dir: &Path, host: &str) -> Result<(String, String), GatewayError> {
    crate::sandbox::ca::issue_gateway_cert_in(dir, host)
        .map_err(|e| GatewayError::Tls(e.to_string()))
}

fn parse_identity(chain_pem: &str, key_pem: &str) -> Result<TlsCert, GatewayError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| GatewayError::Tls(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| GatewayError::Tls(e.to_string()))?;
    Ok(TlsCert { chain, key })
}

/// Answers 401/407 with a digest client (Meta's or the trunk's `outbound_auth`).
struct DigestResponder(DigestClient);

impl ChallengeResponder for DigestResponder {
    fn respond(
        &mut self,
        challenges: &[&str],
        method: &str,
        request_uri: &str,
        previous: Option<&str>,
    ) -> Option<String> {
        match self.0.respond(
            challenges.iter().copied(),
            method,
            request_uri,
            previous,
            &mut RandomCnonce,
        ) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "cannot answer the digest challenge");
                None
            }
        }
    }
}

fn media_error(e: sdp::SdpError) -> MediaError {
    MediaError {
        status: e.sip_status(),
        text: e.to_string(),
    }
}

fn parse_sdp(body: &[u8]) -> Result<AudioSession, MediaError> {
    AudioSession::parse(body).map_err(media_error)
}

/// RFC 3264 offer/answer on both legs with `media::sdp`; one instance per call.
struct SdpNegotiator {
    wa_local: LocalMedia,
    pbx_local: LocalMedia,
    /// Our outstanding offer (toward the PBX for user-initiated calls, toward Meta otherwise).
    offer: Option<Offer>,
    /// The RTP ports in `wa_local` / `pbx_local`, held for the call's lifetime; `None` when
    /// the range was exhausted (every offer/answer then fails with 503).
    leases: Option<(media::PortLease, media::PortLease)>,
    /// DTLS+ICE toward Meta: offered when the number's `srtp_key_exchange` is `dtls`,
    /// answered whenever Meta's offer is DTLS. Legs go to `table` for the relay.
    dtls: bool,
    table: media::SocketTable,
    /// Our DTLS offer's leg, until Meta's answer is accepted.
    webrtc: Option<Box<WebrtcLeg>>,
    webrtc_accepted: bool,
    dtls_timeout: Duration,
}

/// str0m writes WebRTC-style `c=IN IP4 0.0.0.0` / `m=audio 9`; Meta's own SDP carries the
/// real address (and an ICE-lite peer may read it), so ours names the leg's one candidate.
fn pin_address(sdp: &str, addr: SocketAddr) -> String {
    let fam = if addr.is_ipv4() { "IP4" } else { "IP6" };
    let mut out = String::with_capacity(sdp.len() + 32);
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let eol = &line[body.len()..];
        if body.starts_with("c=IN ") {
            out.push_str(&format!("c=IN {fam} {}", addr.ip()));
        } else if let Some(rest) = body.strip_prefix("m=audio ") {
            let tail = rest.split_once(' ').map_or("", |x| x.1);
            out.push_str(&format!("m=audio {} {tail}", addr.port()));
        } else if let Some(rest) = body.strip_prefix("o=") {
            let f: Vec<&str> = rest.split(' ').collect();
            if f.len() == 6 {
                out.push_str(&format!(
                    "o={} {} {} IN {fam} {}",
                    f[0],
                    f[1],
                    f[2],
                    addr.ip()
                ));
            } else {
                out.push_str(body);
            }
        } else {
            out.push_str(body);
        }
        out.push_str(eol);
    }
    out
}

fn webrtc_error(e: crate::media::webrtc::WebrtcError) -> MediaError {
    MediaError {
        status: 488,
        text: format!("DTLS/ICE: {e}"),
    }
}

impl SdpNegotiator {
    fn wa_addr(&self) -> SocketAddr {
        SocketAddr::new(self.wa_local.address, self.wa_local.port)
    }

    fn webrtc_config(&self) -> WebrtcConfig {
        let mut c = WebrtcConfig::new(self.wa_addr());
        c.connect_timeout = self.dtls_timeout;
        c
    }

    /// `wa_local` as the DTLS leg can carry it: Opus only.
    fn opus_only(&self) -> LocalMedia {
        let mut l = self.wa_local.clone();
        l.codecs.retain(|c| c.is("opus"));
        l
    }

    fn ports(&self) -> Result<(), MediaError> {
        match self.leases {
            Some(_) => Ok(()),
            None => Err(MediaError {
                status: 503,
                text: "no free RTP port".into(),
            }),
        }
    }

    fn accept(&self, answer: &[u8]) -> Result<AudioSession, MediaError> {
        let offer = self.offer.as_ref().ok_or(MediaError {
            status: 500,
            text: "answer without our offer".into(),
        })?;
        let answer = parse_sdp(answer)?;
        sdp::accept_answer(offer, &answer).map_err(media_error)?;
        Ok(answer)
    }
}

/// `local` limited to the audio formats `peer` (the other leg's SDP) has: the relay passes
/// media through without transcoding, so a leg may only use what the other leg can carry.
/// `488` when nothing is left (local transcoding is not built yet).
fn relayable(local: &LocalMedia, peer: &AudioSession) -> Result<LocalMedia, MediaError> {
    let mut l = local.clone();
    l.codecs
        .retain(|c| peer.audio_codecs().any(|p| p.same_format(c)));
    if l.codecs.is_empty() {
        return Err(MediaError {
            status: 488,
            text: "no audio codec both legs can use (transcoding is not supported)".into(),
        });
    }
    Ok(l)
}

impl SdpPlane for SdpNegotiator {
    fn pbx_offer(&mut self, wa_offer: &[u8]) -> Result<Bytes, MediaError> {
        self.ports()?;
        let offer = parse_sdp(wa_offer)?;
        // Fail early (488 to Meta) when we could not answer Meta's offer at all.
        if !offer.proto.is_dtls() {
            sdp::build_answer(&offer, &self.wa_local).map_err(media_error)?;
        }
        let ours = sdp::build_offer(&relayable(&self.pbx_local, &offer)?);
        let text = ours.sdp.to_sdp();
        self.offer = Some(ours);
        Ok(Bytes::from(text))
    }

    fn wa_answer(&mut self, wa_offer: &[u8], pbx_answer: &[u8]) -> Result<Bytes, MediaError> {
        self.ports()?;
        let pbx = self.accept(pbx_answer)?;
        let offer = parse_sdp(wa_offer)?;
        if offer.proto.is_dtls() {
            relayable(&self.opus_only(), &pbx)?;
            let text = std::str::from_utf8(wa_offer).map_err(|_| MediaError {
                status: 400,
                text: "SDP is not UTF-8".into(),
            })?;
            let (leg, answer) =
                WebrtcLeg::answer_offer(std::time::Instant::now(), &self.webrtc_config(), text)
                    .map_err(webrtc_error)?;
            self.table.put_leg(self.wa_addr(), Box::new(leg));
            return Ok(Bytes::from(pin_address(&answer, self.wa_addr())));
        }
        let local = relayable(&self.wa_local, &pbx)?;
        let (answer, _) = sdp::build_answer(&parse_sdp(wa_offer)?, &local).map_err(media_error)?;
        Ok(Bytes::from(answer.to_sdp()))
    }

    fn wa_offer(&mut self, pbx_offer: &[u8]) -> Result<Bytes, MediaError> {
        self.ports()?;
        let offer = parse_sdp(pbx_offer)?;
        sdp::build_answer(&offer, &self.pbx_local).map_err(media_error)?;
        if self.dtls {
            relayable(&self.opus_only(), &offer)?;
            let (leg, sdp) =
                WebrtcLeg::create_offer(std::time::Instant::now(), &self.webrtc_config())
                    .map_err(webrtc_error)?;
            self.webrtc = Some(Box::new(leg));
            return Ok(Bytes::from(pin_address(&sdp, self.wa_addr())));
        }
        let ours = sdp::build_offer(&relayable(&self.wa_local, &offer)?);
        let text = ours.sdp.to_sdp();
        self.offer = Some(ours);
        Ok(Bytes::from(text))
    }

    fn pbx_answer(&mut self, pbx_offer: &[u8], wa_answer: &[u8]) -> Result<Bytes, MediaError> {
        self.ports()?;
        let wa = if self.dtls {
            if let Some(mut leg) = self.webrtc.take() {
                let text = std::str::from_utf8(wa_answer).map_err(|_| MediaError {
                    status: 400,
                    text: "SDP is not UTF-8".into(),
                })?;
                leg.accept_answer(std::time::Instant::now(), text)
                    .map_err(webrtc_error)?;
                self.table.put_leg(self.wa_addr(), leg);
                self.webrtc_accepted = true;
            } else if !self.webrtc_accepted {
                return Err(MediaError {
                    status: 500,
                    text: "answer without our offer".into(),
                });
            }
            parse_sdp(wa_answer)?
        } else {
            self.accept(wa_answer)?
        };
        let local = relayable(&self.pbx_local, &wa)?;
        let (answer, _) = sdp::build_answer(&parse_sdp(pbx_offer)?, &local).map_err(media_error)?;
        Ok(Bytes::from(answer.to_sdp()))
    }
}

fn pbx_codecs(codecs: &[TrunkCodec]) -> Vec<Codec> {
    codecs
        .iter()
        .filter_map(|c| match c {
            TrunkCodec::Opus => Some(Codec::opus(111)),
            TrunkCodec::PCMU => Some(Codec::pcmu()),
            TrunkCodec::PCMA => Some(Codec::pcma()),
            TrunkCodec::TelephoneEvent => None,
        })
        .collect()
}

/// Builds each call's media and auth helpers from the profiles.
fn deps_factory(
    cfg: Arc<Config>,
    table: media::SocketTable,
) -> impl FnMut(&CallConfig) -> CallDeps + Send {
    let mut wa_ports: HashMap<String, media::PortPool> = HashMap::new();
    let mut pbx_ports: HashMap<String, media::PortPool> = HashMap::new();
    let mut session: u64 = 0;
    move |cc: &CallConfig| {
        session += 1;
        let wa = cfg
            .whatsapp
            .iter()
            .find(|p| p.numbers.iter().any(|n| n.e164 == cc.business));
        let number = wa.and_then(|p| p.numbers.iter().find(|n| n.e164 == cc.business));
        let trunk = number.and_then(|n| cfg.trunks.iter().find(|t| t.name == n.trunk));
        let wa_auth = number.and_then(|n| match n.sip_password.resolve() {
            Ok(pw) => match meta_client(&n.e164, pw.expose()) {
                Ok(c) => Some(Box::new(DigestResponder(c)) as Box<dyn ChallengeResponder>),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot build Meta's digest client");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "business number's SIP password unavailable");
                None
            }
        });
        let pbx_auth =
            trunk
                .and_then(|t| t.outbound_auth.as_ref())
                .and_then(|a| match a.password.resolve() {
                    Ok(pw) => Some(Box::new(DigestResponder(DigestClient::new(
                        a.username.clone(),
                        pw.expose(),
                    ))) as Box<dyn ChallengeResponder>),
                    Err(e) => {
                        tracing::warn!(error = %e, "trunk outbound_auth password unavailable");
                        None
                    }
                });
        let wa_ip: IpAddr = wa
            .and_then(|p| p.media.public_address)
            .or_else(|| wa.map(|p| p.sip.listen.ip()))
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let wa_lease = wa.and_then(|p| {
            wa_ports
                .entry(p.name.clone())
                .or_insert_with(|| {
                    media::PortPool::new(p.media.rtp_ports, p.sip.listen.ip(), wa_ip, table.clone())
                })
                .take()
        });
        let wa_port = wa_lease.as_ref().map_or(0, |l| l.port);
        let g711 = number.is_some_and(|n| !n.additional_codecs.is_empty());
        let mut wa_local = LocalMedia::whatsapp(wa_ip, wa_port, g711);
        wa_local.session_id = session;
        let pbx_ip: IpAddr = trunk
            .and_then(|t| t.media.public_address)
            .or_else(|| cc.local_host.parse().ok())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let pbx_lease = trunk.and_then(|t| {
            pbx_ports
                .entry(t.name.clone())
                .or_insert_with(|| {
                    let bind = t
                        .listen
                        .udp
                        .iter()
                        .chain(&t.listen.tcp)
                        .chain(&t.listen.tls)
                        .map(|a| a.ip())
                        .next()
                        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
                    media::PortPool::new(t.media.rtp_ports, bind, pbx_ip, table.clone())
                })
                .take()
        });
        let pbx_port = pbx_lease.as_ref().map_or(0, |l| l.port);
        let codecs = trunk
            .map(|t| pbx_codecs(&t.codecs))
            .unwrap_or_else(|| vec![Codec::pcma(), Codec::pcmu()]);
        let mut pbx_local = LocalMedia::pbx(pbx_ip, pbx_port, codecs);
        pbx_local.session_id = session;
        // SRTP toward the PBX: offered when the trunk asks for it; a PBX's SRTP offer is
        // answered with SDES either way.
        pbx_local.srtp_suites = vec![
            crate::media::srtp::SrtpProfile::AesCm128HmacSha1_80,
            crate::media::srtp::SrtpProfile::AeadAes128Gcm,
            crate::media::srtp::SrtpProfile::AesCm128HmacSha1_32,
        ];
        if trunk.is_some_and(|t| t.media.srtp == crate::config::TrunkSrtp::Sdes) {
            pbx_local.proto = sdp::Proto::RtpSavp;
        }
        CallDeps {
            sdp: Box::new(SdpNegotiator {
                wa_local,
                pbx_local,
                offer: None,
                leases: wa_lease.zip(pbx_lease),
                dtls: number.is_some_and(|n| n.srtp_key_exchange == KeyExchange::Dtls),
                table: table.clone(),
                webrtc: None,
                webrtc_accepted: false,
                dtls_timeout: Duration::from_secs(u64::from(
                    wa.map_or(5, |p| p.media.dtls_connect_timeout_s),
                )),
            }),
            wa_auth,
            pbx_auth,
        }
    }
}

/// How long a Graph permission answer is trusted.
const PERMISSION_TTL: Duration = Duration::from_secs(60);

/// (business, user) → when Graph answered, and what.
type KnownPermissions = HashMap<(String, String), (std::time::Instant, Permission)>;

/// The router's [`PermissionLookup`](crate::call::router::PermissionLookup) over Graph's
/// `call_permissions`: a cached answer (60 s) is returned at once; a miss answers `Pending`
/// and starts one background lookup (shared by every call to that user meanwhile) whose
/// answer — `Allowed`, `NoPermission`, or `Unknown` on any other refusal or error — fills the
/// cache and is sent to the runtime, which resumes the parked calls.
struct GraphPermissions {
    lookups: HashMap<String, Arc<graph::permissions::PermissionLookup>>,
    known: Arc<std::sync::Mutex<KnownPermissions>>,
    pending: Arc<std::sync::Mutex<std::collections::HashSet<(String, String)>>>,
    answers: mpsc::UnboundedSender<PermissionNotice>,
}

impl GraphPermissions {
    /// One Graph client per business number whose profile's token resolves; numbers without
    /// one always answer `Unknown`.
    fn new(cfg: &Config, answers: mpsc::UnboundedSender<PermissionNotice>) -> GraphPermissions {
        let mut lookups = HashMap::new();
        for p in &cfg.whatsapp {
            let token = match p.graph.token.resolve() {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(profile = %p.name, error = %e, "no Graph token: permission lookups off");
                    continue;
                }
            };
            for n in &p.numbers {
                let target = graph::GraphTarget {
                    base_url: p.graph.base_url.clone(),
                    api_version: p.graph.api_version.clone(),
                    token: graph::Token::new(token.expose()),
                    phone_number_id: n.phone_number_id.clone(),
                    timeout: Duration::from_secs(u64::from(p.graph.timeout_s.max(1))),
                    retry: graph::RetryPolicy {
                        retries: p.graph.retries,
                        ..graph::RetryPolicy::default()
                    },
                };
                match graph::GraphClient::new(target) {
                    Ok(c) => {
                        lookups.insert(
                            n.e164.clone(),
                            Arc::new(graph::permissions::PermissionLookup::new(
                                c,
                                PERMISSION_TTL,
                                5,
                            )),
                        );
                    }
                    Err(e) => tracing::warn!(error = %e, "Graph client: permission lookups off"),
                }
            }
        }
        GraphPermissions {
            lookups,
            known: Arc::default(),
            pending: Arc::default(),
            answers,
        }
    }

    fn lookup(&mut self, business: &str, user: &str) -> PermissionAnswer {
        let key = (business.to_owned(), user.to_owned());
        let now = std::time::Instant::now();
        if let Some((at, p)) = self.lock_known().get(&key)
            && now.saturating_duration_since(*at) < PERMISSION_TTL
        {
            return PermissionAnswer::Known(*p);
        }
        let (Some(lookup), Ok(uid)) = (
            self.lookups.get(business).cloned(),
            graph::permissions::UserId::parse(user),
        ) else {
            return PermissionAnswer::Known(Permission::Unknown);
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return PermissionAnswer::Known(Permission::Unknown);
        };
        if !self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone())
        {
            // A lookup for this user is under way: its answer resumes this call too.
            return PermissionAnswer::Pending;
        }
        let (known, pending, answers) = (
            self.known.clone(),
            self.pending.clone(),
            self.answers.clone(),
        );
        handle.spawn(async move {
            let verdict = match lookup.authorize_call(&uid).await {
                Ok(()) => Some(Permission::Allowed),
                Err(graph::GraphError::Refused {
                    code: MetaCode::NoCallPermission,
                    ..
                }) => Some(Permission::NoPermission),
                Err(e) => {
                    tracing::debug!(error = %e, "permission lookup: Meta decides");
                    None
                }
            };
            if let Some(v) = verdict {
                known
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.clone(), (std::time::Instant::now(), v));
            }
            pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            let _ = answers.send(PermissionNotice {
                business: key.0,
                user: key.1,
                permission: verdict.unwrap_or(Permission::Unknown),
            });
        });
        PermissionAnswer::Pending
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, KnownPermissions> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn store_state(s: &CallState) -> store::CallState {
    match s {
        CallState::Connecting => store::CallState::Connecting,
        CallState::Ringing => store::CallState::Ringing,
        CallState::PreAccepted => store::CallState::PreAccepted,
        CallState::Accepted => store::CallState::Accepted,
        CallState::Completed(_) => store::CallState::Completed,
        CallState::Rejected(_) => store::CallState::Rejected,
        CallState::Failed(_) => store::CallState::Failed,
    }
}

/// The wall-clock time of a core instant (the core runs on `Instant`s).
fn timestamp_of(at: std::time::Instant) -> Timestamp {
    Timestamp::now().saturating_sub(std::time::Instant::now().saturating_duration_since(at))
}

/// The record's `reason` for a call that ended in `state`.
fn store_reason(state: &CallState) -> Option<store::Reason> {
    let r = match state {
        CallState::Completed(r) | CallState::Rejected(r) | CallState::Failed(r) => r,
        _ => return None,
    };
    let reason = store::Reason {
        sip_code: r.sip_status,
        meta_code: r.meta_code,
        text: (!r.text.is_empty()).then(|| r.text.clone()),
    };
    (!reason.is_empty()).then_some(reason)
}

/// Applies the router's outputs: media actions to the media workers, record and state
/// updates to the registry (API, metrics) and the recorder, and trunk qualify changes to
/// `/healthz` (and so `whatsip_trunk_up`).
async fn consume_outputs(
    mut rx: mpsc::Receiver<Output>,
    registry: api::CallRegistry,
    recorder: Recorder,
    prefix: String,
    cfg: Arc<Config>,
    health: api::Health,
    mut media: media::MediaControl,
) -> Recorder {
    let mut calls: HashMap<CallKey, Arc<ActiveCall>> = HashMap::new();
    while let Some(o) = rx.recv().await {
        match o {
            Output::Record(
                k,
                RecordUpdate::Started {
                    direction,
                    business,
                    user,
                    wacid,
                    ..
                },
            ) => {
                let dir = match direction {
                    Direction::UserInitiated => store::Direction::UserInitiated,
                    Direction::BusinessInitiated => store::Direction::BusinessInitiated,
                };
                let mut nc = NewCall::new(
                    format!("{prefix}-{}", k.0),
                    dir,
                    business,
                    user,
                    Timestamp::now(),
                );
                nc.wacid = wacid;
                nc.trunk = cfg
                    .whatsapp
                    .iter()
                    .flat_map(|p| p.numbers.iter())
                    .find(|n| n.e164 == nc.business_number)
                    .map(|n| n.trunk.clone());
                let call = registry.insert(nc);
                recorder.start(call.to_record());
                calls.insert(k, call);
            }
            Output::Record(
                k,
                RecordUpdate::CallIds {
                    whatsapp_call_id,
                    pbx_call_id,
                },
            ) => {
                if let Some(call) = calls.get(&k) {
                    let mut u = store::RecordUpdate::default();
                    call.update(|i| {
                        if whatsapp_call_id.is_some() && i.whatsapp_call_id != whatsapp_call_id {
                            i.whatsapp_call_id = whatsapp_call_id.clone();
                            u.whatsapp_call_id = whatsapp_call_id;
                        }
                        if pbx_call_id.is_some() && i.pbx_call_id != pbx_call_id {
                            i.pbx_call_id = pbx_call_id.clone();
                            u.pbx_call_id = pbx_call_id;
                        }
                    });
                    if u != store::RecordUpdate::default() {
                        recorder.update(&call.id, u);
                    }
                }
            }
            Output::Record(k, RecordUpdate::Answered { at }) => {
                // The far leg's 200 OK: the answer time (the `Accepted` state that follows
                // keeps it).
                if let Some(call) = calls.get(&k) {
                    let at = timestamp_of(at);
                    let fresh = call.update(|i| {
                        let fresh = i.answered_at.is_none();
                        if fresh {
                            i.answered_at = Some(at);
                        }
                        fresh
                    });
                    if fresh {
                        recorder.update(
                            &call.id,
                            store::RecordUpdate {
                                answered_at: Some(at),
                                ..Default::default()
                            },
                        );
                    }
                }
            }
            Output::Record(
                k,
                RecordUpdate::Ended {
                    at, state, wacid, ..
                },
            ) => {
                if let Some(call) = calls.remove(&k) {
                    if wacid.is_some() {
                        call.update(|i| i.wacid = wacid);
                    }
                    let s = store_state(&state);
                    registry.finish(&call.id, s);
                    recorder.finish(call.final_record(s, store_reason(&state), timestamp_of(at)));
                }
            }
            Output::Trunk { name, up } => {
                health.set_trunk(
                    &name,
                    if up {
                        api::TrunkStatus::Up
                    } else {
                        api::TrunkStatus::Down
                    },
                );
            }
            Output::AuthFailure(leg) => {
                registry.metrics().sip_auth_failure(match leg {
                    crate::call::Leg::WhatsApp => crate::metrics::Leg::Whatsapp,
                    crate::call::Leg::Pbx => crate::metrics::Leg::Pbx,
                });
            }
            Output::State(k, state) => {
                if let Some(call) = calls.get(&k)
                    && !state.is_terminal()
                {
                    let u = call.transition(store_state(&state), Timestamp::now());
                    recorder.update(&call.id, u);
                }
            }
            Output::Media(k, action) => {
                let counters = calls.get(&k).map(|c| c.media.shared()).unwrap_or_default();
                media.apply(k, action, counters);
            }
        }
    }
    media.shutdown();
    recorder
}

/// Where the in-process sandbox serves HTTP: `graph.base_url` when it is a loopback
/// `http://ip:port` (so Graph requests reach the twin), else the fixed sandbox address.
fn sandbox_http_addr(base_url: &str) -> SocketAddr {
    base_url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .and_then(|h| h.parse::<SocketAddr>().ok())
        .filter(|a| a.ip().is_loopback())
        .unwrap_or(crate::config::SANDBOX_HTTP_ADDR)
}

/// Runs the gateway until `shutdown` resolves, then stops accepting calls and drains the
/// recorder.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), GatewayError> {
    let cfg = Arc::new(cfg);
    let wa = cfg
        .whatsapp
        .first()
        .ok_or_else(|| GatewayError::Config("no whatsapp profile".into()))?;
    if cfg.whatsapp.len() > 1 {
        return Err(GatewayError::Config(
            "more than one whatsapp profile is not supported yet".into(),
        ));
    }

    // Call records.
    let (recorder, writer) = Recorder::open(&StoreConfig {
        path: cfg.gateway.records_db.clone(),
        queue: Recorder::DEFAULT_CAPACITY,
    })?;

    // HTTP API.
    let state =
        ApiState::new().with_records(cfg.gateway.records_db.clone(), Some(recorder.monitor()));
    let health = state.health.clone();
    let registry = state.calls.clone();
    for c in ["records", "sip_whatsapp", "sip_trunks"] {
        health.set_component(c, Readiness::Starting);
    }
    health.set_component("records", Readiness::Ready);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut api_stop = stop_rx.clone();
    let (api_task, api_addr) =
        api::serve_with_shutdown(cfg.gateway.http_listen, state, async move {
            let _ = api_stop.wait_for(|s| *s).await;
        })
        .await?;
    tracing::info!(addr = %api_addr, "HTTP API up");

    // In-process sandbox (Graph/HTTP twin).
    let mut sandbox_task = None;
    if wa.meta.sandbox {
        let addr = sandbox_http_addr(&wa.graph.base_url);
        let token = match wa.graph.token.resolve() {
            Ok(t) => t.expose().to_owned(),
            Err(e) => return Err(GatewayError::Sandbox(e.to_string())),
        };
        let sstate = crate::sandbox::SandboxState::new(crate::sandbox::SandboxOptions {
            gateway_host: wa.sip.public_host.clone(),
            gateway_port: wa.sip.public_port,
            token,
            ..Default::default()
        });
        // The twin's numbers use the key exchange their profile says (as `whatsip settings
        // push` would set `srtp_key_exchange_protocol` at Meta).
        {
            let mut st = sstate.lock();
            for n in &wa.numbers {
                let digits: String = n.e164.chars().filter(char::is_ascii_digit).collect();
                if let Some(twin) = st.numbers.values_mut().find(|t| {
                    t.e164
                        .chars()
                        .filter(char::is_ascii_digit)
                        .collect::<String>()
                        == digits
                }) {
                    twin.calling.srtp_key_exchange_protocol = Some(
                        match n.srtp_key_exchange {
                            KeyExchange::Dtls => "DTLS",
                            KeyExchange::Sdes => "SDES",
                        }
                        .into(),
                    );
                }
            }
        }
        // The twin generated each number's SIP password: store it where the profile's password
        // source says, as `whatsip settings pull` would against Meta.
        for n in &wa.numbers {
            if let (crate::config::SecretSource::File(path), Some(pw)) = (
                &n.sip_password,
                sstate.sip_target(&n.e164).and_then(|t| t.password),
            ) {
                crate::whatsapp::graph::settings::store_password(path, &pw).map_err(|e| {
                    GatewayError::Sandbox(format!("cannot store {}: {e}", path.display()))
                })?;
            }
        }
        // The edge listens where `meta.connect` points when that is a loopback address.
        let edge_addr = wa
            .meta
            .connect
            .socket_addr()
            .filter(|a| a.ip().is_loopback())
            .unwrap_or(crate::config::SANDBOX_EDGE_ADDR);
        let mut hosts = std::collections::HashMap::new();
        hosts.insert(
            wa.sip.public_host.clone(),
            std::net::IpAddr::from([127, 0, 0, 1]),
        );
        let mut edge_cfg = crate::sandbox::runtime::RuntimeConfig {
            edge: edge_addr,
            ca_dir: PathBuf::from(SANDBOX_DIR),
            hosts,
            ..Default::default()
        };
        if wa.meta.sandbox_digest_md5 {
            edge_cfg.edge_config.algorithm = crate::sip::auth::Algorithm::Md5;
        }
        let running = crate::sandbox::start(addr, edge_cfg, sstate)
            .await
            .map_err(|e| {
                GatewayError::Sandbox(format!("cannot start on {addr} / {edge_addr}: {e}"))
            })?;
        tracing::info!(edge = %running.edge.edge_addr, "sandbox SIP edge up");
        sandbox_task = Some(running);
        health.set_component("sandbox", Readiness::Ready);
        tracing::info!(%addr, "sandbox HTTP (Graph twin + control) up");
    }

    // TLS identity and the WhatsApp-side transport.
    let cert = match &wa.tls {
        TlsIdentity::Files {
            cert_chain,
            private_key,
        } => TlsCert {
            chain: tls::load_certs(cert_chain).map_err(|e| GatewayError::Tls(e.to_string()))?,
            key: tls::load_key(private_key).map_err(|e| GatewayError::Tls(e.to_string()))?,
        },
        TlsIdentity::SandboxIssued => {
            let dir = wa
                .meta
                .ca_file
                .as_deref()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(SANDBOX_DIR));
            let (chain, key) = tls_identity(&dir, &wa.sip.public_host)?;
            parse_identity(&chain, &key)?
        }
    };
    let server =
        tls::server_config(cert.chain, cert.key).map_err(|e| GatewayError::Tls(e.to_string()))?;
    let roots = match &wa.meta.ca_file {
        Some(p) => tls::Roots::CaFile(p.clone()),
        None => tls::Roots::System,
    };
    let client = tls::client_config(&roots).map_err(|e| GatewayError::Tls(e.to_string()))?;
    let (wa_transport, wa_events) = Transport::bind(transport::Config {
        tls: vec![wa.sip.listen],
        tls_server: Some(server),
        tls_client: Some(client),
        ..Default::default()
    })
    .await?;
    health.set_component("sip_whatsapp", Readiness::Ready);

    // Trunk transports (all trunks share the PBX-side transport).
    let mut pbx_cfg = transport::Config::default();
    for t in &cfg.trunks {
        pbx_cfg.udp.extend(t.listen.udp.iter().copied());
        pbx_cfg.tcp.extend(t.listen.tcp.iter().copied());
        pbx_cfg.tls.extend(t.listen.tls.iter().copied());
        if let (None, Some((cert, key))) = (&pbx_cfg.tls_server, &t.listen.tls_identity) {
            let chain = tls::load_certs(cert).map_err(|e| GatewayError::Tls(e.to_string()))?;
            let key = tls::load_key(key).map_err(|e| GatewayError::Tls(e.to_string()))?;
            pbx_cfg.tls_server =
                Some(tls::server_config(chain, key).map_err(|e| GatewayError::Tls(e.to_string()))?);
        }
    }
    if cfg
        .trunks
        .iter()
        .any(|t| t.peer.transport == crate::config::Transport::Tls)
    {
        pbx_cfg.tls_client = Some(
            tls::client_config(&tls::Roots::System)
                .map_err(|e| GatewayError::Tls(e.to_string()))?,
        );
    }
    let (pbx_transport, pbx_events) = Transport::bind(pbx_cfg).await?;
    let pbx_local = pbx_transport
        .local_addrs()
        .first()
        .map(|(_, a)| *a)
        .ok_or_else(|| GatewayError::Config("no trunk listen address".into()))?;
    health.set_component("sip_trunks", Readiness::Ready);

    // Signalling.
    let prefix = format!("{:08x}", rand::random::<u32>());
    let timers = crate::sip::transaction::TimerConfig {
        t1: cfg.gateway.sip_timers.t1,
        t2: cfg.gateway.sip_timers.t2,
        t4: cfg.gateway.sip_timers.t4,
    };
    let mut wa_ec = EndpointConfig::new(
        wa.sip.public_host.clone(),
        Some(wa.sip.public_port),
        format!("{prefix}w"),
    );
    wa_ec.timers = timers;
    let mut pbx_ec = EndpointConfig::new(
        pbx_local.ip().to_string(),
        Some(pbx_local.port()),
        format!("{prefix}p"),
    );
    pbx_ec.timers = timers;
    let (wa_ep, pbx_ep) = (Endpoint::new(wa_ec), Endpoint::new(pbx_ec));

    // Media workers (the relay's packet path) and the sockets leased to calls.
    let sockets = media::SocketTable::default();
    let (media_tx, media_rx) = mpsc::unbounded_channel();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let engine =
        crate::media::io::MediaEngine::start(workers, media_tx).map_err(GatewayError::Media)?;
    let media_control = media::MediaControl::new(
        engine,
        sockets.clone(),
        media::Policy {
            silence_keepalive: wa.media.silence_keepalive,
            media_timeout: Duration::from_secs(u64::from(wa.media.media_timeout_s.max(1))),
        },
    );
    let (perm_tx, perm_rx) = mpsc::unbounded_channel();
    let router = Router::new(
        cfg.clone(),
        wa_ep,
        pbx_ep,
        Box::new(deps_factory(cfg.clone(), sockets.clone())),
        {
            let mut perms = GraphPermissions::new(&cfg, perm_tx);
            Box::new(move |b: &str, u: &str| perms.lookup(b, u))
        },
        prefix.clone(),
    )
    .with_secrets(Box::new(|s: &crate::config::SecretSource| {
        match s.resolve() {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "inbound digest password unavailable");
                None
            }
        }
    }))
    .with_permission_wait(Duration::from_millis(u64::from(
        wa.graph.permission_wait_ms,
    )));
    // Every trunk is listed; qualified ones start `up` and go `down` after unanswered
    // OPTIONS (the router reports changes).
    for t in &cfg.trunks {
        health.set_trunk(&t.name, api::TrunkStatus::Up);
    }
    let (out_tx, out_rx) = mpsc::channel(1024);
    let runtime = Runtime::new(
        router,
        Side {
            transport: wa_transport,
            events: wa_events,
            tls_name: Some(wa.meta.edge_host.clone()),
        },
        Side {
            transport: pbx_transport,
            events: pbx_events,
            tls_name: cfg
                .trunks
                .iter()
                .find(|t| t.peer.transport == crate::config::Transport::Tls)
                .map(|t| {
                    t.peer
                        .tls_server_name
                        .clone()
                        .unwrap_or_else(|| t.peer.address.host.clone())
                }),
        },
        out_tx,
    )
    .with_media_events(media_rx)
    .with_permission_answers(perm_rx);
    let consumer = tokio::spawn(consume_outputs(
        out_rx,
        registry,
        recorder,
        prefix,
        cfg.clone(),
        health.clone(),
        media_control,
    ));
    let sig_task = tokio::spawn(runtime.run(stop_rx.clone()));
    tracing::info!("gateway running");

    shutdown.await;
    tracing::info!("shutting down: ending calls (≤ 2 s), then draining records");
    let _ = stop_tx.send(true);
    let _ = sig_task.await;
    // The runtime (and its output sender) is gone: the consumer ends after the last output.
    let recorder = consumer.await.ok();
    if let Some(r) = &recorder
        && !r.flush(Duration::from_secs(5))
    {
        tracing::warn!("call records not flushed within 5 s");
    }
    drop(recorder);
    let _ = tokio::task::spawn_blocking(move || writer.join_timeout(Duration::from_secs(5))).await;
    let _ = api_task.await;
    // The in-process sandbox's tasks end with the runtime.
    drop(sandbox_task);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const META_OFFER: &str = "v=0\r\no=- 1731000000 1 IN IP4 157.240.19.130\r\ns=-\r\nc=IN IP4 157.240.19.130\r\nt=0 0\r\nm=audio 3480 RTP/SAVP 111 126\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:126 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\na=rtcp-mux\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n";

    fn negotiator(wa_port: u16, pbx_port: u16) -> SdpNegotiator {
        negotiator_with(
            wa_port,
            pbx_port,
            vec![Codec::opus(111), Codec::pcmu(), Codec::pcma()],
        )
    }

    fn negotiator_with(wa_port: u16, pbx_port: u16, trunk: Vec<Codec>) -> SdpNegotiator {
        let lo = IpAddr::from([127, 0, 0, 1]);
        let lease = |port| {
            let range = crate::config::PortRange {
                start: port,
                end: port + 1,
            };
            media::PortPool::new(range, lo, lo, media::SocketTable::default()).take()
        };
        SdpNegotiator {
            wa_local: LocalMedia::whatsapp(lo, wa_port, true),
            pbx_local: LocalMedia::pbx(lo, pbx_port, trunk),
            offer: None,
            leases: lease(wa_port).zip(lease(pbx_port)),
            dtls: false,
            table: media::SocketTable::default(),
            webrtc: None,
            webrtc_accepted: false,
            dtls_timeout: Duration::from_secs(5),
        }
    }

    fn audio_codecs(s: &AudioSession) -> Vec<String> {
        s.codecs
            .iter()
            .filter(|c| !c.is_telephone_event())
            .map(|c| c.name.to_ascii_lowercase())
            .collect()
    }

    #[test]
    fn user_initiated_sdp_is_negotiated_on_both_legs() {
        let mut n = negotiator(47100, 47102);
        n.pbx_local.codecs.insert(0, Codec::opus(111));
        let pbx_offer = n.pbx_offer(META_OFFER.as_bytes()).unwrap();
        let ours = AudioSession::parse(&pbx_offer).unwrap();
        assert_eq!(ours.port, 47102);
        assert_eq!(ours.proto.as_str(), "RTP/AVP");
        assert!(ours.crypto.is_empty());
        // Meta offered only Opus: the relay does not transcode, so the PBX is offered Opus only.
        assert_eq!(audio_codecs(&ours), ["opus"]);
        let pbx_answer = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 111 101\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
        let wa_answer = n
            .wa_answer(META_OFFER.as_bytes(), pbx_answer.as_bytes())
            .unwrap();
        let a = AudioSession::parse(&wa_answer).unwrap();
        assert_eq!(a.port, 47100);
        assert_eq!(a.proto.as_str(), "RTP/SAVP");
        assert!(
            a.codecs
                .iter()
                .any(|c| c.is("opus") && c.payload_type == 111)
        );
        assert_eq!(a.crypto.len(), 1);
        assert!(a.rtcp_mux);

        // Meta offers Opus and PCMU; the PBX picks PCMU: Meta's answer is PCMU only.
        let g711_offer = META_OFFER
            .replace("RTP/SAVP 111 126", "RTP/SAVP 111 0 126")
            .replace("a=rtpmap:126", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:126");
        let mut n = negotiator(47130, 47132);
        let ours = AudioSession::parse(&n.pbx_offer(g711_offer.as_bytes()).unwrap()).unwrap();
        assert_eq!(audio_codecs(&ours), ["opus", "pcmu"]);
        let pcmu = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\na=sendrecv\r\n";
        let a = AudioSession::parse(&n.wa_answer(g711_offer.as_bytes(), pcmu.as_bytes()).unwrap())
            .unwrap();
        assert_eq!(audio_codecs(&a), ["pcmu"]);

        // A trunk without Opus cannot take Meta's Opus-only offer: 488, not a silent call.
        let mut n = negotiator_with(47134, 47136, vec![Codec::pcmu(), Codec::pcma()]);
        assert_eq!(n.pbx_offer(META_OFFER.as_bytes()).unwrap_err().status, 488);
    }

    #[test]
    fn a_g711_pbx_answer_makes_the_whatsapp_answer_g711() {
        let mut n = negotiator(47130, 47132);
        n.pbx_local.codecs.insert(0, Codec::opus(111));
        let offer = META_OFFER
            .replace("RTP/SAVP 111 126", "RTP/SAVP 111 0 126")
            .replace("a=rtpmap:126", "a=rtpmap:0 PCMU/8000\r\na=rtpmap:126");
        let pbx_offer = n.pbx_offer(offer.as_bytes()).unwrap();
        let names: Vec<_> = AudioSession::parse(&pbx_offer)
            .unwrap()
            .audio_codecs()
            .map(|c| c.name.to_lowercase())
            .collect();
        assert_eq!(names, ["opus", "pcmu"]);
        let pcmu = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
        let wa = n.wa_answer(offer.as_bytes(), pcmu.as_bytes()).unwrap();
        let names: Vec<_> = AudioSession::parse(&wa)
            .unwrap()
            .audio_codecs()
            .map(|c| c.name.to_lowercase())
            .collect();
        assert_eq!(names, ["pcmu"], "Meta is answered with what the PBX chose");
    }

    #[test]
    fn business_initiated_sdp_and_bad_answers() {
        let mut n = negotiator(47104, 47106);
        let pbx_offer = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let wa_offer = n.wa_offer(pbx_offer.as_bytes()).unwrap();
        let o = AudioSession::parse(&wa_offer).unwrap();
        assert_eq!(o.port, 47104);
        assert_eq!(o.proto.as_str(), "RTP/SAVP");
        assert!(!o.crypto.is_empty());
        // The PBX offered G.711 only: Meta is offered G.711 only (no transcoding).
        assert_eq!(audio_codecs(&o), ["pcma", "pcmu"]);
        // Meta answers PCMU, mirroring our PT, with its own key.
        let meta_answer = META_OFFER
            .replace("RTP/SAVP 111 126", "RTP/SAVP 0 126")
            .replace("a=rtpmap:111 opus/48000/2\r\n", "a=rtpmap:0 PCMU/8000\r\n");
        let pbx_answer = n
            .pbx_answer(pbx_offer.as_bytes(), meta_answer.as_bytes())
            .unwrap();
        let a = AudioSession::parse(&pbx_answer).unwrap();
        assert_eq!(a.port, 47106);
        assert_eq!(audio_codecs(&a), ["pcmu"], "Meta's choice");
        assert_eq!(a.codecs[0].payload_type, 0, "with the PBX's PT number");
        // Meta answering a codec we did not offer is refused.
        let mut n2 = negotiator(47114, 47116);
        n2.wa_offer(pbx_offer.as_bytes()).unwrap();
        assert!(
            n2.pbx_answer(pbx_offer.as_bytes(), META_OFFER.as_bytes())
                .is_err()
        );
        // A PBX offering Opus only: Meta is offered Opus only.
        let mut n3 = negotiator(47118, 47122);
        let opus = "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n";
        let o = AudioSession::parse(&n3.wa_offer(opus.as_bytes()).unwrap()).unwrap();
        assert_eq!(audio_codecs(&o), ["opus"]);
        // An answer without our offer, or garbage, is a SIP failure, not a panic.
        let mut fresh = negotiator(47108, 47112);
        assert_eq!(
            fresh
                .pbx_answer(pbx_offer.as_bytes(), b"v=0")
                .unwrap_err()
                .status,
            500
        );
        assert!(n.wa_offer(b"not sdp").unwrap_err().status >= 400);
        // Without `additional_codecs` a G.711-only PBX cannot reach WhatsApp (no transcoding).
        let mut opus_only = negotiator(47140, 47142);
        opus_only.wa_local.codecs.retain(|c| c.is("opus"));
        assert_eq!(
            opus_only.wa_offer(pbx_offer.as_bytes()).unwrap_err().status,
            488
        );
    }

    #[test]
    fn without_rtp_ports_the_sdp_fails_with_503() {
        // Without ports a call's SDP fails with 503 instead of offering port 0.
        let mut n = negotiator(47110, 47120);
        n.leases = None;
        assert_eq!(n.pbx_offer(META_OFFER.as_bytes()).unwrap_err().status, 503);
    }

    #[test]
    fn sandbox_identity_reuses_the_ca_and_names_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let (chain, key) = tls_identity(dir.path(), "gateway.whatsip.test").unwrap();
        let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        assert!(chain.ends_with(&ca), "chain is leaf then CA");
        let id = parse_identity(&chain, &key).unwrap();
        assert_eq!(id.chain.len(), 2);
        tls::server_config(id.chain, id.key).unwrap();
        // A second start issues a new leaf from the same CA and leaves ca.pem alone.
        let (chain2, _) = tls_identity(dir.path(), "gateway.whatsip.test").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
            ca
        );
        assert!(chain2.ends_with(&ca));
        assert_ne!(chain, chain2);
    }
}
