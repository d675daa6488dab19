//! Header field names: case-insensitive, with RFC 3261 §7.3.3 compact forms (and the compact
//! forms registered later: `o` Event, `r` Refer-To, `u` Allow-Events, `x` Session-Expires, …).
use std::fmt;

#[derive(Debug, Clone)]
pub enum HeaderName {
    Accept,
    Allow,
    AllowEvents,
    Authorization,
    CallId,
    Contact,
    ContentDisposition,
    ContentEncoding,
    ContentLength,
    ContentType,
    CSeq,
    Event,
    Expires,
    From,
    MaxForwards,
    MinSe,
    ProxyAuthenticate,
    ProxyAuthorization,
    ProxyRequire,
    Reason,
    RecordRoute,
    ReferTo,
    ReferredBy,
    Require,
    RetryAfter,
    Route,
    Server,
    SessionExpires,
    Subject,
    Supported,
    To,
    Unsupported,
    UserAgent,
    Via,
    Warning,
    WwwAuthenticate,
    /// Any other header, spelled as received (comparison ignores case).
    Other(String),
}

impl HeaderName {
    /// Maps a received name (long or compact form, any case) to a `HeaderName`.
    pub fn parse(s: &str) -> HeaderName {
        use HeaderName::*;
        let known = [
            ("accept", Accept),
            ("allow", Allow),
            ("allow-events", AllowEvents),
            ("u", AllowEvents),
            ("authorization", Authorization),
            ("call-id", CallId),
            ("i", CallId),
            ("contact", Contact),
            ("m", Contact),
            ("content-disposition", ContentDisposition),
            ("content-encoding", ContentEncoding),
            ("e", ContentEncoding),
            ("content-length", ContentLength),
            ("l", ContentLength),
            ("content-type", ContentType),
            ("c", ContentType),
            ("cseq", CSeq),
            ("event", Event),
            ("o", Event),
            ("expires", Expires),
            ("from", From),
            ("f", From),
            ("max-forwards", MaxForwards),
            ("min-se", MinSe),
            ("proxy-authenticate", ProxyAuthenticate),
            ("proxy-authorization", ProxyAuthorization),
            ("proxy-require", ProxyRequire),
            ("reason", Reason),
            ("record-route", RecordRoute),
            ("refer-to", ReferTo),
            ("r", ReferTo),
            ("referred-by", ReferredBy),
            ("b", ReferredBy),
            ("require", Require),
            ("retry-after", RetryAfter),
            ("route", Route),
            ("server", Server),
            ("session-expires", SessionExpires),
            ("x", SessionExpires),
            ("subject", Subject),
            ("s", Subject),
            ("supported", Supported),
            ("k", Supported),
            ("to", To),
            ("t", To),
            ("unsupported", Unsupported),
            ("user-agent", UserAgent),
            ("via", Via),
            ("v", Via),
            ("warning", Warning),
            ("www-authenticate", WwwAuthenticate),
        ];
        for (n, h) in known {
            if s.eq_ignore_ascii_case(n) {
                return h;
            }
        }
        Other(s.to_string())
    }

    /// Canonical long form used when serializing.
    pub fn as_str(&self) -> &str {
        use HeaderName::*;
        match self {
            Accept => "Accept",
            Allow => "Allow",
            AllowEvents => "Allow-Events",
            Authorization => "Authorization",
            CallId => "Call-ID",
            Contact => "Contact",
            ContentDisposition => "Content-Disposition",
            ContentEncoding => "Content-Encoding",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            CSeq => "CSeq",
            Event => "Event",
            Expires => "Expires",
            From => "From",
            MaxForwards => "Max-Forwards",
            MinSe => "Min-SE",
            ProxyAuthenticate => "Proxy-Authenticate",
            ProxyAuthorization => "Proxy-Authorization",
            ProxyRequire => "Proxy-Require",
            Reason => "Reason",
            RecordRoute => "Record-Route",
            ReferTo => "Refer-To",
            ReferredBy => "Referred-By",
            Require => "Require",
            RetryAfter => "Retry-After",
            Route => "Route",
            Server => "Server",
            SessionExpires => "Session-Expires",
            Subject => "Subject",
            Supported => "Supported",
            To => "To",
            Unsupported => "Unsupported",
            UserAgent => "User-Agent",
            Via => "Via",
            Warning => "Warning",
            WwwAuthenticate => "WWW-Authenticate",
            Other(s) => s,
        }
    }

    /// True for WhatsApp's `x-wa-meta-*` headers (and Meta's `x-wa_meta-*` spelling), any case.
    pub fn is_wa_meta(&self) -> bool {
        match self {
            HeaderName::Other(s) => {
                let l = s.as_bytes();
                l.len() > 10
                    && (l[..10].eq_ignore_ascii_case(b"x-wa-meta-")
                        || l[..10].eq_ignore_ascii_case(b"x-wa_meta-"))
            }
            _ => false,
        }
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &HeaderName) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}
impl Eq for HeaderName {}

impl From<&str> for HeaderName {
    fn from(s: &str) -> HeaderName {
        HeaderName::parse(s)
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
