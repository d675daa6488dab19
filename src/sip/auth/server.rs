//! The digest server (UAS/proxy side, RFC 3261 §22.1/§22.3, RFC 7616 §3.3/§3.5/§5).
//! Guarantees: challenges carry our realm, `qop="auth"` and one challenge per configured
//! algorithm; nonces are HMAC-authenticated, expire, are bound to their algorithm and are
//! single-use (or nc-increasing, if configured), so replays are refused; responses are
//! compared in constant time; an unknown user and a wrong password get the same reply
//! (same status, same challenge shape, same work done); a correct response on an expired,
//! replayed or foreign nonce gets `stale=true`; a source that fails `threshold` times is
//! refused (403) for the cool-down. All time is the caller's `now`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::algorithm::{ResponseInput, UserSecret, compute_response, responses_match};
use super::challenge::{Challenge, Qop};
use super::lockout::{Lockout, LockoutConfig};
use super::nonce::{NonceMinter, NonceReuse, UsedNonces};
use super::{Algorithm, AuthError, Credentials, DigestHash};

/// Server policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Our realm.
    pub realm: String,
    /// `true`: 407 + `Proxy-Authenticate`; `false`: 401 + `WWW-Authenticate`.
    pub proxy: bool,
    /// Algorithms offered, one challenge each, strongest first (e.g. SHA-256 then MD5).
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce stays valid.
    pub nonce_lifetime: Duration,
    /// Single-use (default) or nc-increasing reuse.
    pub nonce_reuse: NonceReuse,
    /// Bound of the used-nonce table.
    pub max_used_nonces: usize,
    /// Failed-attempt lockout per source address.
    pub lockout: LockoutConfig,
}

impl ServerConfig {
    /// Defaults: 401, SHA-256 + MD5, 5 min nonces, single-use, 5 failures → 5 min lockout.
    pub fn new(realm: impl Into<String>) -> Self {
        ServerConfig {
            realm: realm.into(),
            proxy: false,
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            nonce_lifetime: Duration::from_secs(300),
            nonce_reuse: NonceReuse::SingleUse,
            max_used_nonces: 65_536,
            lockout: LockoutConfig::default(),
        }
    }
}

/// Looks up the secret of `(username, realm)`. Return `None` for unknown users; the server
/// then answers exactly as for a wrong password.
pub trait CredentialStore {
    /// The password, or the HA1 `H(username:realm:password)` computed with `hash`.
    fn lookup(&self, username: &str, realm: &str, hash: DigestHash) -> Option<UserSecret>;
}

impl<F> CredentialStore for F
where
    F: Fn(&str, &str, DigestHash) -> Option<UserSecret>,
{
    fn lookup(&self, username: &str, realm: &str, hash: DigestHash) -> Option<UserSecret> {
        self(username, realm, hash)
    }
}

/// username → password, for any realm.
impl CredentialStore for HashMap<String, String> {
    fn lookup(&self, username: &str, _realm: &str, _hash: DigestHash) -> Option<UserSecret> {
        self.get(username).cloned().map(UserSecret::Password)
    }
}

/// A 401/407 to send: status, header name and one header value per offered algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeReply {
    /// 401 or 407.
    pub status: u16,
    /// `WWW-Authenticate` or `Proxy-Authenticate`.
    pub header_name: &'static str,
    /// One value per challenge, strongest algorithm first.
    pub values: Vec<String>,
}

impl ChallengeReply {
    /// Reason phrase for [`Self::status`].
    pub fn reason_phrase(&self) -> &'static str {
        if self.status == 407 {
            "Proxy Authentication Required"
        } else {
            "Unauthorized"
        }
    }
}

/// The outcome of [`DigestServer::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// The request is authenticated as `username`.
    Accepted {
        /// The authenticated username.
        username: String,
    },
    /// Answer with this 401/407 (possibly `stale=true`).
    Challenge(ChallengeReply),
    /// Answer with `error.sip_status()` (400 malformed, 403 locked out).
    Refused(AuthError),
}

/// Digest authentication state of one realm.
pub struct DigestServer {
    config: ServerConfig,
    challenges: Vec<(Algorithm, u8)>,
    minter: NonceMinter,
    used: UsedNonces,
    lockout: Lockout,
}

impl std::fmt::Debug for DigestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestServer")
            .field("config", &self.config)
            .field("used_nonces", &self.used.len())
            .field("locked_sources", &self.lockout.tracked())
            .finish_non_exhaustive()
    }
}

enum NonceStatus {
    Usable(super::nonce::NonceInfo),
    /// Forged, expired, replayed or issued for another algorithm.
    Unusable,
}

impl DigestServer {
    /// A server with the given per-process `secret` (32 random bytes) and clock origin.
    pub fn new(config: ServerConfig, secret: [u8; 32], now: Instant) -> Result<Self, AuthError> {
        if config.algorithms.is_empty() {
            return Err(AuthError::MissingParam("algorithm"));
        }
        let mut challenges = Vec::new();
        for a in &config.algorithms {
            a.hash()?;
            if !challenges.iter().any(|(b, _)| b == a) {
                challenges.push((a.clone(), a.code()));
            }
        }
        // validates the realm (no control characters)
        Challenge::new(config.realm.clone(), "x").to_header_value()?;
        Ok(DigestServer {
            used: UsedNonces::new(config.max_used_nonces),
            lockout: Lockout::new(config.lockout),
            minter: NonceMinter::new(secret, now),
            challenges,
            config,
        })
    }

