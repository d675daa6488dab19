//! [`WebrtcLeg`]: one str0m `Rtc` per WhatsApp call leg, in RTP mode, driven sans-IO.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Rtc, RtcConfig};

use super::sdp::{self, Setup};
use super::wire::{self, Kind};

/// Errors of the leg's API calls. A call that returns an error leaves the leg as it was,
/// except where noted (a failed leg also reports [`Output::Failed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebrtcError {
    /// The remote SDP was rejected (str0m's parse error text, then the reason).
    #[error("remote SDP rejected: {0}")]
    Sdp(String),
    /// The remote SDP has no `m=audio` section with Opus 48000/2.
    #[error("no common codec: remote SDP has no m=audio with opus/48000/2")]
    NoCommonCodec,
    /// The remote SDP has no `m=audio` with an `a=mid`.
    #[error("remote SDP has no m=audio section with a=mid")]
    NoAudio,
    /// str0m refused the negotiation or an operation.
    #[error("str0m: {0}")]
    Rtc(String),
    /// No ECDSA certificate could be generated.
    #[error("DTLS certificate generation failed")]
    Certificate,
    /// The configured local address could not become an ICE host candidate.
    #[error("bad local candidate {0}")]
    Candidate(SocketAddr),
    /// str0m panicked; the leg is failed.
    #[error("str0m panicked: {0}")]
    Panic(String),
    /// The call does not fit the leg's state (e.g. `accept_answer` twice).
    #[error("not valid in this state: {0}")]
    State(&'static str),
    /// Media before DTLS-SRTP is up.
    #[error("not connected yet")]
    NotConnected,
    /// The leg has failed; see [`WebrtcLeg::failure`].
    #[error("leg failed")]
    Failed,
    /// The payload type was not negotiated on this leg.
    #[error("payload type {0} not negotiated")]
    UnknownPayloadType(u8),
    /// A Meta-like peer never sends the first media packet.
    #[error("Meta-like peer waits for the first RTP packet before it sends")]
    PeerSpeaksSecond,
}

/// Why a leg failed. Reported once as [`Output::Failed`], then kept in [`LegReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// ICE + DTLS were not connected within the configured time after the remote
    /// description was known.
    ConnectTimeout {
        after: Duration,
        /// Whether any DTLS ClientHello was seen in either direction.
        client_hello_seen: bool,
        /// Whether any STUN binding success was seen in either direction.
        ice_ok: bool,
    },
    /// str0m returned a fatal error (e.g. DTLS alert, certificate or fingerprint mismatch).
    Rtc(String),
    /// str0m panicked inside this leg.
    Panic(String),
    /// ICE lost the nominated pair after connecting (consent expired).
    IceDisconnected,
    /// The remote closed DTLS (close_notify).
    RemoteClosed,
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::ConnectTimeout {
                after,
                client_hello_seen,
                ice_ok,
            } => write!(
                f,
                "no DTLS connection within {} ms (ICE checks answered: {ice_ok}, ClientHello seen: {client_hello_seen})",
                after.as_millis()
            ),
            FailReason::Rtc(e) => write!(f, "fatal str0m error: {e}"),
            FailReason::Panic(e) => write!(f, "str0m panicked: {e}"),
            FailReason::IceDisconnected => f.write_str("ICE disconnected"),
            FailReason::RemoteClosed => f.write_str("remote closed DTLS"),
        }
    }
}

/// Which `a=setup` the gateway puts in its own offer (business-initiated calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OfferSetup {
    /// `a=setup:active` (default): an RFC 4145 answerer must then answer `passive`, so the
    /// gateway is the DTLS client, as Meta asks of businesses; Meta's own sample business
    /// offer uses `active` too. If the answer nevertheless says `active`, the gateway
    /// follows and becomes the DTLS server (the report says who sent the ClientHello).
    #[default]
    Active,
    /// `a=setup:actpass` (RFC 8842 §5.2): the answerer picks. Meta's published answer to
    /// an actpass offer says `active`, which makes the gateway the DTLS server.
    ActPass,
}

/// Per-leg configuration.
#[derive(Debug, Clone)]
pub struct WebrtcConfig {
    /// The address advertised as this leg's single ICE host candidate, and the `source`
    /// of every [`Transmit`]. With 1:1 NAT this is the public address, not the bound one.
    pub local_addr: SocketAddr,
    /// Opus 48000/2 payload type for our offers (answers mirror the offer's number).
    pub opus_pt: u8,
    /// telephone-event/8000 payload type for our offers (answers mirror the offer's).
    pub telephone_event_pt: u8,
    /// Fail the leg when ICE + DTLS are not connected this long after the remote
    /// description is known (answer sent, or answer accepted).
    pub connect_timeout: Duration,
    /// DTLS certificate (ECDSA P-256). `None` = the process-wide one
    /// ([`shared_certificate`]), generated once, which saves a key generation per call.
    pub certificate: Option<DtlsCert>,
    /// `a=setup` of our offers.
    pub offer_setup: OfferSetup,
}

