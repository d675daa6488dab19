//! SIP message framing (RFC 3261 §7.5, §18.3; RFC 5626 §3.5.1 keepalives), sans-IO.
//!
//! Guarantees:
//! - A [`StreamFramer`] turns an arbitrarily chunked TCP/TLS byte stream into whole SIP
//!   messages; the messages it yields do not depend on how the stream was chunked.
//! - On a stream, `Content-Length` (or compact `l`) is mandatory; a missing, non-numeric or
//!   conflicting value, an over-long header block or an over-large body is a [`FramingError`]
//!   that carries the start-line kind and the raw header bytes (so the upper layer can answer
//!   400/413/513 to a request) after which the stream is unusable and must be closed.
//! - A bare `CRLFCRLF` at a message boundary is a keepalive [`Frame::Ping`] (answer `CRLF`), a
//!   bare `CRLF` is a [`Frame::Pong`].
//! - [`frame_datagram`] applies the UDP rule: one datagram is one message, a body longer than
//!   `Content-Length` is truncated, a shorter one is an error.
//! - Memory is bounded: between [`StreamFramer::push`] calls drained by [`StreamFramer::poll`],
//!   the buffer never holds more than `max_header + max_body` bytes, and `push` refuses input
//!   beyond [`Limits::max_buffered`]. No input panics.

use bytes::{Buf, Bytes, BytesMut};

/// Size limits applied by the framer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest header block (start line + headers + the blank line), in bytes.
    pub max_header: usize,
    /// Largest body, in bytes.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header: 16 * 1024,
            max_body: 64 * 1024,
        }
    }
}

impl Limits {
    /// Most bytes a [`StreamFramer`] will hold: one message at its limits plus one read chunk.
    pub fn max_buffered(&self) -> usize {
        self.max_header
            .saturating_add(self.max_body)
            .saturating_add(READ_SLACK)
    }
}

/// Extra room beyond one maximal message, so a reader can push a whole socket read.
const READ_SLACK: usize = 64 * 1024;

/// What a framer yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One complete SIP message: header block and exactly `Content-Length` body bytes.
    Message(Bytes),
    /// RFC 5626 keepalive ping (`CRLFCRLF`): answer with a single `CRLF`.
    Ping,
    /// RFC 5626 keepalive pong (a single `CRLF`), or a stray CRLF before a start line.
    Pong,
}

/// What the first line of a message looks like, decided without a full parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD SP Request-URI SP SIP/x.y`: a 4xx/5xx may be answered.
    Request,
    /// `SIP/x.y SP code SP reason`: never answered.
    Response,
    /// Neither (or not seen yet).
    Unknown,
}

impl StartLine {
    /// Classify a start line (the bytes before the first CRLF).
    pub fn classify(line: &[u8]) -> Self {
        if line.starts_with(b"SIP/") {
            return StartLine::Response;
        }
        let mut parts = line.split(|b| *b == b' ');
        let method = parts.next().unwrap_or_default();
        let uri = parts.next().unwrap_or_default();
        let version = parts.next().unwrap_or_default();
        let token = |s: &[u8]| {
            !s.is_empty()
                && s.iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(b))
        };
        if token(method)
            && !uri.is_empty()
            && version.starts_with(b"SIP/")
            && parts.next().is_none()
        {
            StartLine::Request
        } else {
            StartLine::Unknown
        }
    }
}

/// Why a message could not be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingErrorKind {
    /// No blank line within `max_header` bytes.
    #[error("header block exceeds {limit} bytes")]
    HeaderTooLarge { limit: usize },
    /// `Content-Length` exceeds `max_body`.
    #[error("body of {length} bytes exceeds {limit} bytes")]
    BodyTooLarge { length: u64, limit: usize },
    /// A message on a stream without `Content-Length`.
    #[error("missing Content-Length on a stream transport")]
    MissingContentLength,
    /// `Content-Length` is not a decimal number.
    #[error("Content-Length is not a number")]
    InvalidContentLength,
    /// Two `Content-Length` headers with different values.
    #[error("conflicting Content-Length headers")]
    ConflictingContentLength,
    /// A datagram whose body is shorter than its `Content-Length`.
    #[error("datagram body of {actual} bytes is shorter than Content-Length {declared}")]
    BodyShorterThanContentLength { declared: u64, actual: usize },
    /// A datagram without a blank line ending its headers.
    #[error("datagram has no end of headers")]
    IncompleteHeader,
    /// More bytes pushed than [`Limits::max_buffered`] allows without draining.
    #[error("framer buffer full")]
    BufferFull,
    /// The stream already failed; it must be closed.
    #[error("stream already failed framing")]
    Failed,
}

