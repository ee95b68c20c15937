//! One-time passwords (SPEC CHN-6): the request rules, the stored record and the verdict of
//! a verification attempt.
//!
//! A code is never stored: the record keeps `sha256(salt || code)` with a random salt per
//! code, so a copy of the data (a snapshot, a backup) does not reveal live codes. A
//! verification attempt reaches the state machine as a hash computed with the record's salt,
//! so the code does not appear in the Raft log either.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::endpoint::{ChannelType, is_e164, is_email};
use super::violation::FieldViolation;

/// Fewest digits of a code.
pub const MIN_CODE_LENGTH: u32 = 4;
/// Most digits of a code.
pub const MAX_CODE_LENGTH: u32 = 8;
/// Digits when the request does not say.
pub const DEFAULT_CODE_LENGTH: u32 = 6;
/// Validity when the request does not say, in minutes.
pub const DEFAULT_VALIDITY_MINUTES: u32 = 15;
/// Longest validity, in minutes.
pub const MAX_VALIDITY_MINUTES: u32 = 60;
/// Verification attempts when the request does not say.
pub const DEFAULT_ALLOWED_ATTEMPTS: u32 = 3;
/// Most verification attempts a request may allow.
pub const MAX_ALLOWED_ATTEMPTS: u32 = 10;
/// Longest reference id and brand name, in characters.
pub const MAX_TEXT_CHARS: usize = 128;

/// A validated OTP send, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpSpec {
    /// Phone number (E.164) or email address.
    pub destination: String,
    /// SMS, voice or email.
    pub channel: ChannelType,
    /// Digits of the code.
    pub code_length: u32,
    /// Minutes the code stays valid.
    pub validity_minutes: u32,
    /// Verification attempts allowed.
    pub allowed_attempts: u32,
    /// The caller's name for what the code protects (a login, a payment…).
    pub reference_id: String,
    /// Printed in the message: "Your {brand} code is …".
    pub brand_name: String,
}

/// Checks an OTP send; zeros mean "the default". Returns every problem at once.
pub fn validate_otp_spec(
    destination: &str,
    channel: Option<ChannelType>,
    code_length: u32,
    validity_minutes: u32,
    allowed_attempts: u32,
    reference_id: &str,
    brand_name: &str,
) -> Result<OtpSpec, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let channel = channel.unwrap_or(ChannelType::Sms);
    match channel {
        ChannelType::Sms | ChannelType::Voice if !is_e164(destination) => {
            violations.push(FieldViolation::new(
                "destination",
                format!("{destination:?} is not an E.164 phone number"),
            ));
        }
        ChannelType::Email if !is_email(destination) => violations.push(FieldViolation::new(
            "destination",
            format!("{destination:?} is not an email address"),
        )),
        ChannelType::Sms | ChannelType::Voice | ChannelType::Email => {}
        other => violations.push(FieldViolation::new(
            "channel",
            format!(
                "{} cannot carry a one-time password, use SMS, VOICE or EMAIL",
                other.as_str()
            ),
        )),
    }
    let code_length = if code_length == 0 {
        DEFAULT_CODE_LENGTH
    } else {
        code_length
    };
    if !(MIN_CODE_LENGTH..=MAX_CODE_LENGTH).contains(&code_length) {
        violations.push(FieldViolation::new(
            "code_length",
            format!("{code_length} is not between {MIN_CODE_LENGTH} and {MAX_CODE_LENGTH}"),
        ));
    }
    let validity_minutes = if validity_minutes == 0 {
        DEFAULT_VALIDITY_MINUTES
    } else {
        validity_minutes
    };
    if validity_minutes > MAX_VALIDITY_MINUTES {
        violations.push(FieldViolation::new(
            "validity_minutes",
            format!("{validity_minutes} is more than {MAX_VALIDITY_MINUTES}"),
        ));
    }
    let allowed_attempts = if allowed_attempts == 0 {
        DEFAULT_ALLOWED_ATTEMPTS
    } else {
        allowed_attempts
    };
    if allowed_attempts > MAX_ALLOWED_ATTEMPTS {
        violations.push(FieldViolation::new(
            "allowed_attempts",
            format!("{allowed_attempts} is more than {MAX_ALLOWED_ATTEMPTS}"),
        ));
    }
    validate_text("reference_id", reference_id, true, &mut violations);
    validate_text("brand_name", brand_name, false, &mut violations);
    if !violations.is_empty() {
        return Err(violations);
    }
    Ok(OtpSpec {
        destination: destination.to_string(),
        channel,
        code_length,
        validity_minutes,
        allowed_attempts,
        reference_id: reference_id.to_string(),
        brand_name: brand_name.to_string(),
    })
}

fn validate_text(field: &str, value: &str, required: bool, violations: &mut Vec<FieldViolation>) {
    if required && value.is_empty() {
        violations.push(FieldViolation::new(field, "is required"));
    } else if value.chars().count() > MAX_TEXT_CHARS {
        violations.push(FieldViolation::new(
            field,
            format!("is longer than {MAX_TEXT_CHARS} characters"),
        ));
    } else if value.chars().any(char::is_control) {
        violations.push(FieldViolation::new(field, "contains control characters"));
    }
}