impl WebrtcConfig {
    /// Defaults: Opus 111, telephone-event 126 (Meta's numbers), 5 s connect timeout
    /// (Meta's DTLS retries are 1/2/4 s), shared certificate, offers `a=setup:active`.
    pub fn new(local_addr: SocketAddr) -> Self {
        WebrtcConfig {
            local_addr,
            opus_pt: 111,
            telephone_event_pt: 126,
            connect_timeout: Duration::from_secs(5),
            certificate: None,
            offer_setup: OfferSetup::Active,
        }
    }
}

/// Configuration of a Meta-like peer (sandbox twin), see [`WebrtcLeg::meta_offer`].
#[derive(Debug, Clone)]
pub struct MetaLikeConfig {
    /// `local_addr` is the IPv4 candidate that works.
    pub leg: WebrtcConfig,
    /// A second host candidate that nobody can reach (Meta lists an IPv6 one).
    pub unreachable_candidate: SocketAddr,
    /// `a=setup` of the peer's answers: `Passive` (default) keeps the peer from ever
    /// sending the first DTLS packet; `Active` mimics Meta's published sample answer, in
    /// which case the peer sends the ClientHello.
    pub answer_setup: Setup,
    /// Local ICE `(ufrag, pwd)`; `None` = random. Meta's look like
    /// `JHqAXFH4HcAY/8` / `dNNMmR8wUcGezvfBZOO0Qg==` (base64, `/`, `=` padding).
    pub ice_credentials: Option<(String, String)>,
}

impl MetaLikeConfig {
    /// Unreachable candidate `[2001:db8::1]:<same port>` (RFC 3849 documentation prefix).
    pub fn new(local_addr: SocketAddr) -> Self {
        MetaLikeConfig {
            leg: WebrtcConfig::new(local_addr),
            unreachable_candidate: SocketAddr::new(
                std::net::IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                local_addr.port(),
            ),
            answer_setup: Setup::Passive,
            ice_credentials: None,
        }
    }
}

/// The process-wide DTLS certificate (ECDSA P-256, self-signed), generated on first use.
/// `None` if the crypto provider cannot generate one.
pub fn shared_certificate() -> Option<DtlsCert> {
    static CERT: OnceLock<Option<DtlsCert>> = OnceLock::new();
    CERT.get_or_init(new_certificate).clone()
}

/// A fresh DTLS certificate (ECDSA P-256) from str0m's aws-lc-rs provider.
pub fn new_certificate() -> Option<DtlsCert> {
    catch_unwind(|| {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    })
    .ok()
    .flatten()
}

/// Which end of the leg did something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Local,
    Remote,
}

/// What this leg is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegKind {
    /// Full ICE agent; controlling toward an ICE-lite peer; DTLS client where possible.
    Gateway,
    /// ICE-lite, `actpass`, two host candidates, never speaks first (sandbox twin).
    MetaLike,
}

/// Where a leg is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegState {
    /// Our offer is out; waiting for [`WebrtcLeg::accept_answer`].
    AwaitingAnswer,
    /// Both descriptions known; ICE/DTLS in progress; the connect timer runs.
    Connecting,
    /// DTLS-SRTP is up; media flows.
    Connected,
    /// Dead; see [`LegReport::failure`].
    Failed,
}

/// SRTP protection profile negotiated by DTLS `use_srtp` (RFC 5764, RFC 7714).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpProfile {
    Aes128CmSha1_80,
    Aes128CmSha1_32,
    AeadAes128Gcm,
    AeadAes256Gcm,
    Other(u16),
}

impl SrtpProfile {
    fn from_id(id: u16) -> Self {
        match id {
            0x0001 => SrtpProfile::Aes128CmSha1_80,
            0x0002 => SrtpProfile::Aes128CmSha1_32,
            0x0007 => SrtpProfile::AeadAes128Gcm,
            0x0008 => SrtpProfile::AeadAes256Gcm,
            other => SrtpProfile::Other(other),
        }
    }
}

/// A datagram to send from `source` (always the leg's `local_addr`) to `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// Facts at the moment DTLS-SRTP came up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// Our connectivity checks carried ICE-CONTROLLING (always `false` for an ICE-lite leg).
    pub ice_controlling: bool,
    /// We sent the DTLS ClientHello.
    pub dtls_client: bool,
    /// From the ServerHello's `use_srtp`; `None` only if it was not readable.
    pub srtp_profile: Option<SrtpProfile>,
    /// The remote address media goes to (the nominated pair's remote side).
    pub remote: SocketAddr,
}

/// One decrypted RTP packet from the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpIn {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub ssrc: u32,
    /// The payload without the RTP header.
    pub payload: Arc<[u8]>,
}

