//! Transaction matching keys (RFC 3261 §17.1.3 and §17.2.3, with the RFC 2543 fallback).
//!
//! Guarantees: a response matches a client transaction iff its top Via branch and its CSeq
//! method equal the request's. A request matches a server transaction iff (RFC 3261 branch,
//! `z9hG4bK…`) branch, sent-by and method are equal, ACK counting as INVITE; for a branch
//! without the magic cookie (RFC 2543 peers) the Request-URI, From tag, Call-ID, CSeq number,
//! top Via and method are compared instead (the To tag too, except for INVITE/ACK where the
//! ACK carries the tag our response added). `ServerKey::cancelled_invite` gives the key of the
//! INVITE a CANCEL targets (§9.2).
use crate::sip::header::{HeaderName, Via};
use crate::sip::message::{ParseError, Request, Response};
use crate::sip::method::Method;
use crate::sip::uri::Host;

/// Key of a client transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub branch: String,
    pub method: Method,
}

impl ClientKey {
    /// Key of a request we send (its top Via must hold our branch).
    pub fn from_request(req: &Request) -> Result<ClientKey, ParseError> {
        let via = req.headers.top_via()?;
        let branch = via.branch().ok_or(ParseError::HeaderValue {
            header: "Via".into(),
            reason: "no branch".into(),
        })?;
        Ok(ClientKey {
            branch: branch.to_string(),
            method: normalize(&req.method),
        })
    }

    /// Key a received response matches (§17.1.3: top Via branch and CSeq method).
    pub fn from_response(resp: &Response) -> Result<ClientKey, ParseError> {
        let via = resp.headers.top_via()?;
        let branch = via.branch().ok_or(ParseError::HeaderValue {
            header: "Via".into(),
            reason: "no branch".into(),
        })?;
        Ok(ClientKey {
            branch: branch.to_string(),
            method: resp.headers.cseq()?.method,
        })
    }
}

/// Key of a server transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerKey {
    Rfc3261 {
        branch: String,
        /// `host:port` of the top Via's sent-by, host lowercased, default port filled in.
        sent_by: String,
        method: Method,
    },
    Rfc2543 {
        request_uri: String,
        from_tag: Option<String>,
        to_tag: Option<String>,
        call_id: String,
        cseq: u32,
        top_via: String,
        method: Method,
    },
}

impl ServerKey {
    pub fn from_request(req: &Request) -> Result<ServerKey, ParseError> {
        let via = req.headers.top_via()?;
        let method = normalize(&req.method);
        if via.is_rfc3261_branch()
            && let Some(branch) = via.branch()
        {
            return Ok(ServerKey::Rfc3261 {
                branch: branch.to_string(),
                sent_by: sent_by(&via),
                method,
            });
        }
        let from_tag = req.headers.from()?.tag().map(str::to_string);
        let to_tag = if method == Method::Invite {
            None
        } else {
            req.headers.to()?.tag().map(str::to_string)
        };
        Ok(ServerKey::Rfc2543 {
            request_uri: req.uri.to_string(),
            from_tag,
            to_tag,
            call_id: req.headers.call_id()?.to_string(),
            cseq: req.headers.cseq()?.seq,
            top_via: via.to_string(),
            method,
        })
    }

    /// Key of the INVITE server transaction a CANCEL with this key cancels (§9.2).
    pub fn cancelled_invite(&self) -> ServerKey {
        let mut k = self.clone();
        match &mut k {
            ServerKey::Rfc3261 { method, .. } => *method = Method::Invite,
            ServerKey::Rfc2543 { method, to_tag, .. } => {
                *method = Method::Invite;
                *to_tag = None;
            }
        }
        k
    }

    pub fn method(&self) -> &Method {
        match self {
            ServerKey::Rfc3261 { method, .. } | ServerKey::Rfc2543 { method, .. } => method,
        }
    }
}

/// ACK belongs to the INVITE transaction.
fn normalize(m: &Method) -> Method {
    match m {
        Method::Ack => Method::Invite,
        other => other.clone(),
    }
}

/// `host:port` with the transport's default port.
pub fn sent_by(via: &Via) -> String {
    let host = match &via.host {
        Host::Domain(d) => d.to_ascii_lowercase(),
        h => h.to_string(),
    };
    let port = via.port.unwrap_or(default_port(&via.transport));
    format!("{host}:{port}")
}

/// 5061 for TLS (and WSS), 5060 otherwise.
pub fn default_port(transport: &str) -> u16 {
    if transport.eq_ignore_ascii_case("TLS") || transport.eq_ignore_ascii_case("WSS") {
        5061
    } else {
        5060
    }
}

/// First comma-separated element of a header line (commas inside quotes or `<…>` do not count),
/// trimmed. Used to copy only the top Via of a line that may hold several.
pub fn first_element(line: &str) -> &str {
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if in_quotes {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '<' => in_angle = true,
            '>' => in_angle = false,
            ',' if !in_angle => return line[..i].trim(),
            _ => {}
        }
    }
    line.trim()
}

/// True if `name` is a header whose presence is mandatory in every request (§8.1.1).
pub fn is_mandatory(name: &HeaderName) -> bool {
    matches!(
        name,
        HeaderName::Via
            | HeaderName::From
            | HeaderName::To
            | HeaderName::CallId
            | HeaderName::CSeq
            | HeaderName::MaxForwards
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_element_splits_outside_quotes() {
        assert_eq!(
            first_element("SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/UDP b"),
            "SIP/2.0/UDP a;branch=z9hG4bK1"
        );
        assert_eq!(first_element(r#"x;p="a,b", y"#), r#"x;p="a,b""#);
        assert_eq!(first_element(" only "), "only");
    }
}
