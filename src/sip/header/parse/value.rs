//! Parsers for the header values a B2BUA reads: comma lists, `Via`, name-addr / addr-spec
//! (From, To, Contact, Route, Record-Route), `Call-ID`, `CSeq`, numbers and `Session-Expires`.
//!
//! Guarantees: strict RFC 3261 §25.1 syntax with its `LWS`/`SWS` rules (whitespace around
//! `;`, `=`, `/` and `:` where the ABNF allows it), no panics, errors name the header.
use super::scan::Cursor;
use super::uri::{host, host_name};
use crate::sip::header::{CSeq, NameAddr, Params, Via, is_token_char};
use crate::sip::message::ParseError;
use crate::sip::method::Method;
use crate::sip::uri::Uri;

fn bad(header: &str, reason: impl Into<String>) -> ParseError {
    ParseError::HeaderValue {
        header: header.to_string(),
        reason: reason.into(),
    }
}

/// Splits a header value on commas that are outside quoted strings and `<…>`; elements are
/// trimmed and empty elements dropped.
pub fn split_list(v: &str) -> Vec<&str> {
    split_list_raw(v)
        .into_iter()
        .filter(|e| !e.is_empty())
        .collect()
}

/// Like `split_list` but keeps empty elements (strict validation rejects them).
pub(crate) fn split_list_raw(v: &str) -> Vec<&str> {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    let (mut in_quote, mut in_angle) = (false, false);
    while i < b.len() {
        match b[i] {
            b'\\' if in_quote => i += 1,
            b'"' if !in_angle => in_quote = !in_quote,
            b'<' if !in_quote => in_angle = true,
            b'>' if !in_quote => in_angle = false,
            b',' if !in_quote && !in_angle => {
                out.push(v.get(start..i).unwrap_or("").trim_matches([' ', '\t']));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(v.get(start..).unwrap_or("").trim_matches([' ', '\t']));
    out
}

/// One `via-parm`: `sent-protocol LWS sent-by *( SEMI via-params )`.
pub fn via(s: &str) -> Result<Via, ParseError> {
    let e = |r: &str| bad("Via", r);
    let mut c = Cursor::new(s.trim_matches([' ', '\t']));
    let name = c.token().map_err(|_| e("bad protocol name"))?;
    c.skip_ws();
    if !c.eat(b'/') {
        return Err(e("expected '/' in sent-protocol"));
    }
    c.skip_ws();
    let version = c.token().map_err(|_| e("bad protocol version"))?;
    c.skip_ws();
    if !c.eat(b'/') {
        return Err(e("expected '/' in sent-protocol"));
    }
    c.skip_ws();
    let transport = c.token().map_err(|_| e("bad transport"))?;
    if !c.skip_ws() {
        return Err(e("no whitespace before sent-by"));
    }
    // sent-by = host [ COLON port ]
    let rest = c.rest();
    let (host, after) = if rest.starts_with('[') {
        host(rest).map_err(|_| e("bad IPv6 sent-by"))?
    } else {
        let end = rest.find([':', ';', ' ', '\t']).unwrap_or(rest.len());
        (
            host_name(&rest[..end]).map_err(|_| e("bad sent-by host"))?,
            &rest[end..],
        )
    };
    let mut c = Cursor::new(after);
    c.skip_ws();
    let mut port = None;
    if c.eat(b':') {
        c.skip_ws();
        let digits = c.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() || digits.len() > 5 {
            return Err(e("bad sent-by port"));
        }
        port = Some(
            digits
                .parse::<u16>()
                .map_err(|_| e("sent-by port out of range"))?,
        );
    }
    let params = c.params_to_end(&["received", "maddr"]).map_err(|r| e(&r))?;
    check_via_params(&params).map_err(e)?;
    Ok(Via {
        protocol: format!("{name}/{version}"),
        transport: transport.to_string(),
        host,
        port,
        params,
    })
}

fn check_via_params(p: &Params) -> Result<(), &'static str> {
    for (k, v) in &p.0 {
        let v = v.as_deref();
        if k.eq_ignore_ascii_case("ttl") {
            let ok = v.is_some_and(|t| t.len() <= 3 && t.parse::<u8>().is_ok());
            if !ok {
                return Err("bad ttl");
            }
        } else if k.eq_ignore_ascii_case("received") {
            // RFC 3261: IPv4address / IPv6address; RFC 5118 §4.5: also accept a reference.
            let ok = v.is_some_and(|r| {
                let r = r
                    .strip_prefix('[')
                    .and_then(|x| x.strip_suffix(']'))
                    .unwrap_or(r);
                r.parse::<std::net::IpAddr>().is_ok()
            });
            if !ok {
                return Err("bad received");
            }
        } else if k.eq_ignore_ascii_case("rport") {
            if let Some(r) = v
                && (r.len() > 5 || r.parse::<u16>().is_err())
            {
                return Err("bad rport");
            }
        } else if k.eq_ignore_ascii_case("maddr") {
            let ok = v.is_some_and(|m| {
                if m.starts_with('[') {
                    host(m).is_ok_and(|(_, rest)| rest.is_empty())
                } else {
                    host_name(m).is_ok()
                }
            });
            if !ok {
                return Err("bad maddr");
            }
        } else if k.eq_ignore_ascii_case("branch") && v.is_none_or(|b| b.starts_with('"')) {
            return Err("bad branch");
        }
    }
    Ok(())
}

/// `( name-addr / addr-spec ) *( SEMI generic-param )`. For an addr-spec without `<>`, the
/// parameters after the URI belong to the header (RFC 3261 §20), and the URI may not contain
/// `;`, `,` or `?`.
pub fn name_addr(s: &str, header: &str) -> Result<NameAddr, ParseError> {
    let e = |r: &str| bad(header, r);
    let s = s.trim_matches([' ', '\t']);
    let mut c = Cursor::new(s);
    let display_name;
    let uri_text;
    let angle = find_angle(s).map_err(|r| e(&r))?;
    if let Some(lt) = angle {
        // [ display-name ] LAQUOT addr-spec RAQUOT
        let before = s.get(..lt).unwrap_or("").trim_end_matches([' ', '\t']);
        display_name = if before.is_empty() {
            None
        } else if before.starts_with('"') {
            let mut q = Cursor::new(before);
            let qs = q.quoted_string().map_err(|r| e(&r))?;
            if !q.at_end() {
                return Err(e("junk after display name"));
            }
            Some(qs.to_string())
        } else {
            // *(token LWS): tokens separated by whitespace.
            let ok = before
                .split([' ', '\t'])
                .all(|t| t.is_empty() || t.bytes().all(is_token_char));
            if !ok {
                return Err(e("bad display name"));
            }
            Some(before.to_string())
        };
        c = Cursor::new(s.get(lt + 1..).unwrap_or(""));
        let inner = c.take_while(|b| b != b'>');
        if !c.eat(b'>') {
            return Err(e("missing '>'"));
        }
        if inner.bytes().any(|b| b == b' ' || b == b'\t') {
            return Err(e("whitespace inside <>"));
        }
        uri_text = inner;
    } else {
        display_name = None;
        uri_text = c.take_while(|b| !matches!(b, b';' | b' ' | b'\t' | b','));
        if uri_text.contains('?') {
            return Err(e("URI with headers must be enclosed in <>"));
        }
    }
    let uri = Uri::parse(uri_text).map_err(|er| match er {
        ParseError::Uri(r) => e(&r),
        other => other,
    })?;
    let params = c.params_to_end(&[]).map_err(|r| e(&r))?;
    Ok(NameAddr {
        display_name,
        uri,
        params,
    })
}

/// Position of the `<` that opens a name-addr's URI (outside a quoted display name), or
/// `None` for a bare addr-spec.
fn find_angle(s: &str) -> Result<Option<usize>, String> {
    let mut c = Cursor::new(s);
    if c.peek() == Some(b'"') {
        c.quoted_string()?;
        c.skip_ws();
        return if c.peek() == Some(b'<') {
            Ok(Some(c.pos()))
        } else {
            Err("quoted display name not followed by <URI>".into())
        };
    }
    // A bare addr-spec begins with a scheme, so ':' comes before any '<' there.
    let lt = s.find('<');
    let colon = s.find(':');
    Ok(match (lt, colon) {
        (Some(l), Some(k)) if l < k => Some(l),
        (Some(l), None) => Some(l),
        _ => None,
    })
}

/// `callid = word [ "@" word ]`.
pub fn call_id(s: &str) -> Result<&str, ParseError> {
    let v = s.trim_matches([' ', '\t']);
    let word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~()<>:\\\"/[]?{}".contains(&b))
    };
    let ok = match v.split_once('@') {
        Some((a, b)) => word(a) && word(b),
        None => word(v),
    };
    if ok {
        Ok(v)
    } else {
        Err(bad("Call-ID", "bad call-id"))
    }
}

