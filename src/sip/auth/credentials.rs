//! `Digest` credentials: the value of `Authorization` / `Proxy-Authorization`
//! (RFC 3261 §22.2/§22.3, RFC 7616 §3.4). Guarantees: parsing never panics; `username`,
//! `realm`, `nonce`, `uri` and `response` are required; `response` is hex; `nc` is exactly
//! 8 hex digits; `qop` implies `cnonce` and `nc`; duplicates are refused; unknown parameters
//! are kept; formatting re-parses to the same value.

use super::challenge::{Qop, parse_bool, push_token_or_quoted};
use super::params::{ParamValue, is_token, parse_auth_list, push_quoted};
use super::{Algorithm, AuthError};

/// One set of `Digest` credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `username` (or its hash when `userhash` is set).
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce` from the challenge.
    pub nonce: String,
    /// `uri`: the Request-URI, exactly as sent.
    pub uri: String,
    /// `response`: lower-case hex.
    pub response: String,
    /// `algorithm`; `None` when absent (MD5).
    pub algorithm: Option<Algorithm>,
    /// `cnonce`.
    pub cnonce: Option<String>,
    /// `opaque`, echoed from the challenge.
    pub opaque: Option<String>,
    /// `qop` chosen by the client.
    pub qop: Option<Qop>,
    /// `nc` nonce count.
    pub nc: Option<u32>,
    /// `userhash=true`.
    pub userhash: bool,
    /// Unknown parameters, lower-cased names, in wire order.
    pub other: Vec<(String, String)>,
}

impl Credentials {
    /// Parses an `Authorization` / `Proxy-Authorization` value (one Digest credential).
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        let list = parse_auth_list(value)?;
        let [raw] = list.as_slice() else {
            return Err(AuthError::Syntax {
                at: 0,
                reason: "expected exactly one credential",
            });
        };
        if !raw.is_digest() {
            return Err(AuthError::NotDigest);
        }
        if raw.token68.is_some() {
            return Err(AuthError::Syntax {
                at: 0,
                reason: "token68 in Digest credentials",
            });
        }
        let (mut username, mut realm, mut nonce, mut uri, mut response) =
            (None, None, None, None, None);
        let mut c = Credentials {
            username: String::new(),
            realm: String::new(),
            nonce: String::new(),
            uri: String::new(),
            response: String::new(),
            algorithm: None,
            cnonce: None,
            opaque: None,
            qop: None,
            nc: None,
            userhash: false,
            other: Vec::new(),
        };
        for (name, ParamValue { text, .. }) in &raw.params {
            match name.as_str() {
                "username" => username = Some(text.clone()),
                "realm" => realm = Some(text.clone()),
                "nonce" => nonce = Some(text.clone()),
                "uri" => uri = Some(text.clone()),
                "response" => {
                    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(AuthError::InvalidParam {
                            name: "response",
                            reason: "not hex",
                        });
                    }
                    response = Some(text.to_ascii_lowercase());
                }
                "algorithm" => c.algorithm = Some(Algorithm::from_token(text)),
                "cnonce" => c.cnonce = Some(text.clone()),
                "opaque" => c.opaque = Some(text.clone()),
                "qop" => {
                    if !is_token(text) {
                        return Err(AuthError::InvalidParam {
                            name: "qop",
                            reason: "not a token",
                        });
                    }
                    c.qop = Some(Qop::from_token(text));
                }
                "nc" => {
                    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(AuthError::InvalidParam {
                            name: "nc",
                            reason: "expected 8 hex digits",
                        });
                    }
                    c.nc = Some(u32::from_str_radix(text, 16).map_err(|_| {
                        AuthError::InvalidParam {
                            name: "nc",
                            reason: "expected 8 hex digits",
                        }
                    })?);
                }
                "userhash" => c.userhash = parse_bool("userhash", text)?,
                _ => c.other.push((name.clone(), text.clone())),
            }
        }
        c.username = username.ok_or(AuthError::MissingParam("username"))?;
        c.realm = realm.ok_or(AuthError::MissingParam("realm"))?;
        c.nonce = nonce.ok_or(AuthError::MissingParam("nonce"))?;
        c.uri = uri.ok_or(AuthError::MissingParam("uri"))?;
        c.response = response.ok_or(AuthError::MissingParam("response"))?;
        if c.qop.is_some() {
            if c.cnonce.is_none() {
                return Err(AuthError::MissingParam("cnonce"));
            }
            if c.nc.is_none() {
                return Err(AuthError::MissingParam("nc"));
            }
        }
        Ok(c)
    }

    /// The algorithm in effect (absent = MD5).
    pub fn effective_algorithm(&self) -> Algorithm {
        self.algorithm.clone().unwrap_or(Algorithm::Md5)
    }

    /// `nc` as the 8 lower-case hex digits that enter the response.
    pub fn nc_hex(&self) -> Option<String> {
        self.nc.map(|n| format!("{n:08x}"))
    }

    /// Formats as a header value. Fails only on control characters in a string field or an
    /// invalid `response`.
    pub fn to_header_value(&self) -> Result<String, AuthError> {
        if self.response.is_empty() || !self.response.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AuthError::InvalidParam {
                name: "response",
                reason: "not hex",
            });
        }
        let mut s = String::from("Digest username=");
        push_quoted(&mut s, "username", &self.username)?;
        s.push_str(", realm=");
        push_quoted(&mut s, "realm", &self.realm)?;
        s.push_str(", nonce=");
        push_quoted(&mut s, "nonce", &self.nonce)?;
        s.push_str(", uri=");
        push_quoted(&mut s, "uri", &self.uri)?;
        s.push_str(", response=");
        push_quoted(&mut s, "response", &self.response)?;
        if let Some(a) = &self.algorithm {
            push_token_or_quoted(&mut s, "algorithm", a.as_str())?;
        }
        if let Some(c) = &self.cnonce {
            s.push_str(", cnonce=");
            push_quoted(&mut s, "cnonce", c)?;
        }
        if let Some(o) = &self.opaque {
            s.push_str(", opaque=");
            push_quoted(&mut s, "opaque", o)?;
        }
        if let Some(q) = &self.qop {
            push_token_or_quoted(&mut s, "qop", q.as_str())?;
        }
        if let Some(nc) = self.nc {
            s.push_str(&format!(", nc={nc:08x}"));
        }
        if self.userhash {
            s.push_str(", userhash=true");
        }
        for (n, v) in &self.other {
            if !is_token(n) {
                return Err(AuthError::InvalidParam {
                    name: "other",
                    reason: "parameter name is not a token",
                });
            }
            s.push_str(", ");
            s.push_str(n);
            s.push('=');
            push_quoted(&mut s, "other", v)?;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc2617_example_and_round_trips() {
        let v = "Digest username=\"Mufasa\",\r\n realm=\"testrealm@host.com\",\r\n nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n uri=\"/dir/index.html\",\r\n qop=auth,\r\n nc=00000001,\r\n cnonce=\"0a4f113b\",\r\n response=\"6629fae49393a05397450978507c4ef1\",\r\n opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        let c = Credentials::parse(v).unwrap();
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.nc, Some(1));
        assert_eq!(c.qop, Some(Qop::Auth));
        assert_eq!(c.cnonce.as_deref(), Some("0a4f113b"));
        assert_eq!(
            Credentials::parse(&c.to_header_value().unwrap()).unwrap(),
            c
        );
    }

    #[test]
    fn strict_fields() {
        let base =
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:a@b\", response=\"0a\"";
        assert!(Credentials::parse(base).is_ok());
        assert_eq!(
            Credentials::parse(&format!("{base}, qop=auth, nc=00000001")),
            Err(AuthError::MissingParam("cnonce"))
        );
        assert!(matches!(
            Credentials::parse(&format!("{base}, qop=auth, cnonce=\"c\", nc=1")),
            Err(AuthError::InvalidParam { name: "nc", .. })
        ));
        assert!(matches!(
            Credentials::parse(
                "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"x\", response=\"zz\""
            ),
            Err(AuthError::InvalidParam {
                name: "response",
                ..
            })
        ));
        assert_eq!(
            Credentials::parse("Digest username=\"u\", realm=\"r\", nonce=\"n\", response=\"0a\""),
            Err(AuthError::MissingParam("uri"))
        );
        assert_eq!(
            Credentials::parse(&format!("{base}, Username=\"v\"")),
            Err(AuthError::DuplicateParam("username".into()))
        );
    }
}
