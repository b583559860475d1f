//! Quiet hours: when a message of a category on a channel may not reach a customer, in the
//! customer's own time zone, with per-region policy.
//!
//! A message due inside a quiet window is deferred to the window's end — never dropped. The
//! defaults follow the strictest common rules: Korea forbids promotional messages from 21:00
//! to 08:00 without separate consent, and the US TCPA allows calls and texts from 08:00 to
//! 21:00; a transactional text at night wakes people, while an e-mail or a push notification
//! waits silently on the device.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::domain::{Category, Channel};

/// A daily window in local time, `start` inclusive and `end` exclusive; it wraps midnight when
/// `end` is earlier than `start` (`21:00-08:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietWindow {
    start: NaiveTime,
    end: NaiveTime,
}

impl QuietWindow {
    /// Reads `HH:MM-HH:MM`; the empty string means no window.
    pub fn parse(raw: &str) -> Result<Option<Self>, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(None);
        }
        let bad = || {
            format!("`{raw}` is not a quiet window; write it as HH:MM-HH:MM, e.g. 21:00-08:00, or \"\" for none")
        };
        let (start, end) = raw.split_once('-').ok_or_else(bad)?;
        let time = |t: &str| NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| bad());
        let (start, end) = (time(start)?, time(end)?);
        if start == end {
            return Err(format!(
                "`{raw}` starts and ends at the same time; use \"\" for no window"
            ));
        }
        Ok(Some(QuietWindow { start, end }))
    }

    /// Whether local time `t` is inside the window.
    pub fn contains(self, t: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// The end of the window that contains local `at`.
    fn end_after(self, at: NaiveDateTime) -> NaiveDateTime {
        let today_end = at.date().and_time(self.end);
        if today_end > at {
            today_end
        } else {
            today_end + Duration::days(1)
        }
    }
}

impl fmt::Display for QuietWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

/// The quiet windows of one place, per category and channel; `""` is none. Every key a region
/// table leaves out keeps the default's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietPolicy {
    /// Marketing by SMS.
    pub marketing_sms: Option<String>,
    /// Marketing by e-mail.
    pub marketing_email: Option<String>,
    /// Marketing by push.
    pub marketing_push: Option<String>,
    /// Transactional SMS.
    pub transactional_sms: Option<String>,
    /// Transactional e-mail.
    pub transactional_email: Option<String>,
    /// Transactional push.
    pub transactional_push: Option<String>,
}

impl QuietPolicy {
    /// The built-in defaults.
    pub fn defaults() -> Self {
        let marketing = Some("21:00-08:00".to_owned());
        QuietPolicy {
            marketing_sms: marketing.clone(),
            marketing_email: marketing.clone(),
            marketing_push: marketing,
            transactional_sms: Some("22:00-07:00".into()),
            transactional_email: Some(String::new()),
            transactional_push: Some(String::new()),
        }
    }

    fn keys(&self) -> [(&'static str, Category, Channel, &Option<String>); 6] {
        [
            (
                "marketing_sms",
                Category::Marketing,
                Channel::Sms,
                &self.marketing_sms,
            ),
            (
                "marketing_email",
                Category::Marketing,
                Channel::Email,
                &self.marketing_email,
            ),
            (
                "marketing_push",
                Category::Marketing,
                Channel::Push,
                &self.marketing_push,
            ),
            (
                "transactional_sms",
                Category::Transactional,
                Channel::Sms,
                &self.transactional_sms,
            ),
            (
                "transactional_email",
                Category::Transactional,
                Channel::Email,
                &self.transactional_email,
            ),
            (
                "transactional_push",
                Category::Transactional,
                Channel::Push,
                &self.transactional_push,
            ),
        ]
    }
}

impl QuietHoursSettings {
    /// No quiet windows anywhere: for tests and benchmarks that must not depend on the hour.
    pub fn off() -> Self {
        let none = Some(String::new());
        QuietHoursSettings {
            default: QuietPolicy {
                marketing_sms: none.clone(),
                marketing_email: none.clone(),
                marketing_push: none.clone(),
                transactional_sms: none.clone(),
                transactional_email: none.clone(),
                transactional_push: none,
            },
            regions: BTreeMap::new(),
            default_timezone: default_timezone(),
        }
    }
}

/// The zone of customers whose record names none.
fn default_timezone() -> String {
    "UTC".into()
}

impl Default for QuietPolicy {
    fn default() -> Self {
        QuietPolicy::defaults()
    }
}

/// `[quiet_hours]`: `[quiet_hours.default]`, and `[quiet_hours.regions.<region>]` overrides
/// matched against `customer.region` (`kr` matches `kr` and `kr-seoul`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursSettings {
    /// The policy where no region says otherwise.
    #[serde(default)]
    pub default: QuietPolicy,
    /// Per-region overrides, by region (lower case).
    #[serde(default)]
    pub regions: BTreeMap<String, QuietPolicy>,
    /// Customers without `timezone` are taken to be in this zone.
    #[serde(default = "default_timezone")]
    pub default_timezone: String,
}

