//! The gateway's media plumbing: RTP port leases that hold bound sockets from the call's
//! SDP negotiation until the call is gone, and the controller that turns the call core's
//! [`MediaAction`]s into commands for the media workers (`media::io`).
//!
//! Guarantees: a port is advertised in SDP only after both its RTP socket and the RTCP
//! socket on port + 1 are bound (a port another process holds is skipped), so the relay
//! never starts on a port it cannot receive on. Everything here runs a few times per call;
//! the packet path is entirely inside the workers.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

use crate::call::MediaAction;
use crate::call::router::CallKey;
use crate::config::PortRange;
use crate::media::io::{CallSockets, Command, MediaEngine};
use crate::media::relay::{MediaCounters, RelaySpec, StreamIds};
use crate::media::sdp::AudioSession;
use crate::media::webrtc::WebrtcLeg;

type Legs = HashMap<SocketAddr, Box<WebrtcLeg>>;

/// Bound sockets of leased ports, and DTLS+ICE legs created during SDP negotiation, by the
/// address advertised in SDP; both go to the call's relay when its media starts.
#[derive(Debug, Clone, Default)]
pub(super) struct SocketTable {
    sockets: Arc<Mutex<HashMap<SocketAddr, (UdpSocket, UdpSocket)>>>,
    legs: Arc<Mutex<Legs>>,
}

impl SocketTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, (UdpSocket, UdpSocket)>> {
        self.sockets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn legs(&self) -> MutexGuard<'_, Legs> {
        self.legs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Parks the WebRTC leg negotiated for the WhatsApp address `addr`.
    pub(super) fn put_leg(&self, addr: SocketAddr, leg: Box<WebrtcLeg>) {
        self.legs().insert(addr, leg);
    }

    fn take_leg(&self, addr: SocketAddr) -> Option<Box<WebrtcLeg>> {
        self.legs().remove(&addr)
    }

    /// Clones of the RTP and RTCP sockets advertised as `addr`.
    fn sockets(&self, addr: SocketAddr) -> Option<(UdpSocket, UdpSocket)> {
        let t = self.lock();
        let (rtp, rtcp) = t.get(&addr)?;
        Some((rtp.try_clone().ok()?, rtcp.try_clone().ok()?))
    }
}

/// Hands out even RTP ports round-robin from a profile's range, bound on `bind` and
/// advertised as `advertise`; never one still leased by a live call (the lease returns its
/// port and closes its sockets when the call's media helpers are dropped).
#[derive(Debug, Clone)]
pub(super) struct PortPool {
    state: Arc<Mutex<PoolState>>,
    bind: IpAddr,
    advertise: IpAddr,
    table: SocketTable,
}

#[derive(Debug)]
struct PoolState {
    range: PortRange,
    next: u16,
    used: HashSet<u16>,
}

/// One call's RTP port (RTCP on the next odd port); released on drop.
#[derive(Debug)]
pub(super) struct PortLease {
    pool: PortPool,
    pub(super) port: u16,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let addr = SocketAddr::new(self.pool.advertise, self.port);
        self.pool.table.lock().remove(&addr);
        self.pool.table.legs().remove(&addr);
        self.pool.lock().used.remove(&self.port);
    }
}

impl PortPool {
    pub(super) fn new(
        range: PortRange,
        bind: IpAddr,
        advertise: IpAddr,
        table: SocketTable,
    ) -> Self {
        PortPool {
            state: Arc::new(Mutex::new(PoolState {
                next: range.start,
                range,
                used: HashSet::new(),
            })),
            bind,
            advertise,
            table,
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next free even port whose RTP and RTCP sockets bind, or `None` when none does.
    pub(super) fn take(&self) -> Option<PortLease> {
        let mut st = self.lock();
        let first = st.range.start.saturating_add(st.range.start % 2);
        // RTCP takes the odd port above, which must be in the range too.
        let last = st.range.end.saturating_sub(1);
        if first > last {
            return None;
        }
        let count = usize::from((last - first) / 2) + 1;
        let mut p = st.next.saturating_add(st.next % 2);
        for _ in 0..count {
            if p > last || p < first {
                p = first;
            }
            if !st.used.contains(&p)
                && let Ok(rtp) = UdpSocket::bind((self.bind, p))
                && let Ok(rtcp) = UdpSocket::bind((self.bind, p + 1))
            {
                st.used.insert(p);
                st.next = p.saturating_add(2);
                drop(st);
                self.table
                    .lock()
                    .insert(SocketAddr::new(self.advertise, p), (rtp, rtcp));
                return Some(PortLease {
                    pool: self.clone(),
                    port: p,
                });
            }
            p = p.saturating_add(2);
        }
        None
    }
}

/// Relay policy from the WhatsApp profile.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    pub silence_keepalive: bool,
    pub media_timeout: Duration,
}

struct CallMedia {
    wa_local: Bytes,
    wa_remote: Bytes,
    pbx_local: Bytes,
    pbx_remote: Bytes,
    running: bool,
}

impl CallMedia {
    fn spec(&self, policy: Policy) -> Result<RelaySpec, String> {
        let mut s = RelaySpec::from_sdps(
            &self.wa_local,
            &self.wa_remote,
            &self.pbx_local,
            &self.pbx_remote,
        )
        .map_err(|e| e.to_string())?;
        s.silence_keepalive = policy.silence_keepalive;
        s.media_timeout = policy.media_timeout;
        Ok(s)
    }
}

fn local_addr(sdp: &[u8]) -> Option<SocketAddr> {
    let s = AudioSession::parse(sdp).ok()?;
    Some(SocketAddr::new(s.connection, s.port))
}

/// Applies media actions: one relay per call in the media workers.
pub(super) struct MediaControl {
    engine: MediaEngine,
    table: SocketTable,
    policy: Policy,
    calls: HashMap<CallKey, CallMedia>,
}

impl MediaControl {
    pub(super) fn new(engine: MediaEngine, table: SocketTable, policy: Policy) -> Self {
        MediaControl {
            engine,
            table,
            policy,
            calls: HashMap::new(),
        }
    }

