//! Dates and money as a customer reads them: in their time zone, language and number style.
//!
//! Names (weekdays, months, AM/PM) and separators come from the glibc locale data packaged by
//! `pure-rust-locales` (through chrono's `unstable-locales`), currency symbols and minor-unit
//! exponents from ISO 4217 data (`iso_currency`). What is ours is only the choice of *which*
//! pieces a short customer message shows — `11월 25일 (수) 오후 3시`, `Wed, Nov 25, 3 PM` — since
//! locale data has long formats (`%c`) but no "short, friendly" one.

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use pure_rust_locales::{locale_match, Locale as LocaleData};

/// How much of a time to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateStyle {
    /// Day and hour: `11월 25일 (수) 오후 3시`, `Wed, Nov 25, 3 PM`. The default: "soon" is vague,
    /// an exact time is a promise.
    DayAndTime,
    /// The day alone: `11월 25일 (수)`, `Wed, Nov 25`.
    Day,
    /// The hour alone: `오후 3시`, `3 PM`.
    Time,
}

impl DateStyle {
    /// `"day"`, `"time"` or `"day-time"` (the template's second argument).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "day-time" => Some(DateStyle::DayAndTime),
            "day" => Some(DateStyle::Day),
            "time" => Some(DateStyle::Time),
            _ => None,
        }
    }
}

/// The locale data a customer's language tag maps to.
#[derive(Debug, Clone, Copy)]
pub struct FormatLocale {
    data: LocaleData,
    language: Language,
}

/// Languages with a hand-picked short pattern; others get a neutral one with their own names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    Korean,
    English,
    Other,
}

impl FormatLocale {
    /// `ko-KR` → ko_KR data; `ko` → the language's main region; unknown or absent → en_US.
    pub fn for_tag(tag: Option<&str>) -> Self {
        let tag = tag.unwrap_or("en-US").replace('-', "_");
        let mut pieces = tag.split('_');
        let language = pieces.next().unwrap_or("en").to_ascii_lowercase();
        let region = pieces
            .find(|p| p.len() == 2)
            .map(str::to_ascii_uppercase)
            .or_else(|| main_region(&language).map(str::to_owned))
            .unwrap_or_else(|| language.to_ascii_uppercase());
        let data = LocaleData::try_from(format!("{language}_{region}").as_str())
            .or_else(|_| {
                main_region(&language).ok_or(()).and_then(|r| {
                    LocaleData::try_from(format!("{language}_{r}").as_str()).map_err(|_| ())
                })
            })
            .unwrap_or(LocaleData::en_US);
        let language = match language.as_str() {
            "ko" => Language::Korean,
            "en" => Language::English,
            _ if data == LocaleData::en_US => Language::English,
            _ => Language::Other,
        };
        FormatLocale { data, language }
    }
}

/// The region whose conventions a bare language tag means.
fn main_region(language: &str) -> Option<&'static str> {
    Some(match language {
        "ko" => "KR",
        "en" => "US",
        "ja" => "JP",
        "zh" => "CN",
        "pt" => "BR",
        "sv" => "SE",
        "da" => "DK",
        "el" => "GR",
        "cs" => "CZ",
        "uk" => "UA",
        "vi" => "VN",
        "he" => "IL",
        "hi" => "IN",
        "nb" => "NO",
        _ => return None,
    })
}

/// `time` in `zone`, shown the way `locale` reads it.
pub fn format_date(
    time: DateTime<Utc>,
    zone: Tz,
    locale: FormatLocale,
    style: DateStyle,
) -> String {
    let local = time.with_timezone(&zone);
    let on_the_hour = local.minute() == 0;
    let (day, hour, joiner) = match locale.language {
        Language::Korean => (
            "%-m월 %-d일 (%a)",
            if on_the_hour {
                "%p %-I시"
            } else {
                "%p %-I시 %-M분"
            },
            " ",
        ),
        Language::English => (
            "%a, %b %-d",
            if on_the_hour { "%-I %p" } else { "%-I:%M %p" },
            ", ",
        ),
        Language::Other => ("%a %-d %b", "%H:%M", " "),
    };
    let pattern = match style {
        DateStyle::Day => day.to_owned(),
        DateStyle::Time => hour.to_owned(),
        DateStyle::DayAndTime => format!("{day}{joiner}{hour}"),
    };
    local.format_localized(&pattern, locale.data).to_string()
}

/// Why an amount cannot be shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The currency is not in ISO 4217.
    #[error("`{0}` is not an ISO 4217 currency")]
    UnknownCurrency(String),
}

/// `129000 KRW` → `₩129,000`; `1299 USD` → `$12.99`; `1299 EUR` in de-DE → `12,99 €`.
/// Symbol and decimals from the currency; grouping, separators and symbol position from the
/// customer's locale.
pub fn format_money(
    minor: i64,
    currency: &str,
    locale: FormatLocale,
) -> Result<String, MoneyError> {
    let unknown = || MoneyError::UnknownCurrency(currency.to_owned());
    let iso = iso_currency::Currency::from_code(currency).ok_or_else(unknown)?;
    let exponent = u32::from(iso.exponent().unwrap_or(0));
    let symbol = iso.symbol().to_string();
    let data = locale.data;
    let thousands = locale_match!(data => LC_MONETARY::MON_THOUSANDS_SEP);
    let decimal_point = locale_match!(data => LC_MONETARY::MON_DECIMAL_POINT);
    let grouping = locale_match!(data => LC_MONETARY::MON_GROUPING);
    let symbol_first = locale_match!(data => LC_MONETARY::P_CS_PRECEDES) == 1;
    let spaced = locale_match!(data => LC_MONETARY::P_SEP_BY_SPACE) == 1;

    let scale = 10u128.pow(exponent);
    let magnitude = u128::from(minor.unsigned_abs());
    let whole = group_digits(&(magnitude / scale).to_string(), grouping, thousands);
    let mut number = whole;
    if exponent > 0 {
        number.push_str(if decimal_point.is_empty() {
            "."
        } else {
            decimal_point
        });
        number.push_str(&format!(
            "{:0width$}",
            magnitude % scale,
            width = exponent as usize
        ));
    }
    let space = if spaced { " " } else { "" };
    let sign = if minor < 0 { "-" } else { "" };
    Ok(if symbol_first {
        format!("{sign}{symbol}{space}{number}")
    } else {
        format!("{sign}{number}{space}{symbol}")
    })
}

