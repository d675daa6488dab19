//! Timing of one stream connection (idle close, RFC 5626 keepalive pings and pong deadline,
//! close-after-400 linger), sans-IO.
//!
//! Guarantees: every deadline is derived from the `now` values passed in; the connection task
//! sleeps until [`ConnectionState::poll_timeout`], calls [`ConnectionState::handle_timeout`]
//! and performs every [`Action`] from [`ConnectionState::poll_action`]. A connection is closed
//! when no SIP message moved for `idle_timeout`, when a ping is not answered within
//! `pong_timeout`, or when it failed framing (right after the answer was sent, or after `linger`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Timing parameters of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Close after this long without a SIP message in either direction (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Send a CRLFCRLF ping this often (`None`: never). Used on our client connections.
    pub keepalive_interval: Option<Duration>,
    /// Close when a ping is not answered within this long (RFC 5626 §4.4.1 uses 10 s).
    pub pong_timeout: Duration,
    /// After a framing error, how long to wait for the upper layer's answer before closing.
    pub linger: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            idle_timeout: Some(Duration::from_secs(300)),
            keepalive_interval: None,
            pong_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(2),
        }
    }
}

/// Why the connection is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No SIP message for `idle_timeout`.
    Idle,
    /// A keepalive ping went unanswered.
    PongTimeout,
    /// The peer's bytes could not be framed.
    FramingError,
    /// The peer closed or the socket failed.
    PeerClosed,
    /// Closed on request of the upper layer or at shutdown.
    Local,
}

/// Something the connection task must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write a CRLFCRLF ping (and tell the framer to expect a pong).
    SendPing,
    /// Write a CRLF pong.
    SendPong,
    /// Close the connection.
    Close(CloseReason),
}

/// Timer state of one connection.
#[derive(Debug)]
pub struct ConnectionState {
    timing: Timing,
    last_activity: Instant,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    close_at: Option<(Instant, CloseReason)>,
    closed: bool,
    actions: VecDeque<Action>,
}

impl ConnectionState {
    /// A connection established at `now`; `pinging` enables outbound keepalives.
    pub fn new(now: Instant, timing: Timing, pinging: bool) -> Self {
        let next_ping = if pinging {
            timing.keepalive_interval.map(|i| now + i)
        } else {
            None
        };
        Self {
            timing,
            last_activity: now,
            next_ping,
            pong_deadline: None,
            close_at: None,
            closed: false,
            actions: VecDeque::new(),
        }
    }

    /// Whether the connection still accepts bytes from the peer (false after a framing error).
    pub fn reading(&self) -> bool {
        !self.closed && self.close_at.is_none()
    }

    /// Whether a close was decided.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// A complete SIP message arrived.
    pub fn handle_message_received(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// A SIP message was written to the peer. After a framing error this is the answer, and
    /// the connection closes right away.
    pub fn handle_message_sent(&mut self, now: Instant) {
        self.last_activity = now;
        if let Some((_, reason)) = self.close_at {
            self.close(reason);
        }
    }

    /// The peer pinged us.
    pub fn handle_ping(&mut self, _now: Instant) {
        if !self.closed {
            self.actions.push_back(Action::SendPong);
        }
    }

    /// The peer answered our ping (or sent a stray CRLF).
    pub fn handle_pong(&mut self, _now: Instant) {
        self.pong_deadline = None;
    }

    /// The peer's bytes failed framing: stop reading; close once the upper layer's answer is
    /// sent (`answerable`) or at once.
    pub fn handle_framing_error(&mut self, now: Instant, answerable: bool) {
        if answerable {
            self.close_at = Some((now + self.timing.linger, CloseReason::FramingError));
        } else {
            self.close(CloseReason::FramingError);
        }
    }

    /// The peer closed the connection or the socket failed.
    pub fn handle_peer_closed(&mut self, _now: Instant) {
        self.close(CloseReason::PeerClosed);
    }

    /// The upper layer asked to close.
    pub fn handle_close(&mut self, _now: Instant) {
        self.close(CloseReason::Local);
    }

    fn close(&mut self, reason: CloseReason) {
        if !self.closed {
            self.closed = true;
            self.actions.push_back(Action::Close(reason));
        }
    }

    /// The earliest instant at which [`Self::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        [
            self.close_at.map(|(t, _)| t),
            self.pong_deadline,
            self.next_ping,
            self.timing.idle_timeout.map(|d| self.last_activity + d),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Fire every deadline that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if let Some((t, reason)) = self.close_at
            && now >= t
        {
            return self.close(reason);
        }
        if self.pong_deadline.is_some_and(|t| now >= t) {
            return self.close(CloseReason::PongTimeout);
        }
        if self
            .timing
            .idle_timeout
            .is_some_and(|d| now >= self.last_activity + d)
        {
            return self.close(CloseReason::Idle);
        }
        if let (Some(t), Some(interval)) = (self.next_ping, self.timing.keepalive_interval)
            && now >= t
        {
            self.actions.push_back(Action::SendPing);
            self.next_ping = Some(now + interval);
            if self.pong_deadline.is_none() {
                self.pong_deadline = Some(now + self.timing.pong_timeout);
            }
        }
    }

