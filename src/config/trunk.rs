//! `kind = "trunk"` profiles: a PBX or SIP trunk peer on the plain-SIP side. A built
//! [`TrunkProfile`] has every default applied and every field validated.
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use toml::Spanned;

use super::common::{
    PemKind, RawSecret, check_pem, check_secret, name_ok, parse_or, port_range, sources, sp,
};
use super::span::Diag;
use super::types::{HostPort, PortRange, SecretSource, SourceList, parse_socket_addr};

/// A trunk (PBX-side) profile.
#[derive(Debug, Clone, PartialEq)]
pub struct TrunkProfile {
    pub name: String,
    pub file: PathBuf,
    pub listen: TrunkListen,
    pub peer: TrunkPeer,
    /// Who may send us requests on this trunk.
    pub allowed_sources: SourceList,
    /// Offered/accepted toward the PBX, in preference order.
    pub codecs: Vec<TrunkCodec>,
    pub business_number: BusinessNumberChoice,
    /// The number used by [`BusinessNumberChoice::Default`] (and as fallback); resolved at
    /// load time (explicit `default_number`, else the first number routed to this trunk).
    /// `None` only when no whatsapp number targets this trunk and none was given.
    pub default_number: Option<String>,
    /// OPTIONS ping interval; `None` = off.
    pub options_ping_s: Option<u32>,
    /// Challenge the PBX's requests.
    pub inbound_auth: Option<TrunkInboundAuth>,
    /// Answer the PBX's 401/407.
    pub outbound_auth: Option<TrunkOutboundAuth>,
    pub media: TrunkMedia,
    pub session_timer: SessionTimer,
}

/// `[listen]`: our sockets toward this trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkListen {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    /// Present when `tls` is non-empty.
    pub tls_identity: Option<(PathBuf, PathBuf)>,
}

/// SIP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// `[peer]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkPeer {
    pub address: HostPort,
    pub transport: Transport,
    /// Certificate name checked with TLS (default: `address.host`).
    pub tls_server_name: Option<String>,
}

/// Codecs toward the PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TrunkCodec {
    #[serde(rename = "opus")]
    Opus,
    PCMU,
    PCMA,
    #[serde(rename = "telephone-event")]
    TelephoneEvent,
}

/// How a PBX→WhatsApp call picks its business number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusinessNumberChoice {
    /// Always [`TrunkProfile::default_number`].
    Default,
    /// The user part of `From` (E.164, with or without `+`).
    FromUser,
    /// The value of this header.
    Header(String),
}

/// `[inbound_auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkInboundAuth {
    pub challenge: bool,
    pub realm: String,
    pub username: String,
    pub password: SecretSource,
}

/// `[outbound_auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkOutboundAuth {
    pub username: String,
    pub password: SecretSource,
}

/// SRTP toward the PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrunkSrtp {
    Off,
    Sdes,
}

/// `[media]` of a trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkMedia {
    /// Default [30000, 30999].
    pub rtp_ports: PortRange,
    pub public_address: Option<IpAddr>,
    pub srtp: TrunkSrtp,
}