/// What [`WebrtcLeg::poll_output`] hands out. Drain until `Timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this datagram.
    Transmit(Transmit),
    /// Nothing more to do: call [`WebrtcLeg::handle_timeout`] at this instant (or earlier
    /// when a datagram arrives).
    Timeout(Instant),
    /// DTLS-SRTP is up (once per leg).
    Connected(Connected),
    /// A decrypted RTP packet.
    Rtp(RtpIn),
    /// The leg is dead (once); tear the call leg down.
    Failed(FailReason),
}

/// Counters and facts for logs, metrics and the sandbox's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegReport {
    pub kind: LegKind,
    pub state: LegState,
    pub ice_lite: bool,
    /// Our ICE role: for a full agent, what our checks carried (`None` before the first
    /// check); an ICE-lite agent is always controlled (`Some(false)`).
    pub ice_controlling: Option<bool>,
    /// Binding requests we sent / received.
    pub stun_requests_sent: u64,
    pub stun_requests_received: u64,
    /// Received checks carried ICE-CONTROLLING (the remote is the controlling agent).
    pub remote_ice_controlling_seen: bool,
    /// A received check carried USE-CANDIDATE.
    pub use_candidate_seen: bool,
    /// Regular nomination seen on received checks: the first USE-CANDIDATE came after a
    /// plain check that we answered with a binding success (RFC 8445 §8.1.1).
    pub regular_nomination_seen: bool,
    /// Who sent the first DTLS ClientHello.
    pub client_hello_from: Option<Side>,
    pub srtp_profile: Option<SrtpProfile>,
    /// `a=setup` we put in our offer/answer, and what the remote's said.
    pub local_setup: Option<Setup>,
    pub remote_setup: Option<Setup>,
    /// Negotiated payload types.
    pub opus_pt: Option<u8>,
    pub telephone_event_pt: Option<u8>,
    /// Our one SSRC (after the first write).
    pub local_ssrc: Option<u32>,
    pub rtp_packets_sent: u64,
    pub rtp_bytes_sent: u64,
    pub rtp_packets_received: u64,
    pub rtp_bytes_received: u64,
    /// SRTP datagrams (RTP range) from the verified remote.
    pub rtp_datagrams_received: u64,
    /// SRTP datagrams that produced no RTP packet: authentication/decrypt failure,
    /// replay, unknown payload type. (`rtp_datagrams_received - rtp_packets_received`.)
    pub rtp_not_decrypted: u64,
    /// Datagrams ignored: unparseable, or from an address ICE has not verified.
    pub datagrams_ignored: u64,
    /// Remote SDP candidates dropped (other address family, or not an IP).
    pub remote_candidates_ignored: usize,
    pub connected_at: Option<Instant>,
    pub failure: Option<FailReason>,
}

/// Extends 16-bit RTP sequence numbers to str0m's 64-bit ones (RFC 3711 §3.3.1 style):
/// the extension closest to the highest one seen so far.
#[derive(Debug, Default, Clone)]
pub(crate) struct SeqExtender {
    highest: Option<u64>,
}

impl SeqExtender {
    pub(crate) fn extend(&mut self, seq: u16) -> u64 {
        let Some(h) = self.highest else {
            self.highest = Some(u64::from(seq));
            return u64::from(seq);
        };
        let roc = h >> 16;
        let base = (roc << 16) | u64::from(seq);
        let candidates = [
            base.checked_sub(1 << 16),
            Some(base),
            base.checked_add(1 << 16),
        ];
        let ext = candidates
            .into_iter()
            .flatten()
            .min_by_key(|c| c.abs_diff(h))
            .unwrap_or(base);
        if ext > h {
            self.highest = Some(ext);
        }
        ext
    }
}

const MAX_LEARNED_SSRCS: usize = 4;
const FAR_FUTURE: Duration = Duration::from_secs(24 * 3600);

/// One WhatsApp call leg in DTLS-SRTP + ICE mode. See the module docs for the contract.
pub struct WebrtcLeg {
    rtc: Rtc,
    kind: LegKind,
    local_addr: SocketAddr,
    lite: bool,
    mid: Option<Mid>,
    pending: Option<SdpPendingOffer>,
    offered_setup: Option<Setup>,
    connect_timeout: Duration,
    deadline: Option<Instant>,
    state: LegState,
    failure_reported: bool,
    seq: SeqExtender,
    learned_ssrcs: usize,
    remote: Option<SocketAddr>,
    /// Outputs drained from str0m right after each input (str0m keeps only the latest
    /// received packet per stream between polls, so we never let inputs pile up).
    queue: VecDeque<Output>,
    rtc_timeout: Option<Instant>,
    /// Latest `now` seen: str0m ignores inputs from the past, so time never goes back.
    last_now: Instant,
    // wire facts
    sent_controlling: bool,
    sent_controlled: bool,
    plain_check_answered: bool,
    report: LegReport,
}

impl fmt::Debug for WebrtcLeg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebrtcLeg")
            .field("kind", &self.kind)
            .field("local_addr", &self.local_addr)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_string()
    }
}

