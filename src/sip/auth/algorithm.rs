//! Digest algorithms (RFC 7616 §3.2, RFC 8760) and the response computation
//! (RFC 7616 §3.4.1–§3.4.3, RFC 3261 §22.4). Guarantees: tokens compare case-insensitively,
//! unknown tokens are kept (never an error at parse time) but refuse to compute, and hex
//! output is lower case.

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};
use subtle::ConstantTimeEq;

use super::AuthError;

/// The hash function underneath an [`Algorithm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestHash {
    /// MD5 (RFC 2617 / RFC 3261).
    Md5,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
    /// SHA-512/256 (RFC 7616, RFC 8760).
    Sha512_256,
}

impl DigestHash {
    /// Lower-case hex digest of `data`.
    pub fn hex(self, data: &[u8]) -> String {
        match self {
            DigestHash::Md5 => hex::encode(Md5::digest(data).as_slice()),
            DigestHash::Sha256 => hex::encode(Sha256::digest(data).as_slice()),
            DigestHash::Sha512_256 => hex::encode(Sha512_256::digest(data).as_slice()),
        }
    }

    /// Length of [`Self::hex`] output.
    pub fn hex_len(self) -> usize {
        match self {
            DigestHash::Md5 => 32,
            DigestHash::Sha256 | DigestHash::Sha512_256 => 64,
        }
    }

    /// `H(a:b:c…)`.
    pub(crate) fn hex_joined(self, parts: &[&str]) -> String {
        self.hex(parts.join(":").as_bytes())
    }
}

/// The `algorithm` parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// `MD5` (also the meaning of an absent parameter).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
    /// `SHA-512-256`.
    Sha512_256,
    /// `SHA-512-256-sess`.
    Sha512_256Sess,
    /// Any other token, kept verbatim; cannot be computed.
    Unknown(String),
}

impl Algorithm {
    /// Parses a token case-insensitively. Never fails: unknown tokens become [`Self::Unknown`].
    pub fn from_token(token: &str) -> Self {
        match token.to_ascii_uppercase().as_str() {
            "MD5" => Algorithm::Md5,
            "MD5-SESS" => Algorithm::Md5Sess,
            "SHA-256" => Algorithm::Sha256,
            "SHA-256-SESS" => Algorithm::Sha256Sess,
            "SHA-512-256" => Algorithm::Sha512_256,
            "SHA-512-256-SESS" => Algorithm::Sha512_256Sess,
            _ => Algorithm::Unknown(token.to_owned()),
        }
    }

    /// The canonical wire token.
    pub fn as_str(&self) -> &str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
            Algorithm::Unknown(t) => t,
        }
    }

    /// The hash function, or [`AuthError::UnsupportedAlgorithm`].
    pub fn hash(&self) -> Result<DigestHash, AuthError> {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => Ok(DigestHash::Md5),
            Algorithm::Sha256 | Algorithm::Sha256Sess => Ok(DigestHash::Sha256),
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => Ok(DigestHash::Sha512_256),
            Algorithm::Unknown(t) => Err(AuthError::UnsupportedAlgorithm(t.clone())),
        }
    }

    /// Whether this is a `-sess` variant.
    pub fn is_sess(&self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// Preference when several challenges are offered: higher is better, 0 = unusable.
    pub fn strength(&self) -> u8 {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 1,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 2,
            Algorithm::Sha512_256 | Algorithm::Sha512_256Sess => 3,
            Algorithm::Unknown(_) => 0,
        }
    }

    /// Compact code used inside server nonces.
    pub(crate) fn code(&self) -> u8 {
        match self {
            Algorithm::Md5 => 1,
            Algorithm::Md5Sess => 2,
            Algorithm::Sha256 => 3,
            Algorithm::Sha256Sess => 4,
            Algorithm::Sha512_256 => 5,
            Algorithm::Sha512_256Sess => 6,
            Algorithm::Unknown(_) => 0,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that enters a `response` computation, apart from the secret.
#[derive(Debug, Clone, Copy)]
pub struct ResponseInput<'a> {
    /// Algorithm (absent parameter = [`Algorithm::Md5`]).
    pub algorithm: &'a Algorithm,
    /// Username as it enters HA1 (the real name, not a userhash).
    pub username: &'a str,
    /// Realm.
    pub realm: &'a str,
    /// Server nonce.
    pub nonce: &'a str,
    /// Request method, e.g. `INVITE`.
    pub method: &'a str,
    /// `uri` parameter (the Request-URI in SIP).
    pub uri: &'a str,
    /// `(qop, nc as 8 hex, cnonce)` when qop is used; `None` for RFC 2069 compatibility.
    pub qop: Option<(&'a str, &'a str, &'a str)>,
    /// cnonce for `-sess` algorithms even without qop.
    pub cnonce: Option<&'a str>,
}

/// The secret that enters HA1.
#[derive(Clone, PartialEq, Eq)]
pub enum UserSecret {
    /// Cleartext password.
    Password(String),
    /// Pre-computed `H(username:realm:password)` in hex for the hash being used.
    Ha1(String),
}

impl std::fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserSecret::Password(_) => f.write_str("Password(<redacted>)"),
            UserSecret::Ha1(_) => f.write_str("Ha1(<redacted>)"),
        }
    }
}

/// Computes the `response` value (lower-case hex). Only `auth` (or no qop) is supported.
pub fn compute_response(
    input: &ResponseInput<'_>,
    secret: &UserSecret,
) -> Result<String, AuthError> {
    let h = input.algorithm.hash()?;
    let base_ha1 = match secret {
        UserSecret::Password(p) => h.hex_joined(&[input.username, input.realm, p]),
        UserSecret::Ha1(x) => x.to_ascii_lowercase(),
    };
    let ha1 = if input.algorithm.is_sess() {
        let cnonce = input
            .qop
            .map(|(_, _, c)| c)
            .or(input.cnonce)
            .ok_or(AuthError::MissingParam("cnonce"))?;
        h.hex_joined(&[&base_ha1, input.nonce, cnonce])
    } else {
        base_ha1
    };
    let ha2 = match input.qop {
        Some((q, _, _)) if !q.eq_ignore_ascii_case("auth") => {
            return Err(AuthError::UnsupportedQop(q.to_owned()));
        }
        _ => h.hex_joined(&[input.method, input.uri]),
    };
    Ok(match input.qop {
        Some((q, nc, cnonce)) => h.hex_joined(&[&ha1, input.nonce, nc, cnonce, q, &ha2]),
        None => h.hex_joined(&[&ha1, input.nonce, &ha2]),
    })
}

/// Constant-time comparison of two hex responses (case-insensitive).
pub(crate) fn responses_match(expected: &str, got: &str) -> bool {
    let got = got.to_ascii_lowercase();
    bool::from(expected.as_bytes().ct_eq(got.as_bytes()))
}