/// `[session_timer]` (RFC 4028) toward the PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    pub enabled: bool,
    pub session_expires_s: u32,
    pub min_se_s: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    #[allow(dead_code)]
    kind: Spanned<String>,
    pub(crate) name: Spanned<String>,
    listen: Option<Spanned<RawListen>>,
    peer: Option<RawPeer>,
    allowed_sources: Option<Vec<Spanned<String>>>,
    codecs: Option<Spanned<Vec<TrunkCodec>>>,
    business_number: Option<Spanned<RawChoice>>,
    pub(crate) default_number: Option<Spanned<String>>,
    options_ping_s: Option<Spanned<i64>>,
    inbound_auth: Option<Spanned<RawInbound>>,
    outbound_auth: Option<Spanned<RawOutbound>>,
    media: Option<RawMedia>,
    session_timer: Option<RawTimer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    udp: Option<Vec<Spanned<String>>>,
    tcp: Option<Vec<Spanned<String>>>,
    tls: Option<Vec<Spanned<String>>>,
    tls_cert_chain: Option<Spanned<PathBuf>>,
    tls_private_key: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    address: Option<Spanned<String>>,
    transport: Option<Transport>,
    tls_server_name: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawChoice {
    Word(String),
    Header { header: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbound {
    challenge: Option<bool>,
    realm: Option<String>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<RawSecret>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    username: Spanned<String>,
    password: Spanned<RawSecret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMedia {
    rtp_port_range: Option<Spanned<Vec<i64>>>,
    public_address: Option<Spanned<String>>,
    srtp: Option<TrunkSrtp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimer {
    enabled: Option<bool>,
    session_expires_s: Option<Spanned<i64>>,
    min_se_s: Option<Spanned<i64>>,
}

fn addrs(
    d: &mut Diag<'_>,
    field: &str,
    v: &Option<Vec<Spanned<String>>>,
    default: &[SocketAddr],
) -> Vec<SocketAddr> {
    match v {
        None => default.to_vec(),
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                parse_socket_addr(s.get_ref())
                    .map_err(|e| d.err(Some(s.span()), &format!("{field}[{i}]"), e))
                    .ok()
            })
            .collect(),
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

impl Raw {
    pub(crate) fn build(self, d: &mut Diag<'_>) -> TrunkProfile {
        name_ok(d, &self.name);
        let loopback5080 = [SocketAddr::from(([127, 0, 0, 1], 5080))];

        // [listen]
        let listen = match self.listen {
            None => TrunkListen {
                udp: loopback5080.to_vec(),
                tcp: loopback5080.to_vec(),
                tls: vec![],
                tls_identity: None,
            },
            Some(l) => {
                let span = l.span();
                let l = l.into_inner();
                let udp = addrs(d, "listen.udp", &l.udp, &[]);
                let tcp = addrs(d, "listen.tcp", &l.tcp, &[]);
                let tls = addrs(d, "listen.tls", &l.tls, &[]);
                if l.udp.is_none() && l.tcp.is_none() && l.tls.is_none() {
                    d.err(
                        Some(span.clone()),
                        "listen",
                        "no udp, tcp or tls address given",
                    );
                }
                let tls_identity = if tls.is_empty() {
                    None
                } else {
                    match (&l.tls_cert_chain, &l.tls_private_key) {
                        (Some(c), Some(k)) => {
                            check_pem(d, "listen.tls_cert_chain", c, PemKind::Certificates);
                            check_pem(d, "listen.tls_private_key", k, PemKind::PrivateKey);
                            Some((c.get_ref().clone(), k.get_ref().clone()))
                        }
                        _ => {
                            d.err(
                                Some(span),
                                "listen.tls",
                                "TLS listeners need tls_cert_chain and tls_private_key",
                            );
                            None
                        }
                    }
                };
                TrunkListen {
                    udp,
                    tcp,
                    tls,
                    tls_identity,
                }
            }
        };

        // [peer]
        let peer = self.peer.unwrap_or(RawPeer {
            address: None,
            transport: None,
            tls_server_name: None,
        });
        let address = parse_or(
            d,
            "peer.address",
            &peer.address,
            |s| s.parse::<HostPort>(),
            HostPort {
                host: "127.0.0.1".into(),
                port: 5060,
            },
        );
        let transport = peer.transport.unwrap_or(Transport::Udp);
        let tls_server_name = peer.tls_server_name.as_ref().map(|n| {
            if transport != Transport::Tls {
                d.err(
                    Some(n.span()),
                    "peer.tls_server_name",
                    "only used with transport = \"tls\"",
                );
            } else if !super::types::is_dns_name(n.get_ref()) {
                d.err(
                    Some(n.span()),
                    "peer.tls_server_name",
                    format!("{:?} is not a host name", n.get_ref()),
                );
            }
            n.get_ref().clone()
        });

        // allowed_sources: default = the peer's IP
        let allowed_sources =
            match sources(d, "allowed_sources", self.allowed_sources.as_deref(), false) {
                Some(s) => s,
                None => match address.socket_addr() {
                    Some(sa) => SourceList(vec![ipnet::IpNet::from(sa.ip())]),
                    None => {
                        d.err(
                            sp(&peer.address),
                            "allowed_sources",
                            "missing: the peer is a host name, so list the addresses it sends from",
                        );
                        SourceList::default()
                    }
                },
            };

        // codecs
        let default_codecs = vec![
            TrunkCodec::Opus,
            TrunkCodec::PCMU,
            TrunkCodec::PCMA,
            TrunkCodec::TelephoneEvent,
        ];
        let codecs = match self.codecs {
            None => default_codecs,
            Some(c) => {
                let span = c.span();
                let list = c.into_inner();
                let mut out: Vec<TrunkCodec> = Vec::new();
                for x in &list {
                    if out.contains(x) {
                        d.err(Some(span.clone()), "codecs", format!("{x:?} listed twice"));
                    } else {
                        out.push(*x);
                    }
                }
                if !out.iter().any(|c| *c != TrunkCodec::TelephoneEvent) {
                    d.err(
                        Some(span),
                        "codecs",
                        "needs at least one audio codec (opus, PCMU or PCMA)",
                    );
                }
                out
            }
        };

        // business number choice
        let business_number = match self.business_number {
            None => BusinessNumberChoice::Default,
            Some(b) => {
                let span = b.span();
                match b.into_inner() {
                    RawChoice::Word(w) if w == "default" => BusinessNumberChoice::Default,
                    RawChoice::Word(w) if w == "from_user" => BusinessNumberChoice::FromUser,
                    RawChoice::Word(w) => {
                        d.err(
                            Some(span),
                            "business_number",
                            format!("{w:?} is not one of \"default\", \"from_user\" or {{ header = \"Name\" }}"),
                        );
                        BusinessNumberChoice::Default
                    }
                    RawChoice::Header { header } => {
                        if !is_token(&header) {
                            d.err(
                                Some(span),
                                "business_number.header",
                                format!("{header:?} is not a SIP header name"),
                            );
                        }
                        BusinessNumberChoice::Header(header)
                    }
                }
            }
        };
        if let Some(n) = &self.default_number
            && !super::whatsapp::is_e164(n.get_ref())
        {
            d.err(
                Some(n.span()),
                "default_number",
                format!(
                    "{:?} is not an E.164 number (\"+\" then 8 to 15 digits)",
                    n.get_ref()
                ),
            );
        }

        let options_ping_s = match &self.options_ping_s {
            None => Some(30),
            Some(v) if *v.get_ref() == 0 => None,
            Some(v) if (1..=3600).contains(v.get_ref()) => u32::try_from(*v.get_ref()).ok(),
            Some(v) => {
                d.err(
                    Some(v.span()),
                    "options_ping_s",
                    format!("{} is out of range 0..=3600 (0 = off)", v.get_ref()),
                );
                Some(30)
            }
        };

        // auth
        let inbound_auth = self.inbound_auth.map(|a| {
            let span = a.span();
            let a = a.into_inner();
            let challenge = a.challenge.unwrap_or(true);
            let username = a.username.as_ref().map(|u| u.get_ref().clone());
            let password = a
                .password
                .as_ref()
                .map(|p| check_secret(d, "inbound_auth.password", p, false));
            if challenge && (username.is_none() || password.is_none()) {
                d.err(
                    Some(span),
                    "inbound_auth",
                    "challenge = true needs username and password",
                );
            }
            TrunkInboundAuth {
                challenge,
                realm: a.realm.unwrap_or_else(|| "whatsip".to_owned()),
                username: username.unwrap_or_default(),
                password: password.unwrap_or(SecretSource::Literal(String::new())),
            }
        });
        let outbound_auth = self.outbound_auth.map(|a| {
            let a = a.into_inner();
            if a.username.get_ref().is_empty() {
                d.err(
                    Some(a.username.span()),
                    "outbound_auth.username",
                    "must not be empty",
                );
            }
            TrunkOutboundAuth {
                password: check_secret(d, "outbound_auth.password", &a.password, false),
                username: a.username.into_inner(),
            }
        });

        // [media]
        let m = self.media.unwrap_or(RawMedia {
            rtp_port_range: None,
            public_address: None,
            srtp: None,
        });
        let media = TrunkMedia {
            rtp_ports: port_range(
                d,
                "media.rtp_port_range",
                &m.rtp_port_range,
                PortRange {
                    start: 30000,
                    end: 30999,
                },
            ),
            public_address: m.public_address.as_ref().and_then(|a| {
                a.get_ref()
                    .parse::<IpAddr>()
                    .map_err(|_| {
                        d.err(
                            Some(a.span()),
                            "media.public_address",
                            format!("{:?} is not an IP address", a.get_ref()),
                        )
                    })
                    .ok()
            }),
            srtp: m.srtp.unwrap_or(TrunkSrtp::Off),
        };

        // [session_timer]
        let t = self.session_timer.unwrap_or(RawTimer {
            enabled: None,
            session_expires_s: None,
            min_se_s: None,
        });
        let min_se_s = match &t.min_se_s {
            None => 90,
            Some(v) if (90..=86400).contains(v.get_ref()) => *v.get_ref() as u32,
            Some(v) => {
                d.err(
                    Some(v.span()),
                    "session_timer.min_se_s",
                    format!(
                        "{} is out of range 90..=86400 (RFC 4028 minimum is 90)",
                        v.get_ref()
                    ),
                );
                90
            }
        };
        let session_expires_s = match &t.session_expires_s {
            None => 1800.max(min_se_s),
            Some(v) if (i64::from(min_se_s)..=86400).contains(v.get_ref()) => *v.get_ref() as u32,
            Some(v) => {
                d.err(
                    Some(v.span()),
                    "session_timer.session_expires_s",
                    format!(
                        "{} is out of range {min_se_s}..=86400 (at least min_se_s)",
                        v.get_ref()
                    ),
                );
                1800
            }
        };

        TrunkProfile {
            name: self.name.into_inner(),
            file: d.file().to_path_buf(),
            listen,
            peer: TrunkPeer {
                address,
                transport,
                tls_server_name,
            },
            allowed_sources,
            codecs,
            business_number,
            default_number: self.default_number.map(Spanned::into_inner),
            options_ping_s,
            inbound_auth,
            outbound_auth,
            media,
            session_timer: SessionTimer {
                enabled: t.enabled.unwrap_or(true),
                session_expires_s,
                min_se_s,
            },
        }
    }
}
