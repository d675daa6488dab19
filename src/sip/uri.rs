//! SIP URIs (RFC 3261 §19.1, §25.1; IPv6 references per RFC 5118).
//!
//! Guarantees: `Uri::parse` never panics; `Display` produces a string that parses back to an
//! equal value. User and parameter text is kept as it appeared on the wire (escaped form), so a
//! proxy can echo it unchanged; `SipUri::user_unescaped` gives the decoded user.
use crate::sip::header::params::Params;
use crate::sip::message::ParseError;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A URI as found in a Request-URI or a name-addr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// Any other absolute URI (`tel:`, `mailto:`, `urn:`…): scheme and the rest, verbatim.
    Other { scheme: String, rest: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A host name, as written (compare case-insensitively).
    Domain(String),
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
}

/// `sip:` / `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub scheme: Scheme,
    /// User part in wire (escaped) form, including any `;user-params` such as
    /// `+15551234567;tgrp=wacall`.
    pub user: Option<String>,
    /// Password in wire form (deprecated by RFC 3261 but legal).
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    /// `;name[=value]` URI parameters, order kept.
    pub params: Params,
    /// `?name=value&…` headers, verbatim pairs.
    pub headers: Vec<(String, String)>,
}

impl Uri {
    /// Parses an absolute URI strictly.
    pub fn parse(s: &str) -> Result<Uri, ParseError> {
        crate::sip::header::parse::uri(s)
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other { .. } => None,
        }
    }

    pub fn as_sip_mut(&mut self) -> Option<&mut SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            Uri::Other { .. } => None,
        }
    }

    pub fn scheme_str(&self) -> &str {
        match self {
            Uri::Sip(u) => match u.scheme {
                Scheme::Sip => "sip",
                Scheme::Sips => "sips",
            },
            Uri::Other { scheme, .. } => scheme,
        }
    }
}

impl SipUri {
    /// `sip:host` with no user, port or parameters.
    pub fn new(scheme: Scheme, host: Host) -> SipUri {
        SipUri {
            scheme,
            user: None,
            password: None,
            host,
            port: None,
            params: Params::new(),
            headers: Vec::new(),
        }
    }

    /// The user part with `%XX` escapes decoded (invalid UTF-8 replaced), e.g. `%75se%72` →
    /// `user`.
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.as_deref().map(|u| {
            String::from_utf8_lossy(&crate::sip::header::parse::percent_decode(u)).into_owned()
        })
    }

    /// `;transport=` value, if any.
    pub fn transport(&self) -> Option<&str> {
        self.params.value("transport")
    }

    /// Loose-routing URI (`;lr`)?
    pub fn is_lr(&self) -> bool {
        self.params.contains("lr")
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.scheme {
            Scheme::Sip => "sip:",
            Scheme::Sips => "sips:",
        })?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(pw) = &self.password {
                write!(f, ":{pw}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        for (i, (k, v)) in self.headers.iter().enumerate() {
            f.write_str(if i == 0 { "?" } else { "&" })?;
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}
