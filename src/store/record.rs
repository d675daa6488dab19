//! The call record: one row per gateway call, in WhatsApp's vocabulary (direction and state
//! words as Meta's webhooks and Graph API use them). Phone numbers are kept whole here because
//! they are the record; logs show them only through `crate::redact::phone`.
use super::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Who placed the call, in Meta's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A WhatsApp user called the business (Meta → gateway → PBX).
    UserInitiated,
    /// The business (a PBX extension) called a WhatsApp user.
    BusinessInitiated,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::UserInitiated, Direction::BusinessInitiated];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::UserInitiated => "user_initiated",
            Direction::BusinessInitiated => "business_initiated",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that is not one of the accepted words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {expected})")]
pub struct UnknownWord {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl FromStr for Direction {
    type Err = UnknownWord;
    fn from_str(s: &str) -> Result<Direction, UnknownWord> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "user_initiated" | "inbound" => Ok(Direction::UserInitiated),
            "business_initiated" | "outbound" => Ok(Direction::BusinessInitiated),
            _ => Err(UnknownWord {
                what: "direction",
                value: s.to_string(),
                expected: "user_initiated, business_initiated",
            }),
        }
    }
}

/// Call state, with WhatsApp's words. `Completed`, `Rejected` and `Failed` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CallState {
    Connecting,
    Ringing,
    PreAccepted,
    Accepted,
    Completed,
    Rejected,
    Failed,
}

impl CallState {
    pub const ALL: [CallState; 7] = [
        CallState::Connecting,
        CallState::Ringing,
        CallState::PreAccepted,
        CallState::Accepted,
        CallState::Completed,
        CallState::Rejected,
        CallState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Connecting => "Connecting",
            CallState::Ringing => "Ringing",
            CallState::PreAccepted => "PreAccepted",
            CallState::Accepted => "Accepted",
            CallState::Completed => "Completed",
            CallState::Rejected => "Rejected",
            CallState::Failed => "Failed",
        }
    }

    /// `Completed`, `Rejected` or `Failed`.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            CallState::Completed | CallState::Rejected | CallState::Failed
        )
    }
}

impl fmt::Display for CallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CallState {
    type Err = UnknownWord;
    /// Case-insensitive (`completed`, `Completed`, `pre_accepted`, `PreAccepted`).
    fn from_str(s: &str) -> Result<CallState, UnknownWord> {
        let norm: String = s
            .trim()
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect();
        CallState::ALL
            .into_iter()
            .find(|st| st.as_str().to_ascii_lowercase() == norm)
            .ok_or_else(|| UnknownWord {
                what: "state",
                value: s.to_string(),
                expected: "Connecting, Ringing, PreAccepted, Accepted, Completed, Rejected, Failed",
            })
    }
}

/// Why a call ended the way it did. Every part is optional: a normal hangup has only a text
/// (`"BYE from user"`), a Meta refusal has the Meta error code and the SIP status sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// SIP status code that ended the call (e.g. 486), if a SIP response did.
    pub sip_code: Option<u16>,
    /// Meta / Graph error code (e.g. 138006), if Meta gave one.
    pub meta_code: Option<u32>,
    /// Human-readable text (Reason / Warning header text, or the gateway's own words).
    pub text: Option<String>,
}

impl Reason {
    pub fn text(t: impl Into<String>) -> Reason {
        Reason {
            text: Some(t.into()),
            ..Reason::default()
        }
    }

    pub fn sip(code: u16, text: impl Into<String>) -> Reason {
        Reason {
            sip_code: Some(code),
            meta_code: None,
            text: Some(text.into()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sip_code.is_none() && self.meta_code.is_none() && self.text.is_none()
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(c) = self.sip_code {
            write!(f, "SIP {c}")?;
            sep = " ";
        }
        if let Some(c) = self.meta_code {
            write!(f, "{sep}Meta {c}")?;
            sep = " ";
        }
        if let Some(t) = &self.text {
            write!(f, "{sep}{t}")?;
        }
        Ok(())
    }
}

/// Packets and bytes one way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub packets: u64,
    pub bytes: u64,
}

/// Media counters for a call, both ways, as relayed (after SRTP decryption on the WhatsApp
/// side; bytes are RTP payload + header, without SRTP auth tags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaCounters {
    pub whatsapp_to_pbx: Flow,
    pub pbx_to_whatsapp: Flow,
    /// SRTP packets from Meta that failed authentication or decryption.
    pub decrypt_failures: u64,
}

/// One call, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The gateway's own call id (unique; the primary key).
    pub id: String,
    /// SIP Call-ID of the WhatsApp (Meta) leg.
    pub whatsapp_call_id: Option<String>,
    /// SIP Call-ID of the PBX leg.
    pub pbx_call_id: Option<String>,
    /// Meta's call id (`wacid.…`), from `x-wa-meta-*` headers or the webhook.
    pub wacid: Option<String>,
    pub direction: Direction,
    /// The business's WhatsApp number (E.164, with `+`).
    pub business_number: String,
    /// The WhatsApp user: E.164 (`+15551234567`) or a BSUID (`US.1349…`).
    pub user: String,
    /// Name of the PBX trunk profile the call used.
    pub trunk: Option<String>,
    pub started_at: Timestamp,
    pub ringing_at: Option<Timestamp>,
    pub answered_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// While the call is open: its latest state. Once closed: its final state.
    pub state: CallState,
    /// `true` from start until the call is completed (or recovered after a crash).
    pub open: bool,
    pub reason: Option<Reason>,
    pub media: MediaCounters,
}