fn build_rtc(
    now: Instant,
    cfg: &WebrtcConfig,
    opus_pt: u8,
    tel_pt: Option<u8>,
    lite: bool,
    ice_credentials: Option<&(String, String)>,
) -> Result<Rtc, WebrtcError> {
    let cert = match &cfg.certificate {
        Some(c) => c.clone(),
        None => shared_certificate().ok_or(WebrtcError::Certificate)?,
    };
    let mut c: RtcConfig = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .set_ice_lite(lite)
        .set_dtls_cert(cert);
    if let Some((ufrag, pass)) = ice_credentials {
        c = c.set_local_ice_credentials(IceCreds {
            ufrag: ufrag.clone(),
            pass: pass.clone(),
        });
    }
    c.codec_config().add_config(
        opus_pt.into(),
        None,
        Codec::Opus,
        Frequency::FORTY_EIGHT_KHZ,
        Some(2),
        FormatParams {
            min_p_time: Some(10),
            use_inband_fec: Some(true),
            ..Default::default()
        },
    );
    if let Some(t) = tel_pt {
        c.codec_config().add_config(
            t.into(),
            None,
            Codec::Tele,
            Frequency::EIGHT_KHZ,
            None,
            FormatParams::default(),
        );
    }
    catch_unwind(AssertUnwindSafe(|| c.build(now)))
        .map_err(|p| WebrtcError::Panic(panic_text(p.as_ref())))
}

fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, WebrtcError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| WebrtcError::Panic(panic_text(p.as_ref())))
}

fn sdp_err(e: impl fmt::Display) -> WebrtcError {
    WebrtcError::Sdp(e.to_string().replace('\n', " / "))
}

impl WebrtcLeg {
    fn new_leg(
        now: Instant,
        rtc: Rtc,
        kind: LegKind,
        cfg: &WebrtcConfig,
        lite: bool,
        state: LegState,
    ) -> WebrtcLeg {
        WebrtcLeg {
            rtc,
            kind,
            local_addr: cfg.local_addr,
            lite,
            mid: None,
            pending: None,
            offered_setup: None,
            connect_timeout: cfg.connect_timeout,
            deadline: None,
            state,
            failure_reported: false,
            seq: SeqExtender::default(),
            learned_ssrcs: 0,
            remote: None,
            queue: VecDeque::new(),
            rtc_timeout: None,
            last_now: now,
            sent_controlling: false,
            sent_controlled: false,
            plain_check_answered: false,
            report: LegReport {
                kind,
                state,
                ice_lite: lite,
                ice_controlling: if lite { Some(false) } else { None },
                stun_requests_sent: 0,
                stun_requests_received: 0,
                remote_ice_controlling_seen: false,
                use_candidate_seen: false,
                regular_nomination_seen: false,
                client_hello_from: None,
                srtp_profile: None,
                local_setup: None,
                remote_setup: None,
                opus_pt: None,
                telephone_event_pt: None,
                local_ssrc: None,
                rtp_packets_sent: 0,
                rtp_bytes_sent: 0,
                rtp_packets_received: 0,
                rtp_bytes_received: 0,
                rtp_datagrams_received: 0,
                rtp_not_decrypted: 0,
                datagrams_ignored: 0,
                remote_candidates_ignored: 0,
                connected_at: None,
                failure: None,
            },
        }
    }

    fn add_candidate(&mut self, addr: SocketAddr) -> Result<(), WebrtcError> {
        let c = Candidate::host(addr, "udp").map_err(|_| WebrtcError::Candidate(addr))?;
        let rtc = &mut self.rtc;
        guarded(|| rtc.add_local_candidate(c).is_some())?
            .then_some(())
            .ok_or(WebrtcError::Candidate(addr))
    }

    /// Gateway, user-initiated call: answer Meta's offer. We become ICE controlling (Meta
    /// is ICE-lite; str0m's SDP path decides this) with regular nomination, and DTLS client:
    /// an `actpass` offer is read as `passive`, so our answer says `a=setup:active`. PT
    /// numbers mirror the offer's. The connect timer starts now.
    pub fn answer_offer(
        now: Instant,
        cfg: &WebrtcConfig,
        remote_offer: &str,
    ) -> Result<(WebrtcLeg, String), WebrtcError> {
        Self::answer(
            now,
            cfg,
            remote_offer,
            LegKind::Gateway,
            None,
            Setup::Active,
            None,
        )
    }

    /// Meta-like peer (sandbox twin) answering the gateway's offer: ICE-lite, two host
    /// candidates, `a=setup` per [`MetaLikeConfig::answer_setup`].
    pub fn meta_answer(
        now: Instant,
        cfg: &MetaLikeConfig,
        gateway_offer: &str,
    ) -> Result<(WebrtcLeg, String), WebrtcError> {
        Self::answer(
            now,
            &cfg.leg,
            gateway_offer,
            LegKind::MetaLike,
            Some(cfg.unreachable_candidate),
            cfg.answer_setup,
            cfg.ice_credentials.as_ref(),
        )
    }

