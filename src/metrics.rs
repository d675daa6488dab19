//! The gateway's Prometheus metrics: fixed label sets, one atomic per series, so counting is
//! a single relaxed `fetch_add` — no lock, no allocation, no hashing on the hot path.
//! [`Metrics::render`] writes the Prometheus text exposition format (version 0.0.4).
//!
//! Hand-written rather than `prometheus-client`: every label set here is a small closed enum
//! known at compile time, so an array of atomics is both simpler and cheaper than a
//! label-hashing family, and it adds no dependency.
//!
//! Per-call media counters live on each active call (`api::calls::MediaMeter`, uncontended);
//! they are folded into the totals here when the call ends, and the API adds the live calls'
//! counters at scrape time, so the packet path never touches a shared cache line.
use crate::sip::method::Method;
use crate::store::{CallState, Direction, MediaCounters};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Which side of the gateway a SIP message or media packet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// Toward Meta's edge.
    Whatsapp,
    /// Toward the PBX trunk.
    Pbx,
}

impl Leg {
    pub const ALL: [Leg; 2] = [Leg::Whatsapp, Leg::Pbx];
    pub fn as_str(self) -> &'static str {
        match self {
            Leg::Whatsapp => "whatsapp",
            Leg::Pbx => "pbx",
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
}

/// Received (`in`) or sent (`out`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flow {
    In,
    Out,
}

impl Flow {
    pub const ALL: [Flow; 2] = [Flow::In, Flow::Out];
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::In => "in",
            Flow::Out => "out",
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
}

/// How a call ended, as a label (`completed`, `rejected`, `failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Completed,
    Rejected,
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Completed, Outcome::Rejected, Outcome::Failed];
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }
    /// The outcome of a call that ended in `state`; a non-final state counts as `failed`.
    pub fn of(state: CallState) -> Outcome {
        match state {
            CallState::Completed => Outcome::Completed,
            CallState::Rejected => Outcome::Rejected,
            _ => Outcome::Failed,
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
}

/// Method labels, in index order; anything else is `other`.
pub const METHOD_LABELS: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "REFER",
    "MESSAGE",
    "UPDATE",
    "other",
];

fn method_idx(m: &Method) -> usize {
    match m {
        Method::Invite => 0,
        Method::Ack => 1,
        Method::Bye => 2,
        Method::Cancel => 3,
        Method::Options => 4,
        Method::Register => 5,
        Method::Prack => 6,
        Method::Subscribe => 7,
        Method::Notify => 8,
        Method::Publish => 9,
        Method::Info => 10,
        Method::Refer => 11,
        Method::Message => 12,
        Method::Update => 13,
        Method::Other(_) => 14,
    }
}

/// Status class labels `1xx`…`6xx`.
pub const CLASS_LABELS: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"];

fn class_idx(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 6) - 1)
}

fn dir_idx(d: Direction) -> usize {
    match d {
        Direction::UserInitiated => 0,
        Direction::BusinessInitiated => 1,
    }
}

/// Media direction labels, matching `store::MediaCounters`.
pub const MEDIA_LABELS: [&str; 2] = ["whatsapp_to_pbx", "pbx_to_whatsapp"];

/// Every metric the gateway exports. Share one `Arc<Metrics>`.
#[derive(Debug, Default)]
pub struct Metrics {
    calls: [[Counter; 3]; 2],
    calls_active: [Gauge; 2],
    sip_requests: [[[Counter; 15]; 2]; 2],
    sip_responses: [[[Counter; 6]; 2]; 2],
    sip_parse_errors: [Counter; 2],
    sip_auth_failures: [Counter; 2],
    media_packets: [Counter; 2],
    media_bytes: [Counter; 2],
    media_decrypt_failures: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// A call started (the live registry calls this).
    pub fn call_started(&self, d: Direction) {
        self.calls_active[dir_idx(d)].inc();
    }

    /// A call ended in `state` (the live registry calls this).
    pub fn call_ended(&self, d: Direction, state: CallState) {
        self.calls_active[dir_idx(d)].dec();
        self.calls[dir_idx(d)][Outcome::of(state).idx()].inc();
    }

    pub fn calls_total(&self, d: Direction, o: Outcome) -> u64 {
        self.calls[dir_idx(d)][o.idx()].get()
    }

    pub fn calls_active(&self, d: Direction) -> i64 {
        self.calls_active[dir_idx(d)].get()
    }

