//! The sandbox call book: every call the edge saw or placed, with its state, the SIP messages
//! it carried (transcript), media counters and the Meta rules the gateway broke; and how each
//! sandbox user answers business-initiated calls.
//!
//! Guarantees: plain shared data (one mutex, never held across an await); ids are
//! `sbx-<n>` in creation order, so runs with the same inputs produce the same ids; the
//! transcript is capped per call.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Transcript entries kept per call.
pub const MAX_TRANSCRIPT: usize = 200;

/// How a sandbox user answers a business-initiated call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AnswerMode {
    /// 180, then 200 with an SDP answer after `answer_delay_ms`; media echoes.
    #[default]
    Answer,
    /// 180, then `486 Declined` after `answer_delay_ms`: Meta reports a user's decline as 486
    /// (whatsapp-calling.md §1.3), which counts against the permission like a busy.
    Reject,
    /// 486 Busy Here at once.
    Busy,
    /// 180, then 480 Temporarily Unavailable after `ring_timeout_ms`.
    NoAnswer,
    /// Like `answer`, but the user's media agent sends nothing.
    Silent,
}

/// A sandbox user's answering behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserBehaviour {
    pub answer: AnswerMode,
    /// Ringing time before answering / rejecting.
    pub answer_delay_ms: u64,
    /// Ringing time before giving up with 480 (`no_answer`).
    pub ring_timeout_ms: u64,
    /// What the user sends once the call is up: `echo` (default) or `tone` (440 Hz);
    /// `answer: "silent"` overrides both.
    #[serde(default = "default_media")]
    pub media: crate::sandbox::media_user::Mode,
}

fn default_media() -> crate::sandbox::media_user::Mode {
    crate::sandbox::media_user::Mode::Echo
}

impl Default for UserBehaviour {
    fn default() -> Self {
        UserBehaviour {
            answer: AnswerMode::Answer,
            answer_delay_ms: 200,
            ring_timeout_ms: 5_000,
            media: default_media(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    /// Gateway → WhatsApp user (the edge is UAS).
    BusinessInitiated,
    /// WhatsApp user → gateway (the edge is UAC).
    UserInitiated,
}

/// Call states in WhatsApp's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    Connecting,
    Ringing,
    Accepted,
    Completed,
    Rejected,
    Failed,
}

impl CallState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CallState::Completed | CallState::Rejected | CallState::Failed
        )
    }
}

/// Media counters of a call (filled by the sandbox media user agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MediaCounters {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub decrypt_failures: u64,
    /// RFC 4733 digits received, in order.
    pub dtmf: String,
    /// Local RTP address of the user's media agent, once allocated.
    pub local_rtp: Option<String>,
    /// Remote RTP address from the peer's SDP.
    pub remote_rtp: Option<String>,
    /// Negotiated codec (`opus/48000/2`, …) and its payload type.
    pub codec: Option<String>,
    pub payload_type: Option<u8>,
    /// Received audio packets that decoded to non-silence (media user agent only).
    pub non_silent_rx_packets: Option<u64>,
    /// Set when the user hung up on a no-media timer (media user agent only).
    pub hangup: Option<String>,
}

/// One SIP message of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipEntry {
    /// `sent` or `received` (from the edge's point of view).
    pub dir: String,
    /// Milliseconds since the call record was created.
    pub at_ms: u64,
    /// Request line or status line.
    pub first_line: String,
    /// Headers in order, `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// Body (SDP) as text.
    pub body: String,
}

/// One call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    pub id: String,
    pub direction: CallDirection,
    pub state: CallState,
    /// Caller and callee as written (`+1555…` or a BSUID; the business number).
    pub from: String,
    pub to: String,
    pub call_id: String,
    /// `x-wa-meta-wacid` (user-initiated calls).
    pub wacid: Option<String>,
    /// Final status of the INVITE (200, 486, …) once known.
    pub status: Option<u16>,
    /// Why it ended (`bye_from_gateway`, `user_hangup`, `cancel`, `timeout`, …).
    pub end_reason: Option<String>,
    /// Seconds between answer and hang-up.
    pub duration_s: Option<u64>,
    pub media: MediaCounters,
    pub sip: Vec<SipEntry>,
    /// Meta rules the gateway broke on this call.
    pub violations: Vec<String>,
}

