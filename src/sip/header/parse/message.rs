//! SIP message framing and start lines (RFC 3261 §7, §25.1) and the serializer.
//!
//! Guarantees: a message is accepted only if its start line is exact (one SP between the
//! parts, `SIP/2.0`), every header line is `token *WSP ":" value` with CRLF line ends and
//! folding unfolded to one SP, the header section is UTF-8, the body agrees with
//! Content-Length under the given framing, the mandatory headers are present and the headers
//! a B2BUA relies on (Via, From, To, Call-ID, CSeq, Max-Forwards, Contact, Route,
//! Record-Route, Content-Type, Date) are syntactically valid. Nothing here panics.
use super::value::split_list_raw;
use crate::sip::header::{HeaderName, is_token_char};
use crate::sip::message::{Framing, Header, Headers, Message, ParseError, Request, Response};
use crate::sip::method::Method;
use crate::sip::uri::Uri;
use bytes::Bytes;

/// Largest message accepted (RFC 3261 §18.1.1 keeps UDP far below; TCP/TLS messages larger
/// than this are refused with 513).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Datagram,
    Stream,
    /// Stream bytes that may hold more after this message: body = exactly Content-Length.
    Prefix,
}

pub fn message(bytes: &[u8], framing: Framing) -> Result<Message, ParseError> {
    let mode = match framing {
        Framing::Datagram => Mode::Datagram,
        Framing::Stream => Mode::Stream,
    };
    parse(bytes, mode).map(|(m, _)| m)
}

/// Parses the first message of `bytes` (stream rules: Content-Length required) and returns
/// it with the number of bytes it occupied (leading CRLF keep-alives included).
pub fn message_prefix(bytes: &[u8]) -> Result<(Message, usize), ParseError> {
    parse(bytes, Mode::Prefix)
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n")
}

fn parse(bytes: &[u8], mode: Mode) -> Result<(Message, usize), ParseError> {
    // RFC 3261 §7.5: CRLFs before the start line are ignored.
    let mut start = 0;
    while bytes.get(start..start + 2) == Some(b"\r\n") {
        start += 2;
    }
    let b = &bytes[start..];
    let head_end = match find_head_end(b) {
        Some(h) => h,
        None if b.len() > MAX_MESSAGE_SIZE => return Err(ParseError::TooLarge),
        None => {
            return Err(ParseError::HeaderLine(
                "no empty line after the headers".into(),
            ));
        }
    };
    let head = std::str::from_utf8(&b[..head_end]).map_err(|_| ParseError::NotUtf8)?;
    let body_start = head_end + 4;
    let rest = &b[body_start..];

    let mut lines = head.split("\r\n");
    let start_line = lines.next().unwrap_or_default();
    let headers = header_lines(lines)?;

    let declared = content_length(&headers)?;
    let body_len = match (mode, declared) {
        (Mode::Datagram, None) => rest.len(),
        (_, None) => return Err(ParseError::Missing("Content-Length")),
        (Mode::Stream, Some(d)) if d != rest.len() => {
            return Err(ParseError::ContentLength {
                declared: d,
                actual: rest.len(),
            });
        }
        (_, Some(d)) if d > rest.len() => {
            return Err(ParseError::ContentLength {
                declared: d,
                actual: rest.len(),
            });
        }
        (_, Some(d)) => d,
    };
    let consumed = start + body_start + body_len;
    if consumed > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge);
    }
    let body = Bytes::copy_from_slice(&rest[..body_len]);

    let msg = if let Some(status_line) = start_line.strip_prefix("SIP/") {
        let (status, reason) = status_line_parts(status_line)?;
        Message::Response(Response {
            status,
            reason,
            headers,
            body,
        })
    } else {
        let (method, uri) = request_line(start_line)?;
        Message::Request(Request {
            method,
            uri,
            headers,
            body,
        })
    };
    validate(&msg)?;
    Ok((msg, consumed))
}

fn version(v: &str) -> Result<(), ParseError> {
    // SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT ("SIP" is case-insensitive)
    let ok_shape = v.len() > 4
        && v.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
        && v[4..].split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
    if !ok_shape {
        return Err(ParseError::StartLine("bad SIP version".into()));
    }
    if &v[4..] != "2.0" {
        return Err(ParseError::Version(v.to_string()));
    }
    Ok(())
}

