//! Contact details and small value types, each valid by construction.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Builds a newtype's `Deserialize` from its `parse` constructor, so invalid input is refused
/// with the constructor's own message and the field's path.
macro_rules! deserialize_via_parse {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                <$ty>::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A customer's stable identifier, as the shop's backend assigns it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CustomerId(String);

impl CustomerId {
    /// Longest id accepted; ids are keys in every table and log line.
    const MAX_LEN: usize = 128;

    /// Accepts a non-empty id of printable characters.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("must not be empty".into());
        }
        if trimmed.len() > Self::MAX_LEN || trimmed.chars().any(char::is_control) {
            return Err(format!(
                "must be at most {} printable characters",
                Self::MAX_LEN
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
deserialize_via_parse!(CustomerId);

/// The id of an order, shipment or incident: non-empty printable text, like [`CustomerId`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EntityId(String);

impl EntityId {
    /// Accepts what [`CustomerId::parse`] accepts.
    pub fn parse(raw: &str) -> Result<Self, String> {
        CustomerId::parse(raw).map(|id| Self(id.0))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
deserialize_via_parse!(EntityId);

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A phone number in E.164 form (`+` and 8 to 15 digits), the only form SMS providers accept.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PhoneE164(String);

impl PhoneE164 {
    /// Accepts `+821012345678`; spaces and dashes a person might type are removed first.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let compact: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let digits = compact
            .strip_prefix('+')
            .ok_or("must start with + (E.164)")?;
        if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must be + followed by 8 to 15 digits (E.164)".into());
        }
        Ok(Self(compact))
    }

    /// The full number, for the gateway only.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with all but the country prefix and last two digits hidden, for logs.
    pub fn masked(&self) -> String {
        crate::telemetry::mask_phone(&self.0)
    }
}
deserialize_via_parse!(PhoneE164);

impl fmt::Debug for PhoneE164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneE164({})", self.masked())
    }
}

/// An e-mail address: one `@`, a non-empty local part and a dotted domain.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// RFC 5321's limit on a whole address.
    const MAX_LEN: usize = 254;

    /// Accepts `jisoo@example.com`. Deliberately loose beyond the shape: the mail server is the
    /// judge of the rest, and a permanent bounce marks the address dead.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (local, domain) = raw.split_once('@').ok_or("must contain @")?;
        let well_formed = !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && !raw.chars().any(char::is_whitespace)
            && raw.len() <= Self::MAX_LEN;
        if !well_formed {
            return Err("is not an e-mail address".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// The full address, for the gateway only.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
deserialize_via_parse!(EmailAddress);

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", crate::telemetry::mask_email(&self.0))
    }
}

/// A device token for push notifications (FCM registration token).
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PushToken(String);

impl PushToken {
    /// FCM tokens are opaque but bounded; anything longer is certainly not one.
    const MAX_LEN: usize = 4096;

    /// Accepts any non-empty token without white space.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN || raw.chars().any(char::is_whitespace) {
            return Err("must be a non-empty token without spaces".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// The token, for the gateway only.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
deserialize_via_parse!(PushToken);

impl fmt::Debug for PushToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head: String = self.0.chars().take(6).collect();
        write!(f, "PushToken({head}…)")
    }
}

/// A BCP 47 language tag such as `ko-KR` or `en`, used to pick a template's locale file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Locale(String);

impl Locale {
    /// Accepts `ko`, `ko-KR`, `zh-Hant-TW`: alphanumeric subtags of 1–8 characters joined by
    /// `-` (an `_` is read as `-`). The language is lower-cased, a two-letter region upper-cased.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let normalised = raw.trim().replace('_', "-");
        let subtags: Vec<&str> = normalised.split('-').collect();
        let language_ok = subtags[0].len() >= 2
            && subtags[0].len() <= 3
            && subtags[0].bytes().all(|b| b.is_ascii_alphabetic());
        let rest_ok = subtags[1..]
            .iter()
            .all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !language_ok || !rest_ok {
            return Err("must be a language tag such as ko-KR or en".into());
        }
        let tag = subtags
            .iter()
            .enumerate()
            .map(|(i, s)| match (i, s.len()) {
                (0, _) => s.to_ascii_lowercase(),
                (_, 2) => s.to_ascii_uppercase(),
                _ => (*s).to_owned(),
            })
            .collect::<Vec<_>>()
            .join("-");
        Ok(Self(tag))
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The language subtag alone: `ko` for `ko-KR`.
    pub fn language(&self) -> &str {
        self.0.split('-').next().unwrap_or(&self.0)
    }
}
deserialize_via_parse!(Locale);

/// An IANA time zone such as `Asia/Seoul`, checked against the tz database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimeZoneName(#[serde(serialize_with = "serialize_tz")] chrono_tz::Tz);

fn serialize_tz<S: serde::Serializer>(tz: &chrono_tz::Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

impl TimeZoneName {
    /// Accepts any zone name the tz database knows.
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.trim()
            .parse::<chrono_tz::Tz>()
            .map(Self)
            .map_err(|_| "must be an IANA time zone such as Asia/Seoul".to_owned())
    }

    /// The zone, for date arithmetic.
    pub fn tz(&self) -> chrono_tz::Tz {
        self.0
    }
}
deserialize_via_parse!(TimeZoneName);

/// An amount of money in minor units (cents, won) with its ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    /// Amount in the currency's minor unit: `129000` KRW is ₩129,000; `1299` USD is $12.99.
    /// From 0 to [`MAX_MINOR`]: a price or a total is never negative, and a discount's face
    /// value (a percent of it) must not overflow.
    #[serde(deserialize_with = "minor_units")]
    pub minor: i64,
    /// An ISO 4217 code (`KRW`, `USD`): one forewarn can show with its symbol and decimals.
    #[serde(deserialize_with = "currency_code")]
    pub currency: String,
}

/// The largest amount accepted, in minor units: a quadrillion (₩1,000,000,000,000,000, or
/// $10 trillion), far above any order and far below where arithmetic on it could overflow.
pub(crate) const MAX_MINOR: i64 = 1_000_000_000_000_000;

fn minor_units<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let minor = i64::deserialize(d)?;
    if (0..=MAX_MINOR).contains(&minor) {
        Ok(minor)
    } else {
        Err(serde::de::Error::custom(format!(
            "{minor} is out of range: an amount is from 0 to {MAX_MINOR} minor units"
        )))
    }
}

