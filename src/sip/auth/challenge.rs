//! `Digest` challenges: the value of `WWW-Authenticate` / `Proxy-Authenticate`
//! (RFC 3261 §22.1, RFC 7616 §3.3, RFC 8760). Guarantees: parsing never panics; `realm` and
//! `nonce` are required; duplicates are refused; unknown parameters are kept; formatting
//! re-parses to the same value; [`select_challenge`] picks the strongest challenge we can
//! answer (SHA-512-256 > SHA-256 > MD5).

use super::params::{ParamValue, RawAuth, is_token, parse_auth_list, push_quoted};
use super::{Algorithm, AuthError};

/// A `qop` option.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Qop {
    /// `auth`.
    Auth,
    /// `auth-int` (parsed, never answered: we work on header values, not bodies).
    AuthInt,
    /// Any other token.
    Other(String),
}

impl Qop {
    /// Parses a token case-insensitively.
    pub fn from_token(t: &str) -> Self {
        if t.eq_ignore_ascii_case("auth") {
            Qop::Auth
        } else if t.eq_ignore_ascii_case("auth-int") {
            Qop::AuthInt
        } else {
            Qop::Other(t.to_owned())
        }
    }

    /// Wire token.
    pub fn as_str(&self) -> &str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
            Qop::Other(t) => t,
        }
    }
}

/// One `Digest` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm` (required).
    pub realm: String,
    /// `domain`: space-separated URIs, kept raw.
    pub domain: Option<String>,
    /// `nonce` (required).
    pub nonce: String,
    /// `opaque`, echoed unchanged by the client.
    pub opaque: Option<String>,
    /// `stale=true`: the previous nonce expired but the credentials were right.
    pub stale: bool,
    /// `algorithm`; `None` when absent (means MD5).
    pub algorithm: Option<Algorithm>,
    /// `qop` options; empty when absent (RFC 2069 compatibility).
    pub qop: Vec<Qop>,
    /// `charset` (RFC 7616 allows only `UTF-8`).
    pub charset: Option<String>,
    /// `userhash=true` (RFC 7616 §3.4.4).
    pub userhash: bool,
    /// Unknown parameters, lower-cased names, in wire order.
    pub other: Vec<(String, String)>,
}

impl Challenge {
    /// A challenge with only `realm` and `nonce` set.
    pub fn new(realm: impl Into<String>, nonce: impl Into<String>) -> Self {
        Challenge {
            realm: realm.into(),
            domain: None,
            nonce: nonce.into(),
            opaque: None,
            stale: false,
            algorithm: None,
            qop: Vec::new(),
            charset: None,
            userhash: false,
            other: Vec::new(),
        }
    }

