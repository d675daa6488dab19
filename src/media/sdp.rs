//! Typed audio SDP (RFC 4566/8866) for one audio m-line, and RFC 3264 offer/answer.
//!
//! The line grammar is parsed by `sdp-types`; this module turns it into an [`AudioSession`]
//! (connection, port, proto, codecs from rtpmap/fmtp with the static payload-type table,
//! ptime/maxptime, direction and `c=0.0.0.0` hold, rtcp-mux, `a=rtcp`, SDES crypto lines,
//! `a=ssrc`, and the ICE/DTLS attributes kept for the WebRTC leg) and writes it back.
//!
//! Guarantees: parsing never panics and rejects SDP without a usable audio m-line with a
//! typed error (SIP 488 or 400); an answer mirrors the offerer's payload type numbers, keeps
//! exactly one audio m-line (other m-lines are answered with port 0, RFC 3264 §6), never
//! echoes the offerer's SRTP key, and only contains codecs both sides support.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use thiserror::Error;

use crate::media::sdes::{self, CryptoAttribute, SdesAnswer, SdesError};
use crate::media::srtp::{MasterKey, Mki, SrtpProfile};

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SdpError {
    #[error("SDP syntax: {0}")]
    Syntax(String),
    #[error("SDP has no audio m-line")]
    NoAudio,
    #[error("audio m-line has no connection address")]
    NoConnection,
    #[error("bad connection address {0:?}")]
    BadAddress(String),
    #[error("bad payload type {0:?}")]
    BadPayloadType(String),
    #[error("bad attribute a={0}")]
    BadAttribute(String),
    #[error("no common codec")]
    NoCommonCodec,
    #[error("audio stream rejected (port 0)")]
    Rejected,
    #[error("transport {0} not supported")]
    UnsupportedProto(String),
    #[error("DTLS-SRTP offer needs DTLS parameters")]
    DtlsRequired,
    #[error(transparent)]
    Crypto(#[from] SdesError),
}

impl SdpError {
    /// SIP status to answer an INVITE whose SDP fails this way.
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::Syntax(_) | SdpError::BadAddress(_) | SdpError::BadPayloadType(_) => 400,
            SdpError::BadAttribute(_) => 400,
            _ => 488,
        }
    }
}

/// RTP profile of the m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proto {
    RtpAvp,
    RtpAvpf,
    RtpSavp,
    RtpSavpf,
    UdpTlsRtpSavpf,
    Other(String),
}

impl Proto {
    pub fn parse(s: &str) -> Self {
        match s.to_ascii_uppercase().as_str() {
            "RTP/AVP" => Proto::RtpAvp,
            "RTP/AVPF" => Proto::RtpAvpf,
            "RTP/SAVP" => Proto::RtpSavp,
            "RTP/SAVPF" => Proto::RtpSavpf,
            "UDP/TLS/RTP/SAVPF" => Proto::UdpTlsRtpSavpf,
            _ => Proto::Other(s.to_owned()),
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            Proto::RtpAvp => "RTP/AVP",
            Proto::RtpAvpf => "RTP/AVPF",
            Proto::RtpSavp => "RTP/SAVP",
            Proto::RtpSavpf => "RTP/SAVPF",
            Proto::UdpTlsRtpSavpf => "UDP/TLS/RTP/SAVPF",
            Proto::Other(s) => s,
        }
    }
    /// SDES-keyed SRTP profiles.
    pub fn is_sdes(&self) -> bool {
        matches!(self, Proto::RtpSavp | Proto::RtpSavpf)
    }
    pub fn is_dtls(&self) -> bool {
        matches!(self, Proto::UdpTlsRtpSavpf)
    }
}

/// Media direction attribute (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }
    /// The direction an answerer uses toward this offer (RFC 3264 §6.1), limited by what we
    /// want (`local`).
    pub fn answer(self, local: Direction) -> Direction {
        let (s, r) = match self {
            Direction::SendRecv => (true, true),
            Direction::SendOnly => (false, true),
            Direction::RecvOnly => (true, false),
            Direction::Inactive => (false, false),
        };
        let (ls, lr) = match local {
            Direction::SendRecv => (true, true),
            Direction::SendOnly => (true, false),
            Direction::RecvOnly => (false, true),
            Direction::Inactive => (false, false),
        };
        match (s && ls, r && lr) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// One payload format of the m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub payload_type: u8,
    /// Encoding name as written (compare with [`Codec::is`]).
    pub name: String,
    pub clock_rate: u32,
    /// Channels (encoding parameters); `None` when absent.
    pub channels: Option<u8>,
    /// `a=fmtp` parameters, verbatim.
    pub fmtp: Option<String>,
    /// `a=rtcp-fb` values for this PT, verbatim.
    pub rtcp_fb: Vec<String>,
    /// Whether an `a=rtpmap` line was present (static PTs may omit it).
    pub has_rtpmap: bool,
}