/// An optional amount as stored, read without [`MAX_MINOR`]'s bound: a record written before
/// the bound existed still reads.
pub(crate) fn stored_amount<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Money>, D::Error> {
    #[derive(Deserialize)]
    struct Stored {
        minor: i64,
        currency: String,
    }
    Ok(Option::<Stored>::deserialize(d)?.map(|m| Money {
        minor: m.minor,
        currency: m.currency,
    }))
}

fn currency_code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = String::deserialize(d)?;
    if iso_currency::Currency::from_code(&raw).is_some() {
        Ok(raw)
    } else {
        Err(serde::de::Error::custom(
            "must be an ISO 4217 code such as KRW or USD",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_normalised_to_e164() {
        assert_eq!(
            PhoneE164::parse("+82 10-1234-5678").unwrap().as_str(),
            "+821012345678"
        );
        assert!(PhoneE164::parse("010-1234-5678").is_err());
        assert!(PhoneE164::parse("+12").is_err());
        assert!(PhoneE164::parse("+1415555abcd").is_err());
    }

    #[test]
    fn debug_output_never_shows_a_full_phone_or_address() {
        let phone = PhoneE164::parse("+821012345678").unwrap();
        assert!(!format!("{phone:?}").contains("12345678"));
        let email = EmailAddress::parse("jisoo@example.com").unwrap();
        assert!(!format!("{email:?}").contains("jisoo"));
    }

    #[test]
    fn email_addresses_need_a_local_part_and_a_dotted_domain() {
        assert!(EmailAddress::parse("jisoo@example.com").is_ok());
        for bad in [
            "jisoo",
            "@example.com",
            "jisoo@localhost",
            "a b@example.com",
            "a@b@c.d",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn locales_are_normalised_and_expose_their_language() {
        let locale = Locale::parse("ko_kr").unwrap();
        assert_eq!(locale.as_str(), "ko-KR");
        assert_eq!(locale.language(), "ko");
        assert!(Locale::parse("korean language").is_err());
    }

    #[test]
    fn time_zones_come_from_the_tz_database() {
        assert!(TimeZoneName::parse("Asia/Seoul").is_ok());
        assert!(TimeZoneName::parse("Mars/Olympus").is_err());
    }
}