    #[inline]
    pub fn sip_request(&self, leg: Leg, flow: Flow, method: &Method) {
        self.sip_requests[leg.idx()][flow.idx()][method_idx(method)].inc();
    }

    #[inline]
    pub fn sip_response(&self, leg: Leg, flow: Flow, status: u16) {
        self.sip_responses[leg.idx()][flow.idx()][class_idx(status)].inc();
    }

    /// A message from `leg` that did not parse (answered 400 or dropped).
    #[inline]
    pub fn sip_parse_error(&self, leg: Leg) {
        self.sip_parse_errors[leg.idx()].inc();
    }

    /// A digest authentication that failed on `leg` (bad credentials, stale or reused nonce,
    /// or Meta refusing ours).
    #[inline]
    pub fn sip_auth_failure(&self, leg: Leg) {
        self.sip_auth_failures[leg.idx()].inc();
    }

    /// Adds a finished call's media counters (the live registry calls this), or counts media
    /// outside any call.
    pub fn add_media(&self, m: &MediaCounters) {
        self.media_packets[0].add(m.whatsapp_to_pbx.packets);
        self.media_bytes[0].add(m.whatsapp_to_pbx.bytes);
        self.media_packets[1].add(m.pbx_to_whatsapp.packets);
        self.media_bytes[1].add(m.pbx_to_whatsapp.bytes);
        self.media_decrypt_failures.add(m.decrypt_failures);
    }

    /// Media totals of finished calls.
    pub fn media_totals(&self) -> MediaCounters {
        let mut m = MediaCounters::default();
        m.whatsapp_to_pbx.packets = self.media_packets[0].get();
        m.whatsapp_to_pbx.bytes = self.media_bytes[0].get();
        m.pbx_to_whatsapp.packets = self.media_packets[1].get();
        m.pbx_to_whatsapp.bytes = self.media_bytes[1].get();
        m.decrypt_failures = self.media_decrypt_failures.get();
        m
    }

    /// Appends the exposition of every metric to `out`; `live_media` (the active calls'
    /// counters) is added to the media totals.
    pub fn render(&self, out: &mut String, live_media: &MediaCounters) {
        let mut s = Vec::new();
        for d in Direction::ALL {
            for o in Outcome::ALL {
                s.push((
                    format!("direction=\"{}\",outcome=\"{}\"", d.as_str(), o.as_str()),
                    self.calls_total(d, o) as f64,
                ));
            }
        }
        write_family(
            out,
            "whatsip_calls_total",
            "counter",
            "Calls ended, by direction and outcome.",
            &s,
        );
        s.clear();
        for d in Direction::ALL {
            s.push((
                format!("direction=\"{}\"", d.as_str()),
                self.calls_active(d) as f64,
            ));
        }
        write_family(
            out,
            "whatsip_calls_active",
            "gauge",
            "Calls in progress.",
            &s,
        );
        s.clear();
        for leg in Leg::ALL {
            for flow in Flow::ALL {
                for (i, m) in METHOD_LABELS.iter().enumerate() {
                    s.push((
                        format!(
                            "leg=\"{}\",direction=\"{}\",method=\"{m}\"",
                            leg.as_str(),
                            flow.as_str()
                        ),
                        self.sip_requests[leg.idx()][flow.idx()][i].get() as f64,
                    ));
                }
            }
        }
        write_family(
            out,
            "whatsip_sip_requests_total",
            "counter",
            "SIP requests received (in) and sent (out), by leg and method.",
            &s,
        );
        s.clear();
        for leg in Leg::ALL {
            for flow in Flow::ALL {
                for (i, c) in CLASS_LABELS.iter().enumerate() {
                    s.push((
                        format!(
                            "leg=\"{}\",direction=\"{}\",class=\"{c}\"",
                            leg.as_str(),
                            flow.as_str()
                        ),
                        self.sip_responses[leg.idx()][flow.idx()][i].get() as f64,
                    ));
                }
            }
        }
        write_family(
            out,
            "whatsip_sip_responses_total",
            "counter",
            "SIP responses received (in) and sent (out), by leg and status class.",
            &s,
        );
        s.clear();
        for leg in Leg::ALL {
            s.push((
                format!("leg=\"{}\"", leg.as_str()),
                self.sip_parse_errors[leg.idx()].get() as f64,
            ));
        }
        write_family(
            out,
            "whatsip_sip_parse_errors_total",
            "counter",
            "SIP messages that failed to parse, by leg.",
            &s,
        );
        s.clear();
        for leg in Leg::ALL {
            s.push((
                format!("leg=\"{}\"", leg.as_str()),
                self.sip_auth_failures[leg.idx()].get() as f64,
            ));
        }
        write_family(
            out,
            "whatsip_sip_auth_failures_total",
            "counter",
            "Failed digest authentications, by leg.",
            &s,
        );
        s.clear();
        let mut m = self.media_totals();
        m.whatsapp_to_pbx.packets += live_media.whatsapp_to_pbx.packets;
        m.whatsapp_to_pbx.bytes += live_media.whatsapp_to_pbx.bytes;
        m.pbx_to_whatsapp.packets += live_media.pbx_to_whatsapp.packets;
        m.pbx_to_whatsapp.bytes += live_media.pbx_to_whatsapp.bytes;
        m.decrypt_failures += live_media.decrypt_failures;
        let flows = [m.whatsapp_to_pbx, m.pbx_to_whatsapp];
        for (label, f) in MEDIA_LABELS.iter().zip(flows) {
            s.push((format!("direction=\"{label}\""), f.packets as f64));
        }
        write_family(
            out,
            "whatsip_media_packets_total",
            "counter",
            "RTP packets relayed, by direction.",
            &s,
        );
        s.clear();
        for (label, f) in MEDIA_LABELS.iter().zip(flows) {
            s.push((format!("direction=\"{label}\""), f.bytes as f64));
        }
        write_family(
            out,
            "whatsip_media_bytes_total",
            "counter",
            "RTP bytes relayed, by direction.",
            &s,
        );
        s.clear();
        s.push((String::new(), m.decrypt_failures as f64));
        write_family(
            out,
            "whatsip_media_decrypt_failures_total",
            "counter",
            "SRTP packets from Meta that failed authentication or decryption.",
            &s,
        );
    }
}

