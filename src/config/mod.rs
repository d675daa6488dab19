//! SIP profile files → typed, validated configuration.
//!
//! A profile folder holds one TOML profile per `*.toml` file (`kind = "whatsapp" | "trunk" |
//! "gateway"`); see `docs/profiles.md`. [`load_dir`] reads every file and returns either a
//! [`Config`] in which every field is parsed, defaulted and cross-checked, or *every*
//! problem found, each naming file, line, dotted field and what is wrong. Loading never
//! panics, whatever the bytes in the folder.
mod calling;
mod common;
mod error;
mod gateway;
mod span;
mod trunk;
mod types;
mod whatsapp;

pub use calling::{
    CallHours, CallIconVisibility, CallingSettings, ClockTime, Date, Holiday, Status, Weekday,
    WeeklyHours,
};
pub use error::{ConfigError, Severity};
pub use gateway::{GatewayConfig, SipTimers};
pub use trunk::{
    BusinessNumberChoice, SessionTimer, Transport, TrunkCodec, TrunkInboundAuth, TrunkListen,
    TrunkMedia, TrunkOutboundAuth, TrunkPeer, TrunkProfile, TrunkSrtp,
};
pub use types::{
    HostPort, META_IPV4_PREFIXES, META_SOURCES_KEYWORD, PortRange, Secret, SecretError,
    SecretSource, SourceList, meta_ipv4_prefixes,
};
pub use whatsapp::{
    BusinessNumber, G711, GraphSettings, InboundChallenge, KeyExchange, MetaEdge, RequestUriUser,
    SrtpSuite, TlsIdentity, WaMedia, WaSip, WhatsAppProfile, is_e164,
};

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use span::{Diag, line_of, path_at};

/// The folder read by `run` and `check` when `--profiles` is not given.
pub const DEFAULT_PROFILE_DIR: &str = "sip-profiles";

/// Where the in-process sandbox's SIP edge (TLS) listens when `meta.sandbox = true`.
pub const SANDBOX_EDGE_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5062));
/// Where the in-process sandbox's HTTP (Graph twin + control API) listens.
pub const SANDBOX_HTTP_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8081));
/// Where the sandbox writes the CA certificate that signs its edge certificate.
pub const SANDBOX_CA_PATH: &str = "var/sandbox/ca.pem";

/// A whole, validated profile folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The folder it was loaded from.
    pub dir: PathBuf,
    pub gateway: GatewayConfig,
    /// At least one.
    pub whatsapp: Vec<WhatsAppProfile>,
    pub trunks: Vec<TrunkProfile>,
    /// Problems that do not stop the gateway (unresolvable secrets, literal tokens, …).
    pub warnings: Vec<ConfigError>,
}

impl Config {
    /// The trunk profile called `name`.
    pub fn trunk(&self, name: &str) -> Option<&TrunkProfile> {
        self.trunks.iter().find(|t| t.name == name)
    }

    /// Every business number with the profile serving it.
    pub fn numbers(&self) -> impl Iterator<Item = (&WhatsAppProfile, &BusinessNumber)> {
        self.whatsapp
            .iter()
            .flat_map(|p| p.numbers.iter().map(move |n| (p, n)))
    }

    /// The business number `e164` (`+` form; a form without `+` is accepted too).
    pub fn number(&self, e164: &str) -> Option<(&WhatsAppProfile, &BusinessNumber)> {
        let want = e164.strip_prefix('+').unwrap_or(e164);
        self.numbers().find(|(_, n)| n.digest_username() == want)
    }

    /// The business number with this Graph `phone_number_id`.
    pub fn number_by_phone_number_id(
        &self,
        id: &str,
    ) -> Option<(&WhatsAppProfile, &BusinessNumber)> {
        self.numbers().find(|(_, n)| n.phone_number_id == id)
    }

