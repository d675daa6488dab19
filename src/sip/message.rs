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
    /// A well-formed `SIP/x.y` version other than 2.0 (answered with 505).
    #[error("unsupported SIP version {0}")]
    Version(String),
}

impl ParseError {
    /// The status a request that failed to parse is answered with: 505 for another SIP
    /// version, 513 for an oversized message, 400 Bad Request otherwise.
    pub fn sip_status(&self) -> u16 {
        match self {
            ParseError::Version(_) => 505,
            ParseError::TooLarge => 513,
            _ => 400,
        }
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

    /// Parses the first message in stream bytes that may hold more (Content-Length required;
    /// the body is exactly that long) and returns it with the number of bytes it used.
    pub fn parse_prefix(bytes: &[u8]) -> Result<(Message, usize), ParseError> {
        crate::sip::header::parse::message_prefix(bytes)
    }

    pub fn as_request(&self) -> Option<&Request> {
        match self {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        }
    }

    pub fn as_response(&self) -> Option<&Response> {
        match self {
            Message::Response(r) => Some(r),
            Message::Request(_) => None,
        }
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
    /// A request with no headers and an empty body; the caller adds Via, From, To, Call-ID,
    /// CSeq, Max-Forwards (and a matching CSeq method).
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        Message::Request(self.clone()).to_bytes()
    }
}

impl Response {
    /// A response to `req` per RFC 3261 §8.2.6.2: Via (every value, in order), From, To,
    /// Call-ID and CSeq copied as written, no body. Add a To tag with
    /// `headers.set_to_tag(…)` (required for every response but 100 that creates a dialog),
    /// and Record-Route (`Headers::copy_from`) for a dialog-creating response (§12.1.1).
    pub fn from_request(req: &Request, status: u16, reason: &str) -> Response {
        let mut headers = Headers::new();
        headers.copy_from(
            &req.headers,
            &[
                HeaderName::Via,
                HeaderName::From,
                HeaderName::To,
                HeaderName::CallId,
                HeaderName::CSeq,
            ],
        );
        Response {
            status,
            reason: reason.to_string(),
            headers,
            body: Bytes::new(),
        }
    }

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

    /// Contact values. A `Contact: *` (REGISTER only) yields an empty list; check
    /// `contact_is_star`.
    pub fn contacts(&self) -> Result<Vec<NameAddr>, ParseError> {
        if self.contact_is_star() {
            if self.list(&HeaderName::Contact).len() > 1 {
                return Err(ParseError::HeaderValue {
                    header: "Contact".into(),
                    reason: "'*' mixed with other contacts".into(),
                });
            }
            return Ok(Vec::new());
        }
        self.name_addr_list(&HeaderName::Contact)
    }

    /// `Contact: *` (RFC 3261 §10.2.2, remove all bindings).
    pub fn contact_is_star(&self) -> bool {
        self.list(&HeaderName::Contact).contains(&"*")
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
            .find(|(n, _)| n.get(10..).is_some_and(|s| s.eq_ignore_ascii_case(suffix)))
            .map(|(_, v)| v)
    }

    /// The raw text of every `name` line, as received (for byte-exact echo of Record-Route,
    /// Route, `x-wa-meta-*`, and the Authenticate/Authorization values a digest module parses).
    pub fn raw_lines<'a>(&'a self, name: &'a HeaderName) -> Vec<&'a str> {
        self.get_all(name).collect()
    }

    /// Appends every line of each of `names` from `other`, in `other`'s order, as written.
    pub fn copy_from(&mut self, other: &Headers, names: &[HeaderName]) {
        for h in &other.0 {
            if names.contains(&h.name) {
                self.0.push(h.clone());
            }
        }
    }

    /// Record-Route lines as received, top first (a UAS echoes them unchanged, §12.1.1).
    pub fn record_route_lines(&self) -> Vec<&str> {
        self.raw_lines(&HeaderName::RecordRoute)
    }