impl Codec {
    pub fn new(payload_type: u8, name: &str, clock_rate: u32, channels: Option<u8>) -> Self {
        Self {
            payload_type,
            name: name.to_owned(),
            clock_rate,
            channels,
            fmtp: None,
            rtcp_fb: Vec::new(),
            has_rtpmap: true,
        }
    }
    pub fn opus(pt: u8) -> Self {
        Self::new(pt, "opus", 48000, Some(2))
    }
    pub fn pcmu() -> Self {
        Self::new(0, "PCMU", 8000, None)
    }
    pub fn pcma() -> Self {
        Self::new(8, "PCMA", 8000, None)
    }
    pub fn telephone_event(pt: u8, clock_rate: u32) -> Self {
        let mut c = Self::new(pt, "telephone-event", clock_rate, None);
        c.fmtp = Some("0-16".to_owned());
        c
    }
    pub fn with_fmtp(mut self, fmtp: &str) -> Self {
        self.fmtp = Some(fmtp.to_owned());
        self
    }
    /// Case-insensitive encoding-name comparison.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
    pub fn is_telephone_event(&self) -> bool {
        self.is("telephone-event")
    }
    /// Same format (name, clock rate, channels with absent = 1), ignoring the PT number.
    pub fn same_format(&self, other: &Codec) -> bool {
        self.is(&other.name)
            && self.clock_rate == other.clock_rate
            && self.channels.unwrap_or(1) == other.channels.unwrap_or(1)
    }
    fn static_pt(pt: u8) -> Option<Codec> {
        let (name, rate) = match pt {
            0 => ("PCMU", 8000),
            3 => ("GSM", 8000),
            4 => ("G723", 8000),
            8 => ("PCMA", 8000),
            9 => ("G722", 8000),
            13 => ("CN", 8000),
            18 => ("G729", 8000),
            _ => return None,
        };
        let mut c = Codec::new(pt, name, rate, None);
        c.has_rtpmap = false;
        Some(c)
    }
}

/// `a=ssrc:<id> <attribute>[:<value>]` (RFC 5576).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcAttr {
    pub ssrc: u32,
    pub attribute: String,
    pub value: Option<String>,
}

/// ICE and DTLS attributes, kept for the WebRTC leg (session- or media-level in the offer).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IceDtls {
    pub ice_ufrag: Option<String>,
    /// Kept verbatim, including base64 `==` padding seen from Meta.
    pub ice_pwd: Option<String>,
    pub ice_lite: bool,
    pub ice_options: Option<String>,
    /// `a=candidate` values verbatim.
    pub candidates: Vec<String>,
    pub end_of_candidates: bool,
    /// `a=fingerprint` value (`sha-256 AB:CD:…`).
    pub fingerprint: Option<String>,
    /// `a=setup` value (`actpass`, `active`, `passive`).
    pub setup: Option<String>,
    pub mid: Option<String>,
    /// `a=group:BUNDLE` mids.
    pub bundle: Option<Vec<String>>,
}

/// An m-line we do not handle (video, a second audio line, …), answered with port 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherMedia {
    pub media: String,
    pub port: u16,
    pub proto: String,
    pub fmt: String,
    /// Index of this m-line among all m-lines.
    pub index: usize,
}

/// A typed SDP with one audio m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSession {
    pub origin_user: String,
    pub session_id: u64,
    pub session_version: u64,
    pub origin_address: String,
    pub session_name: String,
    /// Effective connection address of the audio stream (media-level c= over session c=).
    pub connection: IpAddr,
    pub port: u16,
    pub proto: Proto,
    /// Codecs in m-line (preference) order.
    pub codecs: Vec<Codec>,
    pub ptime: Option<u32>,
    pub maxptime: Option<u32>,
    pub direction: Direction,
    pub rtcp_mux: bool,
    /// `a=rtcp` port and optional address.
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    pub crypto: Vec<CryptoAttribute>,
    pub ssrcs: Vec<SsrcAttr>,
    pub ice_dtls: IceDtls,
    /// Other media-level attributes (name, value), kept in order.
    pub other_attributes: Vec<(String, Option<String>)>,
    /// Index of the audio m-line among all m-lines.
    pub audio_index: usize,
    pub other_media: Vec<OtherMedia>,
}