impl CallRecord {
    /// A record for a call that starts now in `Connecting`.
    pub fn new(
        id: impl Into<String>,
        direction: Direction,
        business_number: impl Into<String>,
        user: impl Into<String>,
        started_at: Timestamp,
    ) -> CallRecord {
        CallRecord {
            id: id.into(),
            whatsapp_call_id: None,
            pbx_call_id: None,
            wacid: None,
            direction,
            business_number: business_number.into(),
            user: user.into(),
            trunk: None,
            started_at,
            ringing_at: None,
            answered_at: None,
            ended_at: None,
            state: CallState::Connecting,
            open: true,
            reason: None,
            media: MediaCounters::default(),
        }
    }

    /// Talk time in seconds (answer → end, ms precision); `0.0` for a call that ended
    /// unanswered; `None` while open or when the end is unknown (recovered after a crash).
    pub fn duration_s(&self) -> Option<f64> {
        let end = self.ended_at?;
        Some(match self.answered_at {
            Some(a) => end.ms_since(a).max(0) as f64 / 1000.0,
            None => 0.0,
        })
    }
}

/// A record as the API and `whatsip cdr --json` show it: every field plus the derived
/// `duration_s`.
#[derive(Debug, Serialize)]
pub struct RecordView<'a> {
    #[serde(flatten)]
    pub record: &'a CallRecord,
    pub duration_s: Option<f64>,
}

impl CallRecord {
    pub fn view(&self) -> RecordView<'_> {
        RecordView {
            record: self,
            duration_s: self.duration_s(),
        }
    }
}

/// Changes to an open record while the call is set up. `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordUpdate {
    pub state: Option<CallState>,
    pub ringing_at: Option<Timestamp>,
    pub answered_at: Option<Timestamp>,
    pub whatsapp_call_id: Option<String>,
    pub pbx_call_id: Option<String>,
    pub wacid: Option<String>,
    pub trunk: Option<String>,
    pub media: Option<MediaCounters>,
}

/// How a call ended: closes the record.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub ended_at: Timestamp,
    /// Must be final (`Completed`, `Rejected`, `Failed`); a non-final state is recorded as
    /// `Failed`.
    pub state: CallState,
    pub reason: Option<Reason>,
    pub media: MediaCounters,
}

/// Which records to list. Empty filter = the newest `limit` records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    /// Only calls started at or after this instant.
    pub since: Option<Timestamp>,
    /// Only calls whose user or business number is this (compared without a leading `+`).
    pub number: Option<String>,
    pub direction: Option<Direction>,
    pub state: Option<CallState>,
    /// At most this many, newest first (default [`RecordFilter::DEFAULT_LIMIT`], capped at
    /// [`RecordFilter::MAX_LIMIT`]).
    pub limit: Option<u32>,
}

impl RecordFilter {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 10_000;

    pub fn effective_limit(&self) -> u32 {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .min(Self::MAX_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_parse_case_insensitively_and_print_as_meta_does() {
        for st in CallState::ALL {
            assert_eq!(st.as_str().parse::<CallState>().unwrap(), st);
            assert_eq!(st.as_str().to_lowercase().parse::<CallState>().unwrap(), st);
        }
        assert_eq!(
            "pre_accepted".parse::<CallState>().unwrap(),
            CallState::PreAccepted
        );
        assert!("Answered".parse::<CallState>().is_err());
        assert_eq!(
            "business_initiated".parse::<Direction>().unwrap(),
            Direction::BusinessInitiated
        );
        assert!("sideways".parse::<Direction>().is_err());
        assert_eq!(
            serde_json::to_string(&Direction::UserInitiated).unwrap(),
            "\"user_initiated\""
        );
        assert_eq!(
            serde_json::to_string(&CallState::PreAccepted).unwrap(),
            "\"PreAccepted\""
        );
    }

    #[test]
    fn duration_is_answer_to_end() {
        let t0 = Timestamp::from_unix_ms(1_000_000);
        let mut r = CallRecord::new("c1", Direction::UserInitiated, "+1555", "+1666", t0);
        assert_eq!(r.duration_s(), None);
        r.answered_at = Some(Timestamp::from_unix_ms(1_002_000));
        r.ended_at = Some(Timestamp::from_unix_ms(1_063_250));
        assert_eq!(r.duration_s(), Some(61.25));
        r.answered_at = None;
        assert_eq!(r.duration_s(), Some(0.0));
    }

    #[test]
    fn reason_display() {
        let r = Reason {
            sip_code: Some(403),
            meta_code: Some(138006),
            text: Some("no permission".into()),
        };
        assert_eq!(r.to_string(), "SIP 403 Meta 138006 no permission");
        assert_eq!(
            Reason::text("gateway restarted").to_string(),
            "gateway restarted"
        );
    }
}
