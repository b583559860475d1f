//! How a time is written for people — in the CLI, in notes `explain` shows, in logs' prose:
//! one format everywhere, `2026-12-01 22:00 UTC`, with the customer's own clock beside it
//! where their hour is the point (quiet hours).

use chrono::{DateTime, Utc};

/// `2026-12-01 22:00 UTC`.
pub fn time_shown(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `2026-12-01 22:00 UTC (07:00 in Asia/Seoul)`: the customer's clock beside UTC, with the
/// date when it differs. Just UTC when the zone is unknown or is UTC itself.
pub fn time_shown_in(t: DateTime<Utc>, zone: Option<&str>) -> String {
    let Some(tz) = zone.and_then(|z| z.parse::<chrono_tz::Tz>().ok()) else {
        return time_shown(t);
    };
    if matches!(
        tz.name(),
        "UTC" | "Etc/UTC" | "Etc/Universal" | "Universal" | "Zulu"
    ) {
        return time_shown(t);
    }
    let local = t.with_timezone(&tz);
    let clock = if local.date_naive() == t.date_naive() {
        local.format("%H:%M").to_string()
    } else {
        local.format("%Y-%m-%d %H:%M").to_string()
    };
    format!("{} ({clock} in {tz})", time_shown(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_customers_clock_stands_beside_utc_with_its_date_when_it_differs() {
        let t: DateTime<Utc> = "2026-12-01T22:00:00Z".parse().unwrap();
        assert_eq!(time_shown(t), "2026-12-01 22:00 UTC");
        assert_eq!(
            time_shown_in(t, Some("Asia/Seoul")),
            "2026-12-01 22:00 UTC (2026-12-02 07:00 in Asia/Seoul)"
        );
        assert_eq!(
            time_shown_in(t, Some("America/New_York")),
            "2026-12-01 22:00 UTC (17:00 in America/New_York)"
        );
        assert_eq!(time_shown_in(t, None), "2026-12-01 22:00 UTC");
        assert_eq!(time_shown_in(t, Some("UTC")), "2026-12-01 22:00 UTC");
    }
}