impl Default for QuietHoursSettings {
    fn default() -> Self {
        QuietHoursSettings {
            default: QuietPolicy::default(),
            regions: BTreeMap::new(),
            default_timezone: default_timezone(),
        }
    }
}

type Windows = [[Option<QuietWindow>; 3]; 2];

/// The compiled policy: windows per region, category and channel.
#[derive(Debug, Clone, PartialEq)]
pub struct QuietHours {
    default: Windows,
    regions: BTreeMap<String, Windows>,
    default_zone: Tz,
}

fn slot(category: Category, channel: Channel) -> (usize, usize) {
    let c = match category {
        Category::Marketing => 0,
        Category::Transactional => 1,
    };
    let ch = match channel {
        Channel::Sms => 0,
        Channel::Email => 1,
        Channel::Push => 2,
    };
    (c, ch)
}

impl QuietHours {
    /// Compiles the settings; every bad window is reported with its key.
    pub fn new(settings: &QuietHoursSettings) -> Result<Self, String> {
        let mut errors = Vec::new();
        let defaults = QuietPolicy::defaults();
        let compile = |policy: &QuietPolicy,
                       base: Option<&Windows>,
                       prefix: &str,
                       errors: &mut Vec<String>| {
            let mut windows: Windows = base.copied().unwrap_or_default();
            for ((key, category, channel, value), (_, _, _, fallback)) in
                policy.keys().into_iter().zip(defaults.keys())
            {
                let (c, ch) = slot(category, channel);
                let raw = match (value, base) {
                    (Some(v), _) => v.as_str(),
                    (None, Some(_)) => continue,
                    (None, None) => fallback.as_deref().unwrap_or(""),
                };
                match QuietWindow::parse(raw) {
                    Ok(w) => windows[c][ch] = w,
                    Err(e) => errors.push(format!("quiet_hours{prefix}.{key}: {e}")),
                }
            }
            windows
        };
        let default = compile(&settings.default, None, ".default", &mut errors);
        let mut regions = BTreeMap::new();
        for (region, policy) in &settings.regions {
            let windows = compile(
                policy,
                Some(&default),
                &format!(".regions.{region}"),
                &mut errors,
            );
            regions.insert(region.to_lowercase(), windows);
        }
        let name = &settings.default_timezone;
        let default_zone = name.parse::<Tz>().unwrap_or_else(|_| {
            errors.push(format!(
                "quiet_hours.default_timezone: `{name}` is not an IANA time zone such as Asia/Seoul"
            ));
            Tz::UTC
        });
        if errors.is_empty() {
            Ok(QuietHours {
                default,
                regions,
                default_zone,
            })
        } else {
            Err(errors.join("; "))
        }
    }

    /// No quiet hours at all (tests, tools).
    pub fn none() -> Self {
        QuietHours {
            default: Windows::default(),
            regions: BTreeMap::new(),
            default_zone: Tz::UTC,
        }
    }