    /// One-line summary printed by `whatsip check`.
    pub fn summary(&self) -> String {
        let numbers: Vec<String> = self.numbers().map(|(_, n)| n.masked()).collect();
        format!(
            "{}: OK: {} whatsapp profile(s) [{}], {} number(s) [{}], {} trunk(s) [{}]",
            self.dir.display(),
            self.whatsapp.len(),
            self.whatsapp
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            numbers.len(),
            numbers.join(", "),
            self.trunks.len(),
            self.trunks
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}

/// Where a value was written, for cross-file checks.
#[derive(Debug, Clone)]
struct Mark {
    file: PathBuf,
    line: usize,
}

impl Mark {
    fn err(&self, field: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::error(&self.file, Some(self.line), field, problem)
    }
}

#[derive(Default)]
struct Folder {
    gateway: Vec<(GatewayConfig, Mark)>,
    whatsapp: Vec<WhatsAppProfile>,
    trunks: Vec<TrunkProfile>,
    names: Vec<(String, Mark)>,
    /// (profile index, number index, e164, pnid, trunk) marks
    number_marks: Vec<NumberMarks>,
    /// trunk name → default_number mark
    default_marks: HashMap<String, Mark>,
    rtp: Vec<(PortRange, Mark, String)>,
    /// Every listening socket: (space, address, field, where, profile).
    listeners: Vec<(Proto, SocketAddr, String, Mark, String)>,
    /// A whatsapp file failed to deserialize: skip checks that would cascade from it.
    broken_whatsapp: bool,
    /// Names of trunk files that failed to deserialize (still valid reference targets).
    broken_trunks: Vec<String>,
    /// A file whose kind could not be read (syntax error, missing kind): any profile may be
    /// in it, so skip reference checks that would cascade from it.
    unreadable: bool,
}

struct NumberMarks {
    path: String,
    e164: Mark,
    pnid: Mark,
    trunk: Mark,
}

/// Load and validate every `*.toml` file in `dir`.
///
/// `Ok` carries warnings in [`Config::warnings`]; `Err` carries every error *and* warning
/// (errors first), each with file, line and field.
pub fn load_dir(dir: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
            .collect(),
        Err(e) => {
            return Err(vec![ConfigError::error(
                dir,
                None,
                "",
                format!("cannot read profile folder: {e}"),
            )]);
        }
    };
    files.sort();
    let mut out = Vec::new();
    let mut folder = Folder::default();
    for file in &files {
        match std::fs::read(file) {
            Err(e) => out.push(ConfigError::error(
                file,
                None,
                "",
                format!("cannot read: {e}"),
            )),
            Ok(bytes) => match String::from_utf8(bytes) {
                Err(e) => {
                    let pos = e.utf8_error().valid_up_to();
                    let line = e
                        .as_bytes()
                        .get(..pos)
                        .map_or(1, |b| b.iter().filter(|&&c| c == b'\n').count() + 1);
                    out.push(ConfigError::error(file, Some(line), "", "not valid UTF-8"));
                }
                Ok(src) => load_file(file, &src, &mut folder, &mut out),
            },
        }
    }
    cross_check(dir, &mut folder, &mut out);
    if out.iter().any(ConfigError::is_error) {
        out.sort_by_key(|e| !e.is_error());
        return Err(out);
    }
    let gateway = folder
        .gateway
        .into_iter()
        .next()
        .map(|(g, _)| g)
        .unwrap_or_default();
    Ok(Config {
        dir: dir.to_path_buf(),
        gateway,
        whatsapp: folder.whatsapp,
        trunks: folder.trunks,
        warnings: out,
    })
}

/// Parse one profile file's text as a profile of any kind. Public for tests and fuzzing:
/// returns the problems found in this file alone (no cross-file checks).
pub fn check_text(file: &Path, src: &str) -> Vec<ConfigError> {
    let mut out = Vec::new();
    let mut folder = Folder::default();
    load_file(file, src, &mut folder, &mut out);
    out
}

fn serde_error(
    file: &Path,
    src: &str,
    doc: &Spanned<DeTable<'_>>,
    e: &toml::de::Error,
) -> ConfigError {
    let pos = e.span().map_or(0, |s| s.start);
    let mut field = path_at(doc, pos);
    let msg = e.message().trim().to_owned();
    if let Some(missing) = msg
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        field = if field.is_empty() {
            missing.to_owned()
        } else {
            format!("{field}.{missing}")
        };
        return ConfigError::error(file, Some(line_of(src, pos)), field, "missing (required)");
    }
    let msg = if msg.starts_with("data did not match any variant of untagged enum") {
        "has an unsupported form (see docs/profiles.md)".to_owned()
    } else {
        internal_names_to_words(&msg)
    };
    ConfigError::error(file, Some(line_of(src, pos)), field, msg)
}

