//! Template helpers.

use chrono::{DateTime, Utc};
use handlebars::{
    Context, Handlebars, Helper, HelperResult, Output, RenderContext, RenderErrorReason,
};

/// Registers every helper on a registry.
pub(super) fn register(registry: &mut Handlebars<'static>) {
    registry.register_helper("date", Box::new(date));
}

/// `{{date data.new_eta}}`: an RFC 3339 time as a short date in the customer's time zone and
/// language (`11월 27일` for Korean, `Nov 27` otherwise). The zone and language come from
/// `customer.timezone` and `customer.locale` in the context; UTC and English when absent.
fn date(
    h: &Helper<'_>,
    _: &Handlebars<'_>,
    ctx: &Context,
    _: &mut RenderContext<'_, '_>,
    out: &mut dyn Output,
) -> HelperResult {
    let param = h
        .param(0)
        .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex("date", 0))?;
    let raw = param
        .value()
        .as_str()
        .ok_or_else(|| RenderErrorReason::InvalidParamType("an RFC 3339 time string for `date`"))?;
    let time: DateTime<Utc> = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| RenderErrorReason::InvalidParamType("an RFC 3339 time string for `date`"))?
        .with_timezone(&Utc);
    let customer = ctx.data().get("customer");
    let tz: chrono_tz::Tz = customer
        .and_then(|c| c.get("timezone"))
        .and_then(|v| v.as_str())
        .and_then(|name| name.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    let language = customer
        .and_then(|c| c.get("locale"))
        .and_then(|v| v.as_str())
        .map(|l| l.split(['-', '_']).next().unwrap_or(l).to_ascii_lowercase())
        .unwrap_or_default();
    let local = time.with_timezone(&tz);
    let text = match language.as_str() {
        "ko" => local.format("%-m월 %-d일").to_string(),
        _ => local.format("%b %-d").to_string(),
    };
    out.write(&text)?;
    Ok(())
}
