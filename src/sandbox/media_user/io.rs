//! Socket shell of the sandbox media user: one tokio task owning one UDP socket on loopback,
//! driving a [`MediaUser`] from the socket and a timer, and a [`MediaUserHandle`] to read its
//! counters, learn of its hang-up and stop it.
//!
//! Guarantees: the task ends when the user hangs up, when [`MediaUserHandle::stop`] is called,
//! or when the handle is dropped; counters stay readable afterwards. Socket errors on send are
//! logged and dropped (UDP); nothing here panics.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::core::{HangUpReason, MediaCounters, MediaEvent, MediaUser, MediaUserConfig};

/// A bound media socket, before the call's keys are known (its address goes into the SDP).
#[derive(Debug)]
pub struct MediaSocket {
    socket: UdpSocket,
    local: SocketAddr,
}

impl MediaSocket {
    /// Bind on `addr` (use `127.0.0.1:0` for any free port).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        Ok(Self { socket, local })
    }

    /// Bind the first free port in `ports` on `ip`.
    pub async fn bind_range(
        ip: std::net::IpAddr,
        ports: std::ops::RangeInclusive<u16>,
    ) -> std::io::Result<Self> {
        let mut last = std::io::Error::new(std::io::ErrorKind::AddrInUse, "empty port range");
        for port in ports {
            match Self::bind(SocketAddr::new(ip, port)).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Run `user` on this socket.
    pub fn start(self, user: MediaUser) -> MediaUserHandle {
        let counters = Arc::new(Mutex::new(user.counters().clone()));
        let (hangup_tx, hangup_rx) = watch::channel(None);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(self.socket, user, counters.clone(), hangup_tx, stop_rx));
        MediaUserHandle {
            local: self.local,
            counters,
            hangup: hangup_rx,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// Build the core from `cfg` for a call answered at `answered_at` (normally
    /// `Instant::now()` when the 200 OK went out or came in) and start it.
    pub fn start_with(
        self,
        answered_at: Instant,
        cfg: MediaUserConfig,
    ) -> Result<MediaUserHandle, super::core::MediaUserError> {
        let user = MediaUser::new(answered_at, cfg)?;
        Ok(self.start(user))
    }
}

/// Control of a running media user.
#[derive(Debug)]
pub struct MediaUserHandle {
    local: SocketAddr,
    counters: Arc<Mutex<MediaCounters>>,
    hangup: watch::Receiver<Option<HangUpReason>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MediaUserHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A snapshot of the counters (serde-serializable for the control API).
    pub fn counters(&self) -> MediaCounters {
        match self.counters.lock() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Watch for the user's own hang-up (`Some(reason)` once it happened).
    pub fn hangup(&self) -> watch::Receiver<Option<HangUpReason>> {
        self.hangup.clone()
    }

    /// Stop the media (the call ended) and return the final counters.
    pub async fn stop(mut self) -> MediaCounters {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.counters()
    }
}

impl Drop for MediaUserHandle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn publish(counters: &Mutex<MediaCounters>, user: &MediaUser) {
    match counters.lock() {
        Ok(mut c) => c.clone_from(user.counters()),
        Err(p) => p.into_inner().clone_from(user.counters()),
    }
}

async fn run(
    socket: UdpSocket,
    mut user: MediaUser,
    counters: Arc<Mutex<MediaCounters>>,
    hangup: watch::Sender<Option<HangUpReason>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        user.handle_timeout(now);
        while let Some(t) = user.poll_transmit(now) {
            if let Err(e) = socket.send_to(&t.payload, t.destination).await {
                tracing::debug!(error = %e, dst = %t.destination, "sandbox media send failed");
            }
        }
        while let Some(ev) = user.poll_event() {
            match ev {
                MediaEvent::HangUp { reason } => {
                    tracing::info!(?reason, "sandbox user hangs up: no media");
                    let _ = hangup.send(Some(reason));
                }
                MediaEvent::FirstPacket => tracing::debug!("sandbox user: first media packet"),
                MediaEvent::Digit(d) => tracing::debug!(digit = %d, "sandbox user: DTMF"),
            }
        }
        publish(&counters, &user);
        if user.is_ended() {
            return;
        }
        let deadline = user.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, _from)) => {
                    if let Some(d) = buf.get(..n) {
                        user.handle_datagram(Instant::now(), d);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "sandbox media recv failed"),
            },
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = &mut stop => {
                user.stop();
                publish(&counters, &user);
                return;
            }
        }
    }
}
