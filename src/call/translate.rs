//! Leg-to-leg translation rules of the B2BUA, each a pure function: building the INVITE for
//! the other leg, mapping final responses, choosing the business number, routing
//! user-initiated calls, answering absorbed SDP offers, reading INFO DTMF.
//!
//! Guarantees: nothing here panics on any input; headers copied from a received request into
//! a response (Via, From, To, Call-ID, CSeq, Record-Route) are copied as the same header lines,
//! so they serialize byte for byte as received.
//!
//! ## Meta's final responses → PBX (business-initiated calls)
//!
//! Every mapped failure carries `Reason: SIP;cause=<Meta status>;text="<Meta reason>"`; a
//! `Warning: 399 <our host> "<text>"` repeats Meta's Warning text (or its reason phrase).
//!
//! | Meta          | PBX | note                                                        |
//! |---------------|-----|-------------------------------------------------------------|
//! | 100           | —   | hop-by-hop, not relayed                                     |
//! | 180           | 180 |                                                             |
//! | 183           | 183 | SDP (our PBX-leg answer) only when Meta's 183 had SDP and media set up |
//! | 200           | 200 | with our PBX-leg SDP                                        |
//! | 400           | 502 | Meta rejected our INVITE (From number, syntax): gateway fault |
//! | 401 / 407     | 403 | only after our credentials were refused (first one is answered) |
//! | 403           | 403 | Warning names Meta's text (permission, From host, limits…)   |
//! | 404           | 404 |                                                             |
//! | 408           | 408 | also our own Timer B                                        |
//! | 480           | 480 |                                                             |
//! | 486           | 486 |                                                             |
//! | 487           | 487 |                                                             |
//! | 488 / 606     | 488 |                                                             |
//! | other 4xx     | same|                                                             |
//! | 500, 502, 504+| 502 |                                                             |
//! | 503           | 503 |                                                             |
//! | 600 / 603     | 603 |                                                             |
//! | other 6xx     | 603 |                                                             |
//! | (no permission per Graph lookup) | 403 | not sent to Meta; `Warning: 399 <host> "138006 …"` |
//!
//! ## PBX's final responses → Meta (user-initiated calls)
//!
//! | PBX                | Meta | note                                      |
//! |--------------------|------|-------------------------------------------|
//! | 486, 600, 603      | 486  | declined / busy                           |
//! | 487                | 487  |                                           |
//! | anything else ≥300 | 480  | unreachable, no answer, errors            |
//! | (answer deadline)  | 480  | and CANCEL toward the PBX                 |
use crate::config::{BusinessNumberChoice, Config, Transport};
use crate::sip::header::HeaderName;
use crate::sip::message::{Request, Response};
use crate::sip::method::Method;
use crate::sip::uri::Uri;
use bytes::Bytes;

use super::meta_rules::{self, WaUser};

/// Methods we accept on the PBX leg.
pub const PBX_ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO";

/// Meta Graph code for "no approved call permission".
pub const META_NO_PERMISSION: u32 = 138006;

/// A response to `req` (RFC 3261 §8.2.6): Via, From, To, Call-ID, CSeq (and Record-Route for
/// 101–299) copied as the received lines; `to_tag` added to To unless it has one (not on 100).
pub fn make_response(req: &Request, status: u16, reason: &str, to_tag: Option<&str>) -> Response {
    let mut r = crate::sip::transaction::response_to(req, status, reason);
    if let Some(tag) = to_tag.filter(|_| status != 100) {
        crate::sip::endpoint::add_to_tag(&mut r, tag);
    }
    r
}

/// Everything a business-initiated INVITE toward Meta needs.
#[derive(Debug, Clone)]
pub struct MetaInvite<'a> {
    pub user: &'a WaUser,
    pub business: &'a str,
    pub public_host: &'a str,
    pub public_port: u16,
    pub edge_host: &'a str,
    pub call_id: &'a str,
    pub from_tag: &'a str,
    pub cseq: u32,
    pub sdp: Bytes,
}

