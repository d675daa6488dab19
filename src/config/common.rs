//! Field checks shared by every profile kind: names, addresses, port ranges, allow-lists,
//! secret sources and PEM files. Each check reports through [`Diag`] and returns a usable
//! value (the default) so that every problem in a file is collected in one pass.
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::path::PathBuf;
use toml::Spanned;

use super::span::Diag;
use super::types::{
    META_SOURCES_KEYWORD, PortRange, SecretSource, SourceList, meta_ipv4_prefixes, parse_source,
};

/// The span of an optional spanned value.
pub(crate) fn sp<T>(v: &Option<Spanned<T>>) -> Option<std::ops::Range<usize>> {
    v.as_ref().map(Spanned::span)
}

/// Profile names: 1..=64 of `[A-Za-z0-9_.-]`.
pub(crate) fn name_ok(d: &mut Diag<'_>, name: &Spanned<String>) {
    let n = name.get_ref();
    if n.is_empty()
        || n.len() > 64
        || !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        d.err(
            Some(name.span()),
            "name",
            format!("{n:?} is not a profile name (1 to 64 of A-Z a-z 0-9 _ - .)"),
        );
    }
}

/// Parse an optional string field with `parse`, reporting its problem and falling back to
/// `default`.
pub(crate) fn parse_or<T>(
    d: &mut Diag<'_>,
    field: &str,
    v: &Option<Spanned<String>>,
    parse: impl FnOnce(&str) -> Result<T, String>,
    default: T,
) -> T {
    match v {
        None => default,
        Some(s) => parse(s.get_ref()).unwrap_or_else(|e| {
            d.err(Some(s.span()), field, e);
            default
        }),
    }
}

/// `[start, end]` RTP port range.
pub(crate) fn port_range(
    d: &mut Diag<'_>,
    field: &str,
    v: &Option<Spanned<Vec<i64>>>,
    default: PortRange,
) -> PortRange {
    match v {
        None => default,
        Some(r) => match r.get_ref().as_slice() {
            [a, b] => PortRange::new(*a, *b).unwrap_or_else(|e| {
                d.err(Some(r.span()), field, e);
                default
            }),
            other => {
                d.err(
                    Some(r.span()),
                    field,
                    format!("{other:?} is not a port range (write [first, last], two ports)"),
                );
                default
            }
        },
    }
}

/// An allow-list: IPs, CIDRs and (when `allow_meta`) the keyword `"meta"`. `None` when the
/// field is absent.
pub(crate) fn sources(
    d: &mut Diag<'_>,
    field: &str,
    v: Option<&[Spanned<String>]>,
    allow_meta: bool,
) -> Option<SourceList> {
    let v = v?;
    let mut out = Vec::new();
    for (i, s) in v.iter().enumerate() {
        if allow_meta && s.get_ref() == META_SOURCES_KEYWORD {
            out.extend(meta_ipv4_prefixes());
            continue;
        }
        match parse_source(s.get_ref()) {
            Ok(n) => out.push(n),
            Err(e) => d.err(Some(s.span()), &format!("{field}[{i}]"), e),
        }
    }
    out.sort();
    out.dedup();
    Some(SourceList(out))
}

/// `{ env = "VAR" }` | `{ file = "path" }` | `{ literal = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecret {
    env: Option<String>,
    file: Option<PathBuf>,
    literal: Option<String>,
}

/// Build a secret source. Exactly one form is required (error). Outside sandbox mode, a
/// source that does not resolve now, or a literal, is a warning.
pub(crate) fn check_secret(
    d: &mut Diag<'_>,
    field: &str,
    v: &Spanned<RawSecret>,
    sandbox: bool,
) -> SecretSource {
    let r = v.get_ref();
    let src = match (&r.env, &r.file, &r.literal) {
        (Some(e), None, None) if !e.is_empty() => SecretSource::Env(e.clone()),
        (None, Some(f), None) if !f.as_os_str().is_empty() => SecretSource::File(f.clone()),
        (None, None, Some(l)) => SecretSource::Literal(l.clone()),
        _ => {
            d.err(
                Some(v.span()),
                field,
                "give exactly one of { env = \"VAR\" }, { file = \"path\" } or { literal = \"...\" }",
            );
            return SecretSource::Literal(String::new());
        }
    };
    if !sandbox {
        match &src {
            SecretSource::Literal(_) => d.warn(
                Some(v.span()),
                field,
                "literal secret in a profile file; prefer { env = ... } or { file = ... } outside sandbox mode",
            ),
            _ => {
                if let Err(e) = src.resolve() {
                    d.warn(Some(v.span()), field, format!("{e}"));
                }
            }
        }
    }
    if let SecretSource::Literal(l) = &src
        && l.is_empty()
    {
        d.err(Some(v.span()), field, "literal secret is empty");
    }
    src
}

/// What a PEM file must contain.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PemKind {
    Certificates,
    PrivateKey,
}

/// The file exists and holds at least one certificate / one private key in PEM.
pub(crate) fn check_pem(d: &mut Diag<'_>, field: &str, path: &Spanned<PathBuf>, kind: PemKind) {
    let p = path.get_ref();
    let bytes = match std::fs::read(p) {
        Ok(b) => b,
        Err(e) => {
            d.err(
                Some(path.span()),
                field,
                format!("cannot read {}: {e}", p.display()),
            );
            return;
        }
    };
    let ok = match kind {
        PemKind::Certificates => {
            let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
            matches!(certs, Ok(c) if !c.is_empty())
        }
        PemKind::PrivateKey => PrivateKeyDer::from_pem_slice(&bytes).is_ok(),
    };
    if !ok {
        let what = match kind {
            PemKind::Certificates => "no PEM certificate",
            PemKind::PrivateKey => "no PEM private key",
        };
        d.err(
            Some(path.span()),
            field,
            format!("{} holds {what}", p.display()),
        );
    }
}
