//! Mapping byte spans of a TOML document to 1-based lines and dotted field paths, so that
//! serde errors (unknown keys, wrong types) name the field like semantic errors do.
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::ConfigError;

/// 1-based line of byte offset `pos` in `src` (clamped to the text).
pub(crate) fn line_of(src: &str, pos: usize) -> usize {
    let pos = pos.min(src.len());
    src.as_bytes()
        .get(..pos)
        .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
        + 1
}

/// The dotted path (`numbers[1].calling.status`) of the key or leaf value whose span holds
/// `pos`; falls back to the innermost table holding it; empty when none.
pub(crate) fn path_at(doc: &Spanned<DeTable<'_>>, pos: usize) -> String {
    let mut best: Option<String> = None;
    walk_table(doc.get_ref(), "", pos, &mut best);
    best.unwrap_or_default()
}

fn contains(r: &Range<usize>, pos: usize) -> bool {
    r.start <= pos && pos < r.end.max(r.start + 1)
}

fn join(prefix: &str, key: &str) -> String {
    let key = if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

fn walk_table(t: &DeTable<'_>, prefix: &str, pos: usize, best: &mut Option<String>) -> bool {
    for (k, v) in t.iter() {
        let path = join(prefix, k.get_ref());
        if contains(&k.span(), pos) {
            *best = Some(path);
            return true;
        }
        if walk_value(v, &path, pos, best) {
            return true;
        }
    }
    false
}

fn walk_value(v: &Spanned<DeValue<'_>>, path: &str, pos: usize, best: &mut Option<String>) -> bool {
    let inside = contains(&v.span(), pos);
    match v.get_ref() {
        DeValue::Table(t) => {
            if inside {
                *best = Some(path.to_owned());
            }
            walk_table(t, path, pos, best)
        }
        DeValue::Array(a) => {
            if inside {
                *best = Some(path.to_owned());
            }
            for (i, item) in a.iter().enumerate() {
                if walk_value(item, &format!("{path}[{i}]"), pos, best) {
                    return true;
                }
            }
            false
        }
        _ if inside => {
            *best = Some(path.to_owned());
            true
        }
        _ => false,
    }
}

/// Collects problems for one file, turning spans into lines.
pub(crate) struct Diag<'a> {
    pub file: PathBuf,
    pub src: &'a str,
    pub out: &'a mut Vec<ConfigError>,
}

impl Diag<'_> {
    pub fn line(&self, span: Range<usize>) -> usize {
        line_of(self.src, span.start)
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Error at `span` (or at line 1 when the field is absent).
    pub fn err(&mut self, span: Option<Range<usize>>, field: &str, problem: impl Into<String>) {
        let line = span.map_or(1, |s| self.line(s));
        self.out
            .push(ConfigError::error(&self.file, Some(line), field, problem));
    }

    /// Warning at `span` (or at line 1 when the field is absent).
    pub fn warn(&mut self, span: Option<Range<usize>>, field: &str, problem: impl Into<String>) {
        let line = span.map_or(1, |s| self.line(s));
        self.out
            .push(ConfigError::warning(&self.file, Some(line), field, problem));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }

    #[test]
    fn paths_through_tables_and_arrays() {
        let src = "kind = \"x\"\n[peer]\naddress = \"a\"\n[[numbers]]\ne164 = \"1\"\n[[numbers]]\ne164 = \"2\"\n[numbers.calling]\nstatus = \"X\"\n";
        let doc = DeTable::parse(src).unwrap();
        let at = |needle: &str| path_at(&doc, src.find(needle).unwrap());
        assert_eq!(at("address"), "peer.address");
        assert_eq!(at("\"a\""), "peer.address");
        assert_eq!(at("\"2\""), "numbers[1].e164");
        assert_eq!(at("\"X\""), "numbers[1].calling.status");
        assert_eq!(at("kind"), "kind");
    }
}
