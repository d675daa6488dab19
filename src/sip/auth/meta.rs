//! Meta's digest dialect for WhatsApp SIP trunks (whatsapp-calling.md §1.3/§1.4):
//! realm `wa.meta.vc`, username = the business number without `+`, password = the Meta SIP
//! password. Guarantees: the username is validated as 1–15 digits (E.164 without `+`).

use super::{AuthError, DigestClient};

/// The realm Meta challenges with.
pub const META_REALM: &str = "wa.meta.vc";

/// The digest username for a business number: `+17125550259` → `17125550259`.
pub fn meta_digest_username(business_number: &str) -> Result<String, AuthError> {
    let digits = business_number.strip_prefix('+').unwrap_or(business_number);
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::InvalidParam {
            name: "username",
            reason: "business number must be E.164 digits",
        });
    }
    Ok(digits.to_owned())
}

/// A client that answers only Meta's realm, as the business number.
pub fn meta_client(business_number: &str, sip_password: &str) -> Result<DigestClient, AuthError> {
    Ok(
        DigestClient::new(meta_digest_username(business_number)?, sip_password)
            .with_expected_realm(META_REALM),
    )
}