    /// Parses a header value that must contain exactly one `Digest` challenge.
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        let list = parse_auth_list(value)?;
        match list.as_slice() {
            [one] => Self::from_raw(one),
            _ => Err(AuthError::Syntax {
                at: 0,
                reason: "expected exactly one challenge",
            }),
        }
    }

    /// The algorithm in effect (absent = MD5).
    pub fn effective_algorithm(&self) -> Algorithm {
        self.algorithm.clone().unwrap_or(Algorithm::Md5)
    }

    pub(crate) fn from_raw(raw: &RawAuth) -> Result<Self, AuthError> {
        if !raw.is_digest() {
            return Err(AuthError::NotDigest);
        }
        if raw.token68.is_some() {
            return Err(AuthError::Syntax {
                at: 0,
                reason: "token68 in a Digest challenge",
            });
        }
        let mut c = Challenge::new(String::new(), String::new());
        let (mut realm, mut nonce) = (false, false);
        for (name, ParamValue { text, .. }) in &raw.params {
            match name.as_str() {
                "realm" => {
                    c.realm = text.clone();
                    realm = true;
                }
                "nonce" => {
                    c.nonce = text.clone();
                    nonce = true;
                }
                "domain" => c.domain = Some(text.clone()),
                "opaque" => c.opaque = Some(text.clone()),
                "stale" => c.stale = parse_bool("stale", text)?,
                "userhash" => c.userhash = parse_bool("userhash", text)?,
                "algorithm" => c.algorithm = Some(Algorithm::from_token(text)),
                "charset" => c.charset = Some(text.clone()),
                "qop" => {
                    for q in text.split(',').map(|q| q.trim_matches([' ', '\t'])) {
                        if !is_token(q) {
                            return Err(AuthError::InvalidParam {
                                name: "qop",
                                reason: "not a list of tokens",
                            });
                        }
                        c.qop.push(Qop::from_token(q));
                    }
                }
                _ => c.other.push((name.clone(), text.clone())),
            }
        }
        if !realm {
            return Err(AuthError::MissingParam("realm"));
        }
        if !nonce {
            return Err(AuthError::MissingParam("nonce"));
        }
        Ok(c)
    }

    /// Formats as a header value: `Digest realm="…", nonce="…", …`.
    ///
    /// Fails only if a string field contains a control character.
    pub fn to_header_value(&self) -> Result<String, AuthError> {
        let mut s = String::from("Digest realm=");
        push_quoted(&mut s, "realm", &self.realm)?;
        if let Some(d) = &self.domain {
            s.push_str(", domain=");
            push_quoted(&mut s, "domain", d)?;
        }
        s.push_str(", nonce=");
        push_quoted(&mut s, "nonce", &self.nonce)?;
        if let Some(o) = &self.opaque {
            s.push_str(", opaque=");
            push_quoted(&mut s, "opaque", o)?;
        }
        if self.stale {
            s.push_str(", stale=true");
        }
        if let Some(a) = &self.algorithm {
            push_token_or_quoted(&mut s, "algorithm", a.as_str())?;
        }
        if !self.qop.is_empty() {
            let q: Vec<&str> = self.qop.iter().map(Qop::as_str).collect();
            s.push_str(", qop=");
            push_quoted(&mut s, "qop", &q.join(","))?;
        }
        if let Some(cs) = &self.charset {
            push_token_or_quoted(&mut s, "charset", cs)?;
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

    /// Why this challenge cannot be answered by our client, if it cannot.
    pub fn check_answerable(&self) -> Result<(), AuthError> {
        self.effective_algorithm().hash()?;
        if !self.qop.is_empty() && !self.qop.contains(&Qop::Auth) {
            let q: Vec<&str> = self.qop.iter().map(Qop::as_str).collect();
            return Err(AuthError::UnsupportedQop(q.join(",")));
        }
        Ok(())
    }
}

pub(crate) fn push_token_or_quoted(
    s: &mut String,
    name: &'static str,
    v: &str,
) -> Result<(), AuthError> {
    s.push_str(", ");
    s.push_str(name);
    s.push('=');
    if is_token(v) {
        s.push_str(v);
        Ok(())
    } else {
        push_quoted(s, name, v)
    }
}

pub(crate) fn parse_bool(name: &'static str, v: &str) -> Result<bool, AuthError> {
    if v.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if v.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(AuthError::InvalidParam {
            name,
            reason: "expected true or false",
        })
    }
}

/// Parses every challenge in every given header value (non-Digest schemes are skipped).
/// Each entry is the parse result of one Digest challenge, in wire order.
pub fn parse_challenges<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Vec<Result<Challenge, AuthError>> {
    let mut out = Vec::new();
    for v in values {
        match parse_auth_list(v) {
            Ok(list) => out.extend(
                list.iter()
                    .filter(|r| r.is_digest())
                    .map(Challenge::from_raw),
            ),
            Err(e) => out.push(Err(e)),
        }
    }
    out
}

/// Picks the best answerable challenge from all `WWW-Authenticate` / `Proxy-Authenticate`
/// values of one response: strongest algorithm first, wire order among equals. When none is
/// answerable, returns the first reason (or [`AuthError::NoUsableChallenge`]).
pub fn select_challenge<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Challenge, AuthError> {
    pick_best(parse_challenges(values))
}