    /// The window for a customer in `region`, or none.
    pub fn window(
        &self,
        region: Option<&str>,
        category: Category,
        channel: Channel,
    ) -> Option<QuietWindow> {
        let (c, ch) = slot(category, channel);
        let windows = region
            .map(str::to_lowercase)
            .and_then(|r| {
                self.regions.get(&r).or_else(|| {
                    r.split_once('-')
                        .and_then(|(country, _)| self.regions.get(country))
                })
            })
            .unwrap_or(&self.default);
        windows[c][ch]
    }

    /// When a message due at `at` may go: `None` if now, else the end of the quiet window it
    /// falls in, as an instant (a window ending in a DST gap ends at the first local time that
    /// exists after it; one ending in a repeated hour ends at its first occurrence).
    pub fn release_at(
        &self,
        at: DateTime<Utc>,
        zone: Option<Tz>,
        region: Option<&str>,
        category: Category,
        channel: Channel,
    ) -> Option<(DateTime<Utc>, QuietWindow)> {
        let window = self.window(region, category, channel)?;
        let zone = zone.unwrap_or(self.default_zone);
        let local = at.with_timezone(&zone).naive_local();
        if !window.contains(local.time()) {
            return None;
        }
        let end = window.end_after(local);
        Some((first_instant_at_or_after(zone, end), window))
    }
}

