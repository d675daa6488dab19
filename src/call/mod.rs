//! The B2BUA call core (sans-IO): one [`Call`] per call joins a WhatsApp leg (TLS toward
//! Meta) and a PBX leg, translating INVITE, 180/183, 200, ACK, BYE, CANCEL and failures from
//! leg to leg and absorbing on the PBX leg what Meta does not allow (re-INVITE, UPDATE, INFO,
//! session refreshes, OPTIONS).
//!
//! - [`state`]: the call state machine (`Connecting → Ringing → (PreAccepted) → Accepted →
//!   Completed`, or `Rejected` / `Failed`), inputs [`LegEvent`], outputs [`Action`].
//! - [`translate`]: pure leg-to-leg rules (INVITE building, failure mapping tables, business
//!   number choice, inbound routing, SDP direction answers, INFO DTMF).
//! - [`meta_rules`]: Meta's URI and header rules (E.164/BSUID users, `x-wa-meta-*`).
//!
//! Guarantees: no I/O, no clock reads (time is passed in), no panics on any input; nothing
//! except INVITE/ACK/BYE/CANCEL and answers to Meta's own requests is sent toward Meta.
pub mod meta_rules;
pub mod router;
pub mod runtime;
pub mod state;
pub mod translate;

pub use state::{
    Action, Call, CallConfig, CallDeps, CallState, ChallengeResponder, Direction, EndReason, Leg,
    LegEvent, MediaAction, MediaError, Permission, RecordUpdate, ReqId, SdpPlane, ServerTxn,
};

#[cfg(test)]
mod tests;
