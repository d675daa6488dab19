//! Configuration diagnostics: every problem names the file, the 1-based line, the dotted field
//! path and what is wrong, so `whatsip check` can print one actionable line per problem.
use std::fmt;
use std::path::PathBuf;

/// Whether a problem stops the gateway from starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Severity {
    /// `check` fails and `run` refuses to start.
    Error,
    /// Printed, but the configuration is usable.
    Warning,
}

/// One problem found in a profile folder.
///
/// Displays as `FILE:LINE: FIELD: PROBLEM` (warnings prefixed with `warning: `); the line is
/// omitted when the problem is not tied to a place in a file (e.g. an unreadable folder), and
/// the field when it concerns the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    pub severity: Severity,
    /// The profile file (or the folder, for folder-level problems), as given to the loader.
    pub file: PathBuf,
    /// 1-based line number, when known.
    pub line: Option<usize>,
    /// Dotted field path such as `numbers[0].e164`; empty for whole-file problems.
    pub field: String,
    /// What is wrong, in words.
    pub problem: String,
}

impl ConfigError {
    /// An error-severity problem.
    pub fn error(
        file: impl Into<PathBuf>,
        line: Option<usize>,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        ConfigError {
            severity: Severity::Error,
            file: file.into(),
            line,
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// A warning-severity problem.
    pub fn warning(
        file: impl Into<PathBuf>,
        line: Option<usize>,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        ConfigError {
            severity: Severity::Warning,
            ..ConfigError::error(file, line, field, problem)
        }
    }

    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.problem)
    }
}

impl std::error::Error for ConfigError {}