/// The first instant whose local time in `zone` is `local` or, if `local` does not exist (a
/// spring-forward gap), the first that exists after it.
fn first_instant_at_or_after(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut candidate = local;
    // Gaps are at most a few hours; step a quarter hour at a time.
    for _ in 0..16 {
        match zone.from_local_datetime(&candidate) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => candidate += Duration::minutes(15),
        }
    }
    // No zone has a gap this long; read the time as UTC rather than loop.
    Utc.from_utc_datetime(&local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn defaults() -> QuietHours {
        QuietHours::new(&QuietHoursSettings::default()).unwrap()
    }

    #[test]
    fn marketing_at_night_in_seoul_waits_for_eight_in_the_morning_there() {
        let seoul: Tz = "Asia/Seoul".parse().unwrap();
        // 23:30 in Seoul (14:30 UTC).
        let (release, window) = defaults()
            .release_at(
                t("2026-11-23T14:30:00Z"),
                Some(seoul),
                None,
                Category::Marketing,
                Channel::Sms,
            )
            .unwrap();
        assert_eq!(
            release,
            t("2026-11-23T23:00:00Z"),
            "08:00 on the 24th in Seoul"
        );
        assert_eq!(window.to_string(), "21:00-08:00");
        // 07:59 is still quiet; 08:00 is not.
        assert!(defaults()
            .release_at(
                t("2026-11-23T22:59:00Z"),
                Some(seoul),
                None,
                Category::Marketing,
                Channel::Sms
            )
            .is_some());
        assert!(defaults()
            .release_at(
                t("2026-11-23T23:00:00Z"),
                Some(seoul),
                None,
                Category::Marketing,
                Channel::Sms
            )
            .is_none());
    }

    #[test]
    fn transactional_email_and_push_are_exempt_and_transactional_sms_waits_until_seven() {
        let q = defaults();
        let ny: Tz = "America/New_York".parse().unwrap();
        let night = t("2026-11-24T04:00:00Z"); // 23:00 in New York
        assert!(q
            .release_at(
                night,
                Some(ny),
                None,
                Category::Transactional,
                Channel::Email
            )
            .is_none());
        assert!(q
            .release_at(
                night,
                Some(ny),
                None,
                Category::Transactional,
                Channel::Push
            )
            .is_none());
        let (release, _) = q
            .release_at(night, Some(ny), None, Category::Transactional, Channel::Sms)
            .unwrap();
        assert_eq!(release, t("2026-11-24T12:00:00Z"), "07:00 EST");
        // 21:30 in New York: marketing waits, a transactional text does not.
        let evening = t("2026-11-24T02:30:00Z");
        assert!(q
            .release_at(evening, Some(ny), None, Category::Marketing, Channel::Email)
            .is_some());
        assert!(q
            .release_at(
                evening,
                Some(ny),
                None,
                Category::Transactional,
                Channel::Sms
            )
            .is_none());
    }

    #[test]
    fn the_window_end_follows_daylight_saving_time() {
        let q = defaults();
        let ny: Tz = "America/New_York".parse().unwrap();
        // The night clocks go back (1 November 2026, 02:00 EDT → 01:00 EST): 23:00 EDT on the
        // 31st waits until 08:00 EST, which is 13:00 UTC, not 12:00.
        let (release, _) = q
            .release_at(
                t("2026-11-01T03:00:00Z"),
                Some(ny),
                None,
                Category::Marketing,
                Channel::Sms,
            )
            .unwrap();
        assert_eq!(release, t("2026-11-01T13:00:00Z"));
        // The night clocks go forward (8 March 2026): 23:00 EST waits until 08:00 EDT = 12:00 UTC.
        let (release, _) = q
            .release_at(
                t("2026-03-08T04:00:00Z"),
                Some(ny),
                None,
                Category::Marketing,
                Channel::Sms,
            )
            .unwrap();
        assert_eq!(release, t("2026-03-08T12:00:00Z"));
    }

    #[test]
    fn a_window_ending_in_a_skipped_hour_ends_when_the_clock_resumes() {
        let mut settings = QuietHoursSettings::default();
        settings.default.marketing_sms = Some("01:00-02:30".into());
        let q = QuietHours::new(&settings).unwrap();
        let ny: Tz = "America/New_York".parse().unwrap();
        // 01:30 EST on 8 March 2026; 02:30 does not exist that day: release at 03:00 EDT.
        let (release, _) = q
            .release_at(
                t("2026-03-08T06:30:00Z"),
                Some(ny),
                None,
                Category::Marketing,
                Channel::Sms,
            )
            .unwrap();
        assert_eq!(release, t("2026-03-08T07:00:00Z"));
    }

    #[test]
    fn a_region_overrides_what_it_names_and_keeps_the_rest() {
        let mut settings = QuietHoursSettings::default();
        settings.regions.insert(
            "kr".into(),
            QuietPolicy {
                marketing_sms: Some("20:00-09:00".into()),
                marketing_email: None,
                marketing_push: None,
                transactional_sms: Some(String::new()),
                transactional_email: None,
                transactional_push: None,
            },
        );
        let q = QuietHours::new(&settings).unwrap();
        assert_eq!(
            q.window(Some("KR-seoul"), Category::Marketing, Channel::Sms)
                .unwrap()
                .to_string(),
            "20:00-09:00"
        );
        assert_eq!(
            q.window(Some("kr"), Category::Marketing, Channel::Email)
                .unwrap()
                .to_string(),
            "21:00-08:00"
        );
        assert_eq!(
            q.window(Some("kr-busan"), Category::Transactional, Channel::Sms),
            None
        );
        assert_eq!(
            q.window(Some("us-ny"), Category::Transactional, Channel::Sms)
                .unwrap()
                .to_string(),
            "22:00-07:00"
        );
    }

    #[test]
    fn a_bad_window_is_refused_with_its_key() {
        let mut settings = QuietHoursSettings::default();
        settings.default.transactional_sms = Some("10pm-7am".into());
        settings.regions.insert(
            "kr".into(),
            QuietPolicy {
                marketing_sms: Some("09:00-09:00".into()),
                ..QuietPolicy::defaults()
            },
        );
        let error = QuietHours::new(&settings).unwrap_err();
        assert!(
            error.contains(
                "quiet_hours.default.transactional_sms: `10pm-7am` is not a quiet window"
            ),
            "{error}"
        );
        assert!(
            error.contains("quiet_hours.regions.kr.marketing_sms: `09:00-09:00` starts and ends"),
            "{error}"
        );
    }
}