/// A framing failure, with what the upper layer needs to answer it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct FramingError {
    /// What went wrong.
    pub kind: FramingErrorKind,
    /// Whether the message looked like a request (answerable) or a response.
    pub start_line: StartLine,
    /// The raw header block (or, if it never ended, its first `max_header` bytes), so a
    /// 4xx can be built from Via/From/To/Call-ID/CSeq. Empty when nothing was seen.
    pub header: Bytes,
}

impl FramingError {
    fn new(kind: FramingErrorKind, header: Bytes) -> Self {
        let line_end = find(&header, b"\r\n").unwrap_or(header.len());
        let start_line = StartLine::classify(header.get(..line_end).unwrap_or_default());
        Self {
            kind,
            start_line,
            header,
        }
    }

    fn bare(kind: FramingErrorKind) -> Self {
        Self {
            kind,
            start_line: StartLine::Unknown,
            header: Bytes::new(),
        }
    }

    /// The SIP status to answer with, if the offending message was a request.
    pub fn sip_status(&self) -> Option<u16> {
        if self.start_line != StartLine::Request {
            return None;
        }
        Some(match self.kind {
            FramingErrorKind::HeaderTooLarge { .. } => 513,
            FramingErrorKind::BodyTooLarge { .. } => 413,
            _ => 400,
        })
    }

    /// Reason phrase matching [`Self::sip_status`], naming the framing problem.
    pub fn reason(&self) -> String {
        match self.kind {
            FramingErrorKind::HeaderTooLarge { .. } => "Message Too Large".into(),
            FramingErrorKind::BodyTooLarge { .. } => "Request Entity Too Large".into(),
            _ => format!("Bad Request ({})", self.kind),
        }
    }
}

/// Incremental framer for one TCP/TLS connection.
#[derive(Debug)]
pub struct StreamFramer {
    limits: Limits,
    buf: BytesMut,
    /// Header block length and body length of the message being read, once known.
    pending: Option<(usize, usize)>,
    awaiting_pong: bool,
    failed: bool,
}

