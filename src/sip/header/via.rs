//! `Via` values (RFC 3261 §20.42, RFC 3581 rport, RFC 5923 alias).
use crate::sip::header::params::Params;
use crate::sip::uri::Host;
use std::fmt;

/// One via-parm. A header line may carry several (`Via: a, b`); `Headers::vias` splits them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Protocol name and version, normally `SIP/2.0`.
    pub protocol: String,
    /// Transport token as written (`UDP`, `TCP`, `TLS`, `WS`…); compare case-insensitively.
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// RFC 3261 magic-cookie branch (`z9hG4bK…`)?
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with("z9hG4bK"))
    }

    pub fn received(&self) -> Option<&str> {
        self.params.value("received")
    }

    /// `None`: no rport; `Some(None)`: bare `;rport` (request for it); `Some(Some(p))`: filled.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    pub fn has_alias(&self) -> bool {
        self.params.contains("alias")
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} {}", self.protocol, self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)
    }
}