/// Writes one metric family: `# HELP`, `# TYPE` and one line per `(labels, value)`; `labels`
/// is the text between the braces (empty for none). Label values must already be escaped.
pub fn write_family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(String, f64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

/// Escapes a label value (`\`, `"`, newline) for the text format.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders_in_prometheus_text_format() {
        let m = Metrics::new();
        m.call_started(Direction::UserInitiated);
        m.call_started(Direction::UserInitiated);
        m.call_ended(Direction::UserInitiated, CallState::Completed);
        m.sip_request(Leg::Whatsapp, Flow::In, &Method::Invite);
        m.sip_request(Leg::Pbx, Flow::Out, &Method::Other("FOO".into()));
        m.sip_response(Leg::Pbx, Flow::In, 486);
        m.sip_response(Leg::Pbx, Flow::In, 99);
        m.sip_parse_error(Leg::Pbx);
        let mut live = MediaCounters::default();
        live.pbx_to_whatsapp.packets = 5;
        live.pbx_to_whatsapp.bytes = 860;
        let mut out = String::new();
        m.render(&mut out, &live);
        let has = |l: &str| out.lines().any(|x| x == l);
        assert!(
            has("whatsip_calls_total{direction=\"user_initiated\",outcome=\"completed\"} 1"),
            "{out}"
        );
        assert!(has(
            "whatsip_calls_total{direction=\"business_initiated\",outcome=\"failed\"} 0"
        ));
        assert!(has("whatsip_calls_active{direction=\"user_initiated\"} 1"));
        assert!(has(
            "whatsip_sip_requests_total{leg=\"whatsapp\",direction=\"in\",method=\"INVITE\"} 1"
        ));
        assert!(has(
            "whatsip_sip_requests_total{leg=\"pbx\",direction=\"out\",method=\"other\"} 1"
        ));
        assert!(has(
            "whatsip_sip_responses_total{leg=\"pbx\",direction=\"in\",class=\"4xx\"} 1"
        ));
        assert!(has(
            "whatsip_sip_responses_total{leg=\"pbx\",direction=\"in\",class=\"1xx\"} 1"
        ));
        assert!(has("whatsip_sip_parse_errors_total{leg=\"pbx\"} 1"));
        assert!(has(
            "whatsip_media_packets_total{direction=\"pbx_to_whatsapp\"} 5"
        ));
        assert!(has(
            "whatsip_media_bytes_total{direction=\"pbx_to_whatsapp\"} 860"
        ));
        assert!(has("whatsip_media_decrypt_failures_total 0"));
        assert!(has("# TYPE whatsip_calls_active gauge"));
        // Every sample line is `name{labels} value` or `name value`.
        for l in out.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
            assert!(l.starts_with("whatsip_"), "{l}");
        }
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
