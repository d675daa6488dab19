//! Meta's calling error codes (whatsapp-calling.md §2.5, plus the generic Graph codes a
//! gateway meets) and the one mapping from each code to the SIP answer the B2BUA gives the
//! PBX: a status, a reason phrase, and a `Warning: 399 whatsip "Meta <code>: <text>"` value
//! that carries Meta's code to the PBX. Every code also has a meaning a human can act on.

/// A Graph/Calling API error code. Unknown codes are kept in [`MetaCode::Other`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaCode {
    /// 100: invalid parameter (also SDP validation, settings validation).
    InvalidParameter,
    /// 190: access token invalid or expired.
    InvalidToken,
    /// 4 / 80007 / 130429: application or WABA rate limit.
    AppRateLimit(u32),
    /// 10 / 200: the app lacks a permission on the object.
    PermissionDenied(u32),
    /// 613: call-permission API rate limit (HTTP 429).
    PermissionApiRateLimit,
    /// 131009: `voice_call` not supported / parameter value not valid.
    VoiceCallNotSupported,
    /// 131026: message undeliverable (old client).
    Undeliverable,
    /// 131030: recipient not in the allowed list (test numbers).
    RecipientNotAllowed,
    /// 131044: no payment method attached.
    NoPaymentMethod,
    /// 131055: Graph `/calls` used on a number with SIP enabled.
    SipEnabledForNumber,
    /// 138000: calling not enabled on the number.
    CallingNotEnabled,
    /// 138001: receiver uncallable.
    ReceiverUncallable,
    /// 138002: concurrent-call limit (1000) reached.
    ConcurrentCallLimit,
    /// 138003: duplicate call to the same user.
    DuplicateCall,
    /// 138004: connection error at Meta.
    ConnectionError,
    /// 138005: call-initiation rate limit (10,000 per 24 h per number).
    CallRateLimit,
    /// 138006: no approved call permission from the user.
    NoCallPermission,
    /// 138007: connect timeout (SDP not applied in time).
    ConnectTimeout,
    /// 138009: permission-request limit reached (1 per 24 h, 2 per 7 days).
    PermissionRequestLimit,
    /// 138012: daily connected-call limit per business+user pair.
    DailyConnectedCallLimit,
    /// 138013: business-initiated calling not available (older reuse: permission-API limit).
    BusinessCallingUnavailable,
    /// 138014: calling temporarily disabled for low quality.
    TemporarilyDisabledLowQuality,
    /// 138015: messaging limit below 2000.
    MessagingLimitTooLow,
    /// 138017: a permanent permission already exists.
    PermanentPermissionExists,
    /// 138018: no `calls` webhook subscription and no SIP.
    NoCallsSubscription,
    /// 138019: call setup failed.
    SetupFailed,
    /// 138020: media relay connection failed.
    RelayConnectionFailed,
    /// 138021: media receive timeout.
    MediaReceiveTimeout,
    /// 138022: media transmit timeout.
    MediaTransmitTimeout,
    /// 138023: accepted but no media.
    AcceptedNoMedia,
    /// 138024 / 138025: SIP not configured (health status).
    SipNotConfigured(u32),
    /// Any other code.
    Other(u32),
}

/// The SIP answer for a Meta error: status, reason phrase, Warning header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipAnswer {
    pub status: u16,
    pub reason: &'static str,
    /// Value for a `Warning:` header: `399 whatsip "Meta 138006: no approved call permission"`.
    pub warning: String,
    /// Seconds for a `Retry-After` header, when retrying later can succeed.
    pub retry_after: Option<u64>,
}

