//! `kind = "whatsapp"` profiles: the TLS listener Meta connects to, Meta's edge, the Graph
//! API, business numbers and media toward Meta. A built [`WhatsAppProfile`] has every
//! default applied and every field validated.
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use toml::Spanned;

use super::calling::{CallingSettings, RawCalling};
use super::common::{
    RawSecret, check_pem, check_secret, name_ok, parse_or, port_range, sources, sp,
};
use super::span::Diag;
use super::types::{HostPort, PortRange, SecretSource, SourceList};

/// A WhatsApp-side profile.
#[derive(Debug, Clone, PartialEq)]
pub struct WhatsAppProfile {
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    pub sip: WaSip,
    pub tls: TlsIdentity,
    pub meta: MetaEdge,
    pub inbound_auth: InboundChallenge,
    pub graph: GraphSettings,
    pub media: WaMedia,
    /// At least one.
    pub numbers: Vec<BusinessNumber>,
}

/// `[sip]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaSip {
    /// TLS listener Meta connects to. Default `127.0.0.1:5061`.
    pub listen: SocketAddr,
    /// Meta's `calling.sip.servers[].hostname`; our From and Contact host.
    pub public_host: String,
    /// Meta's `calling.sip.servers[].port`. Default 5061.
    pub public_port: u16,
    /// User-initiated calls: seconds to wait for the PBX to answer. Default 60.
    pub answer_deadline_s: u32,
}

/// `[tls]`: the certificate we present to Meta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsIdentity {
    /// PEM files (validated to exist and parse at load time).
    Files {
        cert_chain: PathBuf,
        private_key: PathBuf,
    },
    /// Issued at start-up by the in-process sandbox's CA for `sip.public_host`
    /// (only with `meta.sandbox = true`).
    SandboxIssued,
}

/// `[meta]`: Meta's SIP edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaEdge {
    /// SNI, certificate name verified, Request-URI host. Default `wa.meta.vc`.
    pub edge_host: String,
    /// Where TLS connections go. Default `wa.meta.vc:5061`.
    pub connect: HostPort,
    /// Trust anchors for Meta's certificate; `None` = system roots.
    pub ca_file: Option<PathBuf>,
    /// Start the sandbox twin in-process (edge TLS 127.0.0.1:5062, HTTP 127.0.0.1:8081).
    pub sandbox: bool,
    /// Digest algorithm of the in-process sandbox edge's 407 (`sandbox_digest_algorithm`,
    /// `"sha-256"` default or `"md5"`, as `whatsip sandbox --digest-algorithm`).
    pub sandbox_digest_md5: bool,
    /// Who may send us INVITEs (`"meta"` expanded to [`super::META_IPV4_PREFIXES`]).
    pub allowed_sources: SourceList,
}

/// `[inbound_auth]`: digest challenge of Meta's INVITEs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundChallenge {
    /// Default true.
    pub challenge: bool,
    /// Default `sip.public_host`.
    pub realm: String,
}

/// `[graph]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphSettings {
    /// Without trailing slash. Default `https://graph.facebook.com`.
    pub base_url: String,
    /// Such as `v23.0`.
    pub api_version: String,
    pub token: SecretSource,
    pub timeout_s: u32,
    pub retries: u32,
    /// How long a business-initiated INVITE waits for the first (uncached) Graph
    /// `call_permissions` answer before it goes to Meta anyway. Default 2000 ms, 0 = never wait.
    pub permission_wait_ms: u32,
}

impl GraphSettings {
    /// `base_url/api_version`, the prefix of every Graph request.
    pub fn versioned_base(&self) -> String {
        format!("{}/{}", self.base_url, self.api_version)
    }
}

/// SDES crypto suites (RFC 4568 / 7714 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[allow(non_camel_case_types)]
pub enum SrtpSuite {
    AES_CM_128_HMAC_SHA1_80,
    AES_CM_128_HMAC_SHA1_32,
    AEAD_AES_128_GCM,
    AEAD_AES_256_GCM,
}

