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

    /// A Via for a request we send: `SIP/2.0/<transport> host[:port];branch=<branch>`.
    pub fn new(transport: &str, host: Host, port: Option<u16>, branch: &str) -> Via {
        let mut params = Params::new();
        params.set("branch", Some(branch));
        Via {
            protocol: "SIP/2.0".into(),
            transport: transport.to_string(),
            host,
            port,
            params,
        }
    }

    /// RFC 3261 magic-cookie branch (`z9hG4bK` followed by at least one character: a bare
    /// cookie, as in RFC 4475 `badbranch`, cannot identify a transaction and is treated as an
    /// RFC 2543 branch).
    pub fn is_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.len() > 7 && b.starts_with("z9hG4bK"))
    }

    /// Sets `;received=` (RFC 3261 §18.2.1); IPv6 addresses are written as a reference.
    pub fn set_received(&mut self, addr: std::net::IpAddr) {
        let v = match addr {
            std::net::IpAddr::V4(a) => a.to_string(),
            std::net::IpAddr::V6(a) => format!("[{a}]"),
        };
        self.params.set("received", Some(&v));
    }

    /// Fills `;rport=` (RFC 3581) with the source port.
    pub fn set_rport(&mut self, port: u16) {
        self.params.set("rport", Some(&port.to_string()));
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
