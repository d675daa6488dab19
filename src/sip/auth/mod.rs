//! SIP digest authentication (RFC 3261 §22, RFC 7616, RFC 8760), sans-IO, at the level of
//! header values: parse/format challenges and credentials, answer challenges as a client
//! ([`DigestClient`]), issue and verify them as a server ([`DigestServer`]).
//!
//! Guarantees: no parser panics on any input; no password, HA1 or full credential is ever
//! logged or `Debug`-printed; all time is passed in.
//!
//! ```
//! use whatsip::sip::auth::{DigestClient, DigestServer, ServerConfig, Verdict};
//! use std::{collections::HashMap, time::Instant};
//! let now = Instant::now();
//! let mut server = DigestServer::new(ServerConfig::new("example.org"), [9; 32], now).unwrap();
//! let users = HashMap::from([("alice".to_owned(), "s3cret".to_owned())]);
//! let challenge = server.challenge(now);
//! let mut client = DigestClient::new("alice", "s3cret");
//! let uri = "sip:bob@example.org";
//! let auth = client
//!     .respond(challenge.values.iter().map(String::as_str), "INVITE", uri, None, &mut || "c1".to_owned())
//!     .unwrap();
//! let ip = "127.0.0.1".parse().unwrap();
//! let v = server.authenticate(now, ip, "INVITE", Some(uri), [auth.as_str()], &users);
//! assert_eq!(v, Verdict::Accepted { username: "alice".into() });
//! ```

mod algorithm;
mod challenge;
mod client;
mod credentials;
mod error;
mod lockout;
mod meta;
mod nonce;
mod params;
mod server;

pub use algorithm::{Algorithm, DigestHash, ResponseInput, UserSecret, compute_response};
pub use challenge::{Challenge, Qop, parse_challenges, select_challenge};
pub use client::{CnonceSource, DigestClient, RandomCnonce};
pub use credentials::Credentials;
pub use error::AuthError;
pub use lockout::{Lockout, LockoutConfig};
pub use meta::{META_REALM, meta_client, meta_digest_username};
pub use nonce::NonceReuse;
pub use server::{ChallengeReply, CredentialStore, DigestServer, ServerConfig, Verdict};

/// The request header that answers a challenge response status: 401 → `Authorization`,
/// 407 → `Proxy-Authorization`.
pub fn credentials_header_for(status: u16) -> Option<&'static str> {
    match status {
        401 => Some("Authorization"),
        407 => Some("Proxy-Authorization"),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