/// The INVITE toward Meta (whatsapp-calling §1.3): no Via (the endpoint adds it), no
/// `Session-Expires`/`Supported: timer`, Allow limited to [`meta_rules::META_ALLOW`].
pub fn meta_invite(p: &MetaInvite<'_>) -> Option<Request> {
    let uri = meta_rules::request_uri(p.user, p.edge_host)?;
    let mut r = Request {
        method: Method::Invite,
        uri,
        headers: Default::default(),
        body: p.sdp.clone(),
    };
    let h = &mut r.headers;
    h.push(HeaderName::MaxForwards, "70");
    h.push(
        HeaderName::From,
        meta_rules::from_header(p.business, p.public_host, p.from_tag),
    );
    h.push(HeaderName::To, meta_rules::to_header(p.user, p.edge_host));
    h.push(HeaderName::CallId, p.call_id);
    h.push(HeaderName::CSeq, format!("{} INVITE", p.cseq));
    h.push(
        HeaderName::Contact,
        meta_rules::contact_header(p.business, p.public_host, p.public_port),
    );
    h.push(HeaderName::Allow, meta_rules::META_ALLOW);
    if !p.sdp.is_empty() {
        h.push(HeaderName::ContentType, "application/sdp");
    }
    Some(r)
}

/// The same INVITE re-sent after a 401/407 (RFC 3261 §22.2): new CSeq, same Call-ID, From
/// tag, To and body; previous credentials replaced; no Via (the endpoint adds a fresh one).
pub fn with_credentials(invite: &Request, cseq: u32, header: HeaderName, value: String) -> Request {
    let mut r = invite.clone();
    r.headers.remove(&HeaderName::Via);
    r.headers.remove(&HeaderName::Authorization);
    r.headers.remove(&HeaderName::ProxyAuthorization);
    r.headers
        .set(HeaderName::CSeq, format!("{cseq} {}", invite.method));
    r.headers.push(header, value);
    r
}

/// The INVITE toward the PBX for a user-initiated call.
#[derive(Debug, Clone)]
pub struct PbxInvite<'a> {
    /// Request-URI user (per `request_uri_user`).
    pub request_user: &'a str,
    pub peer_host: &'a str,
    pub peer_port: u16,
    pub transport: Transport,
    pub local_host: &'a str,
    pub local_port: u16,
    /// Caller as From user (E.164 with `+`, or BSUID).
    pub caller: &'a str,
    /// Meta's From display name, as written.
    pub display_name: Option<&'a str>,
    pub call_id: &'a str,
    pub from_tag: &'a str,
    pub cseq: u32,
    /// `(Session-Expires, Min-SE)` when session timers are on.
    pub session_timer: Option<(u32, u32)>,
    pub extra: Vec<(HeaderName, String)>,
    pub sdp: Bytes,
}

fn transport_param(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "",
        Transport::Tcp => ";transport=tcp",
        Transport::Tls => ";transport=tls",
    }
}

