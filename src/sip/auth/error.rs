//! Digest authentication errors. Every variant carries its SIP meaning via
//! [`AuthError::sip_status`]; none of them ever holds a password or HA1.

use std::time::Duration;

/// What went wrong while parsing, answering or verifying a digest exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The header value is not well-formed (RFC 3261 §25.1 / RFC 7235 §2.1 syntax).
    #[error("malformed authentication header at byte {at}: {reason}")]
    Syntax {
        /// Byte offset into the header value.
        at: usize,
        /// What the parser expected.
        reason: &'static str,
    },
    /// The same parameter appeared twice (names compared case-insensitively).
    #[error("duplicate digest parameter {0:?}")]
    DuplicateParam(String),
    /// A parameter required for this message is absent.
    #[error("missing digest parameter {0:?}")]
    MissingParam(&'static str),
    /// A parameter is present but its value is invalid.
    #[error("invalid digest parameter {name:?}: {reason}")]
    InvalidParam {
        /// Parameter name (lower case).
        name: &'static str,
        /// Why the value was refused.
        reason: &'static str,
    },
    /// The value is not a `Digest` challenge/credential (another scheme).
    #[error("authentication scheme is not Digest")]
    NotDigest,
    /// The algorithm token is not one we can compute.
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The challenge only offers qop values we cannot honour (e.g. only `auth-int`).
    #[error("unsupported qop {0:?}")]
    UnsupportedQop(String),
    /// None of the challenges received can be answered.
    #[error("no usable digest challenge")]
    NoUsableChallenge,
    /// Client side: the peer challenged again after we answered, without `stale=true`:
    /// our username/password were rejected. Retrying would only lock the account.
    #[error("credentials rejected by realm {realm:?}")]
    CredentialsRejected {
        /// Realm that rejected the credentials.
        realm: String,
    },
    /// Server side: the `uri` parameter does not match the Request-URI.
    #[error("digest uri does not match the Request-URI")]
    UriMismatch,
    /// Server side: this source failed too often and is refused until the cool-down ends.
    #[error("source locked out for {retry_after:?} after repeated authentication failures")]
    LockedOut {
        /// Time left until the source may try again.
        retry_after: Duration,
    },
    /// Server side: the request must be (re-)challenged. `proxy` selects 407 over 401.
    #[error("authentication required")]
    Unauthorized {
        /// `true` for proxy authentication (407), `false` for 401.
        proxy: bool,
    },
}

impl AuthError {
    /// The SIP status a UAS should answer with when this error ends the request.
    ///
    /// Malformed input is 400; a challenge is 401/407; everything that means "we cannot or
    /// will not authenticate" (unsupported upstream challenge, rejected credentials,
    /// lockout) is 403, so a B2BUA never relays an upstream 401/407 to its own caller.
    pub fn sip_status(&self) -> u16 {
        match self {
            AuthError::Syntax { .. }
            | AuthError::DuplicateParam(_)
            | AuthError::MissingParam(_)
            | AuthError::InvalidParam { .. }
            | AuthError::UriMismatch => 400,
            AuthError::Unauthorized { proxy: false } => 401,
            AuthError::Unauthorized { proxy: true } => 407,
            AuthError::NotDigest
            | AuthError::UnsupportedAlgorithm(_)
            | AuthError::UnsupportedQop(_)
            | AuthError::NoUsableChallenge
            | AuthError::CredentialsRejected { .. }
            | AuthError::LockedOut { .. } => 403,
        }
    }

    /// Reason phrase for [`Self::sip_status`].
    pub fn reason_phrase(&self) -> &'static str {
        match self.sip_status() {
            400 => "Bad Request",
            401 => "Unauthorized",
            407 => "Proxy Authentication Required",
            _ => "Forbidden",
        }
    }

    /// `Retry-After` seconds to send with a lockout 403, rounded up.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            AuthError::LockedOut { retry_after } => {
                let s = retry_after.as_secs();
                Some(if retry_after.subsec_nanos() > 0 {
                    s + 1
                } else {
                    s
                })
            }
            _ => None,
        }
    }
}