    /// The next thing the connection task must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn drain(c: &mut ConnectionState) -> Vec<Action> {
        std::iter::from_fn(|| c.poll_action()).collect()
    }

    #[test]
    fn idle_close_on_virtual_time() {
        let t0 = Instant::now();
        let timing = Timing {
            idle_timeout: Some(s(30)),
            ..Timing::default()
        };
        let mut c = ConnectionState::new(t0, timing, false);
        assert_eq!(c.poll_timeout(), Some(t0 + s(30)));
        c.handle_message_received(t0 + s(10));
        assert_eq!(c.poll_timeout(), Some(t0 + s(40)));
        c.handle_timeout(t0 + s(39));
        assert_eq!(drain(&mut c), vec![]);
        c.handle_message_sent(t0 + s(39));
        assert_eq!(c.poll_timeout(), Some(t0 + s(69)));
        c.handle_timeout(t0 + s(69));
        assert_eq!(drain(&mut c), vec![Action::Close(CloseReason::Idle)]);
        assert!(c.is_closed());
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn pings_do_not_count_as_activity() {
        let t0 = Instant::now();
        let timing = Timing {
            idle_timeout: Some(s(100)),
            keepalive_interval: Some(s(30)),
            pong_timeout: s(10),
            linger: s(2),
        };
        let mut c = ConnectionState::new(t0, timing, true);
        assert_eq!(c.poll_timeout(), Some(t0 + s(30)));
        c.handle_timeout(t0 + s(30));
        assert_eq!(drain(&mut c), vec![Action::SendPing]);
        assert_eq!(c.poll_timeout(), Some(t0 + s(40)));
        c.handle_pong(t0 + s(31));
        assert_eq!(c.poll_timeout(), Some(t0 + s(60)));
        c.handle_timeout(t0 + s(60));
        c.handle_pong(t0 + s(60));
        c.handle_timeout(t0 + s(90));
        c.handle_pong(t0 + s(90));
        assert_eq!(drain(&mut c), vec![Action::SendPing, Action::SendPing]);
        c.handle_timeout(t0 + s(100));
        assert_eq!(drain(&mut c), vec![Action::Close(CloseReason::Idle)]);
    }

    #[test]
    fn unanswered_ping_closes() {
        let t0 = Instant::now();
        let timing = Timing {
            idle_timeout: None,
            keepalive_interval: Some(s(5)),
            pong_timeout: s(3),
            linger: s(2),
        };
        let mut c = ConnectionState::new(t0, timing, true);
        c.handle_timeout(t0 + s(5));
        assert_eq!(c.poll_timeout(), Some(t0 + s(8)));
        c.handle_timeout(t0 + s(8));
        assert_eq!(
            drain(&mut c),
            vec![Action::SendPing, Action::Close(CloseReason::PongTimeout)]
        );
    }

    #[test]
    fn server_side_never_pings_but_answers() {
        let t0 = Instant::now();
        let timing = Timing {
            idle_timeout: None,
            keepalive_interval: Some(s(5)),
            ..Timing::default()
        };
        let mut c = ConnectionState::new(t0, timing, false);
        assert_eq!(c.poll_timeout(), None);
        c.handle_ping(t0);
        assert_eq!(drain(&mut c), vec![Action::SendPong]);
    }

    #[test]
    fn framing_error_closes_after_answer_or_linger() {
        let t0 = Instant::now();
        let mut c = ConnectionState::new(t0, Timing::default(), false);
        c.handle_framing_error(t0 + s(1), true);
        assert!(!c.reading());
        assert_eq!(c.poll_timeout(), Some(t0 + s(3)));
        c.handle_message_sent(t0 + s(2));
        assert_eq!(
            drain(&mut c),
            vec![Action::Close(CloseReason::FramingError)]
        );

        let mut c = ConnectionState::new(t0, Timing::default(), false);
        c.handle_framing_error(t0, true);
        c.handle_timeout(t0 + s(1));
        assert_eq!(drain(&mut c), vec![]);
        c.handle_timeout(t0 + s(2));
        assert_eq!(
            drain(&mut c),
            vec![Action::Close(CloseReason::FramingError)]
        );

        let mut c = ConnectionState::new(t0, Timing::default(), false);
        c.handle_framing_error(t0, false);
        assert_eq!(
            drain(&mut c),
            vec![Action::Close(CloseReason::FramingError)]
        );
        c.handle_peer_closed(t0);
        assert_eq!(drain(&mut c), vec![]);
    }
}