/// [`select_challenge`] over already-parsed challenges.
pub(crate) fn pick_best(
    parsed: impl IntoIterator<Item = Result<Challenge, AuthError>>,
) -> Result<Challenge, AuthError> {
    let mut best: Option<Challenge> = None;
    let mut first_err: Option<AuthError> = None;
    for r in parsed {
        match r.and_then(|c| c.check_answerable().map(|()| c)) {
            Ok(c) => {
                let better = best.as_ref().is_none_or(|b| {
                    c.effective_algorithm().strength() > b.effective_algorithm().strength()
                });
                if better {
                    best = Some(c);
                }
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    best.ok_or_else(|| first_err.unwrap_or(AuthError::NoUsableChallenge))
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str =
        r#"Digest realm="wa.meta.vc",nonce="abc123",opaque="op/aque",algorithm=MD5,qop="auth""#;

    #[test]
    fn parses_meta_407() {
        let c = Challenge::parse(META).unwrap();
        assert_eq!(c.realm, "wa.meta.vc");
        assert_eq!(c.nonce, "abc123");
        assert_eq!(c.opaque.as_deref(), Some("op/aque"));
        assert_eq!(c.algorithm, Some(Algorithm::Md5));
        assert_eq!(c.qop, vec![Qop::Auth]);
        assert!(!c.stale);
    }

    #[test]
    fn parses_everything_and_round_trips() {
        let v = "digest Realm=\"r\\\"x\", DOMAIN=\"sip:a sip:b\", nonce=\"n\", opaque=\"o\", stale=TRUE, algorithm=sha-256-SESS, qop=\"auth, auth-int\", charset=UTF-8, userhash=true, foo=bar";
        let c = Challenge::parse(v).unwrap();
        assert_eq!(c.realm, "r\"x");
        assert_eq!(c.domain.as_deref(), Some("sip:a sip:b"));
        assert!(c.stale && c.userhash);
        assert_eq!(c.algorithm, Some(Algorithm::Sha256Sess));
        assert_eq!(c.qop, vec![Qop::Auth, Qop::AuthInt]);
        assert_eq!(c.charset.as_deref(), Some("UTF-8"));
        assert_eq!(c.other, vec![("foo".to_owned(), "bar".to_owned())]);
        let again = Challenge::parse(&c.to_header_value().unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn missing_and_bad_params() {
        assert_eq!(
            Challenge::parse("Digest nonce=\"n\""),
            Err(AuthError::MissingParam("realm"))
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"r\""),
            Err(AuthError::MissingParam("nonce"))
        );
        assert!(matches!(
            Challenge::parse("Digest realm=r, nonce=n, stale=maybe"),
            Err(AuthError::InvalidParam { name: "stale", .. })
        ));
        assert_eq!(
            Challenge::parse("Basic realm=\"r\""),
            Err(AuthError::NotDigest)
        );
    }

    #[test]
    fn selects_sha256_over_md5_across_headers_and_within_one() {
        let md5 = r#"Digest realm="r", nonce="1", algorithm=MD5, qop="auth""#;
        let sha = r#"Digest realm="r", nonce="2", algorithm=SHA-256, qop="auth""#;
        assert_eq!(select_challenge([md5, sha]).unwrap().nonce, "2");
        assert_eq!(select_challenge([sha, md5]).unwrap().nonce, "2");
        let both = format!("{md5}, {sha}");
        assert_eq!(select_challenge([both.as_str()]).unwrap().nonce, "2");
        // unusable ones are skipped
        let weird = r#"Digest realm="r", nonce="3", algorithm=SHA-3, qop="auth""#;
        let intonly = r#"Digest realm="r", nonce="4", qop="auth-int""#;
        assert_eq!(select_challenge([weird, intonly, md5]).unwrap().nonce, "1");
        assert_eq!(
            select_challenge([weird]),
            Err(AuthError::UnsupportedAlgorithm("SHA-3".into()))
        );
        assert_eq!(
            select_challenge([intonly]),
            Err(AuthError::UnsupportedQop("auth-int".into()))
        );
        assert_eq!(
            select_challenge(["Basic realm=\"x\""]),
            Err(AuthError::NoUsableChallenge)
        );
        assert!(select_challenge(["garbage \""]).is_err());
    }
}
