//! Offers: a discount code issued with an outreach, and its redemption.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A single-use discount code: 12 symbols of Crockford base32 (60 random bits), shown in
/// groups of four (`7KQ2-M9XD-4RTB`).
///
/// Random rather than derived from the outreach: a derived code is only as secret as the
/// derivation key, and a code must not be guessable from an order number. The alphabet has no
/// I, L, O or U, so a code read aloud or typed from a phone is hard to get wrong, and
/// [`DiscountCode::parse`] forgives case, spaces, dashes and the look-alikes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DiscountCode(String);

/// Crockford's base32 alphabet.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl DiscountCode {
    /// Symbols in a code.
    pub const LEN: usize = 12;

    /// A fresh code from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; Self::LEN];
        getrandom::fill(&mut bytes)?;
        // 256 is a multiple of 32: taking the low five bits is unbiased.
        Ok(Self(
            bytes
                .iter()
                .map(|b| char::from(ALPHABET[usize::from(b & 0x1f)]))
                .collect(),
        ))
    }

    /// What a customer typed: case, spaces and dashes are ignored, `O` reads as `0` and
    /// `I`/`L` as `1`. `None` if it cannot be a code.
    pub fn parse(raw: &str) -> Option<Self> {
        let mut canonical = String::with_capacity(Self::LEN);
        for c in raw.chars().filter(|c| !matches!(c, '-' | ' ')) {
            let c = match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
                return None;
            }
            canonical.push(c);
        }
        (canonical.len() == Self::LEN).then_some(Self(canonical))
    }

    /// The stored form: twelve symbols, no dashes.
    pub fn as_stored(&self) -> &str {
        &self.0
    }

    /// A code read back from storage.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }
}

impl fmt::Display for DiscountCode {
    /// Groups of four, as customers see it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, chunk) in self.0.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            f.write_str(std::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl Serialize for DiscountCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DiscountCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        DiscountCode::parse(&raw)
            .ok_or_else(|| serde::de::Error::custom(format!("`{raw}` is not a discount code")))
    }
}

/// A discount offered with an outreach. Stored with the outreach that issued it, so a
/// redelivered event or a `once_per` repeat never issues a second code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The code the customer types at checkout.
    pub code: DiscountCode,
    /// Percent off, 1–100.
    pub percent: u8,
    /// After this the code is refused.
    pub expires_at: DateTime<Utc>,
}

/// What redeeming a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    /// Redeemed now; it cannot be used again.
    Redeemed {
        /// Percent off.
        percent: u8,
        /// Who it was issued to.
        customer_id: String,
    },
    /// Used before.
    AlreadyRedeemed {
        /// When.
        at: DateTime<Utc>,
    },
    /// Past its expiry.
    Expired {
        /// When it expired.
        at: DateTime<Utc>,
    },
    /// Void: the message carrying it was cancelled before it was sent.
    Void {
        /// When it was voided.
        at: DateTime<Utc>,
    },
    /// Issued to someone else than the customer redeeming it.
    OtherCustomer,
    /// No such code.
    Unknown,
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_are_twelve_symbols_from_the_unambiguous_alphabet_shown_in_fours() {
        let code = DiscountCode::generate().unwrap();
        assert_eq!(code.as_stored().len(), DiscountCode::LEN);
        assert!(code
            .as_stored()
            .bytes()
            .all(|b| ALPHABET.contains(&b) && !b"ILOU".contains(&b)));
        let shown = code.to_string();
        assert_eq!(shown.len(), 14);
        assert_eq!(shown.matches('-').count(), 2);
    }

    #[test]
    fn generated_codes_do_not_repeat() {
        let codes: HashSet<DiscountCode> = (0..100_000)
            .map(|_| DiscountCode::generate().unwrap())
            .collect();
        assert_eq!(codes.len(), 100_000);
    }

    #[test]
    fn what_a_customer_types_is_read_forgivingly() {
        let code = DiscountCode::from_stored("7KQ2M9XD4R1B".into());
        assert_eq!(DiscountCode::parse("7kq2-m9xd-4rlb"), Some(code.clone()));
        assert_eq!(DiscountCode::parse(" 7KQ2 M9XD 4RIB "), Some(code));
        assert_eq!(DiscountCode::parse("7KQ2-M9XD"), None);
        assert_eq!(DiscountCode::parse("7KQ2-M9XD-4RU!"), None);
    }
}
