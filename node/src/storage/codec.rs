//! Encoding of every persisted record: one format-version byte, then bincode (serde).
//!
//! bincode is pinned and used only here, so it could be swapped without touching callers.
//! The version byte lets a later release read records written by this one.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Format version written in front of every record.
pub const FORMAT_VERSION: u8 = 1;

/// A record that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The record is empty.
    #[error("empty record")]
    Empty,
    /// The record was written by an unknown format version.
    #[error("unknown format version {0}, this build reads {FORMAT_VERSION}")]
    UnknownVersion(u8),
    /// bincode failed.
    #[error("decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes a record with its format version.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![FORMAT_VERSION];
    bincode::serde::encode_into_std_write(value, &mut bytes, config())
        .expect("encoding into a Vec cannot fail");
    bytes
}

/// Decodes a record written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_VERSION {
        return Err(CodecError::UnknownVersion(version));
    }
    let (value, _) = bincode::serde::decode_from_slice(body, config())?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record written by an unknown future version is refused, never misread.
    #[test]
    fn unknown_version_is_refused() {
        let mut bytes = encode(&("a".to_string(), 7u64));
        assert_eq!(
            decode::<(String, u64)>(&bytes).unwrap(),
            ("a".to_string(), 7)
        );
        bytes[0] = 99;
        assert!(matches!(
            decode::<(String, u64)>(&bytes),
            Err(CodecError::UnknownVersion(99))
        ));
        assert!(matches!(decode::<u64>(&[]), Err(CodecError::Empty)));
    }
}
