//! Small value types used by profiles: `host:port`, RTP port ranges, address allow-lists
//! (with Meta's published prefixes) and secret sources. Every parser returns the exact
//! problem text shown to the user; none panics on any input.
use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

/// Meta's (AS32934) IPv4 prefixes, as published for WhatsApp webhooks and SIP signalling
/// (the FreeSWITCH ACL in Meta's integration examples). Written `"meta"` in
/// `allowed_sources`.
pub const META_IPV4_PREFIXES: [&str; 23] = [
    "31.13.24.0/21",
    "31.13.64.0/18",
    "45.64.40.0/22",
    "57.141.0.0/21",
    "57.141.8.0/22",
    "57.141.12.0/23",
    "57.144.0.0/14",
    "66.220.144.0/20",
    "69.63.176.0/20",
    "69.171.224.0/19",
    "74.119.76.0/22",
    "102.132.96.0/20",
    "103.4.96.0/22",
    "129.134.0.0/16",
    "147.75.208.0/20",
    "157.240.0.0/16",
    "163.70.128.0/17",
    "163.77.128.0/17",
    "173.252.64.0/18",
    "179.60.192.0/22",
    "185.60.216.0/22",
    "185.89.216.0/22",
    "204.15.20.0/22",
];

/// The keyword in `allowed_sources` that stands for [`META_IPV4_PREFIXES`].
pub const META_SOURCES_KEYWORD: &str = "meta";

/// [`META_IPV4_PREFIXES`] as networks.
pub fn meta_ipv4_prefixes() -> Vec<IpNet> {
    META_IPV4_PREFIXES
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Parse one `allowed_sources` entry: an IP address (a host route) or a CIDR.
pub fn parse_source(s: &str) -> Result<IpNet, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    match s.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Ok(net),
        Ok(net) => Err(format!(
            "{s:?} has host bits set (did you mean \"{}\"?)",
            net.trunc()
        )),
        Err(_) => Err(format!("{s:?} is not an IP address or CIDR")),
    }
}

/// An address allow-list: who may send us requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceList(pub Vec<IpNet>);

impl SourceList {
    /// True when `ip` falls into one of the networks (IPv4-mapped IPv6 addresses are
    /// compared as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// A `host:port` where host is an IP address or a DNS name (not resolved here).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// IP literal (without brackets) or DNS name.
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// The socket address when the host is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for HostPort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a socket address");
        if let Ok(sa) = s.parse::<SocketAddr>() {
            if sa.port() == 0 {
                return Err(bad());
            }
            return Ok(HostPort {
                host: sa.ip().to_string(),
                port: sa.port(),
            });
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        if port == 0 || !is_dns_name(host) {
            return Err(bad());
        }
        Ok(HostPort {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// A DNS host name (letters, digits, hyphens, dots; labels 1..=63, total ≤ 253), not an
/// all-numeric dotted string (that would be a malformed IP).
pub fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels_ok = s.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    labels_ok && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Parse a socket address (`IP:port`, IPv6 in brackets), port ≠ 0.
pub fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    match s.parse::<SocketAddr>() {
        Ok(sa) if sa.port() != 0 => Ok(sa),
        _ => Err(format!("{s:?} is not a socket address")),
    }
}

/// An inclusive UDP port range for RTP (RTP on the even port, RTCP on the next odd one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    /// Inclusive.
    pub end: u16,
}

impl PortRange {
    /// Validate `[start, end]`: both in 1024..=65535, start even, start < end.
    pub fn new(start: i64, end: i64) -> Result<PortRange, String> {
        let p = |v: i64| u16::try_from(v).ok().filter(|v| *v >= 1024);
        let (Some(s), Some(e)) = (p(start), p(end)) else {
            return Err(format!(
                "[{start}, {end}] is not a port range (ports must be 1024..=65535)"
            ));
        };
        if s >= e {
            return Err(format!(
                "[{start}, {end}] is not a port range (start must be below end)"
            ));
        }
        if s % 2 != 0 {
            return Err(format!(
                "[{start}, {end}]: RTP ranges start on an even port (RTP even, RTCP odd)"
            ));
        }
        Ok(PortRange { start: s, end: e })
    }

    /// True when the two ranges share a port.
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}]", self.start, self.end)
    }
}

