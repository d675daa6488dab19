//! The SIP side of the sandbox twin of Meta's edge (`wa.meta.vc`), sans-IO.
//!
//! - [`rules`]: what Meta answers to each request a gateway sends (URI forms, From host,
//!   business number, digest, permission, REGISTER/re-INVITE/UPDATE/REFER/INFO), one decision
//!   per request, unit-tested per rule.
//! - [`calls`]: the call book the control API reads: per call its state, SIP transcript,
//!   media counters and the Meta rules the gateway broke (violations), and how each sandbox
//!   user answers.
//!
//! The tokio glue that binds the TLS listener and drives the SIP endpoint is
//! `sandbox::runtime`.
pub mod calls;
pub mod media;
pub mod rules;

pub use calls::{
    AnswerMode, CallBook, CallDirection, CallRecord, CallState, DtlsFacts, MediaCounters,
    RefusedRequest, SipEntry, UserBehaviour,
};
pub use rules::{ALLOW, EdgeConfig, EdgeRules, META_REALM, Refusal, RouteStyle, Verdict};