/// `Request-Line = Method SP Request-URI SP SIP-Version`.
fn request_line(l: &str) -> Result<(Method, Uri), ParseError> {
    let parts: Vec<&str> = l.split(' ').collect();
    let [m, u, v] = parts.as_slice() else {
        return Err(ParseError::StartLine(
            "request line is not 'Method SP Request-URI SP SIP-Version'".into(),
        ));
    };
    let method = Method::from_token(m).ok_or_else(|| ParseError::StartLine("bad method".into()))?;
    version(v)?;
    let uri = Uri::parse(u)?;
    if let Uri::Sip(s) = &uri
        && !s.headers.is_empty()
    {
        return Err(ParseError::Uri(
            "headers are not allowed in a Request-URI".into(),
        ));
    }
    Ok((method, uri))
}

/// After the leading `SIP/`: `2.0 SP 3DIGIT SP Reason-Phrase`.
fn status_line_parts(l: &str) -> Result<(u16, String), ParseError> {
    let mut it = l.splitn(3, ' ');
    let (v, code, reason) = match (it.next(), it.next(), it.next()) {
        (Some(v), Some(c), Some(r)) => (v, c, r),
        _ => {
            return Err(ParseError::StartLine(
                "status line is not 'SIP-Version SP Status-Code SP Reason-Phrase'".into(),
            ));
        }
    };
    version(&format!("SIP/{v}"))?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::StartLine("status code is not 3 digits".into()));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| ParseError::StartLine("bad status code".into()))?;
    if !(100..=699).contains(&status) {
        return Err(ParseError::StartLine("status code out of range".into()));
    }
    if reason.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ParseError::StartLine(
            "control character in reason phrase".into(),
        ));
    }
    Ok((status, reason.to_string()))
}

/// Header lines (without the start line) → headers, unfolding continuation lines.
fn header_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Headers, ParseError> {
    let mut headers: Vec<Header> = Vec::new();
    for line in lines {
        if line.contains(['\r', '\n']) {
            return Err(ParseError::HeaderLine(
                "bare CR or LF in a header line".into(),
            ));
        }
        if line.starts_with([' ', '\t']) {
            let Some(last) = headers.last_mut() else {
                return Err(ParseError::HeaderLine(
                    "continuation line before the first header".into(),
                ));
            };
            let cont = line.trim_matches([' ', '\t']);
            if !cont.is_empty() {
                let kept = last.value.trim_end_matches([' ', '\t']).len();
                last.value.truncate(kept);
                if !last.value.is_empty() {
                    last.value.push(' ');
                }
                last.value.push_str(cont);
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::HeaderLine("header line without ':'".into()));
        };
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(ParseError::HeaderLine("header name is not a token".into()));
        }
        headers.push(Header {
            name: HeaderName::parse(name),
            value: value.trim_matches([' ', '\t']).to_string(),
        });
    }
    for h in &mut headers {
        let t = h.value.trim_end_matches([' ', '\t']).len();
        h.value.truncate(t);
    }
    Ok(Headers(headers))
}

fn content_length(h: &Headers) -> Result<Option<usize>, ParseError> {
    if h.get_all(&HeaderName::ContentLength).count() > 1 {
        return Err(ParseError::HeaderValue {
            header: "Content-Length".into(),
            reason: "appears more than once".into(),
        });
    }
    h.content_length()
}

fn bad(header: &str, reason: &str) -> ParseError {
    ParseError::HeaderValue {
        header: header.into(),
        reason: reason.into(),
    }
}