/// Inserts `separator` per POSIX `grouping`: sizes from the right, the last one repeating.
fn group_digits(digits: &str, grouping: &[i64], separator: &str) -> String {
    if separator.is_empty() || grouping.is_empty() {
        return digits.to_owned();
    }
    let mut groups: Vec<&str> = Vec::new();
    let mut end = digits.len();
    let mut sizes = grouping.iter().copied();
    let mut size = sizes.next().unwrap_or(3);
    while end > 0 {
        if size <= 0 || size as usize >= end {
            groups.push(&digits[..end]);
            break;
        }
        let start = end - size as usize;
        groups.push(&digits[start..end]);
        end = start;
        size = sizes.next().unwrap_or(size);
    }
    groups.reverse();
    groups.join(separator)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn korean_dates_read_month_day_weekday_and_half_day_hour() {
        let ko = FormatLocale::for_tag(Some("ko-KR"));
        let t = at("2026-11-25T06:00:00Z"); // 15:00 in Seoul, a Wednesday
        assert_eq!(
            format_date(t, chrono_tz::Asia::Seoul, ko, DateStyle::DayAndTime),
            "11월 25일 (수) 오후 3시"
        );
        assert_eq!(
            format_date(t, chrono_tz::Asia::Seoul, ko, DateStyle::Day),
            "11월 25일 (수)"
        );
        let half_past = at("2026-11-24T23:30:00Z"); // 08:30 in Seoul
        assert_eq!(
            format_date(half_past, chrono_tz::Asia::Seoul, ko, DateStyle::Time),
            "오전 8시 30분"
        );
    }

    #[test]
    fn english_dates_read_weekday_month_day_and_hour() {
        let en = FormatLocale::for_tag(Some("en-US"));
        let t = at("2026-11-25T20:00:00Z"); // 15:00 in New York
        assert_eq!(
            format_date(t, chrono_tz::America::New_York, en, DateStyle::DayAndTime),
            "Wed, Nov 25, 3 PM"
        );
        assert_eq!(
            format_date(
                at("2026-11-25T14:45:00Z"),
                chrono_tz::UTC,
                en,
                DateStyle::Time
            ),
            "2:45 PM"
        );
    }

    #[test]
    fn the_zone_decides_the_day() {
        let en = FormatLocale::for_tag(Some("en"));
        // 23:00 UTC on the 25th is already the 26th in Seoul.
        let t = at("2026-11-25T23:00:00Z");
        assert_eq!(
            format_date(t, chrono_tz::UTC, en, DateStyle::Day),
            "Wed, Nov 25"
        );
        assert_eq!(
            format_date(t, chrono_tz::Asia::Seoul, en, DateStyle::Day),
            "Thu, Nov 26"
        );
    }

    #[test]
    fn other_languages_use_their_own_names() {
        let de = FormatLocale::for_tag(Some("de"));
        let text = format_date(
            at("2026-11-25T14:00:00Z"),
            chrono_tz::UTC,
            de,
            DateStyle::DayAndTime,
        );
        assert_eq!(text, "Mi 25 Nov 14:00");
    }

    #[test]
    fn money_uses_the_currencys_symbol_and_decimals() {
        let ko = FormatLocale::for_tag(Some("ko-KR"));
        let en = FormatLocale::for_tag(Some("en-US"));
        assert_eq!(format_money(129_000, "KRW", ko).unwrap(), "₩129,000");
        assert_eq!(format_money(1299, "USD", en).unwrap(), "$12.99");
        assert_eq!(
            format_money(123_456_789, "USD", en).unwrap(),
            "$1,234,567.89"
        );
        assert_eq!(format_money(5, "USD", en).unwrap(), "$0.05");
        assert_eq!(format_money(-1299, "USD", en).unwrap(), "-$12.99");
        assert_eq!(format_money(1500, "JPY", en).unwrap(), "¥1,500");
    }

    #[test]
    fn money_follows_the_customers_number_style() {
        let de = FormatLocale::for_tag(Some("de-DE"));
        assert_eq!(format_money(123_499, "EUR", de).unwrap(), "1.234,99 €");
    }

    #[test]
    fn an_unknown_currency_is_an_error() {
        let en = FormatLocale::for_tag(None);
        assert_eq!(
            format_money(1, "XYZ", en),
            Err(MoneyError::UnknownCurrency("XYZ".into()))
        );
    }

    #[test]
    fn grouping_follows_posix_rules() {
        assert_eq!(group_digits("1234567", &[3, 2], ","), "12,34,567");
        assert_eq!(group_digits("999", &[3, 3], ","), "999");
        assert_eq!(group_digits("1000", &[3], " "), "1 000");
    }
}