#[derive(Debug, Default)]
pub struct CallBookInner {
    next: u64,
    pub calls: BTreeMap<u64, CallRecord>,
    by_call_id: BTreeMap<String, u64>,
    pub users: BTreeMap<String, UserBehaviour>,
}

/// Shared call book (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct CallBook(Arc<Mutex<CallBookInner>>);

impl CallBook {
    pub fn new() -> CallBook {
        CallBook::default()
    }

    pub fn lock(&self) -> MutexGuard<'_, CallBookInner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a call and returns its id.
    pub fn create(&self, direction: CallDirection, from: &str, to: &str, call_id: &str) -> String {
        let mut b = self.lock();
        b.next += 1;
        let n = b.next;
        let id = format!("sbx-{n}");
        b.calls.insert(
            n,
            CallRecord {
                id: id.clone(),
                direction,
                state: CallState::Connecting,
                from: from.to_string(),
                to: to.to_string(),
                call_id: call_id.to_string(),
                wacid: None,
                status: None,
                end_reason: None,
                duration_s: None,
                media: MediaCounters::default(),
                sip: Vec::new(),
                violations: Vec::new(),
            },
        );
        b.by_call_id.insert(call_id.to_string(), n);
        id
    }

    /// Runs `f` on the call with SIP Call-ID `call_id`, if any.
    pub fn with_call_id<R>(
        &self,
        call_id: &str,
        f: impl FnOnce(&mut CallRecord) -> R,
    ) -> Option<R> {
        let mut b = self.lock();
        let n = *b.by_call_id.get(call_id)?;
        b.calls.get_mut(&n).map(f)
    }

    /// Runs `f` on the call `id` (`sbx-<n>`), if any.
    pub fn with_id<R>(&self, id: &str, f: impl FnOnce(&mut CallRecord) -> R) -> Option<R> {
        let n: u64 = id.strip_prefix("sbx-")?.parse().ok()?;
        self.lock().calls.get_mut(&n).map(f)
    }

    pub fn get(&self, id: &str) -> Option<CallRecord> {
        self.with_id(id, |c| c.clone())
    }

    pub fn list(&self) -> Vec<CallRecord> {
        self.lock().calls.values().cloned().collect()
    }

    pub fn has_call_id(&self, call_id: &str) -> bool {
        self.lock().by_call_id.contains_key(call_id)
    }

    /// Appends a transcript entry to the call with `call_id` (ignored for unknown calls).
    pub fn record(&self, call_id: &str, entry: SipEntry) {
        self.with_call_id(call_id, |c| {
            if c.sip.len() < MAX_TRANSCRIPT {
                c.sip.push(entry);
            }
        });
    }

    pub fn violation(&self, call_id: &str, text: impl Into<String>) {
        let text = text.into();
        tracing::warn!(%call_id, violation = %text, "gateway broke a Meta rule");
        self.with_call_id(call_id, |c| {
            if !c.violations.contains(&text) {
                c.violations.push(text);
            }
        });
    }

    /// The user's behaviour (key: E.164 digits or BSUID as stored by `set_user`).
    pub fn behaviour(&self, user_key: &str) -> UserBehaviour {
        self.lock().users.get(user_key).copied().unwrap_or_default()
    }

    pub fn set_user(&self, user_key: &str, b: UserBehaviour) {
        self.lock().users.insert(user_key.to_string(), b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sequential_and_lookups_agree() {
        let b = CallBook::new();
        let a = b.create(CallDirection::UserInitiated, "+1", "+2", "c-a");
        let c = b.create(CallDirection::BusinessInitiated, "+2", "+1", "c-b");
        assert_eq!((a.as_str(), c.as_str()), ("sbx-1", "sbx-2"));
        b.violation("c-b", "x");
        b.violation("c-b", "x");
        assert_eq!(b.get("sbx-2").unwrap().violations, vec!["x".to_string()]);
        assert!(b.get("sbx-3").is_none() && b.get("nope").is_none());
        assert_eq!(b.behaviour("155"), UserBehaviour::default());
    }
}