impl StreamFramer {
    /// A framer enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buf: BytesMut::new(),
            pending: None,
            awaiting_pong: false,
            failed: false,
        }
    }

    /// Bytes currently buffered (always ≤ [`Limits::max_buffered`]).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Tell the framer we sent a ping: the next CRLF at a message boundary is its pong, even if
    /// no further byte follows it.
    pub fn expect_pong(&mut self) {
        self.awaiting_pong = true;
    }

    /// Append bytes read from the stream. Drain with [`Self::poll`] before pushing more.
    pub fn push(&mut self, data: &[u8]) -> Result<(), FramingError> {
        if self.failed {
            return Err(FramingError::bare(FramingErrorKind::Failed));
        }
        if self.buf.len().saturating_add(data.len()) > self.limits.max_buffered() {
            return Err(self.fail(FramingError::bare(FramingErrorKind::BufferFull)));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn fail(&mut self, e: FramingError) -> FramingError {
        self.failed = true;
        self.buf = BytesMut::new();
        self.pending = None;
        e
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed. After an error every
    /// further call fails: close the connection.
    pub fn poll(&mut self) -> Result<Option<Frame>, FramingError> {
        if self.failed {
            return Err(FramingError::bare(FramingErrorKind::Failed));
        }
        if self.pending.is_none() {
            // Keepalives and stray CRLFs at a message boundary.
            if self.buf.starts_with(b"\r\n") {
                if self.awaiting_pong {
                    self.awaiting_pong = false;
                    self.buf.advance(2);
                    return Ok(Some(Frame::Pong));
                }
                if self.buf.starts_with(b"\r\n\r\n") {
                    self.buf.advance(4);
                    return Ok(Some(Frame::Ping));
                }
                return match self.buf.get(2) {
                    None => Ok(None),
                    Some(b'\r') if self.buf.len() < 4 => Ok(None),
                    Some(_) => {
                        self.buf.advance(2);
                        Ok(Some(Frame::Pong))
                    }
                };
            }
            if self.buf.is_empty() {
                return Ok(None);
            }
            let window = self
                .buf
                .get(..self.buf.len().min(self.limits.max_header))
                .unwrap_or_default();
            let Some(end) = find(window, b"\r\n\r\n").map(|i| i + 4) else {
                if self.buf.len() >= self.limits.max_header {
                    let header = Bytes::copy_from_slice(window);
                    return Err(self.fail(FramingError::new(
                        FramingErrorKind::HeaderTooLarge {
                            limit: self.limits.max_header,
                        },
                        header,
                    )));
                }
                return Ok(None);
            };
            let header = self.buf.get(..end).unwrap_or_default();
            let body_len = match content_length(header) {
                Ok(Some(n)) => Ok(n),
                Ok(None) => Err(FramingErrorKind::MissingContentLength),
                Err(k) => Err(k),
            }
            .and_then(|n| match usize::try_from(n) {
                Ok(u) if u <= self.limits.max_body => Ok(u),
                _ => Err(FramingErrorKind::BodyTooLarge {
                    length: n,
                    limit: self.limits.max_body,
                }),
            });
            match body_len {
                Ok(b) => self.pending = Some((end, b)),
                Err(kind) => {
                    let header = Bytes::copy_from_slice(header);
                    return Err(self.fail(FramingError::new(kind, header)));
                }
            }
        }
        let Some((head, body)) = self.pending else {
            return Ok(None);
        };
        let total = head + body;
        if self.buf.len() < total {
            return Ok(None);
        }
        self.pending = None;
        Ok(Some(Frame::Message(self.buf.split_to(total).freeze())))
    }
}

/// Frame one UDP datagram (RFC 3261 §18.3): leading CRLFs are skipped, `Content-Length` is
/// optional, a longer body is truncated to it, a shorter one is an error. A datagram of only
/// CRLFs is a keepalive (`CRLFCRLF` → [`Frame::Ping`], anything else → [`Frame::Pong`]).
pub fn frame_datagram(datagram: Bytes, limits: &Limits) -> Result<Frame, FramingError> {
    if datagram.iter().all(|b| *b == b'\r' || *b == b'\n') {
        return Ok(if &datagram[..] == b"\r\n\r\n" {
            Frame::Ping
        } else {
            Frame::Pong
        });
    }
    let skip = datagram
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(datagram.len());
    let msg = datagram.slice(skip..);
    let window = msg
        .get(..msg.len().min(limits.max_header))
        .unwrap_or_default();
    let Some(end) = find(window, b"\r\n\r\n").map(|i| i + 4) else {
        let kind = if msg.len() >= limits.max_header {
            FramingErrorKind::HeaderTooLarge {
                limit: limits.max_header,
            }
        } else {
            FramingErrorKind::IncompleteHeader
        };
        return Err(FramingError::new(kind, msg.slice(..window.len())));
    };
    let header = msg.slice(..end);
    let actual = msg.len() - end;
    let body = match content_length(&header) {
        Err(kind) => return Err(FramingError::new(kind, header)),
        Ok(None) => actual,
        Ok(Some(n)) => match usize::try_from(n) {
            Ok(n) if n <= actual => n,
            _ => {
                return Err(FramingError::new(
                    FramingErrorKind::BodyShorterThanContentLength {
                        declared: n,
                        actual,
                    },
                    header,
                ));
            }
        },
    };
    if body > limits.max_body {
        return Err(FramingError::new(
            FramingErrorKind::BodyTooLarge {
                length: body as u64,
                limit: limits.max_body,
            },
            header,
        ));
    }
    Ok(Frame::Message(msg.slice(..end + body)))
}

/// The `Content-Length` of a header block ending in CRLFCRLF: `Ok(None)` if absent.
fn content_length(header: &[u8]) -> Result<Option<u64>, FramingErrorKind> {
    let mut found: Option<u64> = None;
    let mut lines = header.split(|b| *b == b'\n').skip(1).peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line.starts_with(b" ") || line.starts_with(b"\t") {
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, rest) = line.split_at(colon);
        let name = name.trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        // Unfold continuation lines (RFC 3261 §7.3.1) into the value.
        let mut value: Vec<u8> = rest.get(1..).unwrap_or_default().to_vec();
        while let Some(next) = lines.peek() {
            let next = next.strip_suffix(b"\r").unwrap_or(next);
            if next.starts_with(b" ") || next.starts_with(b"\t") {
                value.push(b' ');
                value.extend_from_slice(next);
                lines.next();
            } else {
                break;
            }
        }
        let digits = value.trim_ascii();
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(FramingErrorKind::InvalidContentLength);
        }
        let n = digits.iter().try_fold(0u64, |acc, d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        let Some(n) = n else {
            return Err(FramingErrorKind::InvalidContentLength);
        };
        match found {
            Some(prev) if prev != n => return Err(FramingErrorKind::ConflictingContentLength),
            _ => found = Some(n),
        }
    }
    Ok(found)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP a;branch=z9hG4bK1\r\nContent-Length: 4\r\n\r\nv=0\n";

    fn drain(f: &mut StreamFramer) -> Result<Vec<Frame>, FramingError> {
        let mut out = Vec::new();
        while let Some(fr) = f.poll()? {
            out.push(fr);
        }
        Ok(out)
    }

    fn one_shot(data: &[u8]) -> Result<Vec<Frame>, FramingError> {
        let mut f = StreamFramer::new(Limits::default());
        f.push(data)?;
        drain(&mut f)
    }

    fn msg(b: &[u8]) -> Frame {
        Frame::Message(Bytes::copy_from_slice(b))
    }

    #[test]
    fn frames_message_with_body() {
        assert_eq!(one_shot(INVITE).unwrap(), vec![msg(INVITE)]);
    }

    #[test]
    fn compact_folded_and_spaced_content_length() {
        let m = b"OPTIONS sip:a SIP/2.0\r\nl :\r\n   3 \r\n\r\nabcREST";
        let frames = one_shot(m).unwrap();
        assert_eq!(frames, vec![msg(&m[..m.len() - 4])]);
        let m = b"SIP/2.0 200 OK\r\ncontent-LENGTH:0\r\nCONTENT-length: 00\r\n\r\n";
        assert_eq!(one_shot(m).unwrap(), vec![msg(m)]);
    }

    #[test]
    fn missing_content_length_is_400_with_header() {
        let m = b"INVITE sip:a SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n";
        let e = one_shot(m).unwrap_err();
        assert_eq!(e.kind, FramingErrorKind::MissingContentLength);
        assert_eq!(e.start_line, StartLine::Request);
        assert_eq!(e.sip_status(), Some(400));
        assert_eq!(&e.header[..], &m[..]);
    }

    #[test]
    fn response_errors_are_not_answered() {
        let e = one_shot(b"SIP/2.0 200 OK\r\nContent-Length: x\r\n\r\n").unwrap_err();
        assert_eq!(e.kind, FramingErrorKind::InvalidContentLength);
        assert_eq!(e.start_line, StartLine::Response);
        assert_eq!(e.sip_status(), None);
    }

    #[test]
    fn conflicting_and_invalid_lengths() {
        let e = one_shot(b"BYE sip:a SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab").unwrap_err();
        assert_eq!(e.kind, FramingErrorKind::ConflictingContentLength);
        for bad in [&b"-1"[..], b"", b"1 2", b"0x10", b"99999999999999999999999"] {
            let mut m = b"BYE sip:a SIP/2.0\r\nContent-Length: ".to_vec();
            m.extend_from_slice(bad);
            m.extend_from_slice(b"\r\n\r\n");
            let e = one_shot(&m).unwrap_err();
            assert_eq!(e.kind, FramingErrorKind::InvalidContentLength, "{bad:?}");
        }
    }

    #[test]
    fn failed_framer_stays_failed() {
        let mut f = StreamFramer::new(Limits::default());
        f.push(b"BYE sip:a SIP/2.0\r\n\r\n").unwrap();
        assert!(f.poll().is_err());
        assert_eq!(f.poll().unwrap_err().kind, FramingErrorKind::Failed);
        assert_eq!(f.push(b"x").unwrap_err().kind, FramingErrorKind::Failed);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn limits_enforced() {
        let limits = Limits {
            max_header: 64,
            max_body: 8,
        };
        let mut f = StreamFramer::new(limits);
        f.push(&[b'A'; 63]).unwrap();
        assert_eq!(f.poll().unwrap(), None);
        f.push(b"A").unwrap();
        let e = f.poll().unwrap_err();
        assert_eq!(e.kind, FramingErrorKind::HeaderTooLarge { limit: 64 });
        assert_eq!(e.header.len(), 64);

        let mut f = StreamFramer::new(limits);
        f.push(b"MESSAGE sip:a SIP/2.0\r\nl: 9\r\n\r\n").unwrap();
        let e = f.poll().unwrap_err();
        assert_eq!(
            e.kind,
            FramingErrorKind::BodyTooLarge {
                length: 9,
                limit: 8
            }
        );
        assert_eq!(e.sip_status(), Some(413));

        let mut f = StreamFramer::new(limits);
        let e = f.push(&vec![0u8; limits.max_buffered() + 1]).unwrap_err();
        assert_eq!(e.kind, FramingErrorKind::BufferFull);
    }

    #[test]
    fn keepalives() {
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(b"\r\n");
        stream.extend_from_slice(INVITE);
        assert_eq!(
            one_shot(&stream).unwrap(),
            vec![Frame::Ping, Frame::Pong, msg(INVITE)]
        );
        // A lone CRLF may be the start of a ping: wait, unless we sent a ping.
        let mut f = StreamFramer::new(Limits::default());
        f.push(b"\r\n").unwrap();
        assert_eq!(f.poll().unwrap(), None);
        f.expect_pong();
        assert_eq!(f.poll().unwrap(), Some(Frame::Pong));
        assert_eq!(f.poll().unwrap(), None);
        f.push(b"\r\n\r").unwrap();
        assert_eq!(f.poll().unwrap(), None);
        f.push(b"\n").unwrap();
        assert_eq!(f.poll().unwrap(), Some(Frame::Ping));
    }

    #[test]
    fn datagram_rules() {
        let l = Limits::default();
        let m = b"\r\nINVITE sip:a SIP/2.0\r\nContent-Length: 2\r\n\r\nabcd";
        assert_eq!(
            frame_datagram(Bytes::from_static(m), &l).unwrap(),
            msg(&m[2..m.len() - 2])
        );
        let m = b"INVITE sip:a SIP/2.0\r\nContent-Length: 5\r\n\r\nabcd";
        let e = frame_datagram(Bytes::from_static(m), &l).unwrap_err();
        assert_eq!(
            e.kind,
            FramingErrorKind::BodyShorterThanContentLength {
                declared: 5,
                actual: 4
            }
        );
        assert_eq!(e.sip_status(), Some(400));
        let m = b"INVITE sip:a SIP/2.0\r\nVia: x\r\n\r\nbody";
        assert_eq!(frame_datagram(Bytes::from_static(m), &l).unwrap(), msg(m));
        let m = b"INVITE sip:a SIP/2.0\r\nVia: x\r\n";
        assert_eq!(
            frame_datagram(Bytes::from_static(m), &l).unwrap_err().kind,
            FramingErrorKind::IncompleteHeader
        );
        assert_eq!(
            frame_datagram(Bytes::from_static(b"\r\n\r\n"), &l).unwrap(),
            Frame::Ping
        );
        assert_eq!(
            frame_datagram(Bytes::from_static(b"\r\n"), &l).unwrap(),
            Frame::Pong
        );
    }

    #[test]
    fn start_line_classification() {
        assert_eq!(
            StartLine::classify(b"INVITE sip:a@b SIP/2.0"),
            StartLine::Request
        );
        assert_eq!(
            StartLine::classify(b"SIP/2.0 180 Ringing"),
            StartLine::Response
        );
        assert_eq!(StartLine::classify(b"hello world"), StartLine::Unknown);
        assert_eq!(StartLine::classify(b""), StartLine::Unknown);
    }

    fn arb_message() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::sample::select(vec![
                "INVITE sip:a@b SIP/2.0",
                "SIP/2.0 200 OK",
                "BYE sip:x SIP/2.0",
            ]),
            prop::sample::select(vec![
                "Content-Length",
                "l",
                "content-length",
                "CONTENT-LENGTH",
            ]),
            prop::collection::vec(any::<u8>(), 0..300),
            prop::bool::ANY,
        )
            .prop_map(|(start, name, body, fold)| {
                let sep = if fold { ":\r\n  " } else { ": " };
                let mut m = format!(
                    "{start}\r\nVia: SIP/2.0/TCP h\r\n{name}{sep}{}\r\nCall-ID: c\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                m.extend_from_slice(&body);
                m
            })
    }

    fn arb_stream() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            (
                arb_message(),
                prop::sample::select(vec!["", "\r\n\r\n", "\r\n"]),
            ),
            1..6,
        )
        .prop_map(|parts| {
            let mut s = Vec::new();
            for (m, ka) in parts {
                s.extend_from_slice(ka.as_bytes());
                s.extend_from_slice(&m);
            }
            s
        })
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_frames(
            stream in arb_stream(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        ) {
            let whole = one_shot(&stream).unwrap();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.sort_unstable();
            let mut f = StreamFramer::new(Limits::default());
            let mut got = Vec::new();
            let mut at = 0;
            for p in points.into_iter().chain([stream.len()]) {
                f.push(&stream[at..p]).unwrap();
                got.extend(drain(&mut f).unwrap());
                at = p;
            }
            prop_assert_eq!(got, whole);
        }

        #[test]
        fn chunking_invariance_on_arbitrary_bytes(
            parts in prop::collection::vec(
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..40),
                    prop::sample::select(vec![
                        b"\r\n".to_vec(), b"\r\n\r\n".to_vec(), b"\r".to_vec(),
                        b"INVITE sip:a SIP/2.0\r\n".to_vec(), b"l: 3\r\n".to_vec(),
                        b"Content-Length: 0\r\n".to_vec(), b"l:\r\n 1\r\n".to_vec(),
                    ]),
                ],
                0..30,
            ),
            size in 1usize..50,
        ) {
            let data: Vec<u8> = parts.concat();
            let limits = Limits { max_header: 128, max_body: 128 };
            let run = |chunks: &mut dyn Iterator<Item = &[u8]>| {
                let mut f = StreamFramer::new(limits);
                let mut out = Vec::new();
                for c in chunks {
                    if let Err(e) = f.push(c) {
                        return (out, Some(e.kind));
                    }
                    loop {
                        match f.poll() {
                            Ok(Some(fr)) => out.push(fr),
                            Ok(None) => break,
                            Err(e) => return (out, Some(e.kind)),
                        }
                    }
                }
                (out, None)
            };
            let whole = run(&mut std::iter::once(&data[..]));
            let chunked = run(&mut data.chunks(size));
            prop_assert_eq!(chunked, whole);
        }

        #[test]
        fn arbitrary_input_never_panics_and_stays_bounded(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..20),
        ) {
            let limits = Limits { max_header: 256, max_body: 256 };
            let mut f = StreamFramer::new(limits);
            for c in &chunks {
                if f.push(c).is_err() { break; }
                match drain(&mut f) {
                    Ok(_) => prop_assert!(f.buffered() <= limits.max_header + limits.max_body),
                    Err(_) => break,
                }
            }
            for c in &chunks {
                let _ = frame_datagram(Bytes::copy_from_slice(c), &limits);
            }
        }
    }
}