/// Where a secret (token, password) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretSource {
    /// `{ env = "VAR" }`
    Env(String),
    /// `{ file = "path" }` (surrounding whitespace trimmed when read)
    File(PathBuf),
    /// `{ literal = "..." }` (accepted with a warning outside sandbox mode)
    Literal(String),
}

/// Why a secret could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    EnvUnset(String),
    #[error("environment variable {0} is empty")]
    EnvEmpty(String),
    #[error("cannot read {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is empty")]
    FileEmpty(PathBuf),
    #[error("literal secret is empty")]
    LiteralEmpty,
}

impl SecretSource {
    /// Read the secret now. File paths are relative to the working directory.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        match self {
            SecretSource::Env(var) => match std::env::var(var) {
                Ok(v) if v.trim().is_empty() => Err(SecretError::EnvEmpty(var.clone())),
                Ok(v) => Ok(Secret(v.trim().to_owned())),
                Err(_) => Err(SecretError::EnvUnset(var.clone())),
            },
            SecretSource::File(path) => match std::fs::read_to_string(path) {
                Ok(v) if v.trim().is_empty() => Err(SecretError::FileEmpty(path.clone())),
                Ok(v) => Ok(Secret(v.trim().to_owned())),
                Err(source) => Err(SecretError::File {
                    path: path.clone(),
                    source,
                }),
            },
            SecretSource::Literal(v) if v.is_empty() => Err(SecretError::LiteralEmpty),
            SecretSource::Literal(v) => Ok(Secret(v.clone())),
        }
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(v) => write!(f, "env {v}"),
            SecretSource::File(p) => write!(f, "file {}", p.display()),
            SecretSource::Literal(_) => f.write_str("literal"),
        }
    }
}

/// A resolved secret; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret value, for the one place that needs it (digest, bearer header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_prefixes_all_parse_and_cover_main_blocks() {
        let nets = meta_ipv4_prefixes();
        assert_eq!(nets.len(), 23);
        let list = SourceList(nets);
        for ip in [
            "31.13.64.1",
            "57.144.1.1",
            "69.171.250.1",
            "129.134.9.9",
            "157.240.1.1",
            "163.70.200.1",
            "173.252.100.1",
            "204.15.20.7",
        ] {
            assert!(list.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(!list.contains("8.8.8.8".parse().unwrap()));
        assert!(list.contains("::ffff:157.240.1.1".parse().unwrap()));
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            "wa.meta.vc:5061".parse::<HostPort>().unwrap().to_string(),
            "wa.meta.vc:5061"
        );
        assert_eq!(
            "[::1]:5060".parse::<HostPort>().unwrap().to_string(),
            "[::1]:5060"
        );
        for bad in [
            "127.0.0.1:99999",
            "wa.meta.vc",
            ":5060",
            "1.2.3:5060",
            "a b:1",
            "h:0",
        ] {
            assert_eq!(
                bad.parse::<HostPort>().unwrap_err(),
                format!("{bad:?} is not a socket address")
            );
        }
    }

    #[test]
    fn port_range_rules() {
        assert!(PortRange::new(40000, 40999).is_ok());
        assert!(PortRange::new(40001, 40999).unwrap_err().contains("even"));
        assert!(PortRange::new(5000, 4000).unwrap_err().contains("below"));
        assert!(PortRange::new(80, 4000).unwrap_err().contains("1024"));
        assert!(PortRange::new(40000, 70000).unwrap_err().contains("1024"));
    }

    #[test]
    fn sources_reject_host_bits() {
        assert_eq!(
            parse_source("10.0.0.1/8").unwrap_err(),
            "\"10.0.0.1/8\" has host bits set (did you mean \"10.0.0.0/8\"?)"
        );
        assert_eq!(
            parse_source("nope").unwrap_err(),
            "\"nope\" is not an IP address or CIDR"
        );
        assert_eq!(
            parse_source("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = SecretSource::Literal("hunter2".into()).resolve().unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
