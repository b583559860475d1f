//! Cron expressions, read by the `cron` crate, in a time zone.
//!
//! The crate wants a seconds field; people often write the classic five fields. Five fields are
//! read as running at second 0. Day-of-week numbers follow the crate (1 = Sunday … 7 =
//! Saturday), unlike classic cron (0 = Sunday): names (`MON-FRI`) mean the same everywhere and
//! the README recommends them.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Why an expression or zone was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// The expression does not parse.
    #[error("`{expression}` is not a cron expression ({reason}); e.g. `0 */10 * * * *` (sec min hour day month weekday) or `*/10 * * * *`")]
    Expression {
        /// As written.
        expression: String,
        /// The crate's words.
        reason: String,
    },
    /// The zone is not an IANA name.
    #[error("`{0}` is not an IANA time zone (e.g. Asia/Seoul)")]
    TimeZone(String),
}

impl CronError {
    /// Whether the zone, not the expression, is wrong.
    pub fn is_timezone(&self) -> bool {
        matches!(self, CronError::TimeZone(_))
    }
}

/// When a schedule fires.
#[derive(Debug, Clone)]
pub struct Cron {
    schedule: cron::Schedule,
    zone: Tz,
}

impl Cron {
    /// Parses `expression` read in `zone` (UTC when `None`).
    pub fn parse(expression: &str, zone: Option<&str>) -> Result<Cron, CronError> {
        let zone = match zone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| CronError::TimeZone(name.to_owned()))?,
        };
        let trimmed = expression.trim();
        let with_seconds = if trimmed.split_whitespace().count() == 5 {
            format!("0 {trimmed}")
        } else {
            trimmed.to_owned()
        };
        let schedule =
            cron::Schedule::from_str(&with_seconds).map_err(|e| CronError::Expression {
                expression: expression.to_owned(),
                // The crate's message repeats the input with a caret under it; its last line
                // says what is wrong.
                reason: e
                    .to_string()
                    .lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            })?;
        Ok(Cron { schedule, zone })
    }

    /// The expression as written (with seconds).
    pub fn source(&self) -> &str {
        self.schedule.source()
    }

    /// The latest fire time at or before `now`: the tick that is due. Several ticks missed
    /// while forewarn was down come down to this one, run once.
    pub fn latest(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Whole seconds: a tick at 10:20:00 is due at 10:20:00.250.
        let whole = self.zone.timestamp_opt(now.timestamp(), 0).single()?;
        if self.schedule.includes(whole) {
            return Some(whole.with_timezone(&Utc));
        }
        self.schedule
            .after(&whole)
            .next_back()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The first fire time strictly after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .after(&now.with_timezone(&self.zone))
            .next()
            .map(|t| t.with_timezone(&Utc))
    }

    /// How many fire times fall strictly between `from` and `to`, counting at most `cap`: how
    /// many ticks a start after downtime folds into one run.
    pub fn count_between(&self, from: DateTime<Utc>, to: DateTime<Utc>, cap: usize) -> usize {
        self.schedule
            .after(&from.with_timezone(&self.zone))
            .take_while(|t| t.with_timezone(&Utc) < to)
            .take(cap)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_latest_tick_is_at_or_before_now() {
        let every_ten = Cron::parse("0 */10 * * * *", None).unwrap();
        assert_eq!(
            every_ten.latest(at("2026-11-23T10:17:42Z")),
            Some(at("2026-11-23T10:10:00Z"))
        );
        // Exactly on a tick, that tick.
        assert_eq!(
            every_ten.latest(at("2026-11-23T10:20:00Z")),
            Some(at("2026-11-23T10:20:00Z"))
        );
        // Sub-second noise does not skip it.
        assert_eq!(
            every_ten.latest(at("2026-11-23T10:20:00.250Z")),
            Some(at("2026-11-23T10:20:00Z"))
        );
        assert_eq!(
            every_ten.next_after(at("2026-11-23T10:20:00Z")),
            Some(at("2026-11-23T10:30:00Z"))
        );
    }

    #[test]
    fn five_fields_run_at_second_zero_and_seconds_are_allowed() {
        let classic = Cron::parse("*/15 * * * *", None).unwrap();
        assert_eq!(
            classic.next_after(at("2026-11-23T10:01:00Z")),
            Some(at("2026-11-23T10:15:00Z"))
        );
        let seconds = Cron::parse("*/5 * * * * *", None).unwrap();
        assert_eq!(
            seconds.next_after(at("2026-11-23T10:01:01Z")),
            Some(at("2026-11-23T10:01:05Z"))
        );
    }

    #[test]
    fn a_zone_moves_the_tick() {
        // 03:30 in Seoul is 18:30 UTC the day before.
        let seoul = Cron::parse("0 30 3 * * *", Some("Asia/Seoul")).unwrap();
        assert_eq!(
            seoul.latest(at("2026-11-23T20:00:00Z")),
            Some(at("2026-11-23T18:30:00Z"))
        );
    }

    #[test]
    fn missed_ticks_are_counted_up_to_a_cap() {
        let hourly = Cron::parse("@hourly", None).unwrap();
        let from = at("2026-11-23T00:00:00Z");
        assert_eq!(
            hourly.count_between(from, at("2026-11-23T05:00:00Z"), 100),
            4
        );
        assert_eq!(
            hourly.count_between(from, at("2026-11-30T00:00:00Z"), 10),
            10
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = Cron::parse("every tuesday", None).unwrap_err();
        assert!(err
            .to_string()
            .contains("`every tuesday` is not a cron expression"));
        assert!(Cron::parse("@daily", Some("Mars/Olympus"))
            .unwrap_err()
            .is_timezone());
    }
}