/// Our Contact on the PBX leg.
pub fn pbx_contact(local_host: &str, local_port: u16, transport: Transport) -> String {
    format!(
        "<sip:whatsip@{}:{local_port}{}>",
        bracket(local_host),
        transport_param(transport)
    )
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

pub fn pbx_invite(p: &PbxInvite<'_>) -> Option<Request> {
    let uri = Uri::parse(&format!(
        "sip:{}@{}:{}{}",
        p.request_user,
        bracket(p.peer_host),
        p.peer_port,
        transport_param(p.transport)
    ))
    .ok()?;
    let mut r = Request {
        method: Method::Invite,
        uri,
        headers: Default::default(),
        body: p.sdp.clone(),
    };
    let h = &mut r.headers;
    h.push(HeaderName::MaxForwards, "70");
    let display = p.display_name.map(|d| format!("{d} ")).unwrap_or_default();
    h.push(
        HeaderName::From,
        format!(
            "{display}<sip:{}@{}>;tag={}",
            p.caller,
            bracket(p.local_host),
            p.from_tag
        ),
    );
    h.push(
        HeaderName::To,
        format!("<sip:{}@{}>", p.request_user, bracket(p.peer_host)),
    );
    h.push(HeaderName::CallId, p.call_id);
    h.push(HeaderName::CSeq, format!("{} INVITE", p.cseq));
    h.push(
        HeaderName::Contact,
        pbx_contact(p.local_host, p.local_port, p.transport),
    );
    h.push(HeaderName::Allow, PBX_ALLOW);
    if let Some((se, min_se)) = p.session_timer {
        h.push(HeaderName::Supported, "timer");
        h.push(HeaderName::SessionExpires, format!("{se};refresher=uac"));
        h.push(HeaderName::MinSe, min_se.to_string());
    }
    for (n, v) in &p.extra {
        h.push(n.clone(), v.clone());
    }
    if !p.sdp.is_empty() {
        h.push(HeaderName::ContentType, "application/sdp");
    }
    Some(r)
}

/// A failure to send on the PBX leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedFailure {
    pub status: u16,
    /// `Reason` header value.
    pub reason: String,
    /// `Warning` text (without the `399 <host>` prefix).
    pub warning: Option<String>,
    /// Meta Graph error code named in the Warning, if any.
    pub meta_code: Option<u32>,
}

/// Meta's final failure `status` (with reason phrase and Warning text) → the PBX response
/// (table in the module doc).
pub fn meta_failure_to_pbx(status: u16, phrase: &str, warning: Option<&str>) -> MappedFailure {
    let mapped = match status {
        400 => 502,
        401 | 407 => 403,
        403 | 404 | 408 | 480 | 486 | 487 => status,
        488 | 606 => 488,
        410..=499 => status,
        503 => 503,
        500..=599 => 502,
        600..=699 => 603,
        _ => 502,
    };
    let text = warning
        .map(warning_text)
        .unwrap_or_else(|| phrase.to_owned());
    let meta_code = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6 && w.starts_with("13"))
        .and_then(|w| w.parse().ok());
    MappedFailure {
        status: mapped,
        reason: sip_reason(status, phrase),
        warning: (!text.is_empty()).then_some(text),
        meta_code,
    }
}

/// The 403 for a call the Graph permission lookup said is not permitted (never sent to Meta).
pub fn no_permission_failure() -> MappedFailure {
    MappedFailure {
        status: 403,
        reason: sip_reason(403, "No approved call permission (Meta 138006)"),
        warning: Some(format!(
            "{META_NO_PERMISSION} No approved call permission for this WhatsApp user"
        )),
        meta_code: Some(META_NO_PERMISSION),
    }
}

/// The PBX's final failure → what Meta gets (table in the module doc).
pub fn pbx_failure_to_meta(status: u16) -> u16 {
    match status {
        486 | 600 | 603 => 486,
        487 => 487,
        _ => 480,
    }
}

/// `SIP;cause=<status>;text="<phrase>"` (quotes and backslashes in the phrase dropped).
pub fn sip_reason(status: u16, phrase: &str) -> String {
    let text: String = phrase
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect();
    format!("SIP;cause={status};text=\"{text}\"")
}

/// `Q.850;cause=<cause>;text="<text>"` (RFC 3326) for endings without a SIP status.
pub fn q850_reason(cause: u16, text: &str) -> String {
    let text: String = text
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect();
    format!("Q.850;cause={cause};text=\"{text}\"")
}

/// `399 <host> "<text>"`.
pub fn warning_header(host: &str, text: &str) -> String {
    let t: String = text
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect();
    format!("399 {host} \"{t}\"")
}

/// The quoted text of a Warning value (`399 host "text"` → `text`), or the value itself.
pub fn warning_text(v: &str) -> String {
    match (v.find('"'), v.rfind('"')) {
        (Some(a), Some(b)) if b > a => v[a + 1..b].to_owned(),
        _ => v.trim().to_owned(),
    }
}

