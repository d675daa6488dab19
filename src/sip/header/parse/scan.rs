//! Byte cursor over an (already unfolded) header value, with the RFC 3261 §25.1 lexical
//! helpers shared by the value parsers: whitespace, tokens, quoted strings and `;param` lists.
//!
//! Guarantees: never panics (every slice is taken at an ASCII delimiter and through `get`),
//! and every helper either consumes exactly what its production matches or returns an error.
use crate::sip::header::is_token_char;
use crate::sip::header::params::Params;

pub(crate) struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(s: &'a str) -> Cursor<'a> {
        Cursor { s, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    pub(crate) fn slice(&self, from: usize, to: usize) -> &'a str {
        self.s.get(from..to).unwrap_or("")
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips SP / HTAB (values are unfolded, so this is `SWS`); true if any was skipped.
    pub(crate) fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Consumes bytes while `f` holds (ASCII predicates only stop on ASCII bytes; bytes of
    /// multi-byte characters are consumed whole if `f` accepts bytes >= 0x80).
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if !f(b) {
                break;
            }
            self.pos += 1;
        }
        // Never split a UTF-8 sequence: back off to a char boundary.
        while !self.s.is_char_boundary(self.pos) {
            self.pos -= 1;
        }
        self.slice(start, self.pos)
    }

    /// A non-empty `token`.
    pub(crate) fn token(&mut self) -> Result<&'a str, String> {
        let t = self.take_while(is_token_char);
        if t.is_empty() {
            Err("expected a token".into())
        } else {
            Ok(t)
        }
    }

    /// A `quoted-string` starting at the cursor, returned with its quotes and escapes as written.
    pub(crate) fn quoted_string(&mut self) -> Result<&'a str, String> {
        let start = self.pos;
        if !self.eat(b'"') {
            return Err("expected a quoted string".into());
        }
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(self.slice(start, self.pos));
                }
                Some(b'\\') => {
                    // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                    match self.s.as_bytes().get(self.pos + 1) {
                        Some(&c) if c <= 0x7f && c != b'\n' && c != b'\r' => self.pos += 2,
                        _ => return Err("bad quoted-pair".into()),
                    }
                }
                Some(b) if b == b' ' || b == b'\t' || b >= 0x21 && b != 0x7f => self.pos += 1,
                Some(_) => return Err("control character in quoted string".into()),
            }
        }
    }

    /// `*( SEMI generic-param )` up to the end of the input. `colon_ok` names parameters whose
    /// values may be bare IPv6 addresses (`received`, `maddr`).
    pub(crate) fn params_to_end(&mut self, colon_ok: &[&str]) -> Result<Params, String> {
        let mut params = Params::new();
        loop {
            self.skip_ws();
            if self.at_end() {
                return Ok(params);
            }
            if !self.eat(b';') {
                return Err("expected ';' before a parameter".into());
            }
            self.skip_ws();
            let name = self
                .token()
                .map_err(|_| "empty parameter name".to_string())?;
            self.skip_ws();
            let value = if self.eat(b'=') {
                self.skip_ws();
                let colon = colon_ok.iter().any(|n| n.eq_ignore_ascii_case(name));
                Some(self.gen_value(colon)?)
            } else {
                None
            };
            params.0.push((name.to_string(), value.map(str::to_string)));
        }
    }

    /// `gen-value = token / host / quoted-string`.
    fn gen_value(&mut self, colon_ok: bool) -> Result<&'a str, String> {
        match self.peek() {
            Some(b'"') => self.quoted_string(),
            Some(b'[') => {
                let start = self.pos;
                let v = self.take_while(|b| b != b']');
                if !self.eat(b']') {
                    return Err("unterminated IPv6 reference".into());
                }
                v.get(1..)
                    .and_then(|a| a.parse::<std::net::Ipv6Addr>().ok())
                    .ok_or_else(|| "bad IPv6 reference".to_string())?;
                Ok(self.slice(start, self.pos))
            }
            _ => {
                let v = self.take_while(|b| is_token_char(b) || (colon_ok && b == b':'));
                if v.is_empty() {
                    Err("empty parameter value".into())
                } else {
                    Ok(v)
                }
            }
        }
    }
}

/// Decodes `%XX` escapes (already validated by the URI parser; invalid ones are kept).
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Removes the quotes and quoted-pair escapes of a quoted-string (returned as written by
/// `Cursor::quoted_string`); other input is returned unchanged.
pub fn unquote(s: &str) -> String {
    let inner = match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(i) => i,
        None => return s.to_string(),
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}
