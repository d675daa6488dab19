//! Graph's error envelope (`{"error":{"message","type","code","error_subcode",…}}`) and the
//! typed errors of the Graph client. Every error knows the SIP answer the B2BUA gives for it.
use crate::whatsapp::errors::{MetaCode, SipAnswer};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `{"error": {...}}` as Graph sends it (and as the sandbox twin produces it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ErrorBody {
    pub message: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub code: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_subcode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_user_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_user_msg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_data: Option<ErrorData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbtrace_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ErrorData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// An error Graph answered with.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub http_status: u16,
    pub code: MetaCode,
    pub subcode: Option<u32>,
    pub message: String,
    /// `error_data.details`, else `error_user_msg`.
    pub details: Option<String>,
    pub fbtrace_id: Option<String>,
}

impl ApiError {
    pub fn from_envelope(http_status: u16, env: ErrorEnvelope) -> Self {
        let b = env.error;
        let details = b
            .error_data
            .and_then(|d| d.details)
            .or(b.error_user_msg)
            .filter(|d| !d.is_empty());
        ApiError {
            http_status,
            code: MetaCode::from_code(b.code),
            subcode: b.error_subcode,
            message: b.message,
            details,
            fbtrace_id: b.fbtrace_id,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Meta {} (HTTP {}): ", self.code.code(), self.http_status)?;
        match &self.details {
            Some(d) if d.starts_with(&self.message) => f.write_str(d)?,
            Some(d) => write!(f, "{}: {d}", self.message)?,
            None => f.write_str(&self.message)?,
        }
        write!(f, " — {}", self.code.meaning())
    }
}

/// Errors of the Graph client.
#[non_exhaustive]
#[derive(Debug, Clone, thiserror::Error)]
pub enum GraphError {
    #[error("{0}")]
    Api(ApiError),
    #[error("Graph request failed: {0}")]
    Transport(String),
    #[error("Graph request timed out after {0:?}")]
    Timeout(Duration),
    #[error("unexpected Graph response (HTTP {status}): {detail}")]
    Decode { status: u16, detail: String },
    #[error("Graph token: {0}")]
    Token(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted {
        attempts: u32,
        last: Box<GraphError>,
    },
    /// Refused locally before asking Meta (a limit whatsip enforces itself).
    #[error("refused locally: {code} — {detail}")]
    Refused { code: MetaCode, detail: String },
}

impl GraphError {
    /// Meta's code, when Meta (or a local limit standing in for it) gave one.
    pub fn meta_code(&self) -> Option<MetaCode> {
        match self {
            GraphError::Api(a) => Some(a.code),
            GraphError::Refused { code, .. } => Some(*code),
            GraphError::Exhausted { last, .. } => last.meta_code(),
            _ => None,
        }
    }

    /// Worth retrying: HTTP 5xx, HTTP 429, rate-limit codes (613, 138005, …).
    pub fn is_retryable(&self) -> bool {
        match self {
            GraphError::Api(a) => {
                a.http_status >= 500 || a.http_status == 429 || a.code.is_rate_limit()
            }
            GraphError::Decode { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// The SIP answer the B2BUA gives when this error stops a call.
    pub fn sip_answer(&self) -> SipAnswer {
        match self {
            GraphError::Api(a) if a.http_status >= 500 && matches!(a.code, MetaCode::Other(_)) => {
                unavailable("Graph API unavailable")
            }
            GraphError::Api(a) => a.code.sip_answer(),
            GraphError::Refused { code, .. } => code.sip_answer(),
            GraphError::Exhausted { last, .. } => last.sip_answer(),
            GraphError::Transport(_) | GraphError::Timeout(_) => {
                unavailable("Graph API unreachable")
            }
            GraphError::Decode { .. } | GraphError::Token(_) | GraphError::Invalid(_) => {
                SipAnswer {
                    status: 500,
                    reason: "Server Internal Error",
                    warning: "399 whatsip \"Graph API request failed\"".into(),
                    retry_after: None,
                }
            }
        }
    }
}

fn unavailable(text: &str) -> SipAnswer {
    SipAnswer {
        status: 503,
        reason: "Service Unavailable",
        warning: format!("399 whatsip \"{text}\""),
        retry_after: Some(5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_graph_envelope() {
        let j = r#"{"error":{"message":"(#138006) No approved call permission","type":"OAuthException","code":138006,"error_data":{"messaging_product":"whatsapp","details":"No approved call permission from the recipient"},"fbtrace_id":"Az"}}"#;
        let env: ErrorEnvelope = serde_json::from_str(j).unwrap();
        let e = GraphError::Api(ApiError::from_envelope(400, env));
        assert_eq!(e.meta_code(), Some(MetaCode::NoCallPermission));
        assert!(!e.is_retryable());
        assert_eq!(e.sip_answer().status, 403);
        assert!(
            e.to_string()
                .contains("No approved call permission from the recipient")
        );
    }

    #[test]
    fn rate_limits_and_5xx_are_retryable() {
        let mk = |status, code| {
            GraphError::Api(ApiError {
                http_status: status,
                code: MetaCode::from_code(code),
                subcode: None,
                message: String::new(),
                details: None,
                fbtrace_id: None,
            })
        };
        assert!(mk(429, 613).is_retryable());
        assert!(mk(400, 138005).is_retryable());
        assert!(mk(500, 1).is_retryable());
        assert!(mk(503, 2).is_retryable());
        assert!(!mk(400, 100).is_retryable());
        assert_eq!(mk(502, 1).sip_answer().status, 503);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn envelope_parse_never_panics(s in "\\PC{0,200}", code in any::<u32>(), status in 100u16..600) {
            if let Ok(env) = serde_json::from_str::<ErrorEnvelope>(&s) {
                let _ = GraphError::Api(ApiError::from_envelope(status, env)).sip_answer();
            }
            let env = ErrorEnvelope { error: ErrorBody { message: s, code, ..Default::default() } };
            let a = GraphError::Api(ApiError::from_envelope(status, env)).sip_answer();
            prop_assert!((400..600).contains(&a.status));
        }
    }
}
