//! The sandbox call book: every call the edge saw or placed, with its state, the SIP messages
//! it carried (transcript), media counters and the Meta rules the gateway broke; and how each
//! sandbox user answers business-initiated calls.
//!
//! Every message on the wire is recorded: messages of a call in its transcript; messages
//! whose Call-ID is not (yet) a call in an *out-of-call exchange* per Call-ID. When a call is
//! created for that Call-ID (an INVITE accepted after its 407), the exchange becomes the head
//! of the call's transcript; an exchange the edge ends with a final status ≥ 300 and that never
//! becomes a call is a *refused request* ([`CallBook::refused`], `GET /sandbox/refused`);
//! one answered 2xx outside a call (OPTIONS) is dropped.
//!
//! Guarantees: plain shared data (one mutex, never held across an await); ids are
//! `sbx-<n>` / `ref-<n>` in creation order, so runs with the same inputs produce the same
//! ids; transcripts are capped per call and per exchange, and at most [`MAX_EXCHANGES`]
//! exchanges are kept (the oldest go first).
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Transcript entries kept per call.
pub const MAX_TRANSCRIPT: usize = 200;
/// Out-of-call exchanges (refused requests, pending challenges) kept per edge.
pub const MAX_EXCHANGES: usize = 500;
/// Transcript entries kept per out-of-call exchange (a challenge and a retry with its
/// retransmissions fit; a flood of one Call-ID does not grow it).
pub const MAX_EXCHANGE_TRANSCRIPT: usize = 32;

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
    /// How the SRTP keys were agreed: `sdes` (`a=crypto`) or `dtls` (DTLS-SRTP + ICE).
    pub key_exchange: Option<String>,
    /// DTLS calls: what the sandbox's Meta-like leg saw the gateway do.
    #[serde(flatten)]
    pub dtls: DtlsFacts,
}

/// What a DTLS-SRTP call's Meta-like leg saw (all `null` for SDES calls and before the
/// first STUN/DTLS packet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DtlsFacts {
    /// ICE role of the gateway's connectivity checks: `controlling` (ICE-CONTROLLING seen,
    /// as Meta requires) or `controlled`; `null` before any check arrived.
    pub ice_role_seen: Option<String>,
    /// The gateway nominated with regular nomination: a plain check answered before the
    /// first USE-CANDIDATE (`false` for aggressive nomination or no nomination yet).
    pub regular_nomination_seen: Option<bool>,
    /// Who sent the DTLS ClientHello: `gateway` (as Meta requires) or `sandbox`.
    pub client_hello_from: Option<String>,
    /// SRTP profile from DTLS `use_srtp`: `SRTP_AES128_CM_SHA1_80`, `SRTP_AES128_CM_SHA1_32`,
    /// `SRTP_AEAD_AES_128_GCM`, `SRTP_AEAD_AES_256_GCM` or `0x…`.
    pub srtp_profile: Option<String>,
    /// `connecting`, `connected` or `failed`.
    pub dtls_state: Option<String>,
    /// Why the leg failed (e.g. `no DTLS connection within 5000 ms (…)`).
    pub dtls_failure: Option<String>,
    /// STUN binding requests the sandbox received from the gateway.
    pub stun_requests_received: Option<u64>,
}

/// One SIP message of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipEntry {
    /// `sent` or `received` (from the edge's point of view).
    pub dir: String,
    /// Milliseconds since the edge started.
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

impl SipEntry {
    /// The status of a response entry (`SIP/2.0 407 …` → 407).
    pub fn status(&self) -> Option<u16> {
        let rest = self.first_line.strip_prefix("SIP/2.0 ")?;
        rest.get(..3)?.parse().ok()
    }

    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An out-of-call exchange: the messages of one Call-ID that is not a call. Listed by
/// `GET /sandbox/refused` once the edge answered it with a final status ≥ 300.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedRequest {
    /// `ref-<n>` in order of the exchange's first message.
    pub id: String,
    pub call_id: String,
    /// Method and Request-URI of the exchange's first request (empty when it began with a
    /// stray response).
    pub method: String,
    pub request_uri: String,
    /// `From` and `To` header values of that request, as received.
    pub from: String,
    pub to: String,
    /// The last final status the edge sent (407 for a challenge nobody answered, 403, …).
    pub status: Option<u16>,
    pub reason: Option<String>,
    /// That response's `Warning` value, if any (Meta's explanation, e.g. `399 wa.meta.vc "…"`).
    pub warning: Option<String>,
    /// Every message of the exchange, as in a call's transcript.
    pub sip: Vec<SipEntry>,
}