/// The business number a PBX → WhatsApp call uses (trunk `business_number`). `from_user` and
/// `header` values (with or without `+`) that are not business numbers fall back to
/// `default_number`. Returns the `+E.164` form, or `None` when nothing applies.
pub fn choose_business_number(
    choice: &BusinessNumberChoice,
    default_number: Option<&str>,
    request: &Request,
    is_business: impl Fn(&str) -> bool,
) -> Option<String> {
    let candidate = match choice {
        BusinessNumberChoice::Default => None,
        BusinessNumberChoice::FromUser => request
            .headers
            .from()
            .ok()
            .and_then(|f| f.uri.as_sip().and_then(|u| u.user.clone()))
            .map(|u| meta_rules::user_base(&u).to_owned()),
        BusinessNumberChoice::Header(name) => request
            .headers
            .get(&HeaderName::parse(name))
            .map(|v| v.trim().to_owned()),
    };
    let norm = |s: &str| match WaUser::parse(s) {
        Some(WaUser::E164(e)) => Some(e),
        _ => None,
    };
    candidate
        .as_deref()
        .and_then(norm)
        .filter(|n| is_business(n))
        .or_else(|| default_number.and_then(norm).filter(|n| is_business(n)))
}

/// Where a user-initiated INVITE goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRoute {
    /// Index into `Config::whatsapp`.
    pub profile: usize,
    /// Index into that profile's `numbers`.
    pub number: usize,
    pub trunk: String,
    pub business: String,
    /// Request-URI user toward the trunk.
    pub request_user: String,
}

/// Why a user-initiated INVITE cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    #[error("Request-URI has no user part")]
    NoUser,
    #[error("called number is not a business number served here")]
    UnknownNumber,
    #[error("Request-URI user parameters do not match request_uri_user_params")]
    UserParams,
}

impl RouteError {
    pub fn sip_status(&self) -> u16 {
        404
    }
}

/// Routes by the called business number in the Request-URI user part; when the number has
/// `request_uri_user_params`, each configured `k=v` must be present in the user part.
pub fn route_inbound(cfg: &Config, request_uri: &Uri) -> Result<InboundRoute, RouteError> {
    let user = request_uri
        .as_sip()
        .and_then(|u| u.user.as_deref())
        .ok_or(RouteError::NoUser)?;
    let called = match WaUser::parse(meta_rules::user_base(user)) {
        Some(WaUser::E164(e)) => e,
        _ => return Err(RouteError::UnknownNumber),
    };
    let params = meta_rules::user_params(user);
    for (pi, p) in cfg.whatsapp.iter().enumerate() {
        for (ni, n) in p.numbers.iter().enumerate() {
            if n.e164 != called {
                continue;
            }
            let ok = n.request_uri_user_params.iter().all(|(k, v)| {
                params
                    .iter()
                    .any(|(pk, pv)| pk.eq_ignore_ascii_case(k) && pv == v)
            });
            if !ok {
                return Err(RouteError::UserParams);
            }
            return Ok(InboundRoute {
                profile: pi,
                number: ni,
                trunk: n.trunk.clone(),
                business: n.e164.clone(),
                request_user: n.trunk_request_user(),
            });
        }
    }
    Err(RouteError::UnknownNumber)
}

/// SDP media direction (RFC 3264 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpDirection {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl SdpDirection {
    fn token(self) -> &'static str {
        match self {
            SdpDirection::SendRecv => "sendrecv",
            SdpDirection::SendOnly => "sendonly",
            SdpDirection::RecvOnly => "recvonly",
            SdpDirection::Inactive => "inactive",
        }
    }

    /// The direction an answer takes to an offer with this direction.
    pub fn answer(self) -> SdpDirection {
        match self {
            SdpDirection::SendOnly => SdpDirection::RecvOnly,
            SdpDirection::RecvOnly => SdpDirection::SendOnly,
            d => d,
        }
    }
}

fn sdp_lines(sdp: &[u8]) -> Option<Vec<&str>> {
    let s = std::str::from_utf8(sdp).ok()?;
    Some(
        s.split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .filter(|l| !l.is_empty())
            .collect(),
    )
}