fn parse_ip(addr: &str) -> Result<IpAddr, SdpError> {
    addr.split('/')
        .next()
        .unwrap_or(addr)
        .parse()
        .map_err(|_| SdpError::BadAddress(addr.to_owned()))
}

impl AudioSession {
    /// Parse an SDP body and pick the first audio m-line with a non-zero port (or the first
    /// audio m-line at all, to report a rejected stream).
    pub fn parse(body: &[u8]) -> Result<Self, SdpError> {
        let s = sdp_types::Session::parse(body).map_err(|e| SdpError::Syntax(e.to_string()))?;
        let audio_index = s
            .medias
            .iter()
            .position(|m| m.media.eq_ignore_ascii_case("audio") && m.port != 0)
            .or_else(|| {
                s.medias
                    .iter()
                    .position(|m| m.media.eq_ignore_ascii_case("audio"))
            })
            .ok_or(SdpError::NoAudio)?;
        let m = &s.medias[audio_index];
        let conn = m
            .connections
            .first()
            .or(s.connection.as_ref())
            .ok_or(SdpError::NoConnection)?;
        let connection = parse_ip(&conn.connection_address)?;

        let mut codecs = Vec::new();
        for f in m.fmt.split_ascii_whitespace() {
            let pt: u8 = f
                .parse()
                .ok()
                .filter(|p| *p < 128)
                .ok_or_else(|| SdpError::BadPayloadType(f.to_owned()))?;
            if codecs.iter().any(|c: &Codec| c.payload_type == pt) {
                continue;
            }
            let mut c = Codec::static_pt(pt).unwrap_or_else(|| {
                let mut c = Codec::new(pt, "", 0, None);
                c.has_rtpmap = false;
                c
            });
            c.has_rtpmap = false;
            codecs.push(c);
        }

        let mut a = Self {
            origin_user: s.origin.username.clone().unwrap_or_else(|| "-".to_owned()),
            session_id: s.origin.sess_id.parse().unwrap_or(0),
            session_version: s.origin.sess_version,
            origin_address: s.origin.unicast_address.clone(),
            session_name: s.session_name.clone(),
            connection,
            port: m.port,
            proto: Proto::parse(&m.proto),
            codecs,
            ptime: None,
            maxptime: None,
            direction: Direction::SendRecv,
            rtcp_mux: false,
            rtcp: None,
            crypto: Vec::new(),
            ssrcs: Vec::new(),
            ice_dtls: IceDtls::default(),
            other_attributes: Vec::new(),
            audio_index,
            other_media: s
                .medias
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != audio_index)
                .map(|(index, o)| OtherMedia {
                    media: o.media.clone(),
                    port: o.port,
                    proto: o.proto.clone(),
                    fmt: o.fmt.clone(),
                    index,
                })
                .collect(),
        };