/// `[media]` of a whatsapp profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaMedia {
    /// Default [40000, 40999].
    pub rtp_ports: PortRange,
    /// Advertised address; `None` = the socket's address.
    pub public_address: Option<IpAddr>,
    /// Default `[AES_CM_128_HMAC_SHA1_80]`.
    pub srtp_suites: Vec<SrtpSuite>,
    /// No-media timeout (Meta: 20 s at start, 30 s mid-call). Default 20.
    pub media_timeout_s: u32,
    /// Default true.
    pub silence_keepalive: bool,
    /// DTLS numbers: the call fails when ICE + DTLS are not up this long after the remote
    /// description is known. Default 5 (Meta retries its DTLS at 1/2/4 s).
    pub dtls_connect_timeout_s: u32,
}

/// Request-URI user toward the trunk for user-initiated calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestUriUser {
    /// `+15550001111`
    E164,
    /// `15550001111`
    E164NoPlus,
    /// A fixed extension.
    Extension(String),
}

/// Media key exchange toward Meta (`srtp_key_exchange_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyExchange {
    Dtls,
    Sdes,
}

/// Meta's `audio.additional_codecs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum G711 {
    PCMA,
    PCMU,
}

/// One `[[numbers]]` entry: a business number served by this profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusinessNumber {
    /// `+` and 8..=15 digits.
    pub e164: String,
    /// Digits.
    pub phone_number_id: String,
    /// Meta's `sip_user_password` (digest password for both directions).
    pub sip_password: SecretSource,
    /// Trunk profile user-initiated calls go to (exists; checked at load).
    pub trunk: String,
    pub request_uri_user: RequestUriUser,
    pub request_uri_user_params: BTreeMap<String, String>,
    pub srtp_key_exchange: KeyExchange,
    pub additional_codecs: Vec<G711>,
    pub calling: Option<CallingSettings>,
}

impl BusinessNumber {
    /// Digest username toward Meta: the number without `+`.
    pub fn digest_username(&self) -> &str {
        self.e164.strip_prefix('+').unwrap_or(&self.e164)
    }

    /// The number for logs: all but the last 4 digits masked.
    pub fn masked(&self) -> String {
        let n = self.e164.chars().count();
        self.e164
            .chars()
            .enumerate()
            .map(|(i, c)| if i > 0 && i + 4 < n { '*' } else { c })
            .collect()
    }

    /// The Request-URI user toward the trunk for a user-initiated call.
    pub fn trunk_request_user(&self) -> String {
        match &self.request_uri_user {
            RequestUriUser::E164 => self.e164.clone(),
            RequestUriUser::E164NoPlus => self.digest_username().to_owned(),
            RequestUriUser::Extension(e) => e.clone(),
        }
    }
}

/// True for `+` followed by 8..=15 ASCII digits.
pub fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

