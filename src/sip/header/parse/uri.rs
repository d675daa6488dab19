//! The URI parser (RFC 3261 §19.1 and §25.1 `SIP-URI` / `SIPS-URI` / `absoluteURI`, IPv6
//! references per RFC 5118).
//!
//! Guarantees: strict — every character class of the ABNF is checked, `%XX` escapes must be
//! complete hex pairs, hosts are a valid hostname, IPv4 address or bracketed IPv6 address, ports
//! fit in 16 bits. Other schemes are accepted as `Uri::Other` when they are a syntactically valid
//! absolute URI (the transaction layer answers 416 for them). Error texts never echo the user
//! part (it is often a phone number).
use crate::sip::header::params::Params;
use crate::sip::message::ParseError;
use crate::sip::uri::{Host, Scheme, SipUri, Uri};
use std::net::{Ipv4Addr, Ipv6Addr};

fn err(reason: &str) -> ParseError {
    ParseError::Uri(reason.to_string())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// True if every byte of `s` is `ok` or part of a valid `%XX` escape.
fn escaped_run(s: &str, ok: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(|c| c.is_ascii_hexdigit());
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else if ok(b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

pub fn uri(s: &str) -> Result<Uri, ParseError> {
    let colon = s.find(':').ok_or_else(|| err("no scheme"))?;
    let scheme = &s[..colon];
    let rest = &s[colon + 1..];
    let sb = scheme.as_bytes();
    if sb.is_empty()
        || !sb[0].is_ascii_alphabetic()
        || !sb
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
    {
        return Err(err("bad scheme"));
    }
    if scheme.eq_ignore_ascii_case("sip") {
        return sip_uri(Scheme::Sip, rest).map(Uri::Sip);
    }
    if scheme.eq_ignore_ascii_case("sips") {
        return sip_uri(Scheme::Sips, rest).map(Uri::Sip);
    }
    // absoluteURI: hier-part / opaque-part, all `uric` (reserved / unreserved / escaped).
    let uric = |b: u8| is_unreserved(b) || b";/?:@&=+$,".contains(&b);
    if rest.is_empty() || !escaped_run(rest, uric) {
        return Err(err("bad absolute URI"));
    }
    Ok(Uri::Other {
        scheme: scheme.to_string(),
        rest: rest.to_string(),
    })
}

fn sip_uri(scheme: Scheme, rest: &str) -> Result<SipUri, ParseError> {
    // No production after userinfo may contain '@', so the first one ends userinfo.
    let (userinfo, hostpart) = match rest.find('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    if hostpart.contains('@') {
        return Err(err("more than one '@'"));
    }
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            let (u, p) = match ui.find(':') {
                Some(i) => (&ui[..i], Some(&ui[i + 1..])),
                None => (ui, None),
            };
            let user_ok = |b: u8| is_unreserved(b) || b"&=+$,;?/".contains(&b);
            if u.is_empty() || !escaped_run(u, user_ok) {
                return Err(err("bad user part"));
            }
            if let Some(p) = p {
                let pw_ok = |b: u8| is_unreserved(b) || b"&=+$,".contains(&b);
                if !escaped_run(p, pw_ok) {
                    return Err(err("bad password"));
                }
            }
            (Some(u.to_string()), p.map(str::to_string))
        }
    };

    let (host, after_host) = host(hostpart)?;
    let mut rest = after_host;
    let mut port = None;
    if let Some(r) = rest.strip_prefix(':') {
        let end = r.find([';', '?']).unwrap_or(r.len());
        port = Some(parse_port(&r[..end])?);
        rest = &r[end..];
    }

    let mut params = Params::new();
    let (param_part, header_part) = match rest.find('?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if !param_part.is_empty() {
        let body = param_part
            .strip_prefix(';')
            .ok_or_else(|| err("junk after host"))?;
        let pchar = |b: u8| is_unreserved(b) || b"[]/:&+$".contains(&b);
        for p in body.split(';') {
            let (name, value) = match p.find('=') {
                Some(i) => (&p[..i], Some(&p[i + 1..])),
                None => (p, None),
            };
            if name.is_empty() || !escaped_run(name, pchar) {
                return Err(err("bad URI parameter name"));
            }
            if let Some(v) = value
                && (v.is_empty() || !escaped_run(v, pchar))
            {
                return Err(err("bad URI parameter value"));
            }
            params.0.push((name.to_string(), value.map(str::to_string)));
        }
    }

    let mut headers = Vec::new();
    if let Some(h) = header_part {
        let hchar = |b: u8| is_unreserved(b) || b"[]/?:+$".contains(&b);
        for pair in h.split('&') {
            let (n, v) = pair
                .split_once('=')
                .ok_or_else(|| err("URI header without '='"))?;
            if n.is_empty() || !escaped_run(n, hchar) || !escaped_run(v, hchar) {
                return Err(err("bad URI header"));
            }
            headers.push((n.to_string(), v.to_string()));
        }
    }

    Ok(SipUri {
        scheme,
        user,
        password,
        host,
        port,
        params,
        headers,
    })
}

fn parse_port(s: &str) -> Result<u16, ParseError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err("bad port"));
    }
    s.parse::<u16>().map_err(|_| err("port out of range"))
}

/// Parses `host` at the start of `s`; returns it and the unparsed rest.
pub(crate) fn host(s: &str) -> Result<(Host, &str), ParseError> {
    if let Some(r) = s.strip_prefix('[') {
        let end = r
            .find(']')
            .ok_or_else(|| err("unterminated IPv6 reference"))?;
        let addr: Ipv6Addr = r[..end].parse().map_err(|_| err("bad IPv6 reference"))?;
        return Ok((Host::Ipv6(addr), &r[end + 1..]));
    }
    let end = s.find([':', ';', '?']).unwrap_or(s.len());
    Ok((host_name(&s[..end])?, &s[end..]))
}

/// A hostname or IPv4 address (no brackets, no port).
pub(crate) fn host_name(h: &str) -> Result<Host, ParseError> {
    if h.is_empty() {
        return Err(err("empty host"));
    }
    if h.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return h
            .parse::<Ipv4Addr>()
            .map(Host::Ipv4)
            .map_err(|_| err("bad IPv4 address"));
    }
    // hostname = *( domainlabel "." ) toplabel [ "." ]
    let trimmed = h.strip_suffix('.').unwrap_or(h);
    let labels: Vec<&str> = trimmed.split('.').collect();
    for l in &labels {
        let b = l.as_bytes();
        let ok = !b.is_empty()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-';
        if !ok {
            return Err(err("bad host name"));
        }
    }
    if !labels
        .last()
        .and_then(|l| l.bytes().next())
        .is_some_and(|c| c.is_ascii_alphabetic())
    {
        return Err(err("bad top-level label"));
    }
    Ok(Host::Domain(h.to_string()))
}
