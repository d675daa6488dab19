//! The digest client (UAC side, RFC 3261 §22.2/§22.3, RFC 7616 §3.4): turns a 401/407
//! challenge into the credentials value for the retried request. Guarantees: `uri` is the
//! Request-URI exactly as given; `qop=auth` whenever offered, with `nc` counting per nonce;
//! `opaque` and `algorithm` echoed; `stale=true` is retried with the new nonce, while a
//! second non-stale challenge to a request that carried our credentials (or a stale one that
//! repeats the nonce we answered) is [`AuthError::CredentialsRejected`], never a retry loop.
//! The password never leaves this struct except as a digest.

use super::algorithm::{ResponseInput, UserSecret, compute_response};
use super::challenge::{Challenge, Qop, parse_challenges, pick_best};
use super::{AuthError, Credentials};

/// Where client nonces come from (inject a deterministic one in tests).
pub trait CnonceSource {
    /// A fresh cnonce: unquoted-safe text, unpredictable in production.
    fn next_cnonce(&mut self) -> String;
}

impl<F: FnMut() -> String> CnonceSource for F {
    fn next_cnonce(&mut self) -> String {
        self()
    }
}

/// 128 random bits from the thread RNG, as 32 hex digits.
#[derive(Debug, Default, Clone, Copy)]
pub struct RandomCnonce;

impl CnonceSource for RandomCnonce {
    fn next_cnonce(&mut self) -> String {
        hex::encode(rand::random::<[u8; 16]>())
    }
}

/// How many `stale=true` challenges in a row we follow before giving up.
const MAX_STALE_RETRIES: u8 = 3;

#[derive(Debug, Clone)]
struct Session {
    challenge: Challenge,
    nc: u32,
    stale_retries: u8,
}

/// Digest client state for one username/password (one registration or one outbound trunk).
pub struct DigestClient {
    username: String,
    password: String,
    expected_realm: Option<String>,
    session: Option<Session>,
}

impl std::fmt::Debug for DigestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestClient")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("expected_realm", &self.expected_realm)
            .finish_non_exhaustive()
    }
}