    pub fn route_lines(&self) -> Vec<&str> {
        self.raw_lines(&HeaderName::Route)
    }

    pub fn supported(&self) -> Vec<String> {
        self.tokens(&HeaderName::Supported)
    }

    pub fn require(&self) -> Vec<String> {
        self.tokens(&HeaderName::Require)
    }

    pub fn proxy_require(&self) -> Vec<String> {
        self.tokens(&HeaderName::ProxyRequire)
    }

    /// Every Reason value (RFC 3326), raw.
    pub fn reasons(&self) -> Vec<&str> {
        self.list(&HeaderName::Reason)
    }

    /// Every Warning value (RFC 3261 §20.43), raw.
    pub fn warnings(&self) -> Vec<&str> {
        self.list(&HeaderName::Warning)
    }

    /// Raw `WWW-Authenticate` / `Proxy-Authenticate` / `Authorization` /
    /// `Proxy-Authorization` lines (one challenge or credential per line).
    pub fn www_authenticate(&self) -> Vec<&str> {
        self.raw_lines(&HeaderName::WwwAuthenticate)
    }

    pub fn proxy_authenticate(&self) -> Vec<&str> {
        self.raw_lines(&HeaderName::ProxyAuthenticate)
    }

    pub fn authorization(&self) -> Vec<&str> {
        self.raw_lines(&HeaderName::Authorization)
    }

    pub fn proxy_authorization(&self) -> Vec<&str> {
        self.raw_lines(&HeaderName::ProxyAuthorization)
    }

    /// Adds a Via on top (a new line before every other header).
    pub fn push_via(&mut self, via: &Via) {
        self.push_front(HeaderName::Via, via.to_string());
    }

    /// Replaces the top Via value (only the first element of the first Via line).
    pub fn set_top_via(&mut self, via: &Via) -> Result<(), ParseError> {
        let line = self
            .0
            .iter_mut()
            .find(|h| h.name == HeaderName::Via)
            .ok_or(ParseError::Missing("Via"))?;
        let mut elems: Vec<String> = crate::sip::header::parse::split_list(&line.value)
            .into_iter()
            .map(str::to_string)
            .collect();
        match elems.first_mut() {
            Some(first) => *first = via.to_string(),
            None => elems.push(via.to_string()),
        }
        line.value = elems.join(", ");
        Ok(())
    }

    /// Removes the top Via value (a proxy/B2BUA forwarding a response); returns it.
    pub fn pop_top_via(&mut self) -> Result<Via, ParseError> {
        let top = self.top_via()?;
        let i = self
            .0
            .iter()
            .position(|h| h.name == HeaderName::Via)
            .ok_or(ParseError::Missing("Via"))?;
        let rest: Vec<String> = crate::sip::header::parse::split_list(&self.0[i].value)
            .into_iter()
            .skip(1)
            .map(str::to_string)
            .collect();
        if rest.is_empty() {
            self.0.remove(i);
        } else {
            self.0[i].value = rest.join(", ");
        }
        Ok(top)
    }

    /// Sets a parameter of the top Via (e.g. `received`, `rport=5060`).
    pub fn set_top_via_param(&mut self, name: &str, value: Option<&str>) -> Result<(), ParseError> {
        let mut via = self.top_via()?;
        via.params.set(name, value);
        self.set_top_via(&via)
    }

    /// Sets (or replaces) the To tag, rewriting the To value in `<…>` form.
    pub fn set_to_tag(&mut self, tag: &str) -> Result<(), ParseError> {
        let mut to = self.to()?;
        to.params.set("tag", Some(tag));
        self.set(HeaderName::To, to.to_string());
        Ok(())
    }

    /// Sets (or replaces) the From tag.
    pub fn set_from_tag(&mut self, tag: &str) -> Result<(), ParseError> {
        let mut from = self.from()?;
        from.params.set("tag", Some(tag));
        self.set(HeaderName::From, from.to_string());
        Ok(())
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