    fn answer(
        now: Instant,
        cfg: &WebrtcConfig,
        remote_offer: &str,
        kind: LegKind,
        extra_candidate: Option<SocketAddr>,
        want_setup: Setup,
        ice_credentials: Option<&(String, String)>,
    ) -> Result<(WebrtcLeg, String), WebrtcError> {
        let lite = kind == LegKind::MetaLike;
        let (opus, tel) = sdp::audio_payload_types(remote_offer);
        let opus = opus.ok_or(WebrtcError::NoCommonCodec)?;
        let (remote_offer, mid) = sdp::with_audio_mid(remote_offer).ok_or(WebrtcError::NoAudio)?;
        let remote_offer = remote_offer.as_str();
        let remote_setup = sdp::setup_of(remote_offer);
        // str0m answers the inverse of the offer's setup (actpass → passive). Present the
        // offer so that its inverse is the role we want; keep `active`/`passive` offers as
        // they are unless they already give us that role.
        let (filtered, dropped) =
            sdp::keep_candidates_of_family(remote_offer, cfg.local_addr.is_ipv4());
        // The gateway only steers `actpass` (an `active`/`passive` offer has already
        // chosen); the Meta-like twin answers whatever its config says.
        let present = match want_setup {
            Setup::Active => Setup::Passive,
            _ => Setup::Active,
        };
        let steer = match (remote_setup, kind) {
            (Some(Setup::ActPass), _) => Some((Setup::ActPass, present)),
            (Some(r), LegKind::MetaLike) if r != present => Some((r, present)),
            _ => None,
        };
        let offer_text = match steer {
            Some((from, to)) => sdp::rewrite_setup(&filtered, from, to),
            None => filtered,
        };
        let offer = SdpOffer::from_sdp_string(&offer_text).map_err(sdp_err)?;

        let rtc = build_rtc(now, cfg, opus, tel, lite, ice_credentials)?;
        let mut leg = WebrtcLeg::new_leg(now, rtc, kind, cfg, lite, LegState::Connecting);
        leg.report.remote_candidates_ignored = dropped;
        leg.report.remote_setup = remote_setup;
        leg.add_candidate(cfg.local_addr)?;
        if let Some(extra) = extra_candidate {
            leg.add_candidate(extra)?;
        }
        let rtc = &mut leg.rtc;
        let answer = guarded(|| rtc.sdp_api().accept_offer(offer))?
            .map_err(|e| WebrtcError::Rtc(e.to_string()))?
            .to_sdp_string();
        leg.finish_negotiation(now, &answer)?;
        leg.mid = Some(Mid::from(mid.as_str()));
        leg.report.local_setup = sdp::setup_of(&answer);
        Ok((leg, answer))
    }

    /// Gateway, business-initiated call: our offer (`a=setup` per
    /// [`WebrtcConfig::offer_setup`], Opus + telephone-event with the configured PTs).
    pub fn create_offer(
        now: Instant,
        cfg: &WebrtcConfig,
    ) -> Result<(WebrtcLeg, String), WebrtcError> {
        let local_setup = match cfg.offer_setup {
            OfferSetup::Active => Setup::Active,
            OfferSetup::ActPass => Setup::ActPass,
        };
        Self::offer(now, cfg, LegKind::Gateway, None, local_setup, None)
    }

    /// Meta-like peer placing a (user-initiated) call: ICE-lite, `actpass`, two host
    /// candidates (the second unreachable).
    pub fn meta_offer(
        now: Instant,
        cfg: &MetaLikeConfig,
    ) -> Result<(WebrtcLeg, String), WebrtcError> {
        Self::offer(
            now,
            &cfg.leg,
            LegKind::MetaLike,
            Some(cfg.unreachable_candidate),
            Setup::ActPass,
            cfg.ice_credentials.as_ref(),
        )
    }

    fn offer(
        now: Instant,
        cfg: &WebrtcConfig,
        kind: LegKind,
        extra_candidate: Option<SocketAddr>,
        local_setup: Setup,
        ice_credentials: Option<&(String, String)>,
    ) -> Result<(WebrtcLeg, String), WebrtcError> {
        let lite = kind == LegKind::MetaLike;
        let rtc = build_rtc(
            now,
            cfg,
            cfg.opus_pt,
            Some(cfg.telephone_event_pt),
            lite,
            ice_credentials,
        )?;
        let mut leg = WebrtcLeg::new_leg(now, rtc, kind, cfg, lite, LegState::AwaitingAnswer);
        leg.add_candidate(cfg.local_addr)?;
        if let Some(extra) = extra_candidate {
            leg.add_candidate(extra)?;
        }
        let rtc = &mut leg.rtc;
        let (mid, applied) = guarded(|| {
            let mut api = rtc.sdp_api();
            let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
            (mid, api.apply())
        })?;
        let (offer, pending) = applied.ok_or(WebrtcError::State("str0m produced no offer"))?;
        let mut text = offer.to_sdp_string();
        if local_setup != Setup::ActPass {
            text = sdp::rewrite_setup(&text, Setup::ActPass, local_setup);
        }
        leg.mid = Some(mid);
        leg.pending = Some(pending);
        leg.offered_setup = Some(local_setup);
        leg.report.local_setup = Some(local_setup);
        Ok((leg, text))
    }

