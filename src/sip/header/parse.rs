//! The strict parsers behind `Message::parse` and the typed header views, and the serializer.
//!
//! Guarantees: hand-written against the RFC 3261 §25 ABNF (with RFC 5118 IPv6 rules); no
//! function here panics on any input; errors are `ParseError`s naming what was wrong. The
//! engine decision (why not rsipstack) is in `docs/decisions/sip-parser.md`.
mod message;
mod scan;
mod uri;
mod value;

pub use message::{MAX_MESSAGE_SIZE, message, message_prefix, serialize};
pub use scan::{percent_decode, unquote};
pub use uri::uri;
pub use value::{call_id, cseq, name_addr, number, session_expires, split_list, via};