// ---- raw (as written) ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    #[allow(dead_code)]
    kind: Spanned<String>,
    pub(crate) name: Spanned<String>,
    sip: Spanned<RawSip>,
    #[serde(default)]
    tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    meta: Option<RawMeta>,
    #[serde(default)]
    inbound_auth: Option<RawInbound>,
    graph: Spanned<RawGraph>,
    #[serde(default)]
    media: Option<RawMedia>,
    #[serde(default)]
    pub(crate) numbers: Vec<RawNumber>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSip {
    listen: Option<Spanned<String>>,
    public_host: Spanned<String>,
    public_port: Option<Spanned<i64>>,
    answer_deadline_s: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TlsMode {
    Files,
    Sandbox,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    mode: Option<Spanned<TlsMode>>,
    cert_chain: Option<Spanned<PathBuf>>,
    private_key: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeta {
    edge_host: Option<Spanned<String>>,
    connect: Option<Spanned<String>>,
    ca_file: Option<Spanned<PathBuf>>,
    sandbox: Option<Spanned<bool>>,
    sandbox_digest_algorithm: Option<Spanned<String>>,
    allowed_sources: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbound {
    challenge: Option<bool>,
    realm: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGraph {
    base_url: Option<Spanned<String>>,
    api_version: Option<Spanned<String>>,
    token: Spanned<RawSecret>,
    timeout_s: Option<Spanned<i64>>,
    retries: Option<Spanned<i64>>,
    permission_wait_ms: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMedia {
    rtp_port_range: Option<Spanned<Vec<i64>>>,
    public_address: Option<Spanned<String>>,
    srtp_suites: Option<Spanned<Vec<SrtpSuite>>>,
    media_timeout_s: Option<Spanned<i64>>,
    silence_keepalive: Option<bool>,
    dtls_connect_timeout_s: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawRuriUser {
    Word(String),
    Ext { extension: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNumber {
    pub(crate) e164: Spanned<String>,
    pub(crate) phone_number_id: Spanned<String>,
    sip_password: Spanned<RawSecret>,
    pub(crate) trunk: Spanned<String>,
    request_uri_user: Option<Spanned<RawRuriUser>>,
    #[serde(default)]
    request_uri_user_params: BTreeMap<Spanned<String>, Spanned<String>>,
    srtp_key_exchange: Option<KeyExchange>,
    additional_codecs: Option<Spanned<Vec<G711>>>,
    calling: Option<RawCalling>,
}

fn int_in(
    d: &mut Diag<'_>,
    field: &str,
    v: &Option<Spanned<i64>>,
    range: std::ops::RangeInclusive<i64>,
    default: u32,
) -> u32 {
    match v {
        None => default,
        Some(v) if range.contains(v.get_ref()) => u32::try_from(*v.get_ref()).unwrap_or(default),
        Some(v) => {
            d.err(
                Some(v.span()),
                field,
                format!(
                    "{} is out of range {}..={}",
                    v.get_ref(),
                    range.start(),
                    range.end()
                ),
            );
            default
        }
    }
}

impl Raw {
    pub(crate) fn build(self, d: &mut Diag<'_>) -> WhatsAppProfile {
        let name = self.name.get_ref().clone();
        name_ok(d, &self.name);

        // [sip]
        let sip_span = self.sip.span();
        let rs = self.sip.into_inner();
        let listen = parse_or(
            d,
            "sip.listen",
            &rs.listen,
            super::types::parse_socket_addr,
            SocketAddr::from(([127, 0, 0, 1], 5061)),
        );
        let public_host = rs.public_host.get_ref().to_ascii_lowercase();
        if !super::types::is_dns_name(&public_host) {
            let why = if public_host.parse::<IpAddr>().is_ok() {
                "is an IP address; Meta needs a host name its certificate check can match"
            } else {
                "is not a host name"
            };
            d.err(
                Some(rs.public_host.span()),
                "sip.public_host",
                format!("{:?} {why}", rs.public_host.get_ref()),
            );
        }
        let public_port = int_in(d, "sip.public_port", &rs.public_port, 1..=65535, 5061) as u16;
        let answer_deadline_s = int_in(
            d,
            "sip.answer_deadline_s",
            &rs.answer_deadline_s,
            1..=600,
            60,
        );

        // [meta]
        let meta = self.meta.unwrap_or(RawMeta {
            edge_host: None,
            connect: None,
            ca_file: None,
            sandbox: None,
            sandbox_digest_algorithm: None,
            allowed_sources: None,
        });
        let sandbox = meta.sandbox.as_ref().is_some_and(|b| *b.get_ref());
        let sandbox_span = sp(&meta.sandbox);
        let edge_host = match &meta.edge_host {
            Some(h) if !super::types::is_dns_name(h.get_ref()) => {
                d.err(
                    Some(h.span()),
                    "meta.edge_host",
                    format!("{:?} is not a host name", h.get_ref()),
                );
                "wa.meta.vc".to_owned()
            }
            Some(h) => h.get_ref().to_ascii_lowercase(),
            None => "wa.meta.vc".to_owned(),
        };
        let connect = parse_or(
            d,
            "meta.connect",
            &meta.connect,
            |s| s.parse::<HostPort>(),
            HostPort {
                host: "wa.meta.vc".into(),
                port: 5061,
            },
        );
        if sandbox && connect.socket_addr() != Some(super::SANDBOX_EDGE_ADDR) {
            d.warn(
                sp(&meta.connect).or(sandbox_span.clone()),
                "meta.connect",
                format!(
                    "meta.sandbox = true but calls go to {connect}, not the sandbox edge {}",
                    super::SANDBOX_EDGE_ADDR
                ),
            );
        }
        let sandbox_digest_md5 = match &meta.sandbox_digest_algorithm {
            None => false,
            Some(a) if !sandbox => {
                d.warn(
                    Some(a.span()),
                    "meta.sandbox_digest_algorithm",
                    "only used with meta.sandbox = true; remove it".to_owned(),
                );
                false
            }
            Some(a) => match a.get_ref().to_ascii_lowercase().as_str() {
                "sha-256" => false,
                "md5" => true,
                other => {
                    d.err(
                        Some(a.span()),
                        "meta.sandbox_digest_algorithm",
                        format!("{other:?}: expected \"sha-256\" or \"md5\""),
                    );
                    false
                }
            },
        };
        if let Some(ca) = &meta.ca_file
            && !sandbox
        {
            check_pem(d, "meta.ca_file", ca, super::common::PemKind::Certificates);
        }
        let allowed_sources = sources(
            d,
            "meta.allowed_sources",
            meta.allowed_sources.as_deref(),
            true,
        )
        .unwrap_or_else(|| SourceList(super::types::meta_ipv4_prefixes()));

        // [tls]
        let tls = match self.tls {
            None => {
                d.err(
                    Some(sip_span.clone()),
                    "tls",
                    "missing: give cert_chain and private_key, or mode = \"sandbox\"",
                );
                TlsIdentity::SandboxIssued
            }
            Some(t) => {
                let span = t.span();
                let t = t.into_inner();
                match t.mode.as_ref().map(|m| (m.get_ref(), m.span())) {
                    Some((TlsMode::Sandbox, mspan)) => {
                        if !sandbox {
                            d.err(
                                Some(mspan),
                                "tls.mode",
                                "\"sandbox\" needs meta.sandbox = true (only the sandbox trusts its CA)",
                            );
                        }
                        for (f, v) in [
                            ("cert_chain", &t.cert_chain),
                            ("private_key", &t.private_key),
                        ] {
                            if let Some(v) = v {
                                d.err(
                                    Some(v.span()),
                                    &format!("tls.{f}"),
                                    "not used with mode = \"sandbox\"; remove it",
                                );
                            }
                        }
                        TlsIdentity::SandboxIssued
                    }
                    _ => {
                        let mut get = |f: &str, v: &Option<Spanned<PathBuf>>, kind| match v {
                            Some(p) => {
                                check_pem(d, &format!("tls.{f}"), p, kind);
                                p.get_ref().clone()
                            }
                            None => {
                                d.err(
                                    Some(span.clone()),
                                    &format!("tls.{f}"),
                                    "missing (required unless mode = \"sandbox\")",
                                );
                                PathBuf::new()
                            }
                        };
                        let cert_chain = get(
                            "cert_chain",
                            &t.cert_chain,
                            super::common::PemKind::Certificates,
                        );
                        let private_key = get(
                            "private_key",
                            &t.private_key,
                            super::common::PemKind::PrivateKey,
                        );
                        TlsIdentity::Files {
                            cert_chain,
                            private_key,
                        }
                    }
                }
            }
        };

        // [inbound_auth]
        let inbound = self.inbound_auth.unwrap_or(RawInbound {
            challenge: None,
            realm: None,
        });
        let realm = match &inbound.realm {
            Some(r) if r.get_ref().is_empty() || r.get_ref().contains('"') => {
                d.err(
                    Some(r.span()),
                    "inbound_auth.realm",
                    format!("{:?} is not a usable realm", r.get_ref()),
                );
                public_host.clone()
            }
            Some(r) => r.get_ref().clone(),
            None => public_host.clone(),
        };
        let inbound_auth = InboundChallenge {
            challenge: inbound.challenge.unwrap_or(true),
            realm,
        };

        // [graph]
        let g = self.graph.into_inner();
        let base_url = match &g.base_url {
            Some(u) => {
                let s = u.get_ref().trim_end_matches('/');
                let rest = s
                    .strip_prefix("https://")
                    .or_else(|| s.strip_prefix("http://"));
                match rest {
                    Some(r) if !r.is_empty() && !r.contains(char::is_whitespace) => {}
                    _ => d.err(
                        Some(u.span()),
                        "graph.base_url",
                        format!("{:?} is not an http(s) URL", u.get_ref()),
                    ),
                }
                if s.starts_with("http://") && !sandbox {
                    d.warn(
                        Some(u.span()),
                        "graph.base_url",
                        "plain http sends the bearer token unencrypted (fine only for the sandbox)",
                    );
                }
                s.to_owned()
            }
            None => "https://graph.facebook.com".to_owned(),
        };
        if sandbox && base_url != format!("http://{}", super::SANDBOX_HTTP_ADDR) {
            d.warn(
                sp(&g.base_url).or(sandbox_span.clone()),
                "graph.base_url",
                format!(
                    "meta.sandbox = true but Graph requests go to {base_url}, not the sandbox http://{}",
                    super::SANDBOX_HTTP_ADDR
                ),
            );
        }
        let api_version = match &g.api_version {
            Some(v) => {
                let s = v.get_ref();
                let ok = s
                    .strip_prefix('v')
                    .and_then(|r| r.split_once('.'))
                    .is_some_and(|(a, b)| {
                        !a.is_empty()
                            && !b.is_empty()
                            && a.bytes().all(|c| c.is_ascii_digit())
                            && b.bytes().all(|c| c.is_ascii_digit())
                    });
                if !ok {
                    d.err(
                        Some(v.span()),
                        "graph.api_version",
                        format!("{s:?} is not a Graph API version (like \"v23.0\")"),
                    );
                }
                s.clone()
            }
            None => "v23.0".to_owned(),
        };
        let token = check_secret(d, "graph.token", &g.token, sandbox);
        let graph = GraphSettings {
            base_url,
            api_version,
            token,
            timeout_s: int_in(d, "graph.timeout_s", &g.timeout_s, 1..=300, 10),
            retries: int_in(d, "graph.retries", &g.retries, 0..=10, 2),
            permission_wait_ms: int_in(
                d,
                "graph.permission_wait_ms",
                &g.permission_wait_ms,
                0..=10_000,
                2000,
            ),
        };

        // [media]
        let m = self.media.unwrap_or(RawMedia {
            rtp_port_range: None,
            public_address: None,
            srtp_suites: None,
            media_timeout_s: None,
            silence_keepalive: None,
            dtls_connect_timeout_s: None,
        });
        let rtp_ports = port_range(
            d,
            "media.rtp_port_range",
            &m.rtp_port_range,
            PortRange {
                start: 40000,
                end: 40999,
            },
        );
        let public_address = m.public_address.as_ref().and_then(|a| {
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
        });
        let srtp_suites = match m.srtp_suites {
            Some(s) if s.get_ref().is_empty() => {
                d.err(Some(s.span()), "media.srtp_suites", "must not be empty");
                vec![SrtpSuite::AES_CM_128_HMAC_SHA1_80]
            }
            Some(s) => s.into_inner(),
            None => vec![SrtpSuite::AES_CM_128_HMAC_SHA1_80],
        };
        let media = WaMedia {
            rtp_ports,
            public_address,
            srtp_suites,
            media_timeout_s: int_in(d, "media.media_timeout_s", &m.media_timeout_s, 1..=3600, 20),
            silence_keepalive: m.silence_keepalive.unwrap_or(true),
            dtls_connect_timeout_s: int_in(
                d,
                "media.dtls_connect_timeout_s",
                &m.dtls_connect_timeout_s,
                1..=60,
                5,
            ),
        };

        // [[numbers]]
        if self.numbers.is_empty() {
            d.err(
                Some(self.name.span()),
                "numbers",
                "at least one [[numbers]] entry is required",
            );
        }
        let numbers = self
            .numbers
            .into_iter()
            .enumerate()
            .map(|(i, n)| n.build(d, &format!("numbers[{i}]"), sandbox))
            .collect();

        WhatsAppProfile {
            name,
            file: d.file().to_path_buf(),
            sip: WaSip {
                listen,
                public_host,
                public_port,
                answer_deadline_s,
            },
            tls,
            meta: MetaEdge {
                edge_host,
                connect,
                ca_file: meta.ca_file.map(Spanned::into_inner),
                sandbox,
                sandbox_digest_md5,
                allowed_sources,
            },
            inbound_auth,
            graph,
            media,
            numbers,
        }
    }
}

impl RawNumber {
    fn build(self, d: &mut Diag<'_>, p: &str, sandbox: bool) -> BusinessNumber {
        if !is_e164(self.e164.get_ref()) {
            d.err(
                Some(self.e164.span()),
                &format!("{p}.e164"),
                format!(
                    "{:?} is not an E.164 number (\"+\" then 8 to 15 digits)",
                    self.e164.get_ref()
                ),
            );
        }
        let id = self.phone_number_id.get_ref();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            d.err(
                Some(self.phone_number_id.span()),
                &format!("{p}.phone_number_id"),
                format!("{id:?} is not a phone_number_id (digits only)"),
            );
        }
        let sip_password =
            check_secret(d, &format!("{p}.sip_password"), &self.sip_password, sandbox);
        let request_uri_user = match self.request_uri_user {
            None => RequestUriUser::E164,
            Some(r) => {
                let span = r.span();
                match r.into_inner() {
                    RawRuriUser::Word(w) if w == "e164" => RequestUriUser::E164,
                    RawRuriUser::Word(w) if w == "e164_no_plus" => RequestUriUser::E164NoPlus,
                    RawRuriUser::Word(w) => {
                        d.err(
                            Some(span),
                            &format!("{p}.request_uri_user"),
                            format!(
                                "{w:?} is not one of \"e164\", \"e164_no_plus\" or {{ extension = \"...\" }}"
                            ),
                        );
                        RequestUriUser::E164
                    }
                    RawRuriUser::Ext { extension } => {
                        if !is_uri_user(&extension) {
                            d.err(
                                Some(span),
                                &format!("{p}.request_uri_user.extension"),
                                format!("{extension:?} is not a valid SIP URI user"),
                            );
                        }
                        RequestUriUser::Extension(extension)
                    }
                }
            }
        };
        let mut params = BTreeMap::new();
        for (k, v) in self.request_uri_user_params {
            let field = format!("{p}.request_uri_user_params.{}", k.get_ref());
            if k.get_ref().is_empty() || k.get_ref().len() > 128 || !is_uri_user(k.get_ref()) {
                d.err(
                    Some(k.span()),
                    &field,
                    "parameter names are 1..=128 URI-safe characters",
                );
            }
            if v.get_ref().len() > 128
                || !v.get_ref().chars().all(|c| is_uri_user_char(c) && c != '=')
            {
                d.err(
                    Some(v.span()),
                    &field,
                    format!(
                        "{:?}: values are up to 128 URI-safe characters",
                        v.get_ref()
                    ),
                );
            }
            params.insert(k.into_inner(), v.into_inner());
        }
        let mut codecs = Vec::new();
        let (codecs_span, codecs_raw) = self
            .additional_codecs
            .map(|c| (Some(c.span()), c.into_inner()))
            .unwrap_or_default();
        for c in &codecs_raw {
            if codecs.contains(c) {
                d.err(
                    codecs_span.clone(),
                    &format!("{p}.additional_codecs"),
                    format!("{c:?} listed twice"),
                );
            } else {
                codecs.push(*c);
            }
        }
        let calling = self.calling.map(|c| c.build(d, &format!("{p}.calling")));
        BusinessNumber {
            e164: self.e164.into_inner(),
            phone_number_id: self.phone_number_id.into_inner(),
            sip_password,
            trunk: self.trunk.into_inner(),
            request_uri_user,
            request_uri_user_params: params,
            srtp_key_exchange: self.srtp_key_exchange.unwrap_or(KeyExchange::Dtls),
            additional_codecs: codecs,
            calling,
        }
    }
}

fn is_uri_user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/%".contains(c)
}

fn is_uri_user(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_uri_user_char)
}
