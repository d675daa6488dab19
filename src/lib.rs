//! whatsip: a SIP-to-WhatsApp gateway.
//!
//! The folders are the architecture (see `docs/architecture.md`): sans-IO protocol cores
//! (`sip`, `media`, `call`) driven by `handle_*(now, …)` / `poll_*()`, and one thin tokio
//! shell (`transport`, `media::io`, `api`) that owns every socket.
#![forbid(unsafe_code)]

pub mod api;
pub mod call;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod media;
pub mod metrics;
pub mod redact;
pub mod sandbox;
pub mod sip;
pub mod store;
pub mod transport;
pub mod whatsapp;