/// The offer's direction (media level wins over session level; default sendrecv).
pub fn sdp_direction(sdp: &[u8]) -> SdpDirection {
    let Some(lines) = sdp_lines(sdp) else {
        return SdpDirection::SendRecv;
    };
    let parse = |l: &str| match l {
        "a=sendrecv" => Some(SdpDirection::SendRecv),
        "a=sendonly" => Some(SdpDirection::SendOnly),
        "a=recvonly" => Some(SdpDirection::RecvOnly),
        "a=inactive" => Some(SdpDirection::Inactive),
        _ => None,
    };
    let m = lines.iter().position(|l| l.starts_with("m="));
    let (session, media) = match m {
        Some(i) => lines.split_at(i),
        None => (&lines[..], &[][..]),
    };
    media
        .iter()
        .find_map(|l| parse(l))
        .or_else(|| session.iter().find_map(|l| parse(l)))
        .unwrap_or(SdpDirection::SendRecv)
}

/// True when the offer puts us on hold: sendonly/inactive, or a `c=` of `0.0.0.0`.
pub fn sdp_is_hold(sdp: &[u8]) -> bool {
    matches!(
        sdp_direction(sdp),
        SdpDirection::SendOnly | SdpDirection::Inactive
    ) || sdp_lines(sdp).is_some_and(|ls| ls.iter().any(|l| l.trim_end().ends_with(" 0.0.0.0")))
}

/// `sdp` with its direction attributes replaced by `dir` (appended at the end of the single
/// media section) and the `o=` session version incremented. Non-UTF-8 input is returned as is.
pub fn sdp_with_direction(sdp: &[u8], dir: SdpDirection) -> Bytes {
    let Some(lines) = sdp_lines(sdp) else {
        return Bytes::copy_from_slice(sdp);
    };
    let mut out = String::with_capacity(sdp.len() + 16);
    for l in lines {
        if matches!(l, "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive") {
            continue;
        }
        if let Some(rest) = l.strip_prefix("o=") {
            let mut f: Vec<String> = rest.split(' ').map(str::to_owned).collect();
            if let Some(v) = f.get_mut(2)
                && let Ok(n) = v.parse::<u64>()
            {
                *v = n.wrapping_add(1).to_string();
            }
            out.push_str("o=");
            out.push_str(&f.join(" "));
        } else {
            out.push_str(l);
        }
        out.push_str("\r\n");
    }
    out.push_str("a=");
    out.push_str(dir.token());
    out.push_str("\r\n");
    Bytes::from(out)
}

/// One DTMF digit from an INFO body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfDigit {
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: char,
    pub duration_ms: u32,
}

/// Default tone length when the INFO gives none.
pub const DEFAULT_DTMF_MS: u32 = 250;

fn dtmf_char(s: &str) -> Option<char> {
    let s = s.trim();
    match s {
        "10" => return Some('*'),
        "11" => return Some('#'),
        _ => {}
    }
    let mut it = s.chars();
    let c = it.next()?.to_ascii_uppercase();
    (it.next().is_none() && (c.is_ascii_digit() || "*#ABCD".contains(c))).then_some(c)
}