/// serde names our private `RawXxx` structs in type errors ("expected struct RawSecret");
/// say "a table" instead.
fn internal_names_to_words(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find("struct Raw") {
        out.push_str(rest.get(..i).unwrap_or_default());
        let after = rest.get(i + "struct Raw".len()..).unwrap_or_default();
        let end = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        out.push_str("a table");
        rest = after.get(end..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

fn mark(file: &Path, src: &str, span: Range<usize>) -> Mark {
    Mark {
        file: file.to_path_buf(),
        line: line_of(src, span.start),
    }
}

fn load_file(file: &Path, src: &str, folder: &mut Folder, out: &mut Vec<ConfigError>) {
    let doc = match DeTable::parse(src) {
        Ok(d) => d,
        Err(e) => {
            folder.unreadable = true;
            let pos = e.span().map_or(0, |s| s.start);
            let (partial, _) = DeTable::parse_recoverable(src);
            out.push(ConfigError::error(
                file,
                Some(line_of(src, pos)),
                path_at(&partial, pos),
                format!("TOML syntax: {}", e.message().trim()),
            ));
            return;
        }
    };
    let kind = doc
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == "kind")
        .map(|(_, v)| v);
    let kind_str = match kind.map(|v| (v.get_ref(), v.span())) {
        None => {
            folder.unreadable = true;
            out.push(ConfigError::error(
                file,
                Some(1),
                "kind",
                "missing: expected \"whatsapp\", \"trunk\" or \"gateway\"",
            ));
            return;
        }
        Some((DeValue::String(s), span)) => (s.to_string(), span),
        Some((other, span)) => {
            folder.unreadable = true;
            out.push(ConfigError::error(
                file,
                Some(line_of(src, span.start)),
                "kind",
                format!(
                    "expected \"whatsapp\", \"trunk\" or \"gateway\", found a {}",
                    other.type_str()
                ),
            ));
            return;
        }
    };
    let mut d = Diag {
        file: file.to_path_buf(),
        src,
        out,
    };
    match kind_str.0.as_str() {
        "whatsapp" => match toml::from_str::<whatsapp::Raw>(src) {
            Err(e) => {
                folder.broken_whatsapp = true;
                d.out.push(serde_error(file, src, &doc, &e));
            }
            Ok(raw) => {
                let name_mark = mark(file, src, raw.name.span());
                folder.names.push((raw.name.get_ref().clone(), name_mark));
                for (i, n) in raw.numbers.iter().enumerate() {
                    folder.number_marks.push(NumberMarks {
                        path: format!("numbers[{i}]"),
                        e164: mark(file, src, n.e164.span()),
                        pnid: mark(file, src, n.phone_number_id.span()),
                        trunk: mark(file, src, n.trunk.span()),
                    });
                }
                let p = raw.build(&mut d);
                if !field_failed(d.out, file, "media.rtp_port_range") {
                    folder.rtp.push((
                        p.media.rtp_ports,
                        Mark {
                            file: file.to_path_buf(),
                            line: rtp_line(src, &doc),
                        },
                        p.name.clone(),
                    ));
                }
                if !field_failed(d.out, file, "sip.listen") {
                    folder.listeners.push((
                        Proto::Tcp,
                        p.sip.listen,
                        "sip.listen".into(),
                        Mark {
                            file: file.to_path_buf(),
                            line: key_line(src, &doc, &["sip", "listen"]),
                        },
                        p.name.clone(),
                    ));
                }
                folder.whatsapp.push(p);
            }
        },
        "trunk" => match toml::from_str::<trunk::Raw>(src) {
            Err(e) => {
                if let Some((_, v)) = doc.get_ref().iter().find(|(k, _)| k.get_ref() == "name")
                    && let Some(n) = v.get_ref().as_str()
                {
                    folder.broken_trunks.push(n.to_owned());
                }
                d.out.push(serde_error(file, src, &doc, &e));
            }
            Ok(raw) => {
                folder
                    .names
                    .push((raw.name.get_ref().clone(), mark(file, src, raw.name.span())));
                if let Some(n) = &raw.default_number {
                    folder
                        .default_marks
                        .insert(raw.name.get_ref().clone(), mark(file, src, n.span()));
                }
                let t = raw.build(&mut d);
                if !field_failed(d.out, file, "media.rtp_port_range") {
                    folder.rtp.push((
                        t.media.rtp_ports,
                        Mark {
                            file: file.to_path_buf(),
                            line: rtp_line(src, &doc),
                        },
                        t.name.clone(),
                    ));
                }
                for (proto, key, addrs) in [
                    (Proto::Udp, "udp", &t.listen.udp),
                    (Proto::Tcp, "tcp", &t.listen.tcp),
                    (Proto::Tcp, "tls", &t.listen.tls),
                ] {
                    for (i, a) in addrs.iter().enumerate() {
                        folder.listeners.push((
                            proto,
                            *a,
                            format!("listen.{key}[{i}]"),
                            Mark {
                                file: file.to_path_buf(),
                                line: key_line(src, &doc, &["listen", key]),
                            },
                            t.name.clone(),
                        ));
                    }
                }
                folder.trunks.push(t);
            }
        },
        "gateway" => match toml::from_str::<gateway::Raw>(src) {
            Err(e) => d.out.push(serde_error(file, src, &doc, &e)),
            Ok(raw) => {
                let m = mark(file, src, raw.name.span());
                let gname = raw.name.get_ref().clone();
                folder.names.push((gname.clone(), m.clone()));
                let g = raw.build(&mut d);
                if !field_failed(d.out, file, "http_listen") {
                    folder.listeners.push((
                        Proto::Tcp,
                        g.http_listen,
                        "http_listen".into(),
                        Mark {
                            file: file.to_path_buf(),
                            line: key_line(src, &doc, &["http_listen"]),
                        },
                        gname,
                    ));
                }
                folder.gateway.push((g, m));
            }
        },
        other => {
            folder.unreadable = true;
            d.out.push(ConfigError::error(
                file,
                Some(line_of(src, kind_str.1.start)),
                "kind",
                format!("{other:?} is not one of \"whatsapp\", \"trunk\" or \"gateway\""),
            ));
        }
    }
}

/// True when `file`'s `field` was rejected (its default stands in; do not compare it).
fn field_failed(out: &[ConfigError], file: &Path, field: &str) -> bool {
    out.iter().any(|e| e.file == file && e.field == field)
}

/// Line of the key at `path` (tables only), or of its nearest written ancestor, or of the
/// profile's `name` (where a defaulted value belongs), or 1.
fn key_line(src: &str, doc: &Spanned<DeTable<'_>>, path: &[&str]) -> usize {
    let mut table = Some(doc.get_ref());
    let mut line = doc
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == "name")
        .map_or(1, |(k, _)| line_of(src, k.span().start));
    for key in path {
        let Some((k, v)) = table.and_then(|t| t.iter().find(|(k, _)| k.get_ref() == key)) else {
            break;
        };
        line = line_of(src, k.span().start);
        table = v.get_ref().as_table();
    }
    line
}

/// Line of `media.rtp_port_range` if written, else 1.
fn rtp_line(src: &str, doc: &Spanned<DeTable<'_>>) -> usize {
    key_line(src, doc, &["media", "rtp_port_range"])
}

/// Which socket space a listener lives in (TLS shares TCP's ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Udp,
    Tcp,
}

