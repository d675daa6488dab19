//! The auth-param list grammar shared by challenges and credentials (RFC 3261 §25.1,
//! RFC 7235 §2.1): `scheme [token68 / auth-param *("," auth-param)]`, with several
//! challenges allowed in one header value. Guarantees: never panics, never indexes past the
//! input, rejects unbalanced quotes, bad escapes and bare CR/LF; tolerates LWS and header
//! folding (CRLF + WSP); parameter names are lower-cased and duplicates rejected.

use super::AuthError;

/// One parameter value as it appeared on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParamValue {
    /// Unescaped text.
    pub text: String,
    /// Whether it was a quoted-string (`true`) or a token (`false`).
    pub quoted: bool,
}

/// One scheme with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawAuth {
    pub scheme: String,
    pub token68: Option<String>,
    /// Lower-cased names, in wire order, without duplicates.
    pub params: Vec<(String, ParamValue)>,
}

impl RawAuth {
    pub(crate) fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("digest")
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn err(&self, reason: &'static str) -> AuthError {
        AuthError::Syntax {
            at: self.pos,
            reason,
        }
    }

    /// Skips LWS: SP / HTAB, and CRLF (or bare LF) only when followed by SP / HTAB.
    /// Returns whether anything was skipped.
    fn skip_lws(&mut self) -> Result<bool, AuthError> {
        let start = self.pos;
        loop {
            match self.peek() {
                Some(b' ' | b'\t') => self.pos += 1,
                Some(b'\r' | b'\n') => {
                    let nl = if self.peek() == Some(b'\r') {
                        if self.s.get(self.pos + 1) != Some(&b'\n') {
                            return Err(self.err("bare CR"));
                        }
                        2
                    } else {
                        1
                    };
                    match self.s.get(self.pos + nl) {
                        Some(b' ' | b'\t') => self.pos += nl + 1,
                        _ => return Err(self.err("line break not followed by whitespace")),
                    }
                }
                _ => return Ok(self.pos > start),
            }
        }
    }

    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        if self.pos == start {
            return None;
        }
        // tchar is ASCII only, so the slice is valid UTF-8.
        std::str::from_utf8(self.s.get(start..self.pos)?).ok()
    }

    fn quoted_string(&mut self) -> Result<String, AuthError> {
        if self.peek() != Some(b'"') {
            return Err(self.err("expected '\"'"));
        }
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.err("unterminated quoted-string"));
            };
            match b {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos + 1) else {
                        return Err(self.err("unterminated quoted-pair"));
                    };
                    if e == b'\r' || e == b'\n' || e >= 0x80 {
                        return Err(self.err("invalid quoted-pair"));
                    }
                    out.push(e);
                    self.pos += 2;
                }
                b'\r' | b'\n' => {
                    // folding inside a quoted string: keep the whitespace, drop the line break
                    let before = self.pos;
                    self.skip_lws()?;
                    if let Some(ws) = self.s.get(before..self.pos) {
                        out.extend(ws.iter().filter(|c| matches!(c, b' ' | b'\t')));
                    }
                }
                b'\t' => {
                    out.push(b);
                    self.pos += 1;
                }
                0x00..=0x1f | 0x7f => return Err(self.err("control character in quoted-string")),
                _ => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| self.err("invalid UTF-8 in quoted-string"))
    }
}

/// Tries `name LWS? "=" LWS? (token | quoted-string)` at the cursor; restores the position
/// and returns `Ok(None)` if there is no `=` after the name.
fn auth_param(c: &mut Cursor<'_>) -> Result<Option<(String, ParamValue)>, AuthError> {
    let start = c.pos;
    let Some(name) = c.token() else {
        return Ok(None);
    };
    c.skip_lws()?;
    if c.peek() != Some(b'=') {
        c.pos = start;
        return Ok(None);
    }
    c.pos += 1;
    c.skip_lws()?;
    let value = if c.peek() == Some(b'"') {
        ParamValue {
            text: c.quoted_string()?,
            quoted: true,
        }
    } else if let Some(t) = c.token() {
        ParamValue {
            text: t.to_owned(),
            quoted: false,
        }
    } else {
        c.pos = start;
        return Ok(None);
    };
    Ok(Some((name.to_ascii_lowercase(), value)))
}

/// `token68` followed by optional LWS then `,` or end of input.
fn token68(c: &mut Cursor<'_>) -> Result<Option<String>, AuthError> {
    let start = c.pos;
    while c.peek().is_some_and(is_token68_char) {
        c.pos += 1;
    }
    if c.pos == start {
        return Ok(None);
    }
    while c.peek() == Some(b'=') {
        c.pos += 1;
    }
    let end = c.pos;
    c.skip_lws()?;
    if matches!(c.peek(), None | Some(b',')) {
        let t = c.s.get(start..end).unwrap_or_default();
        Ok(std::str::from_utf8(t).ok().map(str::to_owned))
    } else {
        c.pos = start;
        Ok(None)
    }
}