impl MetaCode {
    /// Every code with a named variant, for exhaustive tests and docs.
    pub const KNOWN: &'static [u32] = &[
        4, 10, 100, 190, 200, 613, 80007, 130429, 131009, 131026, 131030, 131044, 131055, 138000,
        138001, 138002, 138003, 138004, 138005, 138006, 138007, 138009, 138012, 138013, 138014,
        138015, 138017, 138018, 138019, 138020, 138021, 138022, 138023, 138024, 138025,
    ];

    pub fn from_code(code: u32) -> Self {
        use MetaCode::*;
        match code {
            100 => InvalidParameter,
            190 => InvalidToken,
            4 | 80007 | 130429 => AppRateLimit(code),
            10 | 200 => PermissionDenied(code),
            613 => PermissionApiRateLimit,
            131009 => VoiceCallNotSupported,
            131026 => Undeliverable,
            131030 => RecipientNotAllowed,
            131044 => NoPaymentMethod,
            131055 => SipEnabledForNumber,
            138000 => CallingNotEnabled,
            138001 => ReceiverUncallable,
            138002 => ConcurrentCallLimit,
            138003 => DuplicateCall,
            138004 => ConnectionError,
            138005 => CallRateLimit,
            138006 => NoCallPermission,
            138007 => ConnectTimeout,
            138009 => PermissionRequestLimit,
            138012 => DailyConnectedCallLimit,
            138013 => BusinessCallingUnavailable,
            138014 => TemporarilyDisabledLowQuality,
            138015 => MessagingLimitTooLow,
            138017 => PermanentPermissionExists,
            138018 => NoCallsSubscription,
            138019 => SetupFailed,
            138020 => RelayConnectionFailed,
            138021 => MediaReceiveTimeout,
            138022 => MediaTransmitTimeout,
            138023 => AcceptedNoMedia,
            138024 | 138025 => SipNotConfigured(code),
            other => Other(other),
        }
    }

    pub fn code(self) -> u32 {
        use MetaCode::*;
        match self {
            InvalidParameter => 100,
            InvalidToken => 190,
            AppRateLimit(c) | PermissionDenied(c) | SipNotConfigured(c) | Other(c) => c,
            PermissionApiRateLimit => 613,
            VoiceCallNotSupported => 131009,
            Undeliverable => 131026,
            RecipientNotAllowed => 131030,
            NoPaymentMethod => 131044,
            SipEnabledForNumber => 131055,
            CallingNotEnabled => 138000,
            ReceiverUncallable => 138001,
            ConcurrentCallLimit => 138002,
            DuplicateCall => 138003,
            ConnectionError => 138004,
            CallRateLimit => 138005,
            NoCallPermission => 138006,
            ConnectTimeout => 138007,
            PermissionRequestLimit => 138009,
            DailyConnectedCallLimit => 138012,
            BusinessCallingUnavailable => 138013,
            TemporarilyDisabledLowQuality => 138014,
            MessagingLimitTooLow => 138015,
            PermanentPermissionExists => 138017,
            NoCallsSubscription => 138018,
            SetupFailed => 138019,
            RelayConnectionFailed => 138020,
            MediaReceiveTimeout => 138021,
            MediaTransmitTimeout => 138022,
            AcceptedNoMedia => 138023,
        }
    }

    /// Short text for the Warning header (no double quotes, ASCII).
    pub fn short(self) -> &'static str {
        use MetaCode::*;
        match self {
            InvalidParameter => "invalid parameter or SDP",
            InvalidToken => "Graph access token invalid or expired",
            AppRateLimit(_) => "Graph API rate limit",
            PermissionDenied(_) => "app lacks permission on the number",
            PermissionApiRateLimit => "call permission API rate limit",
            VoiceCallNotSupported => "voice call not supported",
            Undeliverable => "user client cannot receive the call",
            RecipientNotAllowed => "recipient not in allowed list",
            NoPaymentMethod => "no payment method",
            SipEnabledForNumber => "Graph calls endpoint used while SIP is enabled",
            CallingNotEnabled => "calling not enabled on the number",
            ReceiverUncallable => "receiver uncallable",
            ConcurrentCallLimit => "concurrent call limit reached",
            DuplicateCall => "duplicate call to this user",
            ConnectionError => "connection error at Meta",
            CallRateLimit => "call start limit reached (10000 per 24 h)",
            NoCallPermission => "no approved call permission",
            ConnectTimeout => "connect timeout",
            PermissionRequestLimit => "permission request limit reached",
            DailyConnectedCallLimit => "daily connected call limit for this user",
            BusinessCallingUnavailable => "business-initiated calling not available",
            TemporarilyDisabledLowQuality => "calling temporarily disabled (low quality)",
            MessagingLimitTooLow => "messaging limit below 2000",
            PermanentPermissionExists => "permanent permission already exists",
            NoCallsSubscription => "no calls subscription and no SIP",
            SetupFailed => "call setup failed",
            RelayConnectionFailed => "media relay connection failed",
            MediaReceiveTimeout => "media receive timeout",
            MediaTransmitTimeout => "media transmit timeout",
            AcceptedNoMedia => "accepted but no media",
            SipNotConfigured(_) => "SIP not configured for the number",
            Other(_) => "unknown Meta error",
        }
    }

    /// What it means and what to do about it.
    pub fn meaning(self) -> &'static str {
        use MetaCode::*;
        match self {
            InvalidParameter => {
                "Meta refused a parameter (for calls: usually the SDP). Check the request body or SDP against Meta's rules."
            }
            InvalidToken => {
                "The Graph access token is invalid or expired. Issue a new system-user token and update the token source."
            }
            AppRateLimit(_) => {
                "The app or WABA hit a Graph rate limit. Slow down; whatsip retries with backoff."
            }
            PermissionDenied(_) => {
                "The app lacks whatsapp_business_messaging/management permission on this number. Grant it in Business Manager."
            }
            PermissionApiRateLimit => {
                "Too many call-permission lookups. whatsip caches lookups; lower the lookup rate or wait a second."
            }
            VoiceCallNotSupported => {
                "Voice calling is not supported for this recipient or parameter. Check the user identifier and the calling feature."
            }
            Undeliverable => {
                "The user's WhatsApp client cannot take the call (old version). Ask the user to update WhatsApp."
            }
            RecipientNotAllowed => {
                "Test numbers can call only numbers in their allowed list. Add the user in the app dashboard or use a production number."
            }
            NoPaymentMethod => {
                "The WhatsApp Business Account has no payment method. Add one in Business Manager."
            }
            SipEnabledForNumber => {
                "The Graph /calls endpoints are disabled while SIP is enabled on the number. Use SIP, or disable SIP with `whatsip settings push`."
            }
            CallingNotEnabled => {
                "Calling is not enabled on the number. Set calling status ENABLED and run `whatsip settings push`."
            }
            ReceiverUncallable => {
                "The user cannot be called (not on WhatsApp, or unsupported client). Nothing to fix on our side."
            }
            ConcurrentCallLimit => {
                "The number has 1000 calls in progress. Retry later or spread calls over numbers."
            }
            DuplicateCall => {
                "A call between this number and this user is already in progress. End it first."
            }
            ConnectionError => "Meta had a connection error. Retry later.",
            CallRateLimit => {
                "The number started 10,000 calls in the last 24 hours. Wait until the window frees up."
            }
            NoCallPermission => {
                "The user has not granted call permission (or is not on WhatsApp). Send `whatsip permissions request`."
            }
            ConnectTimeout => {
                "The call was not connected in time (SDP not applied). Check the media path and answer faster."
            }
            PermissionRequestLimit => {
                "Permission requests to this user are limited to 1 per 24 h and 2 per 7 days. Wait, or call after a connected call resets it."
            }
            DailyConnectedCallLimit => {
                "The connected-call limit for this user in 24 h is reached. Wait until the limit expires."
            }
            BusinessCallingUnavailable => {
                "Business-initiated calling is not available for this number or country. Use user-initiated calls."
            }
            TemporarilyDisabledLowQuality => {
                "Calling is temporarily disabled because of low call quality or user feedback. Improve quality and wait."
            }
            MessagingLimitTooLow => {
                "Calling needs a messaging limit of at least 2000. Raise the number's messaging tier."
            }
            PermanentPermissionExists => {
                "The user already granted permanent permission; no request is needed."
            }
            NoCallsSubscription => {
                "The app neither subscribes to the calls webhook nor has SIP enabled. Enable SIP with `whatsip settings push`."
            }
            SetupFailed => "Call setup failed at Meta. Retry; check TLS and SDP if it repeats.",
            RelayConnectionFailed => {
                "Meta's media relay could not be reached. Check UDP egress and ICE/SDES setup."
            }
            MediaReceiveTimeout => {
                "Meta received no media from us. Make sure whatsip sends the first packet and silence."
            }
            MediaTransmitTimeout => {
                "Meta could not send media to us. Check firewall/NAT for the RTP port range."
            }
            AcceptedNoMedia => {
                "The call was accepted but no media flowed. Check the media path and SRTP keys."
            }
            SipNotConfigured(_) => {
                "No SIP server is configured for the number. Run `whatsip settings push`."
            }
            Other(_) => {
                "Meta returned an error whatsip does not know. See the message and Meta's error-code reference."
            }
        }
    }

    /// True for rate limits, where waiting and retrying can succeed.
    pub fn is_rate_limit(self) -> bool {
        matches!(
            self,
            MetaCode::PermissionApiRateLimit | MetaCode::CallRateLimit | MetaCode::AppRateLimit(_)
        )
    }

    /// The SIP status (and reason phrase) the B2BUA answers the PBX with.
    pub fn sip_status(self) -> (u16, &'static str) {
        use MetaCode::*;
        match self {
            InvalidParameter => (488, "Not Acceptable Here"),
            MediaReceiveTimeout | MediaTransmitTimeout | AcceptedNoMedia | ConnectTimeout => {
                (408, "Request Timeout")
            }
            ReceiverUncallable | Undeliverable => (480, "Temporarily Unavailable"),
            DuplicateCall => (486, "Busy Here"),
            PermissionApiRateLimit
            | AppRateLimit(_)
            | CallRateLimit
            | ConcurrentCallLimit
            | ConnectionError
            | RelayConnectionFailed => (503, "Service Unavailable"),
            NoCallPermission
            | DailyConnectedCallLimit
            | PermissionRequestLimit
            | PermanentPermissionExists
            | CallingNotEnabled
            | BusinessCallingUnavailable
            | TemporarilyDisabledLowQuality
            | MessagingLimitTooLow
            | NoPaymentMethod
            | RecipientNotAllowed
            | VoiceCallNotSupported
            | PermissionDenied(_) => (403, "Forbidden"),
            InvalidToken | SipEnabledForNumber | NoCallsSubscription | SetupFailed
            | SipNotConfigured(_) | Other(_) => (500, "Server Internal Error"),
        }
    }

    /// Suggested `Retry-After` seconds, when waiting helps.
    pub fn retry_after(self) -> Option<u64> {
        match self {
            MetaCode::PermissionApiRateLimit | MetaCode::AppRateLimit(_) => Some(1),
            MetaCode::ConcurrentCallLimit | MetaCode::ConnectionError => Some(5),
            MetaCode::RelayConnectionFailed => Some(5),
            _ => None,
        }
    }

    /// `399 whatsip "Meta 138006: no approved call permission"`.
    pub fn warning(self) -> String {
        format!("399 whatsip \"Meta {}: {}\"", self.code(), self.short())
    }

    /// The full SIP answer for this code.
    pub fn sip_answer(self) -> SipAnswer {
        let (status, reason) = self.sip_status();
        SipAnswer {
            status,
            reason,
            warning: self.warning(),
            retry_after: self.retry_after(),
        }
    }
}