/// `CSeq = 1*DIGIT LWS Method` (32-bit sequence number).
pub fn cseq(s: &str) -> Result<CSeq, ParseError> {
    let mut c = Cursor::new(s.trim_matches([' ', '\t']));
    let digits = c.take_while(|b| b.is_ascii_digit());
    let seq = parse_u32(digits).ok_or_else(|| bad("CSeq", "bad sequence number"))?;
    if !c.skip_ws() {
        return Err(bad("CSeq", "no whitespace before method"));
    }
    let method = Method::from_token(c.rest()).ok_or_else(|| bad("CSeq", "bad method"))?;
    Ok(CSeq { seq, method })
}

/// `1*DIGIT` into a u32 (leading zeros allowed, overflow is an error).
pub fn number(s: &str, header: &str) -> Result<u32, ParseError> {
    parse_u32(s.trim_matches([' ', '\t'])).ok_or_else(|| bad(header, "not a 32-bit number"))
}

fn parse_u32(d: &str) -> Option<u32> {
    if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = d.trim_start_matches('0');
    if t.len() > 10 {
        return None;
    }
    if t.is_empty() {
        return Some(0);
    }
    t.parse().ok()
}

/// `Session-Expires = delta-seconds *( SEMI se-params )`, `refresher = "uas" / "uac"`.
pub fn session_expires(s: &str) -> Result<(u32, Option<String>), ParseError> {
    let mut c = Cursor::new(s.trim_matches([' ', '\t']));
    let digits = c.take_while(|b| b.is_ascii_digit());
    let delta = parse_u32(digits).ok_or_else(|| bad("Session-Expires", "bad delta-seconds"))?;
    let params = c
        .params_to_end(&[])
        .map_err(|r| bad("Session-Expires", r))?;
    let refresher = match params.get("refresher") {
        None => None,
        Some(Some(r)) if r.eq_ignore_ascii_case("uac") || r.eq_ignore_ascii_case("uas") => {
            Some(r.to_string())
        }
        Some(_) => return Err(bad("Session-Expires", "bad refresher")),
    };
    Ok((delta, refresher))
}