fn push_param(auth: &mut RawAuth, (name, value): (String, ParamValue)) -> Result<(), AuthError> {
    if auth.params.iter().any(|(n, _)| *n == name) {
        return Err(AuthError::DuplicateParam(name));
    }
    auth.params.push((name, value));
    Ok(())
}

/// Parses a whole header value into its challenges / credentials (one or more schemes).
pub(crate) fn parse_auth_list(value: &str) -> Result<Vec<RawAuth>, AuthError> {
    let mut c = Cursor {
        s: value.as_bytes(),
        pos: 0,
    };
    let mut out: Vec<RawAuth> = Vec::new();
    c.skip_lws()?;
    loop {
        // one list element (possibly empty)
        match c.peek() {
            None => break,
            Some(b',') => {}
            Some(_) => {
                if let Some(p) = auth_param(&mut c)? {
                    let Some(cur) = out.last_mut() else {
                        return Err(c.err("parameter before any scheme"));
                    };
                    if cur.token68.is_some() {
                        return Err(c.err("parameter after token68"));
                    }
                    push_param(cur, p)?;
                } else {
                    let Some(scheme) = c.token() else {
                        return Err(c.err("expected scheme or parameter"));
                    };
                    let mut auth = RawAuth {
                        scheme: scheme.to_owned(),
                        token68: None,
                        params: Vec::new(),
                    };
                    if c.skip_lws()? && !matches!(c.peek(), None | Some(b',')) {
                        if let Some(p) = auth_param(&mut c)? {
                            push_param(&mut auth, p)?;
                        } else if let Some(t) = token68(&mut c)? {
                            auth.token68 = Some(t);
                        } else {
                            return Err(c.err("expected parameter or token68 after scheme"));
                        }
                    }
                    out.push(auth);
                }
            }
        }
        c.skip_lws()?;
        match c.peek() {
            None => break,
            Some(b',') => {
                c.pos += 1;
                c.skip_lws()?;
            }
            Some(_) => return Err(c.err("expected ',' or end of value")),
        }
    }
    if out.is_empty() {
        return Err(c.err("empty authentication header"));
    }
    Ok(out)
}

/// Appends `"…"` with `"` and `\` escaped. Fails on characters a quoted-string cannot carry
/// (CR, LF and other controls except HTAB).
pub(crate) fn push_quoted(
    out: &mut String,
    name: &'static str,
    value: &str,
) -> Result<(), AuthError> {
    if value
        .chars()
        .any(|ch| (ch.is_ascii_control() && ch != '\t') || ch == '\u{7f}')
    {
        return Err(AuthError::InvalidParam {
            name,
            reason: "control character",
        });
    }
    out.push('"');
    for ch in value.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    Ok(())
}

/// Whether `s` is a non-empty token (so it may be written unquoted).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_several_challenges() {
        let v = r#"Digest realm="a", nonce="x,y", algorithm=SHA-256, Basic realm="b", Negotiate abc==, Digest realm="c""#;
        let l = parse_auth_list(v).unwrap();
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].params.len(), 3);
        assert_eq!(l[0].params[1].1.text, "x,y");
        assert_eq!(l[2].token68.as_deref(), Some("abc=="));
        assert_eq!(l[3].params[0].1.text, "c");
    }

    #[test]
    fn escapes_folding_and_case() {
        let v = "Digest REALM=\"a\\\"b\\\\c\",\r\n\tNonce = \"n\r\n  x\"";
        let l = parse_auth_list(v).unwrap();
        assert_eq!(
            l[0].params[0],
            (
                "realm".into(),
                ParamValue {
                    text: "a\"b\\c".into(),
                    quoted: true
                }
            )
        );
        assert_eq!(l[0].params[1].1.text, "n  x");
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "Digest realm=\"a",
            "Digest realm=\"a\\",
            "Digest realm=\"a\rb\"",
            "Digest realm=a\r\nnonce=b",
            "Digest realm=\"a\", realm=\"b\"",
            "realm=\"a\"",
            "Digest realm=\"a\" nonce=\"b\"",
            "",
            "  ",
            "Digest realm=\"\u{1}\"",
        ] {
            assert!(parse_auth_list(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn duplicate_is_case_insensitive() {
        assert_eq!(
            parse_auth_list("Digest nonce=a, NONCE=b"),
            Err(AuthError::DuplicateParam("nonce".into()))
        );
    }
}