        // Session-level attributes first; media level overrides.
        for attr in &s.attributes {
            a.session_attribute(&attr.attribute, attr.value.as_deref())?;
        }
        for attr in &m.attributes {
            a.media_attribute(&attr.attribute, attr.value.as_deref())?;
        }
        Ok(a)
    }

    fn session_attribute(&mut self, name: &str, value: Option<&str>) -> Result<(), SdpError> {
        match (name, value) {
            ("group", Some(v)) => {
                let mut it = v.split_ascii_whitespace();
                if it.next() == Some("BUNDLE") {
                    self.ice_dtls.bundle = Some(it.map(str::to_owned).collect());
                }
            }
            ("ice-lite", _) => self.ice_dtls.ice_lite = true,
            ("ice-ufrag" | "ice-pwd" | "ice-options" | "fingerprint" | "setup", _) => {
                self.ice_dtls_attribute(name, value);
            }
            (d, None) if Direction::parse(d).is_some() => {
                self.direction = Direction::parse(d).unwrap_or_default();
            }
            _ => {}
        }
        Ok(())
    }

    fn ice_dtls_attribute(&mut self, name: &str, value: Option<&str>) {
        let v = value.map(|v| v.trim().to_owned());
        let d = &mut self.ice_dtls;
        match name {
            "ice-ufrag" => d.ice_ufrag = v,
            "ice-pwd" => d.ice_pwd = v,
            "ice-options" => d.ice_options = v,
            "fingerprint" => d.fingerprint = v,
            "setup" => d.setup = v,
            _ => {}
        }
    }

    fn codec_mut(&mut self, pt_str: &str, attr: &str) -> Result<Option<&mut Codec>, SdpError> {
        let pt: u8 = pt_str
            .parse()
            .map_err(|_| SdpError::BadAttribute(attr.to_owned()))?;
        Ok(self.codecs.iter_mut().find(|c| c.payload_type == pt))
    }

    fn media_attribute(&mut self, name: &str, value: Option<&str>) -> Result<(), SdpError> {
        let bad = || SdpError::BadAttribute(format!("{name}:{}", value.unwrap_or("")));
        match (name, value) {
            ("rtpmap", Some(v)) => {
                let (pt, enc) = v.trim().split_once(' ').ok_or_else(bad)?;
                let mut parts = enc.trim().split('/');
                let enc_name = parts.next().filter(|n| !n.is_empty()).ok_or_else(bad)?;
                let rate: u32 = parts.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
                let channels = match parts.next() {
                    Some(c) => Some(c.parse::<u8>().map_err(|_| bad())?),
                    None => None,
                };
                if let Some(c) = self.codec_mut(pt, name)? {
                    c.name = enc_name.to_owned();
                    c.clock_rate = rate;
                    c.channels = channels;
                    c.has_rtpmap = true;
                }
            }
            ("fmtp", Some(v)) => {
                let (pt, params) = v.trim().split_once(' ').ok_or_else(bad)?;
                if let Some(c) = self.codec_mut(pt, name)? {
                    c.fmtp = Some(params.trim().to_owned());
                }
            }
            ("rtcp-fb", Some(v)) => {
                let (pt, fb) = v.trim().split_once(' ').ok_or_else(bad)?;
                if pt == "*" {
                    for c in &mut self.codecs {
                        c.rtcp_fb.push(fb.to_owned());
                    }
                } else if let Some(c) = self.codec_mut(pt, name)? {
                    c.rtcp_fb.push(fb.to_owned());
                }
            }
            ("ptime", Some(v)) => self.ptime = Some(v.trim().parse().map_err(|_| bad())?),
            ("maxptime", Some(v)) => self.maxptime = Some(v.trim().parse().map_err(|_| bad())?),
            ("rtcp-mux", _) => self.rtcp_mux = true,
            ("rtcp", Some(v)) => {
                let mut it = v.split_ascii_whitespace();
                let port: u16 = it.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
                let addr = match (it.next(), it.next(), it.next()) {
                    (Some(_), Some(_), Some(a)) => Some(parse_ip(a)?),
                    _ => None,
                };
                self.rtcp = Some((port, addr));
            }
            ("crypto", Some(v)) => self.crypto.push(CryptoAttribute::parse(v)?),
            ("ssrc", Some(v)) => {
                let (id, rest) = v.trim().split_once(' ').ok_or_else(bad)?;
                let ssrc: u32 = id.parse().map_err(|_| bad())?;
                let (attribute, value) = match rest.split_once(':') {
                    Some((a, v)) => (a.to_owned(), Some(v.to_owned())),
                    None => (rest.to_owned(), None),
                };
                self.ssrcs.push(SsrcAttr {
                    ssrc,
                    attribute,
                    value,
                });
            }
            ("candidate", Some(v)) => self.ice_dtls.candidates.push(v.trim().to_owned()),
            ("end-of-candidates", _) => self.ice_dtls.end_of_candidates = true,
            ("mid", Some(v)) => self.ice_dtls.mid = Some(v.trim().to_owned()),
            ("ice-lite", _) => self.ice_dtls.ice_lite = true,
            ("ice-ufrag" | "ice-pwd" | "ice-options" | "fingerprint" | "setup", _) => {
                self.ice_dtls_attribute(name, value);
            }
            (d, None) if Direction::parse(d).is_some() => {
                self.direction = Direction::parse(d).unwrap_or_default();
            }
            _ => self
                .other_attributes
                .push((name.to_owned(), value.map(str::to_owned))),
        }
        Ok(())
    }

    /// RFC 3264 §8.4 / RFC 2543 hold: sendonly, inactive, or a `0.0.0.0` connection.
    pub fn is_hold(&self) -> bool {
        matches!(self.direction, Direction::SendOnly | Direction::Inactive)
            || self.connection.is_unspecified()
    }

    /// Where to send RTP.
    pub fn rtp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.connection, self.port)
    }

    /// Where to send RTCP (rtcp-mux → the RTP address; else `a=rtcp` or port + 1).
    pub fn rtcp_addr(&self) -> SocketAddr {
        if self.rtcp_mux {
            return self.rtp_addr();
        }
        match self.rtcp {
            Some((port, addr)) => SocketAddr::new(addr.unwrap_or(self.connection), port),
            None => SocketAddr::new(self.connection, self.port.wrapping_add(1)),
        }
    }

    /// Codecs that carry audio (not telephone-event, CN, RED).
    pub fn audio_codecs(&self) -> impl Iterator<Item = &Codec> {
        self.codecs
            .iter()
            .filter(|c| !c.is_telephone_event() && !c.is("CN") && !c.is("red"))
    }

    /// The first telephone-event format with this clock rate.
    pub fn telephone_event(&self, clock_rate: u32) -> Option<&Codec> {
        self.codecs
            .iter()
            .find(|c| c.is_telephone_event() && c.clock_rate == clock_rate)
    }

    /// Serialize (CRLF line ends).
    pub fn to_sdp(&self) -> String {
        self.to_string()
    }
}