    /// `counters`: the live call's media meter (shared with `/calls` and its record).
    pub(super) fn apply(&mut self, k: CallKey, action: MediaAction, counters: Arc<MediaCounters>) {
        match action {
            MediaAction::Start {
                wa_local,
                wa_remote,
                pbx_local,
                pbx_remote,
                early,
            } => {
                let running = self.calls.get(&k).is_some_and(|c| c.running);
                let cm = CallMedia {
                    wa_local,
                    wa_remote,
                    pbx_local,
                    pbx_remote,
                    running,
                };
                let spec = match cm.spec(self.policy) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(call = k.0, error = %e, "cannot relay this call's media");
                        return;
                    }
                };
                if running {
                    self.engine.command(
                        k.0,
                        Command::Update {
                            spec: Box::new(spec),
                            answered: !early,
                        },
                    );
                    self.calls.insert(k, cm);
                    return;
                }
                let sockets = local_addr(&cm.wa_local)
                    .and_then(|a| self.table.sockets(a))
                    .zip(local_addr(&cm.pbx_local).and_then(|a| self.table.sockets(a)));
                let Some(((wa_rtp, _), (pbx_rtp, pbx_rtcp))) = sockets else {
                    tracing::warn!(call = k.0, "media sockets of this call are gone");
                    return;
                };
                let mux = spec.pbx.rtcp_mux;
                let webrtc = local_addr(&cm.wa_local).and_then(|a| self.table.take_leg(a));
                if webrtc.is_none()
                    && AudioSession::parse(&cm.wa_local).is_ok_and(|s| s.proto.is_dtls())
                {
                    tracing::warn!(call = k.0, "DTLS media negotiated but its leg is gone");
                    return;
                }
                self.engine.command(
                    k.0,
                    Command::Start {
                        spec: Box::new(spec),
                        sockets: CallSockets {
                            wa_rtp,
                            wa_rtcp: None,
                            pbx_rtp,
                            pbx_rtcp: (!mux).then_some(pbx_rtcp),
                        },
                        answered: !early,
                        webrtc,
                        ids: StreamIds {
                            ssrc: rand::random(),
                            seq: rand::random(),
                            ts: rand::random(),
                        },
                        counters,
                    },
                );
                self.calls.insert(
                    k,
                    CallMedia {
                        running: true,
                        ..cm
                    },
                );
            }
            MediaAction::UpdatePbxRemote { sdp } => {
                let policy = self.policy;
                if let Some(cm) = self.calls.get_mut(&k) {
                    cm.pbx_remote = sdp;
                    match cm.spec(policy) {
                        Ok(spec) => self.engine.command(
                            k.0,
                            Command::Update {
                                spec: Box::new(spec),
                                answered: false,
                            },
                        ),
                        Err(e) => tracing::warn!(call = k.0, error = %e, "PBX SDP update ignored"),
                    }
                }
            }
            MediaAction::Hold(h) => self.engine.command(k.0, Command::Hold(h)),
            MediaAction::SendDtmf { digit, duration_ms } => self
                .engine
                .command(k.0, Command::Dtmf { digit, duration_ms }),
            MediaAction::Stop => {
                if self.calls.remove(&k).is_some() {
                    self.engine.command(k.0, Command::Stop);
                }
            }
        }
    }

    pub(super) fn shutdown(&mut self) {
        self.engine.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_ports_are_even_bound_leased_and_returned() {
        let lo = IpAddr::from([127, 0, 0, 1]);
        let table = SocketTable::default();
        let range = PortRange {
            start: 47001,
            end: 47008,
        };
        // Someone else holds 47004: it is skipped.
        let _other = UdpSocket::bind((lo, 47004)).unwrap();
        let pool = PortPool::new(range, lo, lo, table.clone());
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert_eq!((a.port, b.port), (47002, 47006));
        assert!(pool.take().is_none(), "range exhausted");
        // The leased sockets are bound and reachable through the table.
        let (rtp, rtcp) = table.sockets(SocketAddr::new(lo, 47002)).unwrap();
        assert_eq!(rtp.local_addr().unwrap().port(), 47002);
        assert_eq!(rtcp.local_addr().unwrap().port(), 47003);
        drop((rtp, rtcp));
        drop(a);
        assert!(table.sockets(SocketAddr::new(lo, 47002)).is_none());
        let c = pool.take().unwrap();
        assert_eq!(c.port, 47002);
        drop(b);
        assert_eq!(pool.take().unwrap().port, 47006);
    }
}
