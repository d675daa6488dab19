//! The media relay's only I/O: a few worker threads, each owning the UDP sockets of its calls
//! in one `mio` readiness poll and driving their [`RelayCall`]s.
//!
//! Guarantees: no allocation, lock, channel message or task per packet — a worker receives
//! into one buffer, transforms into another and sends, all on its own thread; calls are
//! pinned to a worker (`id % workers`) for their whole life; commands (start, update, hold,
//! DTMF, stop) arrive over a channel with a waker, a few per call. Timers: a min-heap of
//! (deadline, slot) with lazy invalidation, at most a couple of entries per call. A send that
//! would block is a counted drop, never a stall. Stopping a call drops its sockets.
//! The loop is written around one receive per readiness event so `recvmmsg`/`sendmmsg`
//! batching can replace the inner loop without touching the relay core.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use mio::{Events, Interest, Poll, Token, Waker};

use super::relay::{
    MAX_DATAGRAM, MediaCounters, RelayCall, RelayEvent, RelaySpec, Side, Socket, StreamIds,
};
use super::webrtc::WebrtcLeg;

/// The sockets of one call: RTP (and RTCP on port + 1 when not muxed) on each leg.
#[derive(Debug)]
pub struct CallSockets {
    pub wa_rtp: UdpSocket,
    pub wa_rtcp: Option<UdpSocket>,
    pub pbx_rtp: UdpSocket,
    pub pbx_rtcp: Option<UdpSocket>,
}

/// What a worker should do with a call.
#[derive(Debug)]
pub enum Command {
    Start {
        spec: Box<RelaySpec>,
        sockets: CallSockets,
        answered: bool,
        ids: StreamIds,
        counters: Arc<MediaCounters>,
        /// DTLS+ICE toward Meta (`None`: SDES keys from the spec).
        webrtc: Option<Box<WebrtcLeg>>,
    },
    /// New SDP on either leg, or the WhatsApp leg got answered.
    Update {
        spec: Box<RelaySpec>,
        answered: bool,
    },
    Hold(bool),
    Dtmf {
        digit: char,
        duration_ms: u32,
    },
    Stop,
}

/// What the workers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineEvent {
    MediaTimeout {
        call: u64,
        silent_for: Duration,
    },
    /// The WhatsApp leg's media failed (DTLS/ICE): end the call with `reason`.
    MediaFailed {
        call: u64,
        reason: &'static str,
    },
}

enum Msg {
    Call(u64, Command),
    Shutdown,
}

struct Worker {
    tx: mpsc::Sender<Msg>,
    waker: Arc<Waker>,
    join: Option<JoinHandle<()>>,
}

/// The media workers.
pub struct MediaEngine {
    workers: Vec<Worker>,
}

impl std::fmt::Debug for MediaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaEngine")
            .field("workers", &self.workers.len())
            .finish()
    }
}

const WAKER: Token = Token(usize::MAX);

impl MediaEngine {
    /// Starts `workers` threads (at least one). Events go to `events`.
    pub fn start(
        workers: usize,
        events: tokio::sync::mpsc::UnboundedSender<EngineEvent>,
    ) -> io::Result<MediaEngine> {
        let mut v = Vec::new();
        for i in 0..workers.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (tx, rx) = mpsc::channel();
            let ev = events.clone();
            let join = std::thread::Builder::new()
                .name(format!("media-{i}"))
                .spawn(move || WorkerLoop::new(poll, rx, ev).run())?;
            v.push(Worker {
                tx,
                waker,
                join: Some(join),
            });
        }
        Ok(MediaEngine { workers: v })
    }

    /// Sends `cmd` for `call` to the worker that owns it.
    pub fn command(&self, call: u64, cmd: Command) {
        let w = &self.workers[(call % self.workers.len() as u64) as usize];
        if w.tx.send(Msg::Call(call, cmd)).is_ok() {
            let _ = w.waker.wake();
        }
    }

    /// Stops every worker (their calls' sockets are closed) and joins them.
    pub fn shutdown(&mut self) {
        for w in &self.workers {
            let _ = w.tx.send(Msg::Shutdown);
            let _ = w.waker.wake();
        }
        for w in &mut self.workers {
            if let Some(j) = w.join.take() {
                let _ = j.join();
            }
        }
    }
}

impl Drop for MediaEngine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Slot {
    call: u64,
    relay: RelayCall,
    /// WA RTP, WA RTCP, PBX RTP, PBX RTCP.
    socks: [Option<mio::net::UdpSocket>; 4],
    generation: u32,
    scheduled: Option<Instant>,
}

fn index(side: Side, socket: Socket) -> usize {
    match (side, socket) {
        (Side::WhatsApp, Socket::Rtp) => 0,
        (Side::WhatsApp, Socket::Rtcp) => 1,
        (Side::Pbx, Socket::Rtp) => 2,
        (Side::Pbx, Socket::Rtcp) => 3,
    }
}