    /// [`Self::new`] with a secret from the OS-seeded thread RNG.
    pub fn with_random_secret(config: ServerConfig, now: Instant) -> Result<Self, AuthError> {
        Self::new(config, rand::random::<[u8; 32]>(), now)
    }

    /// The configuration in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// A fresh challenge for a request that carried no credentials.
    pub fn challenge(&mut self, now: Instant) -> ChallengeReply {
        self.reply(now, false)
    }

    fn reply(&mut self, now: Instant, stale: bool) -> ChallengeReply {
        let mut values = Vec::with_capacity(self.challenges.len());
        for (alg, code) in &self.challenges {
            let mut c = Challenge::new(self.config.realm.clone(), self.minter.mint(now, *code));
            c.stale = stale;
            c.algorithm = Some(alg.clone());
            c.qop = vec![Qop::Auth];
            // realm validated in `new`, nonce is base64url: formatting cannot fail
            if let Ok(v) = c.to_header_value() {
                values.push(v);
            }
        }
        ChallengeReply {
            status: if self.config.proxy { 407 } else { 401 },
            header_name: if self.config.proxy {
                "Proxy-Authenticate"
            } else {
                "WWW-Authenticate"
            },
            values,
        }
    }

    /// Verifies a request.
    ///
    /// * `source`: the transport source address (for the lockout counter).
    /// * `method`: the request method (`ACK`/`CANCEL` are never challenged by RFC 3261, the
    ///   caller should not call this for them).
    /// * `request_uri`: when `Some`, the `uri` parameter must equal it exactly (else 400).
    /// * `credentials`: every `Authorization` (401 mode) or `Proxy-Authorization` (407 mode)
    ///   value of the request; the one for our realm is used.
    pub fn authenticate<'a>(
        &mut self,
        now: Instant,
        source: IpAddr,
        method: &str,
        request_uri: Option<&str>,
        credentials: impl IntoIterator<Item = &'a str>,
        store: &impl CredentialStore,
    ) -> Verdict {
        if let Err(retry_after) = self.lockout.check(now, source) {
            return Verdict::Refused(AuthError::LockedOut { retry_after });
        }
        let mut parse_error = None;
        let mut ours = None;
        for v in credentials {
            match Credentials::parse(v) {
                Ok(c) if c.realm == self.config.realm => {
                    ours = Some(c);
                    break;
                }
                Ok(_) | Err(AuthError::NotDigest) => {}
                Err(e) => {
                    parse_error.get_or_insert(e);
                }
            }
        }
        let Some(creds) = ours else {
            return match parse_error {
                Some(e) => Verdict::Refused(e),
                None => Verdict::Challenge(self.challenge(now)),
            };
        };
        let algorithm = creds.effective_algorithm();
        let Some(&(_, code)) = self.challenges.iter().find(|(a, _)| *a == algorithm) else {
            // not something we offered: challenge again, not a password failure
            return Verdict::Challenge(self.challenge(now));
        };
        let (Some(Qop::Auth), Some(nc), Some(cnonce)) = (&creds.qop, creds.nc, &creds.cnonce)
        else {
            return Verdict::Refused(AuthError::InvalidParam {
                name: "qop",
                reason: "qop=auth is required",
            });
        };
        if request_uri.is_some_and(|u| u != creds.uri) {
            return Verdict::Refused(AuthError::UriMismatch);
        }

        let now_ms = self.minter.millis(now);
        let life_ms = u64::try_from(self.config.nonce_lifetime.as_millis()).unwrap_or(u64::MAX);
        let nonce = match self.minter.verify(&creds.nonce) {
            Some(info)
                if info.alg_code == code
                    && info.issued_ms <= now_ms
                    && now_ms - info.issued_ms <= life_ms
                    && !self.used.is_replay(&info, nc, self.config.nonce_reuse) =>
            {
                NonceStatus::Usable(info)
            }
            _ => NonceStatus::Unusable,
        };

        // Same work for known and unknown users: an unknown user gets a keyed dummy secret.
        let Ok(hash) = algorithm.hash() else {
            return Verdict::Challenge(self.challenge(now));
        };
        let found = store.lookup(&creds.username, &self.config.realm, hash);
        let known = found.is_some() && !creds.userhash;
        let secret = match found {
            Some(s) if known => s,
            _ => UserSecret::Password(hex::encode(
                self.minter
                    .prf(b"whatsip dummy\0", creds.username.as_bytes()),
            )),
        };
        let nc_hex = format!("{nc:08x}");
        let expected = compute_response(
            &ResponseInput {
                algorithm: &algorithm,
                username: &creds.username,
                realm: &self.config.realm,
                nonce: &creds.nonce,
                method,
                uri: &creds.uri,
                qop: Some(("auth", &nc_hex, cnonce)),
                cnonce: Some(cnonce),
            },
            &secret,
        );
        let digest_ok = expected.is_ok_and(|e| responses_match(&e, &creds.response));

        if !(digest_ok && known) {
            tracing::info!(%source, "digest auth failed");
            if let Some(retry_after) = self.lockout.record_failure(now, source) {
                return Verdict::Refused(AuthError::LockedOut { retry_after });
            }
            return Verdict::Challenge(self.reply(now, false));
        }
        match nonce {
            NonceStatus::Usable(info) => {
                self.used
                    .mark(now_ms, self.config.nonce_lifetime, &info, nc);
                self.lockout.record_success(source);
                Verdict::Accepted {
                    username: creds.username,
                }
            }
            NonceStatus::Unusable => Verdict::Challenge(self.reply(now, true)),
        }
    }
}
