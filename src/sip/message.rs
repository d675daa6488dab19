//! SIP messages (RFC 3261 §7): the `sip::message` wrapper every other module uses.
//!
//! Guarantees: `Message::parse` never panics and is strict (bad start line, bad header syntax,
//! non-UTF-8 header bytes, Content-Length disagreeing with the body → `ParseError`, which maps
//! to a 400 with a Warning). Headers are stored as written (name, value with folding unfolded)
//! in wire order, so Record-Route and `x-wa-meta-*` values can be echoed byte-for-byte; typed
//! views are parsed on demand. Serializing writes the headers in order and a Content-Length
//! computed from the body.
use crate::sip::header::{CSeq, HeaderName, NameAddr, Via};
use crate::sip::method::Method;
use crate::sip::uri::Uri;
use bytes::Bytes;

/// Why a message (or one of its header values) could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("bad start line: {0}")]
    StartLine(String),
    #[error("bad header line: {0}")]
    HeaderLine(String),
    #[error("header is not UTF-8")]
    NotUtf8,
    #[error("bad {header} header: {reason}")]
    HeaderValue { header: String, reason: String },
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("Content-Length {declared} does not match body length {actual}")]
    ContentLength { declared: usize, actual: usize },
    #[error("message too large")]
    TooLarge,
    #[error("bad URI: {0}")]
    Uri(String),
}

impl ParseError {
    /// Every parse failure of a request is answered with 400 Bad Request.
    pub fn sip_status(&self) -> u16 {
        400
    }

    /// Text for a `Warning: 399 <host> "<text>"` header in the 400 answer.
    pub fn warning_text(&self) -> String {
        self.to_string().replace('"', "'")
    }
}

/// One header line: name and value (leading/trailing whitespace trimmed, folds unfolded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: String,
}

/// Headers in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<Header>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// Whether the bytes came from a datagram (UDP: Content-Length may be absent, a longer body is
/// truncated to it) or a stream (TCP/TLS: Content-Length is mandatory and must match).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Datagram,
    Stream,
}

impl Message {
    /// Parses one complete message.
    pub fn parse(bytes: &[u8], framing: Framing) -> Result<Message, ParseError> {
        crate::sip::header::parse::message(bytes, framing)
    }

    /// Serializes to wire bytes (Content-Length computed from the body).
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::sip::header::parse::serialize(self)
    }

    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    pub fn body(&self) -> &Bytes {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }
}

impl Request {
    pub fn to_bytes(&self) -> Vec<u8> {
        Message::Request(self.clone()).to_bytes()
    }
}

impl Response {
    pub fn to_bytes(&self) -> Vec<u8> {
        Message::Response(self.clone()).to_bytes()
    }

    pub fn is_provisional(&self) -> bool {
        (100..200).contains(&self.status)
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn is_final(&self) -> bool {
        self.status >= 200
    }
}

impl Headers {
    pub fn new() -> Headers {
        Headers(Vec::new())
    }

    /// First value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.0
            .iter()
            .find(|h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    /// Every line of `name`, in order (not split on commas).
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    /// Every comma-separated element of every `name` line (commas inside quotes or `<…>` do not
    /// split), trimmed.
    pub fn list(&self, name: &HeaderName) -> Vec<&str> {
        self.0
            .iter()
            .filter(|h| &h.name == name)
            .flat_map(|h| crate::sip::header::parse::split_list(&h.value))
            .collect()
    }

    pub fn contains(&self, name: &HeaderName) -> bool {
        self.0.iter().any(|h| &h.name == name)
    }

    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.push(Header {
            name,
            value: value.into(),
        });
    }

    pub fn push_front(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.insert(
            0,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    /// Replaces every `name` line with one line holding `value` (at the first one's position,
    /// or appended).
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter().position(|h| h.name == name) {
            Some(i) => {
                self.0[i].value = value;
                let mut idx = 0;
                self.0.retain(|h| {
                    let keep = idx <= i || h.name != name;
                    idx += 1;
                    keep
                });
            }
            None => self.push(name, value),
        }
    }

    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|h| &h.name != name);
    }

    // ---- typed views (strict; errors name the header) ----