fn addr_fields(ip: &IpAddr) -> (&'static str, String) {
    match ip {
        IpAddr::V4(a) => ("IP4", a.to_string()),
        IpAddr::V6(a) => ("IP6", a.to_string()),
    }
}

impl fmt::Display for AudioSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (ct, ca) = addr_fields(&self.connection);
        let o_type = if self.origin_address.contains(':') {
            "IP6"
        } else {
            "IP4"
        };
        write!(
            f,
            "v=0\r\no={} {} {} IN {} {}\r\ns={}\r\nc=IN {} {}\r\nt=0 0\r\n",
            self.origin_user,
            self.session_id,
            self.session_version,
            o_type,
            self.origin_address,
            if self.session_name.is_empty() {
                "-"
            } else {
                &self.session_name
            },
            ct,
            ca
        )?;
        let d = &self.ice_dtls;
        if let Some(b) = &d.bundle {
            write!(f, "a=group:BUNDLE {}\r\n", b.join(" "))?;
        }
        if d.ice_lite {
            f.write_str("a=ice-lite\r\n")?;
        }
        let audio_line = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            let fmts: Vec<String> = self
                .codecs
                .iter()
                .map(|c| c.payload_type.to_string())
                .collect();
            write!(
                f,
                "m=audio {} {} {}\r\n",
                self.port,
                self.proto.as_str(),
                fmts.join(" ")
            )?;
            if let Some((port, addr)) = self.rtcp {
                match addr {
                    Some(a) => {
                        let (t, s) = addr_fields(&a);
                        write!(f, "a=rtcp:{port} IN {t} {s}\r\n")?
                    }
                    None => write!(f, "a=rtcp:{port}\r\n")?,
                }
            }
            for c in &d.candidates {
                write!(f, "a=candidate:{c}\r\n")?;
            }
            if d.end_of_candidates {
                f.write_str("a=end-of-candidates\r\n")?;
            }
            for (k, v) in [
                ("ice-ufrag", &d.ice_ufrag),
                ("ice-pwd", &d.ice_pwd),
                ("ice-options", &d.ice_options),
                ("fingerprint", &d.fingerprint),
                ("setup", &d.setup),
                ("mid", &d.mid),
            ] {
                if let Some(v) = v {
                    write!(f, "a={k}:{v}\r\n")?;
                }
            }
            for c in &self.codecs {
                if c.has_rtpmap {
                    write!(f, "a=rtpmap:{} {}/{}", c.payload_type, c.name, c.clock_rate)?;
                    if let Some(ch) = c.channels {
                        write!(f, "/{ch}")?;
                    }
                    f.write_str("\r\n")?;
                }
                for fb in &c.rtcp_fb {
                    write!(f, "a=rtcp-fb:{} {fb}\r\n", c.payload_type)?;
                }
                if let Some(p) = &c.fmtp {
                    write!(f, "a=fmtp:{} {p}\r\n", c.payload_type)?;
                }
            }
            if let Some(p) = self.ptime {
                write!(f, "a=ptime:{p}\r\n")?;
            }
            if let Some(p) = self.maxptime {
                write!(f, "a=maxptime:{p}\r\n")?;
            }
            write!(f, "a={}\r\n", self.direction.as_str())?;
            if self.rtcp_mux {
                f.write_str("a=rtcp-mux\r\n")?;
            }
            for c in &self.crypto {
                write!(f, "a=crypto:{c}\r\n")?;
            }
            for s in &self.ssrcs {
                match &s.value {
                    Some(v) => write!(f, "a=ssrc:{} {}:{v}\r\n", s.ssrc, s.attribute)?,
                    None => write!(f, "a=ssrc:{} {}\r\n", s.ssrc, s.attribute)?,
                }
            }
            for (k, v) in &self.other_attributes {
                match v {
                    Some(v) => write!(f, "a={k}:{v}\r\n")?,
                    None => write!(f, "a={k}\r\n")?,
                }
            }
            Ok(())
        };
        let total = self.other_media.len() + 1;
        let mut others = self.other_media.iter();
        for i in 0..total {
            if i == self.audio_index.min(total - 1) {
                audio_line(f)?;
            } else if let Some(o) = others.next() {
                write!(f, "m={} {} {} {}\r\n", o.media, o.port, o.proto, o.fmt)?;
            }
        }
        Ok(())
    }
}

