//! Template helpers: `date` and `money`, both in the customer's own conventions.

use chrono::{DateTime, Utc};
use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason,
};
use serde_json::Value;

use super::format::{format_date, format_money, DateStyle, FormatLocale};
use super::korean::Particle;

/// Registers every helper on a registry.
pub(super) fn register(registry: &mut Handlebars<'static>) {
    registry.register_helper("date", Box::new(date));
    registry.register_helper("money", Box::new(money));
    registry.register_helper("josa", Box::new(josa));
}

/// The locale data of the part being rendered: `locale` in the context (set per part by the
/// registry to the file's language), else `customer.locale`, else en-US.
fn customer_locale(ctx: &Context) -> FormatLocale {
    let data = ctx.data();
    FormatLocale::for_tag(data.get("locale").and_then(Value::as_str).or_else(|| {
        data.get("customer")
            .and_then(|c| c.get("locale"))
            .and_then(Value::as_str)
    }))
}

/// `{{date data.new_eta}}` → `11월 25일 (수) 오후 3시` / `Wed, Nov 25, 3 PM`, in
/// `customer.timezone` (UTC when absent). A second argument picks less: `"day"` or `"time"`.
fn date(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    ctx: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    const WANT: &str = "an RFC 3339 time such as \"2026-11-25T15:00:00+09:00\" for `date`";
    let param = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("date", 0))?;
    let raw = param
        .value()
        .as_str()
        .ok_or(RenderErrorReason::InvalidParamType(WANT))?;
    let time: DateTime<Utc> = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| RenderErrorReason::InvalidParamType(WANT))?
        .with_timezone(&Utc);
    let style = match h.param(1) {
        None => DateStyle::DayAndTime,
        Some(p) => p.value().as_str().and_then(DateStyle::parse).ok_or(
            RenderErrorReason::InvalidParamType(
                "\"day\", \"time\" or \"day-time\" as the second argument of `date`",
            ),
        )?,
    };
    let zone: chrono_tz::Tz = ctx
        .data()
        .get("customer")
        .and_then(|c| c.get("timezone"))
        .and_then(Value::as_str)
        .and_then(|name| name.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    out.write(&format_date(time, zone, customer_locale(ctx), style))?;
    Ok(())
}

/// `{{money data.total}}` with `{"minor": 129000, "currency": "KRW"}` → `₩129,000`;
/// `{"minor": 1299, "currency": "USD"}` → `$12.99`.
fn money(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    ctx: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    const WANT: &str = "a money object {\"minor\": 129000, \"currency\": \"KRW\"} for `money`";
    let param = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("money", 0))?;
    let value = param.value();
    let minor = value
        .get("minor")
        .and_then(Value::as_i64)
        .ok_or(RenderErrorReason::InvalidParamType(WANT))?;
    let currency = value
        .get("currency")
        .and_then(Value::as_str)
        .ok_or(RenderErrorReason::InvalidParamType(WANT))?;
    let text = format_money(minor, currency, customer_locale(ctx))
        .map_err(|e| RenderErrorReason::Other(e.to_string()))?;
    out.write(&text)?;
    Ok(())
}

/// `{{name}}{{josa name "을/를"}}` → `러닝화를`, `양말을`: the Korean particle that fits the
/// word before it (see `render::korean`).
fn josa(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    _: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    const WANT: &str = "a word and a particle pair such as \"을/를\" for `josa`";
    let word = h
        .param(0)
        .ok_or(RenderErrorReason::ParamNotFoundForIndex("josa", 0))?
        .value();
    let word = match word {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(RenderErrorReason::InvalidParamType(WANT).into()),
    };
    let particle = h
        .param(1)
        .and_then(|p| p.value().as_str())
        .and_then(Particle::parse)
        .ok_or(RenderErrorReason::InvalidParamType(WANT))?;
    out.write(&particle.after(&word))?;
    Ok(())
}
