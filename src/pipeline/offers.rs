//! The discount a rule offers: its percent, computed on the event, and a fresh code.

use chrono::{DateTime, Utc};

use crate::domain::{DiscountCode, Offer};
use crate::rules::{Bindings, OfferSpec};

/// `discount_percent` on one event: a whole number from 0 to 100 (0 = no offer).
pub fn offer_percent(spec: &OfferSpec, bindings: &mut Bindings<'_>) -> Result<u8, String> {
    let value = spec
        .discount_percent
        .evaluate(bindings)
        .map_err(|e| format!("`discount_percent`: {e}"))?;
    let whole = match value {
        cel::Value::Int(n) => Some(n),
        cel::Value::UInt(n) => i64::try_from(n).ok(),
        cel::Value::Float(f) if f.fract() == 0.0 && f.abs() <= 1e6 => Some(f as i64),
        _ => None,
    };
    whole
        .and_then(|n| u8::try_from(n).ok())
        .filter(|n| *n <= 100)
        .ok_or_else(|| {
            format!(
                "`discount_percent` gave {}; it must be a whole number from 0 to 100",
                crate::rules::shown(&value)
            )
        })
}

/// A fresh code for `percent` off, valid `spec.valid_days` from `now`; none for 0 %.
/// Random, so it lives in the plan the batch commits, and a retried batch draws anew.
pub fn issue_offer(
    percent: u8,
    spec: &OfferSpec,
    now: DateTime<Utc>,
) -> Result<Option<Offer>, String> {
    if percent == 0 {
        return Ok(None);
    }
    let code = DiscountCode::generate()
        .map_err(|e| format!("no random source for a discount code: {e}"))?;
    Ok(Some(Offer {
        code,
        percent,
        expires_at: now + chrono::Duration::days(i64::from(spec.valid_days)),
    }))
}