    /// Take the remote answer to our offer; the connect timer starts now. Answers
    /// `passive` → we are DTLS client; `active` → we are DTLS server; an (invalid)
    /// `actpass` answer to an `active` offer is read as `passive`.
    pub fn accept_answer(&mut self, now: Instant, remote_answer: &str) -> Result<(), WebrtcError> {
        if self.state != LegState::AwaitingAnswer || self.pending.is_none() {
            return Err(WebrtcError::State(
                "accept_answer without an outstanding offer",
            ));
        }
        let now = self.clock(now);
        let remote_setup = sdp::setup_of(remote_answer);
        let (mut text, dropped) =
            sdp::keep_candidates_of_family(remote_answer, self.local_addr.is_ipv4());
        if self.offered_setup == Some(Setup::Active) && remote_setup == Some(Setup::ActPass) {
            text = sdp::rewrite_setup(&text, Setup::ActPass, Setup::Passive);
        }
        let answer = SdpAnswer::from_sdp_string(&text).map_err(sdp_err)?;
        let pending = self
            .pending
            .take()
            .ok_or(WebrtcError::State("no pending offer"))?;
        let rtc = &mut self.rtc;
        let res = guarded(|| rtc.sdp_api().accept_answer(pending, answer));
        let res = match res {
            Ok(r) => r.map_err(|e| WebrtcError::Rtc(e.to_string())),
            Err(p) => Err(p),
        };
        if let Err(e) = res {
            // The pending offer is consumed: this leg cannot negotiate again.
            self.fail(match &e {
                WebrtcError::Panic(p) => FailReason::Panic(p.clone()),
                other => FailReason::Rtc(other.to_string()),
            });
            return Err(e);
        }
        self.report.remote_candidates_ignored = dropped;
        self.report.remote_setup = remote_setup;
        self.state = LegState::Connecting;
        self.report.state = LegState::Connecting;
        self.finish_negotiation(now, &text)
    }

    fn finish_negotiation(&mut self, now: Instant, negotiated: &str) -> Result<(), WebrtcError> {
        let (opus, tel) = sdp::audio_payload_types(negotiated);
        self.report.opus_pt = Some(opus.ok_or(WebrtcError::NoCommonCodec)?);
        self.report.telephone_event_pt = tel;
        self.deadline = Some(now + self.connect_timeout);
        Ok(())
    }