impl DigestClient {
    /// A client answering any realm with these credentials.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        DigestClient {
            username: username.into(),
            password: password.into(),
            expected_realm: None,
            session: None,
        }
    }

    /// Only answer challenges whose realm equals `realm` (case-sensitive, RFC 7616 §3.3).
    pub fn with_expected_realm(mut self, realm: impl Into<String>) -> Self {
        self.expected_realm = Some(realm.into());
        self
    }

    /// The username sent on the wire (before any userhash).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The challenge currently answered, if any.
    pub fn current_challenge(&self) -> Option<&Challenge> {
        self.session.as_ref().map(|s| &s.challenge)
    }

    /// Forgets the current nonce.
    pub fn reset(&mut self) {
        self.session = None;
    }

    /// Answers a 401/407.
    ///
    /// * `challenges`: every `WWW-Authenticate` (401) or `Proxy-Authenticate` (407) value of
    ///   the response; the strongest answerable one is used.
    /// * `method`, `request_uri`: of the request about to be re-sent (`uri` = this, verbatim).
    /// * `previous`: the `Authorization`/`Proxy-Authorization` value the challenged request
    ///   carried, if it carried one of ours. This is what distinguishes "wrong password"
    ///   (give up) from "first challenge" and "stale nonce" (answer).
    ///
    /// Returns the value for `Authorization` (after 401) or `Proxy-Authorization` (after 407).
    pub fn respond<'a>(
        &mut self,
        challenges: impl IntoIterator<Item = &'a str>,
        method: &str,
        request_uri: &str,
        previous: Option<&str>,
        cnonce: &mut impl CnonceSource,
    ) -> Result<String, AuthError> {
        let expected = self.expected_realm.as_deref();
        let parsed = parse_challenges(challenges).into_iter().map(|r| {
            r.and_then(|c| match expected {
                Some(realm) if c.realm != realm => Err(AuthError::InvalidParam {
                    name: "realm",
                    reason: "not the expected realm",
                }),
                _ => Ok(c),
            })
        });
        let chosen = pick_best(parsed)?;

        let mut stale_retries = 0;
        if let Some(prev) = previous.and_then(|p| Credentials::parse(p).ok())
            && prev.realm == chosen.realm
        {
            // A preemptive reuse (nc > 1) being refused is not a verdict on the password.
            let was_fresh_answer = prev.nc.is_none_or(|n| n <= 1);
            let prior = self.session.as_ref().map_or(0, |s| s.stale_retries);
            let rejected = if chosen.stale {
                chosen.nonce == prev.nonce || prior >= MAX_STALE_RETRIES
            } else {
                was_fresh_answer
            };
            if rejected {
                tracing::warn!(realm = %chosen.realm, "digest credentials rejected");
                return Err(AuthError::CredentialsRejected {
                    realm: chosen.realm,
                });
            }
            if chosen.stale {
                stale_retries = prior + 1;
            }
        }

        let nc = match &self.session {
            Some(s) if s.challenge.nonce == chosen.nonce && s.challenge.realm == chosen.realm => {
                s.nc.saturating_add(1)
            }
            _ => 1,
        };
        let value = self.build(&chosen, nc, method, request_uri, cnonce)?;
        self.session = Some(Session {
            challenge: chosen,
            nc,
            stale_retries,
        });
        Ok(value)
    }

    /// Preemptively authorizes another request with the current nonce (`nc` + 1), when the
    /// current challenge offered `qop=auth`. `None` when there is nothing to reuse.
    pub fn authorize(
        &mut self,
        method: &str,
        request_uri: &str,
        cnonce: &mut impl CnonceSource,
    ) -> Option<Result<String, AuthError>> {
        let session = self.session.as_ref()?;
        if !session.challenge.qop.contains(&Qop::Auth) {
            return None;
        }
        let nc = session.nc.checked_add(1)?;
        let challenge = session.challenge.clone();
        let r = self.build(&challenge, nc, method, request_uri, cnonce);
        if let (Ok(_), Some(s)) = (&r, self.session.as_mut()) {
            s.nc = nc;
        }
        Some(r)
    }

    fn build(
        &self,
        ch: &Challenge,
        nc: u32,
        method: &str,
        request_uri: &str,
        cnonce_src: &mut impl CnonceSource,
    ) -> Result<String, AuthError> {
        let algorithm = ch.effective_algorithm();
        let use_qop = ch.qop.contains(&Qop::Auth);
        let cnonce = (use_qop || algorithm.is_sess()).then(|| cnonce_src.next_cnonce());
        let nc_hex = format!("{nc:08x}");
        let qop = match (&cnonce, use_qop) {
            (Some(c), true) => Some(("auth", nc_hex.as_str(), c.as_str())),
            _ => None,
        };
        let response = compute_response(
            &ResponseInput {
                algorithm: &algorithm,
                username: &self.username,
                realm: &ch.realm,
                nonce: &ch.nonce,
                method,
                uri: request_uri,
                qop,
                cnonce: cnonce.as_deref(),
            },
            &UserSecret::Password(self.password.clone()),
        )?;
        let username = if ch.userhash {
            algorithm.hash()?.hex_joined(&[&self.username, &ch.realm])
        } else {
            self.username.clone()
        };
        Credentials {
            username,
            realm: ch.realm.clone(),
            nonce: ch.nonce.clone(),
            uri: request_uri.to_owned(),
            response,
            algorithm: ch.algorithm.clone(),
            cnonce,
            opaque: ch.opaque.clone(),
            qop: use_qop.then_some(Qop::Auth),
            nc: use_qop.then_some(nc),
            userhash: ch.userhash,
            other: Vec::new(),
        }
        .to_header_value()
    }
}
