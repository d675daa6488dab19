//! DTLS-SRTP + ICE on the WhatsApp leg ("WebRTC mode"), on str0m in RTP mode, sans-IO.
//!
//! One [`WebrtcLeg`] per WhatsApp call leg, each wrapping its own `str0m::Rtc`. No socket,
//! no clock, no thread: time is the `now` argument of every call.
//!
//! # What a gateway leg guarantees (toward Meta: ICE-lite, `a=setup:actpass`)
//! - **ICE**: a full agent, **controlling**, regular nomination (plain checks first,
//!   USE-CANDIDATE once one succeeded), with exactly **one** local host candidate
//!   ([`WebrtcConfig::local_addr`]), so the selected pair can never switch mid-call.
//!   Remote candidates of the other address family (Meta's IPv6 one when we are IPv4) and
//!   non-IP candidates are dropped from the remote SDP before str0m sees it.
//! - **DTLS**: answering Meta's `actpass` offer ([`WebrtcLeg::answer_offer`]) we write
//!   `a=setup:active` and send the ClientHello (DTLS 1.2, ECDSA P-256 certificate). Our own
//!   offers ([`WebrtcLeg::create_offer`]) say `a=setup:active` by default ([`OfferSetup`]);
//!   whatever the answer says, str0m follows it, and [`LegReport::client_hello_from`] /
//!   [`Connected::dtls_client`] record who actually sent the ClientHello.
//! - **Codecs**: Opus 48000/2 and telephone-event/8000 only; an answer mirrors the offer's
//!   PT numbers ([`LegReport::opus_pt`]). Meta's quirks are accepted: `=`-padded
//!   `a=ice-pwd`, BUNDLE + `a=mid`, rtcp-mux, `network-cost`/`ufrag` candidate extensions.
//! - **Failure**: no DTLS connection within [`WebrtcConfig::connect_timeout`] after the
//!   remote description is known → [`Output::Failed`] with [`FailReason::ConnectTimeout`].
//!   A str0m error or panic fails only this leg (every call into str0m runs under
//!   `catch_unwind`). Garbage datagrams, and datagrams from addresses ICE has not
//!   verified, are counted ([`LegReport::datagrams_ignored`]) and ignored.
//! - **RTP**: one fixed local SSRC (str0m's); 16-bit sequence numbers are extended across
//!   65535→0 for SRTP's rollover counter. Received RTP from any remote SSRC is accepted
//!   (Meta rewrites SSRCs), up to a few SSRCs per leg.
//!
//! # How the relay drives a leg
//! ```text
//! let (leg, answer) = WebrtcLeg::answer_offer(now, &cfg, &meta_offer_sdp)?;   // user-initiated
//! // or: let (leg, offer) = WebrtcLeg::create_offer(now, &cfg)?;  … leg.accept_answer(now, &answer)?;
//! loop {
//!     // after EVERY handle_receive / handle_timeout / write_rtp: drain until Timeout
//!     loop { match leg.poll_output(now) {
//!         Output::Transmit(t)   => socket.send_to(&t.contents, t.destination),   // t.source == cfg.local_addr
//!         Output::Timeout(at)   => { wake_at = at; break }
//!         Output::Connected(c)  => { /* start sending at once: Meta wants OUR first SRTP packet;
//!                                      send silence until the PBX has audio (20 s/30 s timers) */ }
//!         Output::Rtp(p)        => pbx_leg.forward(p.payload_type, p.sequence, p.timestamp, p.marker, &p.payload),
//!         Output::Failed(why)   => { hang_up(why); break }   // the leg stays dead
//!     }}
//!     select! { datagram on socket => leg.handle_receive(now, src, local, &buf),
//!               sleep_until(wake_at) => leg.handle_timeout(now) }
//!     // media from the PBX: leg.write_rtp(now, pt, seq16, ts, marker, payload)?  (PT must be
//!     // the negotiated one: report().opus_pt / telephone_event_pt)
//! }
//! ```
//! Use one UDP socket per leg (the leg's single candidate), or route datagrams by the
//! remote address; `handle_receive` never fails a leg because of a stray datagram.
//! Sockets never need a `destination` match: the leg always presents `local_addr` to str0m
//! (so the bound address may differ from the advertised one).
//!
//! # Meta-like peer (sandbox twin)
//! [`WebrtcLeg::meta_offer`] / [`WebrtcLeg::meta_answer`] build the other side: ICE-lite,
//! `actpass` offers, two host candidates (the second one, IPv6, unreachable), never the
//! first DTLS packet (answers `passive` by default) and never the first media packet
//! ([`WebrtcError::PeerSpeaksSecond`]). Its [`LegReport`] tells what the gateway did:
//! `remote_ice_controlling_seen`, `regular_nomination_seen`, `client_hello_from`,
//! `srtp_profile`, `rtp_packets_received`, `rtp_not_decrypted`.

mod leg;
pub mod sdp;
mod wire;

pub use leg::{
    Connected, FailReason, LegKind, LegReport, LegState, MetaLikeConfig, OfferSetup, Output, RtpIn,
    Side, SrtpProfile, Transmit, WebrtcConfig, WebrtcError, WebrtcLeg, new_certificate,
    shared_certificate,
};
pub use sdp::Setup;

#[cfg(test)]
mod tests;