    /// Feed one received datagram. `destination` is informational: a leg has one local
    /// candidate, so str0m always sees `local_addr` as the destination. Datagrams that
    /// cannot be parsed, or that come from an address ICE has not verified, are counted
    /// and ignored; they never fail the leg.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        datagram: &[u8],
    ) {
        let _ = destination;
        let now = self.clock(now);
        if self.state == LegState::Failed {
            return;
        }
        let Ok(recv) = Receive::new(Protocol::Udp, source, self.local_addr, datagram) else {
            self.report.datagrams_ignored += 1;
            return;
        };
        let input = Input::Receive(now, recv);
        let rtc = &self.rtc;
        match guarded(|| rtc.accepts(&input)) {
            Ok(true) => {}
            Ok(false) => {
                self.report.datagrams_ignored += 1;
                return;
            }
            Err(WebrtcError::Panic(p)) => return self.fail(FailReason::Panic(p)),
            Err(_) => return,
        }
        self.observe_in(source, datagram);
        if let (Some(ssrc), Some(mid)) = (wire::rtp_ssrc(datagram), self.mid) {
            self.learn_ssrc(ssrc, mid);
        }
        let rtc = &mut self.rtc;
        match guarded(|| rtc.handle_input(input)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.fail(FailReason::Rtc(e.to_string())),
            Err(WebrtcError::Panic(p)) => self.fail(FailReason::Panic(p)),
            Err(e) => self.fail(FailReason::Rtc(e.to_string())),
        }
        self.pump(now);
    }

    /// Meta rewrites SSRCs, so the remote's SSRC need not be the one in its SDP (and its
    /// RTP carries no mid extension). With one audio m-line every remote SSRC is ours to
    /// receive: declare it (a few at most, and only once DTLS-SRTP is up, so unverified
    /// packets cannot grow state without bound).
    fn learn_ssrc(&mut self, ssrc: u32, mid: Mid) {
        if self.state != LegState::Connected || self.learned_ssrcs >= MAX_LEARNED_SSRCS {
            return;
        }
        let rtc = &mut self.rtc;
        let learned = guarded(|| {
            let mut api = rtc.direct_api();
            if api.stream_rx(&ssrc.into()).is_some() {
                false
            } else {
                api.expect_stream_rx(ssrc.into(), None, mid, None);
                true
            }
        });
        match learned {
            Ok(true) => self.learned_ssrcs += 1,
            Ok(false) => {}
            Err(WebrtcError::Panic(p)) => self.fail(FailReason::Panic(p)),
            Err(_) => {}
        }
    }

    /// Advance time. Call at (or after) the instant of the last [`Output::Timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock(now);
        if self.state == LegState::Failed {
            return;
        }
        self.check_deadline(now);
        if self.state == LegState::Failed {
            return;
        }
        let rtc = &mut self.rtc;
        match guarded(|| rtc.handle_input(Input::Timeout(now))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.fail(FailReason::Rtc(e.to_string())),
            Err(WebrtcError::Panic(p)) => self.fail(FailReason::Panic(p)),
            Err(e) => self.fail(FailReason::Rtc(e.to_string())),
        }
        self.pump(now);
    }

    fn check_deadline(&mut self, now: Instant) {
        if self.state != LegState::Connecting {
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            self.fail(FailReason::ConnectTimeout {
                after: self.connect_timeout,
                client_hello_seen: self.report.client_hello_from.is_some(),
                ice_ok: self.plain_check_answered,
            });
        }
    }

    fn clock(&mut self, now: Instant) -> Instant {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn fail(&mut self, reason: FailReason) {
        if self.state == LegState::Failed {
            return;
        }
        tracing::warn!(kind = ?self.kind, %reason, "WebRTC leg failed");
        self.state = LegState::Failed;
        self.report.state = LegState::Failed;
        self.report.failure = Some(reason);
    }

    /// Next thing to do. Drain until [`Output::Timeout`] after every `handle_*` and
    /// `write_rtp` call.
    pub fn poll_output(&mut self, now: Instant) -> Output {
        let now = self.clock(now);
        self.check_deadline(now);
        if self.state == LegState::Failed {
            // Nothing else matters once failed: report it (once), then stay quiet.
            self.queue.clear();
            if !self.failure_reported {
                self.failure_reported = true;
                if let Some(r) = &self.report.failure {
                    return Output::Failed(r.clone());
                }
            }
            return Output::Timeout(now + FAR_FUTURE);
        }
        if self.queue.is_empty() {
            self.pump(now);
        }
        if let Some(o) = self.queue.pop_front() {
            return o;
        }
        if self.state == LegState::Failed {
            return self.poll_output(now);
        }
        let t = self.rtc_timeout.unwrap_or(now + FAR_FUTURE);
        let t = match (self.state, self.deadline) {
            (LegState::Connecting, Some(d)) => t.min(d),
            _ => t,
        };
        Output::Timeout(t.max(now))
    }

    /// Drain str0m until it wants a timeout, queueing what it produced.
    fn pump(&mut self, now: Instant) {
        while self.state != LegState::Failed {
            let rtc = &mut self.rtc;
            let out = match guarded(|| rtc.poll_output()) {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => return self.fail(FailReason::Rtc(e.to_string())),
                Err(WebrtcError::Panic(p)) => return self.fail(FailReason::Panic(p)),
                Err(e) => return self.fail(FailReason::Rtc(e.to_string())),
            };
            match out {
                str0m::Output::Transmit(t) => {
                    let contents: Vec<u8> = t.contents.into();
                    self.observe_out(t.destination, &contents);
                    self.queue.push_back(Output::Transmit(Transmit {
                        source: self.local_addr,
                        destination: t.destination,
                        contents,
                    }));
                }
                str0m::Output::Timeout(t) => {
                    self.rtc_timeout = Some(t);
                    return;
                }
                str0m::Output::Event(e) => {
                    if let Some(o) = self.on_event(now, e) {
                        self.queue.push_back(o);
                    }
                }
            }
        }
    }

    fn on_event(&mut self, now: Instant, e: Event) -> Option<Output> {
        match e {
            Event::Connected => {
                if self.state == LegState::Connected {
                    return None;
                }
                self.state = LegState::Connected;
                self.report.state = LegState::Connected;
                self.report.connected_at = Some(now);
                let remote = self.remote.unwrap_or(self.local_addr);
                Some(Output::Connected(Connected {
                    ice_controlling: self.report.ice_controlling == Some(true),
                    dtls_client: self.report.client_hello_from == Some(Side::Local),
                    srtp_profile: self.report.srtp_profile,
                    remote,
                }))
            }
            Event::RtpPacket(p) => {
                self.report.rtp_packets_received += 1;
                self.report.rtp_bytes_received += p.payload.len() as u64;
                Some(Output::Rtp(RtpIn {
                    payload_type: *p.header.payload_type,
                    sequence: p.header.sequence_number,
                    timestamp: p.header.timestamp,
                    marker: p.header.marker,
                    ssrc: *p.header.ssrc,
                    payload: p.payload,
                }))
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                if self.state == LegState::Connected =>
            {
                self.fail(FailReason::IceDisconnected);
                None
            }
            Event::Closed => {
                self.fail(FailReason::RemoteClosed);
                None
            }
            _ => None,
        }
    }

    /// Send one RTP payload with the leg's single SSRC. `sequence` is the 16-bit number
    /// (e.g. from the SIP leg, already renumbered for continuity); the leg extends it
    /// across 65535→0 for SRTP's rollover counter. Drain [`Self::poll_output`] afterwards.
    pub fn write_rtp(
        &mut self,
        now: Instant,
        payload_type: u8,
        sequence: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), WebrtcError> {
        let now = self.clock(now);
        match self.state {
            LegState::Failed => return Err(WebrtcError::Failed),
            LegState::Connected => {}
            _ => return Err(WebrtcError::NotConnected),
        }
        if self.kind == LegKind::MetaLike && self.report.rtp_packets_received == 0 {
            return Err(WebrtcError::PeerSpeaksSecond);
        }
        if Some(payload_type) != self.report.opus_pt
            && Some(payload_type) != self.report.telephone_event_pt
        {
            return Err(WebrtcError::UnknownPayloadType(payload_type));
        }
        let mid = self.mid.ok_or(WebrtcError::State("no media"))?;
        let ext = self.seq.extend(sequence);
        let rtc = &mut self.rtc;
        let res = guarded(|| {
            let mut api = rtc.direct_api();
            let tx = api.stream_tx_by_mid(mid, None)?;
            let ssrc = *tx.ssrc();
            tx.write_rtp(
                RtpWrite::new(payload_type.into(), ext.into(), timestamp, now, payload)
                    .marker(marker),
            );
            Some(ssrc)
        });
        match res {
            Ok(Some(ssrc)) => {
                self.report.local_ssrc = Some(ssrc);
                self.report.rtp_packets_sent += 1;
                self.report.rtp_bytes_sent += payload.len() as u64;
                // A direct-API write does not wake str0m's poll loop by itself; a timeout
                // input at `now` does, so the packet leaves in this very drain.
                self.handle_timeout(now);
                Ok(())
            }
            Ok(None) => Err(WebrtcError::State("no send stream for the audio mid")),
            Err(WebrtcError::Panic(p)) => {
                self.fail(FailReason::Panic(p.clone()));
                Err(WebrtcError::Panic(p))
            }
            Err(e) => Err(e),
        }
    }

    fn observe_out(&mut self, destination: SocketAddr, d: &[u8]) {
        if let Some(s) = wire::stun(d) {
            if s.binding_request {
                self.report.stun_requests_sent += 1;
                self.sent_controlling |= s.ice_controlling;
                self.sent_controlled |= s.ice_controlled;
                if !self.lite {
                    self.report.ice_controlling = Some(self.sent_controlling);
                }
            }
            if s.binding_success && !self.report.use_candidate_seen {
                self.plain_check_answered = true;
            }
        } else if let Some(f) = wire::dtls(d) {
            self.remote = Some(destination);
            self.dtls_facts(f, Side::Local);
        }
    }

    fn observe_in(&mut self, source: SocketAddr, d: &[u8]) {
        match wire::classify(d) {
            Kind::Stun => {
                if let Some(s) = wire::stun(d) {
                    if s.binding_request {
                        self.report.stun_requests_received += 1;
                        self.report.remote_ice_controlling_seen |= s.ice_controlling;
                        if s.use_candidate && !self.report.use_candidate_seen {
                            self.report.use_candidate_seen = true;
                            self.report.regular_nomination_seen = self.plain_check_answered;
                        }
                    }
                    if s.binding_success {
                        self.plain_check_answered = true;
                    }
                }
            }
            Kind::Dtls => {
                self.remote = Some(source);
                if let Some(f) = wire::dtls(d) {
                    self.dtls_facts(f, Side::Remote);
                }
            }
            Kind::Rtp => {
                if self.state == LegState::Connected {
                    self.report.rtp_datagrams_received += 1;
                }
            }
            Kind::Rtcp | Kind::Other => {}
        }
    }

    fn dtls_facts(&mut self, f: wire::DtlsFacts, side: Side) {
        if f.client_hello && self.report.client_hello_from.is_none() {
            self.report.client_hello_from = Some(side);
        }
        if let Some(p) = f.srtp_profile {
            self.report.srtp_profile = Some(SrtpProfile::from_id(p));
        }
    }

    /// A snapshot of the leg's facts and counters.
    pub fn report(&self) -> LegReport {
        let mut r = self.report.clone();
        r.rtp_not_decrypted = r
            .rtp_datagrams_received
            .saturating_sub(r.rtp_packets_received);
        r
    }

    pub fn state(&self) -> LegState {
        self.state
    }

    pub fn kind(&self) -> LegKind {
        self.kind
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Why the leg failed, if it did.
    pub fn failure(&self) -> Option<&FailReason> {
        self.report.failure.as_ref()
    }

    /// Close DTLS (close_notify) and stop; drain [`Self::poll_output`] to send it.
    pub fn close(&mut self) {
        if self.state == LegState::Failed {
            return;
        }
        let rtc = &mut self.rtc;
        let _ = guarded(|| rtc.close());
    }
}
