//! Redaction for logs: phone numbers, BSUIDs, passwords and keys never reach a log line whole.
//!
//! `phone("+15551234567")` → `+*******4567`; `secret(..)` → `[redacted N bytes]`. Use the
//! `Display` wrappers in `tracing` fields: `tracing::info!(user = %redact::phone(u))`.
use std::fmt;

/// A phone number or BSUID shown with all but its last four characters masked.
pub struct Phone<'a>(pub &'a str);

pub fn phone(s: &str) -> Phone<'_> {
    Phone(s)
}

impl fmt::Display for Phone<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars: Vec<char> = self.0.chars().collect();
        let keep = 4.min(chars.len() / 2);
        let cut = chars.len() - keep;
        for (i, c) in chars.iter().enumerate() {
            if i < cut && c.is_ascii_alphanumeric() {
                f.write_str("*")?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// A secret (password, key, token): only its length is shown.
pub struct Secret(pub usize);

pub fn secret(s: impl AsRef<[u8]>) -> Secret {
    Secret(s.as_ref().len())
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[redacted {} bytes]", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_keeps_only_last_four() {
        assert_eq!(phone("+15551234567").to_string(), "+*******4567");
        assert_eq!(
            phone("US.13491208655302741918").to_string(),
            "**.****************1918"
        );
        assert_eq!(phone("12").to_string(), "*2");
        assert_eq!(phone("").to_string(), "");
    }

    #[test]
    fn secret_shows_length_only() {
        assert_eq!(secret("hunter2").to_string(), "[redacted 7 bytes]");
    }
}