/// What we are willing to do, for building offers and answers.
#[derive(Debug, Clone)]
pub struct LocalMedia {
    /// Address and port we receive RTP on.
    pub address: IpAddr,
    pub port: u16,
    /// Audio codecs in preference order (their PTs are used only in our own offers).
    pub codecs: Vec<Codec>,
    /// telephone-event clock rates we accept, in preference order (empty = no DTMF).
    /// WhatsApp needs 8000.
    pub dtmf_clock_rates: Vec<u32>,
    /// PT for telephone-event in our offers.
    pub dtmf_payload_type: u8,
    pub ptime: Option<u32>,
    pub maxptime: Option<u32>,
    /// Profile we offer: RTP/AVP or RTP/SAVP (SDES).
    pub proto: Proto,
    /// SRTP suites in preference order (SDES).
    pub srtp_suites: Vec<SrtpProfile>,
    pub rtcp_mux: bool,
    pub direction: Direction,
    /// Our SSRC and CNAME (one `a=ssrc` line, as Meta sends).
    pub ssrc: Option<(u32, String)>,
    pub session_id: u64,
    pub session_version: u64,
}

impl LocalMedia {
    /// The WhatsApp side: Opus 48000/2 (+ PCMA/PCMU when allowed), DTMF at 8 kHz, ptime 20,
    /// SDES SRTP, rtcp-mux.
    pub fn whatsapp(address: IpAddr, port: u16, g711: bool) -> Self {
        let mut codecs = vec![Codec::opus(111).with_fmtp(
            "maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1",
        )];
        if g711 {
            codecs.push(Codec::pcma());
            codecs.push(Codec::pcmu());
        }
        Self {
            address,
            port,
            codecs,
            dtmf_clock_rates: vec![8000],
            dtmf_payload_type: 126,
            ptime: Some(20),
            maxptime: Some(20),
            proto: Proto::RtpSavp,
            srtp_suites: vec![
                SrtpProfile::AesCm128HmacSha1_80,
                SrtpProfile::AeadAes128Gcm,
                SrtpProfile::AesCm128HmacSha1_32,
                SrtpProfile::AeadAes256Gcm,
                SrtpProfile::AesCm256HmacSha1_80,
            ],
            rtcp_mux: true,
            direction: Direction::SendRecv,
            ssrc: None,
            session_id: 0,
            session_version: 0,
        }
    }

    /// A plain PBX trunk: PCMA/PCMU (+ Opus when listed), telephone-event/8000, RTP/AVP.
    pub fn pbx(address: IpAddr, port: u16, codecs: Vec<Codec>) -> Self {
        Self {
            address,
            port,
            codecs,
            dtmf_clock_rates: vec![8000, 48000],
            dtmf_payload_type: 101,
            ptime: Some(20),
            maxptime: None,
            proto: Proto::RtpAvp,
            srtp_suites: Vec::new(),
            rtcp_mux: false,
            direction: Direction::SendRecv,
            ssrc: None,
            session_id: 0,
            session_version: 0,
        }
    }

    fn base(&self, proto: Proto) -> AudioSession {
        AudioSession {
            origin_user: "whatsip".to_owned(),
            session_id: self.session_id,
            session_version: self.session_version,
            origin_address: self.address.to_string(),
            session_name: "whatsip".to_owned(),
            connection: self.address,
            port: self.port,
            proto,
            codecs: Vec::new(),
            ptime: self.ptime,
            maxptime: self.maxptime,
            direction: self.direction,
            rtcp_mux: self.rtcp_mux,
            rtcp: None,
            crypto: Vec::new(),
            ssrcs: self
                .ssrc
                .iter()
                .map(|(ssrc, cname)| SsrcAttr {
                    ssrc: *ssrc,
                    attribute: "cname".to_owned(),
                    value: Some(cname.clone()),
                })
                .collect(),
            ice_dtls: IceDtls::default(),
            other_attributes: Vec::new(),
            audio_index: 0,
            other_media: Vec::new(),
        }
    }
}

/// Our pending offer: the SDP and the SDES keys behind it.
#[derive(Debug, Clone)]
pub struct Offer {
    pub sdp: AudioSession,
    pub keys: Vec<(CryptoAttribute, MasterKey)>,
}

/// SRTP keys agreed for a leg.
#[derive(Debug, Clone)]
pub struct SrtpKeys {
    /// Protect what we send.
    pub local: MasterKey,
    /// Unprotect what we receive.
    pub remote: MasterKey,
    pub remote_mki: Option<Mki>,
}