impl std::fmt::Display for MetaCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Meta {}: {}", self.code(), self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_calling_code_has_a_variant_and_round_trips() {
        for &c in MetaCode::KNOWN {
            let m = MetaCode::from_code(c);
            assert!(!matches!(m, MetaCode::Other(_)), "{c} has no variant");
            assert_eq!(m.code(), c);
            assert!(!m.meaning().is_empty());
            assert!(!m.short().contains('"'));
        }
        assert_eq!(MetaCode::from_code(999_999), MetaCode::Other(999_999));
    }

    #[test]
    fn no_permission_maps_to_403_with_warning() {
        let a = MetaCode::from_code(138006).sip_answer();
        assert_eq!(a.status, 403);
        assert_eq!(
            a.warning,
            "399 whatsip \"Meta 138006: no approved call permission\""
        );
    }

    #[test]
    fn mapping_uses_only_design_statuses() {
        for &c in MetaCode::KNOWN {
            let (s, _) = MetaCode::from_code(c).sip_status();
            assert!(
                [403, 408, 480, 486, 488, 500, 503].contains(&s),
                "{c} -> {s}"
            );
        }
        assert_eq!(MetaCode::CallRateLimit.sip_status().0, 503);
        assert_eq!(MetaCode::DuplicateCall.sip_status().0, 486);
        assert_eq!(MetaCode::InvalidParameter.sip_status().0, 488);
    }
}