/// Mandatory headers and the syntax of the headers the core depends on.
fn validate(m: &Message) -> Result<(), ParseError> {
    let h = m.headers();
    for (name, label) in [
        (HeaderName::Via, "Via"),
        (HeaderName::From, "From"),
        (HeaderName::To, "To"),
        (HeaderName::CallId, "Call-ID"),
        (HeaderName::CSeq, "CSeq"),
    ] {
        if !h.contains(&name) {
            return Err(ParseError::Missing(label));
        }
    }
    for (name, label) in [
        (HeaderName::From, "From"),
        (HeaderName::To, "To"),
        (HeaderName::CallId, "Call-ID"),
        (HeaderName::CSeq, "CSeq"),
        (HeaderName::MaxForwards, "Max-Forwards"),
        (HeaderName::ContentType, "Content-Type"),
    ] {
        if h.get_all(&name).count() > 1 {
            return Err(bad(label, "appears more than once"));
        }
    }
    for name in [
        HeaderName::Via,
        HeaderName::Contact,
        HeaderName::Route,
        HeaderName::RecordRoute,
    ] {
        if h.get_all(&name)
            .any(|v| split_list_raw(v).iter().any(|e| e.is_empty()))
        {
            return Err(bad(name.as_str(), "empty list element"));
        }
    }
    h.vias()?;
    h.from()?;
    h.to()?;
    h.call_id()?;
    let cseq = h.cseq()?;
    h.max_forwards()?;
    h.contacts()?;
    for name in [HeaderName::Route, HeaderName::RecordRoute] {
        for e in h.list(&name) {
            if !e.starts_with('<') && !e.starts_with('"') && !e.contains('<') {
                return Err(bad(name.as_str(), "must be a name-addr (<URI>)"));
            }
        }
    }
    h.route()?;
    h.record_route()?;
    if let Some(ct) = h.get(&HeaderName::ContentType) {
        media_type(ct)?;
    }
    if let Some(d) = h.get(&HeaderName::Other("Date".into())) {
        date(d)?;
    }
    if let Message::Request(r) = m
        && cseq.method != r.method
    {
        return Err(bad("CSeq", "method does not match the request method"));
    }
    Ok(())
}

/// `media-type = m-type SLASH m-subtype *(SEMI m-parameter)`.
fn media_type(v: &str) -> Result<(), ParseError> {
    let mut c = super::scan::Cursor::new(v);
    let ok = c.token().is_ok()
        && {
            c.skip_ws();
            c.eat(b'/')
        }
        && {
            c.skip_ws();
            c.token().is_ok()
        };
    if !ok {
        return Err(bad("Content-Type", "not type/subtype"));
    }
    c.params_to_end(&[])
        .map(|_| ())
        .map_err(|r| bad("Content-Type", &r))
}

/// `rfc1123-date = wkday "," SP date1 SP time SP "GMT"` (RFC 3261 §20.17).
fn date(v: &str) -> Result<(), ParseError> {
    let e = || bad("Date", "not an RFC 1123 date in GMT");
    let (wkday, rest) = v.split_once(", ").ok_or_else(e)?;
    let p: Vec<&str> = rest.split(' ').collect();
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let time_ok = |t: &str| {
        let q: Vec<&str> = t.split(':').collect();
        q.len() == 3 && q.iter().all(|x| digits(x, 2))
    };
    let ok = days.contains(&wkday)
        && p.len() == 5
        && digits(p[0], 2)
        && months.contains(&p[1])
        && digits(p[2], 4)
        && time_ok(p[3])
        && p[4] == "GMT";
    if ok { Ok(()) } else { Err(e()) }
}

/// Start line, headers in order with canonical names, a computed Content-Length (written where
/// the first stored one was, else last), CRLF, body. CR/LF inside stored values (which only
/// code could have put there) are written as SP so a value can never inject a header.
pub fn serialize(m: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + m.body().len());
    match m {
        Message::Request(r) => {
            out.extend_from_slice(format!("{} {} SIP/2.0\r\n", r.method, r.uri).as_bytes());
        }
        Message::Response(r) => {
            let reason = r.reason.replace(['\r', '\n'], " ");
            out.extend_from_slice(format!("SIP/2.0 {:03} {reason}\r\n", r.status).as_bytes());
        }
    }
    let cl = format!("Content-Length: {}\r\n", m.body().len());
    let mut cl_written = false;
    for h in &m.headers().0 {
        if h.name == HeaderName::ContentLength {
            if !cl_written {
                out.extend_from_slice(cl.as_bytes());
                cl_written = true;
            }
            continue;
        }
        out.extend_from_slice(h.name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        if h.value.contains(['\r', '\n']) {
            out.extend_from_slice(h.value.replace(['\r', '\n'], " ").as_bytes());
        } else {
            out.extend_from_slice(h.value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    if !cl_written {
        out.extend_from_slice(cl.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(m.body());
    out
}