/// Outcome of an offer/answer exchange, from our side.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// Where to send RTP / RTCP.
    pub remote_rtp: SocketAddr,
    pub remote_rtcp: SocketAddr,
    /// Audio codec to send, with the PT to use on the wire.
    pub codec: Codec,
    /// telephone-event format to send DTMF with, if agreed.
    pub dtmf: Option<Codec>,
    pub ptime: Option<u32>,
    /// Our direction.
    pub direction: Direction,
    pub rtcp_mux: bool,
    pub srtp: Option<SrtpKeys>,
    /// The peer's SSRCs from `a=ssrc`.
    pub remote_ssrcs: Vec<u32>,
}

/// Build an offer from `local` (fresh SDES keys when `proto` is SRTP).
pub fn build_offer(local: &LocalMedia) -> Offer {
    build_offer_keyed(local, &mut sdes::make_offer)
}

/// [`build_offer`] with the SDES keys drawn from `rng` instead of the OS-seeded thread RNG
/// (the sandbox's deterministic mode; the gateway keeps [`build_offer`]).
pub fn build_offer_with_rng<R: rand::CryptoRng + ?Sized>(local: &LocalMedia, rng: &mut R) -> Offer {
    build_offer_keyed(local, &mut |suites| sdes::make_offer_with_rng(suites, rng))
}

type OfferKeys<'a> = dyn FnMut(&[SrtpProfile]) -> Vec<(CryptoAttribute, MasterKey)> + 'a;

fn build_offer_keyed(local: &LocalMedia, make_keys: &mut OfferKeys<'_>) -> Offer {
    let mut sdp = local.base(local.proto.clone());
    sdp.codecs = local.codecs.clone();
    for (i, rate) in local.dtmf_clock_rates.iter().enumerate() {
        let pt = local.dtmf_payload_type.wrapping_add(i as u8) & 0x7f;
        sdp.codecs.push(Codec::telephone_event(pt, *rate));
    }
    let keys = if local.proto.is_sdes() {
        make_keys(&local.srtp_suites)
    } else {
        Vec::new()
    };
    sdp.crypto = keys.iter().map(|(a, _)| a.clone()).collect();
    Offer { sdp, keys }
}

fn pick_dtmf(remote: &AudioSession, local: &LocalMedia) -> Option<Codec> {
    local
        .dtmf_clock_rates
        .iter()
        .find_map(|r| remote.telephone_event(*r).cloned())
}

fn supported_proto(p: &Proto) -> Result<(), SdpError> {
    match p {
        Proto::RtpAvp | Proto::RtpAvpf | Proto::RtpSavp | Proto::RtpSavpf => Ok(()),
        Proto::UdpTlsRtpSavpf => Err(SdpError::DtlsRequired),
        Proto::Other(s) => Err(SdpError::UnsupportedProto(s.clone())),
    }
}

/// Answer `offer` per RFC 3264: one audio m-line, the offerer's PT numbers, codecs in our
/// preference order that the offer also has, DTMF at our preferred clock rate, fresh SDES
/// key. Returns our answer SDP and the negotiated parameters.
pub fn build_answer(
    offer: &AudioSession,
    local: &LocalMedia,
) -> Result<(AudioSession, Negotiated), SdpError> {
    build_answer_keyed(offer, local, &mut sdes::answer_offer)
}

/// [`build_answer`] with our SDES key drawn from `rng` instead of the OS-seeded thread RNG
/// (the sandbox's deterministic mode; the gateway keeps [`build_answer`]).
pub fn build_answer_with_rng<R: rand::CryptoRng + ?Sized>(
    offer: &AudioSession,
    local: &LocalMedia,
    rng: &mut R,
) -> Result<(AudioSession, Negotiated), SdpError> {
    build_answer_keyed(offer, local, &mut |offered, suites| {
        sdes::answer_offer_with_rng(offered, suites, rng)
    })
}

type AnswerKeys<'a> =
    dyn FnMut(&[CryptoAttribute], &[SrtpProfile]) -> Result<SdesAnswer, SdesError> + 'a;

