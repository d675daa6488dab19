//! What one relayed call needs to know about its two legs, derived once per call (and again
//! on every re-negotiation) from the four SDP bodies the call core negotiated: our SDP and
//! the peer's on each leg.
//!
//! Guarantees: nothing here runs per packet. Payload types follow RFC 3264 — we send with
//! the numbers the peer's SDP declares and expect the numbers ours declares — and a format
//! is relayed only when both legs agreed on it (same encoding name, clock rate, channels).
//! SDES keys: ours comes from our `a=crypto`, the peer's from its line with the same tag.

use std::net::SocketAddr;
use std::time::Duration;

use crate::media::sdes::CryptoSuite;
use crate::media::sdp::{AudioSession, Codec};
use crate::media::srtp::MasterKey;

/// Why a relay could not be set up from the negotiated SDPs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    #[error("{leg} SDP: {error}")]
    Sdp { leg: &'static str, error: String },
    #[error("{0} leg: SRTP offered but no matching a=crypto pair")]
    NoCryptoPair(&'static str),
    #[error("{0} leg: bad SRTP key: {1}")]
    BadKey(&'static str, String),
    #[error("{0} leg: SRTP with an MKI is not relayed")]
    Mki(&'static str),
}

/// One payload format both sides of a leg agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// PT the peer sends us with (from our SDP).
    pub pt_in: u8,
    /// PT we send the peer with (from its SDP).
    pub pt_out: u8,
    /// Lower-case encoding name (`opus`, `pcmu`, `telephone-event`).
    pub name: String,
    pub clock_rate: u32,
    pub channels: u8,
}

impl Format {
    fn from_codecs(ours: &Codec, theirs: &Codec) -> Format {
        Format {
            pt_in: ours.payload_type,
            pt_out: theirs.payload_type,
            name: theirs.name.to_ascii_lowercase(),
            clock_rate: theirs.clock_rate,
            channels: theirs.channels.unwrap_or(1),
        }
    }

    /// Same media format (what a PT means), regardless of PT numbers.
    pub fn same_format(&self, other: &Format) -> bool {
        self.name == other.name
            && self.clock_rate == other.clock_rate
            && self.channels == other.channels
    }

    pub fn is_telephone_event(&self) -> bool {
        self.name == "telephone-event"
    }
}

/// SRTP keys of a leg.
#[derive(Debug, Clone)]
pub struct LegKeys {
    /// Protects what we send (our `a=crypto`).
    pub local: MasterKey,
    /// Unprotects what we receive (the peer's `a=crypto`).
    pub remote: MasterKey,
}

impl PartialEq for LegKeys {
    fn eq(&self, o: &Self) -> bool {
        self.local.concat() == o.local.concat()
            && self.remote.concat() == o.remote.concat()
            && self.local.profile() == o.local.profile()
    }
}

/// One leg of a relayed call.
#[derive(Debug, Clone, PartialEq)]
pub struct LegSpec {
    /// Our address for this leg as our SDP advertises it.
    pub local: SocketAddr,
    /// Where the peer said to send RTP and RTCP (equal when muxed).
    pub remote_rtp: SocketAddr,
    pub remote_rtcp: SocketAddr,
    pub rtcp_mux: bool,
    pub srtp: Option<LegKeys>,
    /// Agreed formats, audio first in the peer's preference order, telephone-event last.
    pub formats: Vec<Format>,
    /// We may send to the peer (its SDP is not `sendonly`/`inactive`, not `c=0.0.0.0`).
    pub send: bool,
}

impl LegSpec {
    /// Builds the leg from our SDP and the peer's (either may be the offer).
    pub fn from_sdp(leg: &'static str, ours: &[u8], theirs: &[u8]) -> Result<LegSpec, SpecError> {
        let err = |e: crate::media::sdp::SdpError| SpecError::Sdp {
            leg,
            error: e.to_string(),
        };
        let ours = AudioSession::parse(ours).map_err(err)?;
        let theirs = AudioSession::parse(theirs).map_err(err)?;
        let mut formats = Vec::new();
        for t in &theirs.codecs {
            if let Some(o) = ours.codecs.iter().find(|o| o.same_format(t))
                && !formats.iter().any(|f: &Format| f.pt_out == t.payload_type)
            {
                formats.push(Format::from_codecs(o, t));
            }
        }
        // Audio first, telephone-event last: `formats[0]` is what silence is sent as.
        formats.sort_by_key(Format::is_telephone_event);
        let rtcp_mux = ours.rtcp_mux && theirs.rtcp_mux;
        let remote_rtp = theirs.rtp_addr();
        let remote_rtcp = if rtcp_mux {
            remote_rtp
        } else {
            theirs.rtcp_addr()
        };
        let srtp = if ours.proto.is_sdes() && theirs.proto.is_sdes() {
            Some(keys(leg, &ours, &theirs)?)
        } else {
            None
        };
        Ok(LegSpec {
            local: SocketAddr::new(ours.connection, ours.port),
            remote_rtp,
            remote_rtcp,
            rtcp_mux,
            srtp,
            formats,
            // With ICE the address comes from the candidates (`c=0.0.0.0` is normal there).
            send: theirs.direction.receives()
                && (!theirs.connection.is_unspecified() || theirs.proto.is_dtls()),
        })
    }

    /// The format the peer sends us with PT `pt`.
    pub fn incoming(&self, pt: u8) -> Option<&Format> {
        self.formats.iter().find(|f| f.pt_in == pt)
    }
}

fn keys(
    leg: &'static str,
    ours: &AudioSession,
    theirs: &AudioSession,
) -> Result<LegKeys, SpecError> {
    for o in &ours.crypto {
        let Some(t) = theirs
            .crypto
            .iter()
            .find(|t| t.tag == o.tag && t.suite == o.suite)
        else {
            continue;
        };
        if !matches!(o.suite, CryptoSuite::Known(_)) {
            continue;
        }
        let (local, lmki) = o
            .master_key()
            .map_err(|e| SpecError::BadKey(leg, e.to_string()))?;
        let (remote, rmki) = t
            .master_key()
            .map_err(|e| SpecError::BadKey(leg, e.to_string()))?;
        if lmki.is_some() || rmki.is_some() {
            return Err(SpecError::Mki(leg));
        }
        return Ok(LegKeys { local, remote });
    }
    Err(SpecError::NoCryptoPair(leg))
}

/// Both legs and the relay's policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RelaySpec {
    pub whatsapp: LegSpec,
    pub pbx: LegSpec,
    /// Send Opus (or G.711) silence toward Meta while the PBX is quiet.
    pub silence_keepalive: bool,
    /// No packet from Meta for this long (after answer) → [`RelayEvent::MediaTimeout`](super::RelayEvent).
    pub media_timeout: Duration,
    /// Interval of our RTCP sender reports toward Meta.
    pub rtcp_interval: Duration,
}

impl RelaySpec {
    /// From the four SDP bodies of a call.
    pub fn from_sdps(
        wa_local: &[u8],
        wa_remote: &[u8],
        pbx_local: &[u8],
        pbx_remote: &[u8],
    ) -> Result<RelaySpec, SpecError> {
        Ok(RelaySpec {
            whatsapp: LegSpec::from_sdp("WhatsApp", wa_local, wa_remote)?,
            pbx: LegSpec::from_sdp("PBX", pbx_local, pbx_remote)?,
            silence_keepalive: true,
            media_timeout: Duration::from_secs(20),
            rtcp_interval: Duration::from_secs(5),
        })
    }
}