fn which(i: usize) -> (Side, Socket) {
    match i {
        0 => (Side::WhatsApp, Socket::Rtp),
        1 => (Side::WhatsApp, Socket::Rtcp),
        2 => (Side::Pbx, Socket::Rtp),
        _ => (Side::Pbx, Socket::Rtcp),
    }
}

struct WorkerLoop {
    poll: Poll,
    rx: mpsc::Receiver<Msg>,
    events: tokio::sync::mpsc::UnboundedSender<EngineEvent>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    by_call: HashMap<u64, usize>,
    timers: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    next_gen: u32,
    buf: Box<[u8; MAX_DATAGRAM + 64]>,
    out: Box<[u8; MAX_DATAGRAM + 64]>,
}

impl WorkerLoop {
    fn new(
        poll: Poll,
        rx: mpsc::Receiver<Msg>,
        events: tokio::sync::mpsc::UnboundedSender<EngineEvent>,
    ) -> WorkerLoop {
        WorkerLoop {
            poll,
            rx,
            events,
            slots: Vec::new(),
            free: Vec::new(),
            by_call: HashMap::new(),
            timers: BinaryHeap::new(),
            next_gen: 0,
            buf: Box::new([0; MAX_DATAGRAM + 64]),
            out: Box::new([0; MAX_DATAGRAM + 64]),
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self
                .timers
                .peek()
                .map(|Reverse((t, _, _))| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "media worker poll failed; worker stops");
                return;
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    if !self.commands() {
                        return;
                    }
                } else {
                    let t = ev.token().0;
                    self.readable(t / 4, t % 4);
                }
            }
            self.fire_timers(Instant::now());
        }
    }

    /// Drains the command channel; `false` on shutdown.
    fn commands(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(Msg::Call(call, cmd)) => self.command(call, cmd),
                Ok(Msg::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => return false,
                Err(mpsc::TryRecvError::Empty) => return true,
            }
        }
    }

    fn command(&mut self, call: u64, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Start {
                spec,
                sockets,
                answered,
                ids,
                counters,
                webrtc,
            } => {
                if let Some(&i) = self.by_call.get(&call) {
                    // A second start is an update (keeps sockets and SRTP state).
                    self.update(i, now, *spec, answered);
                    return;
                }
                let i = self.free.pop().unwrap_or_else(|| {
                    self.slots.push(None);
                    self.slots.len() - 1
                });
                let mut socks: [Option<mio::net::UdpSocket>; 4] = [None, None, None, None];
                let std_socks = [
                    Some(sockets.wa_rtp),
                    sockets.wa_rtcp,
                    Some(sockets.pbx_rtp),
                    sockets.pbx_rtcp,
                ];
                for (k, s) in std_socks.into_iter().enumerate() {
                    let Some(s) = s else { continue };
                    if s.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let mut m = mio::net::UdpSocket::from_std(s);
                    match self.poll.registry().register(
                        &mut m,
                        Token(i * 4 + k),
                        Interest::READABLE,
                    ) {
                        Ok(()) => socks[k] = Some(m),
                        Err(e) => tracing::warn!(error = %e, "cannot register media socket"),
                    }
                }
                self.next_gen = self.next_gen.wrapping_add(1);
                let mut relay =
                    RelayCall::new(now, SystemTime::now(), *spec, ids, answered, counters);
                if let Some(leg) = webrtc {
                    relay = relay.with_webrtc(now, leg);
                }
                self.slots[i] = Some(Slot {
                    call,
                    relay,
                    socks,
                    generation: self.next_gen,
                    scheduled: None,
                });
                self.by_call.insert(call, i);
                self.reschedule(i);
            }
            Command::Update { spec, answered } => {
                if let Some(&i) = self.by_call.get(&call) {
                    self.update(i, now, *spec, answered);
                }
            }
            Command::Hold(h) => {
                if let Some(s) = self.slot(call) {
                    s.relay.set_hold(h);
                }
            }
            Command::Dtmf { digit, duration_ms } => {
                if let Some(&i) = self.by_call.get(&call) {
                    if let Some(s) = self.slots[i].as_mut()
                        && !s.relay.send_dtmf(now, digit, duration_ms)
                    {
                        tracing::debug!(call, "DTMF not sent: no telephone-event toward Meta");
                    }
                    self.reschedule(i);
                }
            }
            Command::Stop => {
                if let Some(i) = self.by_call.remove(&call)
                    && let Some(mut s) = self.slots[i].take()
                {
                    for m in s.socks.iter_mut().flatten() {
                        let _ = self.poll.registry().deregister(m);
                    }
                    self.free.push(i);
                }
            }
        }
    }

    fn slot(&mut self, call: u64) -> Option<&mut Slot> {
        let i = *self.by_call.get(&call)?;
        self.slots.get_mut(i)?.as_mut()
    }

    fn update(&mut self, i: usize, now: Instant, spec: RelaySpec, answered: bool) {
        if let Some(s) = self.slots[i].as_mut() {
            s.relay.update(spec);
            if answered {
                s.relay.answer(now);
            }
        }
        self.reschedule(i);
    }

    fn readable(&mut self, i: usize, k: usize) {
        let (side, socket) = which(k);
        loop {
            let Some(Some(s)) = self.slots.get_mut(i) else {
                return;
            };
            let Some(sock) = s.socks[k].as_ref() else {
                return;
            };
            let (n, from) = match sock.recv_from(&mut self.buf[..]) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors surface on later receives on some systems: skip them.
                Err(_) => continue,
            };
            if n > MAX_DATAGRAM {
                continue;
            }
            let now = Instant::now();
            let (buf, out) = (&mut self.buf[..n], &mut self.out[..]);
            let ok = guarded(|| {
                if let Some(tx) = s.relay.handle_datagram(now, side, socket, from, buf, out) {
                    send(s, &out[..tx.len], tx.side, tx.socket, tx.destination);
                }
                while let Some(tx) = s.relay.poll_transmit(out) {
                    send(s, &out[..tx.len], tx.side, tx.socket, tx.destination);
                }
            });
            if !ok {
                self.fail(i);
                return;
            }
        }
        self.after(i);
        self.reschedule(i);
    }

    /// A call's relay panicked: drop that call (its sockets close) and tell the call core;
    /// the worker and its other calls carry on.
    fn fail(&mut self, i: usize) {
        let Some(s) = self.slots.get_mut(i).and_then(Option::take) else {
            return;
        };
        tracing::error!(call = s.call, "media relay panicked; ending this call only");
        self.by_call.remove(&s.call);
        let mut s = s;
        for m in s.socks.iter_mut().flatten() {
            let _ = self.poll.registry().deregister(m);
        }
        self.free.push(i);
        let _ = self.events.send(EngineEvent::MediaFailed {
            call: s.call,
            reason: "internal media relay error",
        });
    }

    fn after(&mut self, i: usize) {
        let Some(Some(s)) = self.slots.get_mut(i) else {
            return;
        };
        while let Some(ev) = s.relay.poll_event() {
            match ev {
                RelayEvent::MediaTimeout { silent_for } => {
                    let _ = self.events.send(EngineEvent::MediaTimeout {
                        call: s.call,
                        silent_for,
                    });
                }
                RelayEvent::WebrtcFailed { reason } => {
                    let _ = self.events.send(EngineEvent::MediaFailed {
                        call: s.call,
                        reason,
                    });
                }
                RelayEvent::WebrtcConnected {
                    dtls_client,
                    ice_controlling,
                } => {
                    let client_hello_from = if dtls_client { "whatsip" } else { "WhatsApp" };
                    tracing::info!(
                        call = s.call,
                        ice_controlling,
                        client_hello_from,
                        "DTLS-SRTP with WhatsApp connected"
                    );
                }
            }
        }
    }

    fn reschedule(&mut self, i: usize) {
        let Some(Some(s)) = self.slots.get_mut(i) else {
            return;
        };
        if let Some(t) = s.relay.poll_timeout()
            && s.scheduled.is_none_or(|at| t < at)
        {
            s.scheduled = Some(t);
            self.timers.push(Reverse((t, i, s.generation)));
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, i, generation))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(Some(s)) = self.slots.get_mut(i) else {
                continue;
            };
            if s.generation != generation || s.scheduled != Some(at) {
                continue;
            }
            s.scheduled = None;
            let out = &mut self.out[..];
            let ok = guarded(|| {
                while let Some(tx) = s.relay.handle_timeout(now, out) {
                    send(s, &out[..tx.len], tx.side, tx.socket, tx.destination);
                }
            });
            if !ok {
                self.fail(i);
                continue;
            }
            self.after(i);
            self.reschedule(i);
        }
    }
}

/// Runs one call's packet or timer work; `false` if it panicked (the call is then dropped,
/// never the worker). Costs nothing when nothing panics.
fn guarded(f: impl FnOnce()) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok()
}

fn send(s: &Slot, data: &[u8], side: Side, socket: Socket, to: std::net::SocketAddr) {
    let k = index(side, socket);
    let sock = s.socks[k]
        .as_ref()
        .or_else(|| s.socks[index(side, Socket::Rtp)].as_ref());
    if let Some(sock) = sock
        && sock.send_to(data, to).is_err()
    {
        super::relay::count_drop(s.relay.counters());
    }
}