fn build_answer_keyed(
    offer: &AudioSession,
    local: &LocalMedia,
    answer_keys: &mut AnswerKeys<'_>,
) -> Result<(AudioSession, Negotiated), SdpError> {
    if offer.port == 0 {
        return Err(SdpError::Rejected);
    }
    supported_proto(&offer.proto)?;
    let mut chosen: Vec<Codec> = Vec::new();
    for want in &local.codecs {
        if let Some(c) = offer.audio_codecs().find(|c| c.same_format(want))
            && !chosen.iter().any(|x| x.payload_type == c.payload_type)
        {
            let mut c = c.clone();
            // Our fmtp describes what we receive; keep the offer's when we have none.
            if want.fmtp.is_some() {
                c.fmtp = want.fmtp.clone();
            }
            c.rtcp_fb.clear();
            c.has_rtpmap = true;
            chosen.push(c);
        }
    }
    let codec = chosen.first().cloned().ok_or(SdpError::NoCommonCodec)?;
    let dtmf = pick_dtmf(offer, local);

    let mut sdp = local.base(offer.proto.clone());
    sdp.codecs = chosen;
    if let Some(d) = &dtmf {
        let mut d = d.clone();
        d.rtcp_fb.clear();
        d.has_rtpmap = true;
        sdp.codecs.push(d);
    }
    sdp.direction = offer.direction.answer(local.direction);
    sdp.rtcp_mux = offer.rtcp_mux && local.rtcp_mux;
    sdp.audio_index = offer.audio_index;
    sdp.other_media = offer
        .other_media
        .iter()
        .map(|o| OtherMedia {
            port: 0,
            ..o.clone()
        })
        .collect();
    if offer.connection.is_unspecified() {
        // RFC 2543-style hold offer: we keep our real address but stop sending.
        sdp.direction = sdp.direction.min_with(Direction::RecvOnly);
    }

    let srtp = if offer.proto.is_sdes() {
        let SdesAnswer {
            answer,
            remote_key,
            remote_mki,
            local_key,
        } = answer_keys(&offer.crypto, &local.srtp_suites)?;
        sdp.crypto = vec![answer];
        Some(SrtpKeys {
            local: local_key,
            remote: remote_key,
            remote_mki,
        })
    } else {
        None
    };

    let negotiated = Negotiated {
        remote_rtp: offer.rtp_addr(),
        remote_rtcp: offer.rtcp_addr(),
        codec,
        dtmf,
        ptime: offer.ptime.or(local.ptime),
        direction: sdp.direction,
        rtcp_mux: sdp.rtcp_mux,
        srtp,
        remote_ssrcs: dedup_ssrcs(offer),
    };
    Ok((sdp, negotiated))
}

fn dedup_ssrcs(s: &AudioSession) -> Vec<u32> {
    let mut v: Vec<u32> = Vec::new();
    for a in &s.ssrcs {
        if !v.contains(&a.ssrc) {
            v.push(a.ssrc);
        }
    }
    v
}

/// Process the answer to our `offer`: the codec the answerer put first that we offered
/// (with the answer's PT), DTMF, direction, and SRTP keys.
pub fn accept_answer(offer: &Offer, answer: &AudioSession) -> Result<Negotiated, SdpError> {
    if answer.port == 0 {
        return Err(SdpError::Rejected);
    }
    let codec = answer
        .audio_codecs()
        .find(|c| offer.sdp.audio_codecs().any(|o| o.same_format(c)))
        .cloned()
        .ok_or(SdpError::NoCommonCodec)?;
    let dtmf = offer
        .sdp
        .codecs
        .iter()
        .filter(|c| c.is_telephone_event())
        .find_map(|o| answer.telephone_event(o.clock_rate).cloned());
    let srtp = if offer.sdp.proto.is_sdes() {
        let line = answer
            .crypto
            .first()
            .ok_or(SdpError::Crypto(SdesError::NoAcceptableSuite))?;
        let (local, remote, remote_mki) = sdes::accept_answer(&offer.keys, line)?;
        if local.concat() == remote.concat() {
            // An answerer echoing our key would make both directions share a keystream.
            return Err(SdpError::Crypto(SdesError::NoAcceptableSuite));
        }
        Some(SrtpKeys {
            local,
            remote,
            remote_mki,
        })
    } else {
        None
    };
    Ok(Negotiated {
        remote_rtp: answer.rtp_addr(),
        remote_rtcp: answer.rtcp_addr(),
        codec,
        dtmf,
        ptime: answer.ptime.or(offer.sdp.ptime),
        direction: answer.direction.answer(offer.sdp.direction),
        rtcp_mux: answer.rtcp_mux && offer.sdp.rtcp_mux,
        srtp,
        remote_ssrcs: dedup_ssrcs(answer),
    })
}

impl Direction {
    /// The more restrictive of two directions.
    fn min_with(self, other: Direction) -> Direction {
        let s = self.sends() && other.sends();
        let r = self.receives() && other.receives();
        match (s, r) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }
}

/// `0.0.0.0`, for callers building RFC 2543 hold SDPs.
pub const HOLD_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

#[cfg(test)]
mod tests;