/// INFO DTMF: `application/dtmf-relay` (`Signal=5` / `Duration=160`) or `application/dtmf`
/// (`5`). `content_type` is the lowercased media type without parameters.
pub fn info_dtmf(content_type: Option<&str>, body: &[u8]) -> Option<DtmfDigit> {
    let text = std::str::from_utf8(body).ok()?;
    match content_type? {
        "application/dtmf-relay" => {
            let mut digit = None;
            let mut duration = DEFAULT_DTMF_MS;
            for line in text.lines() {
                let Some((k, v)) = line.split_once('=') else {
                    continue;
                };
                match k.trim().to_ascii_lowercase().as_str() {
                    "signal" => digit = dtmf_char(v),
                    "duration" => {
                        duration = v
                            .trim()
                            .parse::<u32>()
                            .ok()
                            .filter(|d| (1..=10_000).contains(d))
                            .unwrap_or(DEFAULT_DTMF_MS)
                    }
                    _ => {}
                }
            }
            digit.map(|digit| DtmfDigit {
                digit,
                duration_ms: duration,
            })
        }
        "application/dtmf" => dtmf_char(text).map(|digit| DtmfDigit {
            digit,
            duration_ms: DEFAULT_DTMF_MS,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{Framing, Message};

    fn req(text: &str) -> Request {
        match Message::parse(text.replace('\n', "\r\n").as_bytes(), Framing::Stream) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn meta_invite_shape() {
        let user = WaUser::parse("+15551234567").unwrap();
        let r = meta_invite(&MetaInvite {
            user: &user,
            business: "+15550001111",
            public_host: "sip.example.com",
            public_port: 5061,
            edge_host: "wa.meta.vc",
            call_id: "c1@sip.example.com",
            from_tag: "ft",
            cseq: 1,
            sdp: Bytes::from_static(b"v=0\r\n"),
        })
        .unwrap();
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("INVITE sip:+15551234567@wa.meta.vc;transport=tls SIP/2.0\r\n"));
        assert!(text.contains("\r\nFrom: <sip:+15550001111@sip.example.com>;tag=ft\r\n"));
        assert!(text.contains("\r\nTo: <sip:+15551234567@wa.meta.vc>\r\n"));
        assert!(
            text.contains("\r\nContact: <sip:+15550001111@sip.example.com:5061;transport=tls>\r\n")
        );
        assert!(text.contains("\r\nAllow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n"));
        assert!(!text.contains("sips:"));
        assert!(!text.contains("Session-Expires") && !text.contains("timer"));
        assert!(text.ends_with("\r\n\r\nv=0\r\n"));
    }

    #[test]
    fn credentials_resend_keeps_dialog_identifiers() {
        let mut inv = req(
            "INVITE sip:+15551234567@wa.meta.vc;transport=tls SIP/2.0\nVia: SIP/2.0/TLS h;branch=z9hG4bK1\nFrom: <sip:+15550001111@h>;tag=a\nTo: <sip:+15551234567@wa.meta.vc>\nCall-ID: c\nCSeq: 1 INVITE\nContent-Length: 0\n\n",
        );
        inv.headers
            .push(HeaderName::ProxyAuthorization, "Digest old");
        let again = with_credentials(&inv, 2, HeaderName::ProxyAuthorization, "Digest new".into());
        assert_eq!(again.headers.cseq().unwrap().seq, 2);
        assert_eq!(again.headers.call_id().unwrap(), "c");
        assert_eq!(again.headers.from().unwrap().tag(), Some("a"));
        assert!(!again.headers.contains(&HeaderName::Via));
        let auths: Vec<&str> = again
            .headers
            .get_all(&HeaderName::ProxyAuthorization)
            .collect();
        assert_eq!(auths, ["Digest new"]);
        assert_eq!(again.uri, inv.uri);
    }

    #[test]
    fn meta_failure_table() {
        let cases = [
            (400, 502),
            (401, 403),
            (403, 403),
            (404, 404),
            (407, 403),
            (408, 408),
            (480, 480),
            (486, 486),
            (487, 487),
            (488, 488),
            (415, 415),
            (500, 502),
            (502, 502),
            (503, 503),
            (504, 502),
            (600, 603),
            (603, 603),
            (606, 488),
        ];
        for (meta, pbx) in cases {
            assert_eq!(
                meta_failure_to_pbx(meta, "x", None).status,
                pbx,
                "Meta {meta}"
            );
        }
        let m = meta_failure_to_pbx(
            403,
            "Forbidden",
            Some("399 wa.meta.vc \"SIP server x from INVITE does not match\""),
        );
        assert_eq!(m.reason, "SIP;cause=403;text=\"Forbidden\"");
        assert_eq!(
            m.warning.as_deref(),
            Some("SIP server x from INVITE does not match")
        );
        assert_eq!(m.meta_code, None);
        let m = meta_failure_to_pbx(
            403,
            "Forbidden",
            Some("399 wa.meta.vc \"138006 no permission\""),
        );
        assert_eq!(m.meta_code, Some(138006));
        let m = no_permission_failure();
        assert_eq!((m.status, m.meta_code), (403, Some(138006)));
        assert!(m.warning.unwrap().starts_with("138006 "));
    }

    #[test]
    fn pbx_failure_table() {
        for (pbx, meta) in [
            (486, 486),
            (600, 486),
            (603, 486),
            (487, 487),
            (404, 480),
            (408, 480),
            (480, 480),
            (500, 480),
            (503, 480),
        ] {
            assert_eq!(pbx_failure_to_meta(pbx), meta, "PBX {pbx}");
        }
    }

    #[test]
    fn reason_and_warning_are_quoted_safely() {
        assert_eq!(
            sip_reason(503, "Service \"Unavailable\"\r\n"),
            "SIP;cause=503;text=\"Service Unavailable\""
        );
        assert_eq!(warning_header("gw", "a\"b"), "399 gw \"ab\"");
        assert_eq!(warning_text("399 h \"hello there\""), "hello there");
        assert_eq!(warning_text("plain"), "plain");
    }

    #[test]
    fn business_number_choice() {
        let r = req(
            "INVITE sip:+15551234567@gw SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:15550002222@pbx>;tag=a\nTo: <sip:+15551234567@gw>\nCall-ID: c\nCSeq: 1 INVITE\nX-WA-Business: +15550003333\nContent-Length: 0\n\n",
        );
        let known = |n: &str| ["+15550001111", "+15550002222", "+15550003333"].contains(&n);
        let d = Some("+15550001111");
        assert_eq!(
            choose_business_number(&BusinessNumberChoice::Default, d, &r, known).as_deref(),
            Some("+15550001111")
        );
        assert_eq!(
            choose_business_number(&BusinessNumberChoice::FromUser, d, &r, known).as_deref(),
            Some("+15550002222")
        );
        assert_eq!(
            choose_business_number(
                &BusinessNumberChoice::Header("x-wa-business".into()),
                d,
                &r,
                known
            )
            .as_deref(),
            Some("+15550003333")
        );
        // not a business number → default
        let only_default = |n: &str| n == "+15550001111";
        assert_eq!(
            choose_business_number(&BusinessNumberChoice::FromUser, d, &r, only_default).as_deref(),
            Some("+15550001111")
        );
        assert_eq!(
            choose_business_number(&BusinessNumberChoice::FromUser, None, &r, only_default),
            None
        );
    }

    #[test]
    fn pbx_invite_carries_wa_headers_and_timer() {
        let r = pbx_invite(&PbxInvite {
            request_user: "100",
            peer_host: "127.0.0.1",
            peer_port: 5060,
            transport: Transport::Udp,
            local_host: "127.0.0.1",
            local_port: 5080,
            caller: "US.13491208655302741918",
            display_name: Some("\"15551234567\""),
            call_id: "c2",
            from_tag: "t2",
            cseq: 1,
            session_timer: Some((1800, 90)),
            extra: vec![(HeaderName::parse("X-WA-Call-Id"), "wacid.X".into())],
            sdp: Bytes::from_static(b"v=0\r\n"),
        })
        .unwrap();
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("INVITE sip:100@127.0.0.1:5060 SIP/2.0\r\n"));
        assert!(text.contains(
            "\r\nFrom: \"15551234567\" <sip:US.13491208655302741918@127.0.0.1>;tag=t2\r\n"
        ));
        assert!(text.contains("\r\nSession-Expires: 1800;refresher=uac\r\n"));
        assert!(text.contains("\r\nMin-SE: 90\r\n"));
        assert!(text.contains("\r\nX-WA-Call-Id: wacid.X\r\n"));
        assert!(text.contains("\r\nContact: <sip:whatsip@127.0.0.1:5080>\r\n"));
    }

    #[test]
    fn response_echoes_record_route_lines() {
        let r = req(
            "INVITE sip:+15550001111@gw;transport=tls SIP/2.0\nVia: SIP/2.0/TLS 157.240.1.1:5061;branch=z9hG4bKa;alias;rport\nRecord-Route: <sip:wa.meta.vc;transport=tls;lr>\nRecord-Route:   <sip:onevc-sip-proxy.fbinfra.net:8191;transport=tls;lr;X-Odd=Y>\nFrom: \"1555\" <sip:+15551234567@wa.meta.vc>;tag=m\nTo: <sip:+15550001111@gw>\nCall-ID: outgoing:wacid.HBgL\nCSeq: 1 INVITE\nContent-Length: 0\n\n",
        );
        let resp = make_response(&r, 200, "", Some("ours"));
        let rr_in: Vec<&str> = r.headers.get_all(&HeaderName::RecordRoute).collect();
        let rr_out: Vec<&str> = resp.headers.get_all(&HeaderName::RecordRoute).collect();
        assert_eq!(rr_in, rr_out);
        assert_eq!(resp.headers.to().unwrap().tag(), Some("ours"));
        let failure = make_response(&r, 480, "", Some("ours"));
        assert!(!failure.headers.contains(&HeaderName::RecordRoute));
    }

    #[test]
    fn sdp_direction_answer() {
        let ours = b"v=0\r\no=- 1 7 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 3000 RTP/AVP 0\r\na=sendrecv\r\n";
        let offer = b"v=0\r\no=x 1 2 IN IP4 5.6.7.8\r\ns=-\r\nc=IN IP4 5.6.7.8\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n";
        assert_eq!(sdp_direction(offer), SdpDirection::SendOnly);
        assert!(sdp_is_hold(offer));
        let ans = sdp_with_direction(ours, sdp_direction(offer).answer());
        let s = std::str::from_utf8(&ans).unwrap();
        assert!(s.contains("o=- 1 8 IN IP4 1.2.3.4\r\n"));
        assert!(s.ends_with("a=recvonly\r\n"));
        assert!(!s.contains("a=sendrecv"));
        assert_eq!(sdp_direction(&ans), SdpDirection::RecvOnly);
        let session_level = b"v=0\r\na=inactive\r\nm=audio 1 RTP/AVP 0\r\n";
        assert_eq!(sdp_direction(session_level), SdpDirection::Inactive);
        assert_eq!(sdp_direction(b"\xff\xfe"), SdpDirection::SendRecv);
        let c0 = b"v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 1 RTP/AVP 0\r\n";
        assert!(sdp_is_hold(c0));
        assert!(!sdp_is_hold(ours));
    }

    #[test]
    fn info_dtmf_bodies() {
        assert_eq!(
            info_dtmf(
                Some("application/dtmf-relay"),
                b"Signal=5\r\nDuration=160\r\n"
            ),
            Some(DtmfDigit {
                digit: '5',
                duration_ms: 160
            })
        );
        assert_eq!(
            info_dtmf(Some("application/dtmf-relay"), b"Signal= #\r\n"),
            Some(DtmfDigit {
                digit: '#',
                duration_ms: DEFAULT_DTMF_MS
            })
        );
        assert_eq!(
            info_dtmf(
                Some("application/dtmf-relay"),
                b"Signal=10\r\nDuration=99999"
            ),
            Some(DtmfDigit {
                digit: '*',
                duration_ms: DEFAULT_DTMF_MS
            })
        );
        assert_eq!(
            info_dtmf(Some("application/dtmf"), b"9"),
            Some(DtmfDigit {
                digit: '9',
                duration_ms: DEFAULT_DTMF_MS
            })
        );
        assert_eq!(info_dtmf(Some("application/dtmf"), b"x"), None);
        assert_eq!(info_dtmf(Some("text/plain"), b"5"), None);
        assert_eq!(info_dtmf(None, b"5"), None);
        assert_eq!(info_dtmf(Some("application/dtmf-relay"), b"\xff"), None);
    }
}