fn cross_check(dir: &Path, f: &mut Folder, out: &mut Vec<ConfigError>) {
    // unique names
    let mut seen: HashMap<&str, &Mark> = HashMap::new();
    for (name, m) in &f.names {
        if let Some(first) = seen.get(name.as_str()) {
            out.push(m.err(
                "name",
                format!(
                    "{name:?} is already used by {}:{}",
                    first.file.display(),
                    first.line
                ),
            ));
        } else {
            seen.insert(name, m);
        }
    }
    if f.gateway.len() > 1 {
        for (_, m) in f.gateway.iter().skip(1) {
            out.push(m.err("kind", "only one gateway profile is allowed per folder"));
        }
    }
    if f.whatsapp.is_empty() && !out.iter().any(|e| e.is_error()) {
        out.push(ConfigError::error(
            dir,
            None,
            "",
            "no whatsapp profile: at least one file with kind = \"whatsapp\" is required",
        ));
    }

    // numbers: unique e164 / phone_number_id, trunk exists
    let trunk_names: Vec<&str> = f.trunks.iter().map(|t| t.name.as_str()).collect();
    let mut e164_seen: HashMap<String, &Mark> = HashMap::new();
    let mut pnid_seen: HashMap<String, &Mark> = HashMap::new();
    let all: Vec<&BusinessNumber> = f.whatsapp.iter().flat_map(|p| &p.numbers).collect();
    for (n, m) in all.iter().zip(&f.number_marks) {
        let key = n.e164.clone();
        if let Some(first) = e164_seen.get(&key) {
            out.push(m.e164.err(
                &format!("{}.e164", m.path),
                format!(
                    "{key:?} is already served at {}:{}",
                    first.file.display(),
                    first.line
                ),
            ));
        } else {
            e164_seen.insert(key, &m.e164);
        }
        if let Some(first) = pnid_seen.get(&n.phone_number_id) {
            out.push(m.pnid.err(
                &format!("{}.phone_number_id", m.path),
                format!(
                    "{:?} is already used at {}:{}",
                    n.phone_number_id,
                    first.file.display(),
                    first.line
                ),
            ));
        } else {
            pnid_seen.insert(n.phone_number_id.clone(), &m.pnid);
        }
        if !f.unreadable
            && !trunk_names.contains(&n.trunk.as_str())
            && !f.broken_trunks.contains(&n.trunk)
        {
            let known = if trunk_names.is_empty() {
                "there is no trunk profile".to_owned()
            } else {
                format!("known trunks: {}", trunk_names.join(", "))
            };
            out.push(m.trunk.err(
                &format!("{}.trunk", m.path),
                format!("{:?} names no trunk profile ({known})", n.trunk),
            ));
        }
    }

    // trunk default numbers
    for t in &mut f.trunks {
        match &t.default_number {
            Some(n) => {
                if !f.broken_whatsapp
                    && !f.unreadable
                    && !all.iter().any(|b| &b.e164 == n)
                    && let Some(m) = f.default_marks.get(&t.name)
                {
                    out.push(m.err(
                        "default_number",
                        format!("{n:?} is not a business number of any whatsapp profile"),
                    ));
                }
            }
            None => {
                t.default_number = all
                    .iter()
                    .find(|b| b.trunk == t.name)
                    .map(|b| b.e164.clone());
            }
        }
    }

    // listening sockets must be distinct (the default HTTP API address counts when no
    // gateway profile is given)
    if f.gateway.is_empty() {
        f.listeners.insert(
            0,
            (
                Proto::Tcp,
                GatewayConfig::default().http_listen,
                "http_listen".into(),
                Mark {
                    file: dir.to_path_buf(),
                    line: 0,
                },
                "(default HTTP API)".into(),
            ),
        );
    }
    for (i, (pa, a, field, m, _)) in f.listeners.iter().enumerate() {
        if let Some((_, _, ofield, om, oname)) = f
            .listeners
            .iter()
            .take(i)
            .find(|(pb, b, ..)| pb == pa && b == a)
        {
            let space = if *pa == Proto::Udp { "UDP" } else { "TCP" };
            let place = if om.line == 0 {
                "the default".to_owned()
            } else {
                format!("{}:{}", om.file.display(), om.line)
            };
            out.push(m.err(
                field,
                format!("{a} ({space}) is also {ofield} of {oname:?} ({place})"),
            ));
        }
    }

    // RTP ranges must not overlap
    for (i, (a, ma, _)) in f.rtp.iter().enumerate() {
        for (b, mb, nb) in f.rtp.iter().take(i) {
            if a.overlaps(b) {
                out.push(ma.err(
                    "media.rtp_port_range",
                    format!(
                        "{a} overlaps {b} of profile {nb:?} ({}:{})",
                        mb.file.display(),
                        mb.line
                    ),
                ));
            }
        }
    }
}

/// Load `dir` for `check` and `run`: prints every problem (one per line) to stderr. On
/// success prints the warnings and returns the config; on failure returns the exit code 1.
pub fn load_or_report(dir: &Path) -> Result<Config, std::process::ExitCode> {
    match load_dir(dir) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                eprintln!("{w}");
            }
            Ok(cfg)
        }
        Err(errs) => {
            for e in &errs {
                eprintln!("{e}");
            }
            let n = errs.iter().filter(|e| e.is_error()).count();
            eprintln!(
                "{}: {n} problem(s); fix them and run `whatsip check` again",
                dir.display()
            );
            Err(std::process::ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests;
