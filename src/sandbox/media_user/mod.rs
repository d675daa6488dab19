//! The sandbox WhatsApp user's audio endpoint (SDES mode): a sans-IO [`MediaUser`] that
//! decrypts and counts everything the business side sends (SRTP/SRTCP with rtcp-mux, RFC 4733
//! digits, decoded audio level), sends real Opus (a 440 Hz tone), echoes, or stays silent, waits
//! for the business side's first packet as WhatsApp does, and hangs up on WhatsApp's no-media
//! timers; a tokio shell owning one loopback UDP socket ([`io`]); and the SDP helper that
//! builds the user's `RTP/SAVP` offer/answer ([`sdp`]). In DTLS-SRTP + ICE mode the same user
//! rides on a Meta-like `media::webrtc::WebrtcLeg` ([`dtls`]).

pub mod audio;
pub mod core;
pub mod dtls;
pub mod io;
pub mod sdp;

pub use self::audio::{AudioCodec, G711, LevelMeter, NON_SILENT_RMS, OpusFrames};
pub use self::core::{
    HangUpReason, MediaCounters, MediaEvent, MediaUser, MediaUserConfig, MediaUserError, Mode,
    RtpFrame, Transmit,
};
pub use self::dtls::{DtlsEvent, DtlsUser};
pub use self::io::{MediaSocket, MediaUserHandle};