    /// All Via values, top first (several per line are split).
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.list(&HeaderName::Via)
            .into_iter()
            .map(crate::sip::header::parse::via)
            .collect()
    }

    pub fn top_via(&self) -> Result<Via, ParseError> {
        let first = self
            .list(&HeaderName::Via)
            .into_iter()
            .next()
            .ok_or(ParseError::Missing("Via"))?;
        crate::sip::header::parse::via(first)
    }

    pub fn from(&self) -> Result<NameAddr, ParseError> {
        self.single_name_addr(HeaderName::From, "From")
    }

    pub fn to(&self) -> Result<NameAddr, ParseError> {
        self.single_name_addr(HeaderName::To, "To")
    }

    pub fn call_id(&self) -> Result<&str, ParseError> {
        let v = self
            .get(&HeaderName::CallId)
            .ok_or(ParseError::Missing("Call-ID"))?;
        crate::sip::header::parse::call_id(v)
    }

    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        let v = self
            .get(&HeaderName::CSeq)
            .ok_or(ParseError::Missing("CSeq"))?;
        crate::sip::header::parse::cseq(v)
    }

    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        self.get(&HeaderName::MaxForwards)
            .map(|v| crate::sip::header::parse::number(v, "Max-Forwards"))
            .transpose()
    }

    /// Contact values; `*` is returned as an error-free empty list by `contact_is_star`.
    pub fn contacts(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addr_list(&HeaderName::Contact)
    }

    pub fn record_route(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addr_list(&HeaderName::RecordRoute)
    }

    pub fn route(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addr_list(&HeaderName::Route)
    }

    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        self.get(&HeaderName::ContentLength)
            .map(|v| crate::sip::header::parse::number(v, "Content-Length").map(|n| n as usize))
            .transpose()
    }

    /// Media type of the body, lowercased, without parameters (`application/sdp`).
    pub fn content_type(&self) -> Option<String> {
        self.get(&HeaderName::ContentType).map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// Tokens of a list header such as Allow, Supported, Require, Proxy-Require, Unsupported.
    pub fn tokens(&self, name: &HeaderName) -> Vec<String> {
        self.list(name).into_iter().map(str::to_string).collect()
    }

    pub fn allow(&self) -> Vec<Method> {
        self.list(&HeaderName::Allow)
            .into_iter()
            .filter_map(Method::from_token)
            .collect()
    }

    /// `Session-Expires: <delta>[;refresher=uac|uas]` (RFC 4028).
    pub fn session_expires(&self) -> Result<Option<(u32, Option<String>)>, ParseError> {
        self.get(&HeaderName::SessionExpires)
            .map(crate::sip::header::parse::session_expires)
            .transpose()
    }

    pub fn min_se(&self) -> Result<Option<u32>, ParseError> {
        self.get(&HeaderName::MinSe)
            .map(|v| {
                let delta = v.split(';').next().unwrap_or_default();
                crate::sip::header::parse::number(delta, "Min-SE")
            })
            .transpose()
    }

    /// Every `x-wa-meta-*` (and `x-wa_meta-*`) header as (name as written, value).
    pub fn wa_meta(&self) -> Vec<(&str, &str)> {
        self.0
            .iter()
            .filter(|h| h.name.is_wa_meta())
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect()
    }

    /// Value of one `x-wa-meta-<suffix>` header, suffix matched case-insensitively, either
    /// spelling (`x-wa-meta-` / `x-wa_meta-`).
    pub fn wa_meta_value(&self, suffix: &str) -> Option<&str> {
        self.wa_meta()
            .into_iter()
            .find(|(n, _)| n.len() > 10 && n[10..].eq_ignore_ascii_case(suffix))
            .map(|(_, v)| v)
    }

    fn single_name_addr(
        &self,
        name: HeaderName,
        label: &'static str,
    ) -> Result<NameAddr, ParseError> {
        let v = self.get(&name).ok_or(ParseError::Missing(label))?;
        crate::sip::header::parse::name_addr(v, label)
    }

    fn name_addr_list(&self, name: &HeaderName) -> Result<Vec<NameAddr>, ParseError> {
        self.list(name)
            .into_iter()
            .map(|v| crate::sip::header::parse::name_addr(v, name.as_str()))
            .collect()
    }
}