#[derive(Debug, Default)]
pub struct CallBookInner {
    next: u64,
    pub calls: BTreeMap<u64, CallRecord>,
    by_call_id: BTreeMap<String, u64>,
    pub users: BTreeMap<String, UserBehaviour>,
    next_exchange: u64,
    exchanges: BTreeMap<u64, RefusedRequest>,
    by_exchange_call_id: BTreeMap<String, u64>,
}

impl CallBookInner {
    /// Records `entry` of an out-of-call Call-ID.
    fn record_exchange(&mut self, call_id: &str, entry: SipEntry) {
        let n = match self.by_exchange_call_id.get(call_id) {
            Some(n) => *n,
            None => {
                self.next_exchange += 1;
                let n = self.next_exchange;
                let (method, request_uri) = match entry.status() {
                    Some(_) => (String::new(), String::new()),
                    None => {
                        let mut parts = entry.first_line.split(' ');
                        (
                            parts.next().unwrap_or_default().to_string(),
                            parts.next().unwrap_or_default().to_string(),
                        )
                    }
                };
                self.exchanges.insert(
                    n,
                    RefusedRequest {
                        id: format!("ref-{n}"),
                        call_id: call_id.to_string(),
                        method,
                        request_uri,
                        from: entry.header("From").unwrap_or_default().to_string(),
                        to: entry.header("To").unwrap_or_default().to_string(),
                        status: None,
                        reason: None,
                        warning: None,
                        sip: Vec::new(),
                    },
                );
                self.by_exchange_call_id.insert(call_id.to_string(), n);
                while self.exchanges.len() > MAX_EXCHANGES {
                    if let Some((_, old)) = self.exchanges.pop_first() {
                        self.by_exchange_call_id.remove(&old.call_id);
                    }
                }
                n
            }
        };
        let final_status = entry.status().filter(|s| *s >= 200 && entry.dir == "sent");
        if final_status.is_some_and(|s| s < 300) {
            // answered outside any call (OPTIONS 200): not a refusal, nothing to keep
            self.exchanges.remove(&n);
            self.by_exchange_call_id.remove(call_id);
            return;
        }
        let Some(x) = self.exchanges.get_mut(&n) else {
            return;
        };
        if let Some(status) = final_status {
            x.status = Some(status);
            x.reason = entry
                .first_line
                .get("SIP/2.0 123 ".len()..)
                .map(str::to_string);
            x.warning = entry.header("Warning").map(str::to_string);
        }
        if x.sip.len() < MAX_EXCHANGE_TRANSCRIPT {
            x.sip.push(entry);
        }
    }
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
        // what the Call-ID carried before it became a call (the INVITE, its 407, the ACK)
        let earlier = match b.by_exchange_call_id.remove(call_id) {
            Some(x) => b.exchanges.remove(&x).map(|x| x.sip).unwrap_or_default(),
            None => Vec::new(),
        };
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
                sip: earlier,
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

    /// Appends a transcript entry to the call with `call_id`, or to the out-of-call exchange
    /// of that Call-ID when it is no call (yet).
    pub fn record(&self, call_id: &str, entry: SipEntry) {
        let mut b = self.lock();
        match b.by_call_id.get(call_id).copied() {
            Some(n) => {
                if let Some(c) = b.calls.get_mut(&n)
                    && c.sip.len() < MAX_TRANSCRIPT
                {
                    c.sip.push(entry);
                }
            }
            None => b.record_exchange(call_id, entry),
        }
    }

