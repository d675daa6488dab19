//! Sans-IO SIP transactions (RFC 3261 §17, as amended by RFC 6026).
//!
//! Guarantees: each state machine is a plain struct driven by `handle_*(now, …)` and
//! `handle_timeout(now)` and drained by `poll_transmit()` / `poll_event()` / `poll_timeout()`;
//! nothing here reads the clock or touches a socket. Retransmission and timeout instants are
//! exact functions of the `now` passed in and `TimerConfig`. The state machines do not parse
//! header values: the messages they build (ACK for a non-2xx, 100 Trying) copy header lines
//! verbatim from the request and response, as §17.1.1.3 and §8.2.6 require.
//!
//! The transaction layer that owns the transactions, matches messages to them and validates new
//! requests is `sip::endpoint`.
pub mod client_invite;
pub mod client_non_invite;
pub mod key;
pub mod server_invite;
pub mod server_non_invite;
pub mod timer;

pub use client_invite::{ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use key::{ClientKey, ServerKey};
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};
pub use timer::{Timer, TimerConfig, TimerSet};

use crate::sip::header::HeaderName;
use crate::sip::message::{Headers, Request, Response};
use bytes::Bytes;

/// What a client transaction reports to its TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A response to pass up: every provisional, the first final, and (INVITE, Accepted state,
    /// RFC 6026) every 2xx retransmission so the TU can re-send its ACK.
    Response(Response),
    /// Timer B or F fired: the TU treats it as a 408 (RFC 3261 §8.1.3.1).
    Timeout,
    /// The transport failed to send the request.
    TransportError,
}

/// What a server transaction reports to its TU (new requests are reported by the endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// INVITE server in Accepted: an ACK (for the 2xx) reached this transaction (RFC 6026 §8.7).
    Ack(Box<Request>),
    /// Timer H fired: no ACK for the final non-2xx response.
    Timeout,
    /// The transport failed to send a response.
    TransportError,
}

/// Builds a response to `req` (RFC 3261 §8.2.6.2): Via lines, From, To, Call-ID, CSeq copied
/// verbatim (Record-Route too for 101–299, §12.1.1). No To tag is added: the caller adds one.
pub fn response_to(req: &Request, status: u16, reason: &str) -> Response {
    let mut headers = Headers::new();
    for h in &req.headers.0 {
        let copy = match h.name {
            HeaderName::Via
            | HeaderName::From
            | HeaderName::To
            | HeaderName::CallId
            | HeaderName::CSeq => true,
            HeaderName::RecordRoute => (101..300).contains(&status),
            HeaderName::Other(ref n) => n.eq_ignore_ascii_case("Timestamp") && status == 100,
            _ => false,
        };
        if copy {
            headers.0.push(h.clone());
        }
    }
    Response {
        status,
        reason: if reason.is_empty() {
            default_reason(status).to_string()
        } else {
            reason.to_string()
        },
        headers,
        body: Bytes::new(),
    }
}

/// The RFC 3261 §21 reason phrase for `status`.
pub fn default_reason(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => match status / 100 {
            1 => "Session Progress",
            2 => "OK",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

/// Sequence number of a CSeq value written as `<number> <method>` (no full parse: the
/// transaction only ever reads CSeq values it built or that the endpoint already validated).
pub(crate) fn cseq_number(value: &str) -> &str {
    value.split_whitespace().next().unwrap_or("0")
}
