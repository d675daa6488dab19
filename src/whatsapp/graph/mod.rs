//! The Graph API side of WhatsApp calling: an HTTP client with retry and typed errors
//! (`client`, `error`), calling settings and their local validation (`settings`,
//! `call_hours`), call permissions with a lookup cache (`permissions`), and the limits the
//! gateway enforces before Meta does (`limits`). The library reads no profile files: callers
//! pass a [`GraphTarget`] and plain inputs; only the commands (`commands`) resolve numbers
//! from the SIP profiles, through `profile`.
pub mod call_hours;
pub mod client;
pub mod commands;
pub mod error;
pub mod limits;
pub mod permissions;
pub mod profile;
pub mod settings;

pub use client::{GraphClient, GraphTarget, RetryPolicy, Token, TokenSource};
pub use error::{ApiError, ErrorBody, ErrorData, ErrorEnvelope, GraphError};