    /// Refused requests: out-of-call exchanges the edge ended with a final status ≥ 300,
    /// oldest first.
    pub fn refused(&self) -> Vec<RefusedRequest> {
        self.lock()
            .exchanges
            .values()
            .filter(|x| x.status.is_some())
            .cloned()
            .collect()
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

    fn e(dir: &str, line: &str, headers: &[(&str, &str)]) -> SipEntry {
        SipEntry {
            dir: dir.into(),
            at_ms: 0,
            first_line: line.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: String::new(),
        }
    }

    #[test]
    fn out_of_call_messages_become_refusals_or_the_head_of_a_call() {
        let b = CallBook::new();
        // REGISTER → 403: a refusal with its transcript
        b.record(
            "r1",
            e(
                "received",
                "REGISTER sip:wa.meta.vc SIP/2.0",
                &[("From", "<sip:a@b>;tag=1")],
            ),
        );
        assert!(b.refused().is_empty(), "no final answer yet");
        b.record(
            "r1",
            e(
                "sent",
                "SIP/2.0 403 Forbidden",
                &[("Warning", "399 wa.meta.vc \"x\"")],
            ),
        );
        // OPTIONS → 200: dropped
        b.record("o1", e("received", "OPTIONS sip:wa.meta.vc SIP/2.0", &[]));
        b.record("o1", e("sent", "SIP/2.0 200 OK", &[]));
        // INVITE → 407 → ACK → INVITE: becomes the call's transcript head
        b.record("c1", e("received", "INVITE sip:+1@wa.meta.vc SIP/2.0", &[]));
        b.record("c1", e("sent", "SIP/2.0 100 Trying", &[]));
        b.record(
            "c1",
            e("sent", "SIP/2.0 407 Proxy Authentication Required", &[]),
        );
        b.record("c1", e("received", "ACK sip:+1@wa.meta.vc SIP/2.0", &[]));
        b.record("c1", e("received", "INVITE sip:+1@wa.meta.vc SIP/2.0", &[]));
        let refused = b.refused();
        assert_eq!(refused.len(), 2, "{refused:?}");
        let r = &refused[0];
        assert_eq!(
            (
                r.id.as_str(),
                r.method.as_str(),
                r.status,
                r.reason.as_deref()
            ),
            ("ref-1", "REGISTER", Some(403), Some("Forbidden"))
        );
        assert_eq!(r.warning.as_deref(), Some("399 wa.meta.vc \"x\""));
        assert_eq!((r.from.as_str(), r.sip.len()), ("<sip:a@b>;tag=1", 2));
        assert_eq!(
            (refused[1].call_id.as_str(), refused[1].status),
            ("c1", Some(407))
        );
        let id = b.create(CallDirection::BusinessInitiated, "+2", "+1", "c1");
        b.record("c1", e("sent", "SIP/2.0 180 Ringing", &[]));
        let lines: Vec<String> = b
            .get(&id)
            .unwrap()
            .sip
            .into_iter()
            .map(|e| e.first_line)
            .collect();
        assert_eq!(lines.len(), 6, "{lines:?}");
        assert!(lines[2].starts_with("SIP/2.0 407") && lines[5].starts_with("SIP/2.0 180"));
        assert_eq!(b.refused().len(), 1, "the challenge became a call");
        // bounded
        for i in 0..MAX_EXCHANGES + 10 {
            b.record(&format!("x{i}"), e("sent", "SIP/2.0 481 Gone", &[]));
        }
        assert_eq!(b.refused().len(), MAX_EXCHANGES);
        assert!(b.refused().iter().all(|r| r.call_id != "r1"));
        for _ in 0..MAX_EXCHANGE_TRANSCRIPT + 8 {
            b.record("flood", e("sent", "SIP/2.0 403 Forbidden", &[]));
        }
        let flood = b
            .refused()
            .into_iter()
            .find(|r| r.call_id == "flood")
            .unwrap();
        assert_eq!(flood.sip.len(), MAX_EXCHANGE_TRANSCRIPT);
    }
}