/// The text of an OTP message.
pub fn otp_message(brand_name: &str, code: &str) -> String {
    if brand_name.is_empty() {
        format!("Your verification code is {code}")
    } else {
        format!("Your {brand_name} code is {code}")
    }
}

/// A code of `length` digits from `random` (e.g. 64 bits of a CSPRNG); the modulo bias is
/// below 10^8 / 2^64, negligible.
pub fn code_from(random: u64, length: u32) -> String {
    let modulus = 10u64.pow(length);
    format!("{:0width$}", random % modulus, width = length as usize)
}

/// `sha256(salt || code)`, hex.
pub fn hash_code(salt: &str, code: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(code.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The key a code is stored under: a hash, so destinations and references of any length and
/// character make a fixed, key-safe id.
pub fn otp_key(project_id: &str, destination: &str, reference_id: &str) -> String {
    hash_code(
        project_id,
        &format!("\u{1}{destination}\u{1}{reference_id}"),
    )
}

/// A live code as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpRecord {
    /// Random per code, hex.
    pub salt: String,
    /// [`hash_code`] of the salt and the code.
    pub code_hash: String,
    /// Milliseconds since the Unix epoch after which the code is refused.
    pub expires_at_ms: i64,
    /// Verification attempts left.
    pub attempts_left: u32,
}

/// What a verification attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtpVerdict {
    /// The code matches; it is consumed.
    Valid,
    /// The code does not match; one attempt is consumed.
    Wrong,
    /// No live code for the destination and reference (never sent, used, expired or out of
    /// attempts).
    Unknown,
}

impl OtpRecord {
    /// Judges an attempt (`candidate_hash` computed with `salt`) at `now_ms`; answers the
    /// verdict and the record to keep (None: delete it).
    pub fn attempt(
        &self,
        salt: &str,
        candidate_hash: &str,
        now_ms: i64,
    ) -> (OtpVerdict, Option<OtpRecord>) {
        if now_ms > self.expires_at_ms || self.attempts_left == 0 {
            return (OtpVerdict::Unknown, None);
        }
        if salt != self.salt {
            // A new code replaced the one the caller hashed against: not an attempt on it.
            return (OtpVerdict::Wrong, Some(self.clone()));
        }
        if candidate_hash == self.code_hash {
            return (OtpVerdict::Valid, None);
        }
        let attempts_left = self.attempts_left - 1;
        let kept = (attempts_left > 0).then(|| OtpRecord {
            attempts_left,
            ..self.clone()
        });
        (OtpVerdict::Wrong, kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(code: &str) -> OtpRecord {
        OtpRecord {
            salt: "s1".into(),
            code_hash: hash_code("s1", code),
            expires_at_ms: 1_000,
            attempts_left: 2,
        }
    }

    /// The right code before expiry is valid once and consumed.
    #[test]
    fn right_code_is_valid_and_consumed() {
        let (verdict, kept) = record("123456").attempt("s1", &hash_code("s1", "123456"), 999);
        assert_eq!(verdict, OtpVerdict::Valid);
        assert_eq!(kept, None);
    }

    /// A wrong code consumes an attempt; the last wrong one deletes the code.
    #[test]
    fn wrong_codes_consume_attempts() {
        let stored = record("123456");
        let (verdict, kept) = stored.attempt("s1", &hash_code("s1", "000000"), 10);
        assert_eq!(verdict, OtpVerdict::Wrong);
        let kept = kept.expect("one attempt left");
        assert_eq!(kept.attempts_left, 1);
        let (verdict, kept) = kept.attempt("s1", &hash_code("s1", "000001"), 10);
        assert_eq!(verdict, OtpVerdict::Wrong);
        assert_eq!(kept, None);
    }

    /// An expired code is refused even when right.
    #[test]
    fn expired_code_is_refused() {
        let (verdict, kept) = record("123456").attempt("s1", &hash_code("s1", "123456"), 1_001);
        assert_eq!(verdict, OtpVerdict::Unknown);
        assert_eq!(kept, None);
    }

    /// Codes have the requested digits, zero-padded; the hash depends on the salt.
    #[test]
    fn codes_and_hashes() {
        assert_eq!(code_from(42, 6), "000042");
        assert_eq!(code_from(123_456_789, 4), "6789");
        assert_ne!(hash_code("a", "1234"), hash_code("b", "1234"));
        assert_eq!(hash_code("a", "1234").len(), 64);
    }

    /// Defaults apply to zeros, and every bad field is reported at once.
    #[test]
    fn spec_defaults_and_violations() {
        let spec = validate_otp_spec("+14155550100", None, 0, 0, 0, "login", "Acme").unwrap();
        assert_eq!(
            (
                spec.channel,
                spec.code_length,
                spec.validity_minutes,
                spec.allowed_attempts
            ),
            (ChannelType::Sms, 6, 15, 3)
        );
        let violations =
            validate_otp_spec("nope", Some(ChannelType::Sms), 9, 61, 0, "", "").unwrap_err();
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "destination",
                "code_length",
                "validity_minutes",
                "reference_id"
            ]
        );
    }
}
