//! Reading `rules/*.toml` into a [`RuleSet`], collecting every error with its location.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use toml::Spanned;

use super::rule::{ChannelChoice, Location, OfferSpec, Rule, RuleSet};
use super::Expression;
use crate::domain::{Category, Channel, EventType};

/// What the rule loader needs to know about templates: which channels each one serves.
/// Implemented by the template registry, so rules need not depend on rendering.
pub trait TemplateIndex {
    /// The channels `template` has parts for, or `None` if there is no such template.
    fn channels_of(&self, template: &str) -> Option<BTreeSet<Channel>>;
}

/// The file beside the rules that holds the risk models' coefficients (see `risk`): in the
/// rules folder because the same people review it, but it is not a rule file.
pub const RISK_MODEL_FILE: &str = "risk.toml";

/// A problem in a rule file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// File, line, column.
    pub location: Location,
    /// What is wrong and, where possible, how to fix it.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    on: Spanned<Vec<Spanned<String>>>,
    when: Option<Spanned<String>>,
    template: Spanned<String>,
    channels: Spanned<Vec<Spanned<String>>>,
    category: Option<Spanned<String>>,
    priority: Option<Spanned<i64>>,
    once_per: Option<Spanned<String>>,
    offer: Option<Spanned<RawOffer>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOffer {
    discount_percent: Spanned<RawPercent>,
    valid_days: Option<Spanned<i64>>,
}

/// `discount_percent = 10` or `discount_percent = "risk.churn >= 0.7 ? 20 : 10"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawPercent {
    Fixed(i64),
    Expression(String),
}

/// Maps byte offsets of one file to lines and columns.
struct SourceMap<'a> {
    file: &'a Path,
    text: &'a str,
}

impl SourceMap<'_> {
    fn at(&self, offset: usize) -> Location {
        Location::at_offset(self.file, self.text, offset)
    }

    /// The file position of line `line`, column `col` (1-based) inside a string value.
    fn inside_string(&self, value: &Spanned<String>, line: usize, col: usize) -> Location {
        let span = value.span();
        let raw = &self.text[span.start.min(self.text.len())..span.end.min(self.text.len())];
        let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else {
            1
        };
        let body = &raw[quote.min(raw.len())..];
        let mut offset = 0;
        for (i, text_line) in body.split_inclusive('\n').enumerate() {
            if i + 1 == line {
                offset += text_line
                    .char_indices()
                    .nth(col.saturating_sub(1))
                    .map_or(text_line.len(), |(at, _)| at);
                break;
            }
            offset += text_line.len();
        }
        self.at(span.start + quote + offset)
    }

    fn error<T>(&self, spanned: &Spanned<T>, message: impl Into<String>) -> LoadError {
        LoadError {
            location: self.at(spanned.span().start),
            message: message.into(),
        }
    }
}

impl RuleSet {
    /// Loads every `*.toml` in `dir` (sorted by name). All errors are returned, not just the first.
    pub fn load(dir: &Path, templates: &dyn TemplateIndex) -> Result<RuleSet, Vec<LoadError>> {
        let (rules, errors) = RuleSet::load_partial(dir, templates);
        if errors.is_empty() {
            Ok(rules)
        } else {
            Err(errors)
        }
    }

    /// The rules that are valid, and every error of the rest: `check` tries the valid ones on
    /// the examples in the same run.
    pub fn load_partial(dir: &Path, templates: &dyn TemplateIndex) -> (RuleSet, Vec<LoadError>) {
        let mut errors = Vec::new();
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .filter(|p| p.file_name().is_none_or(|n| n != RISK_MODEL_FILE))
                .collect(),
            Err(e) => {
                let error = LoadError {
                    location: Location {
                        file: dir.to_path_buf(),
                        line: 1,
                        col: 1,
                    },
                    message: format!("cannot read the rules folder: {e}"),
                };
                return (RuleSet::new(Vec::new()), vec![error]);
            }
        };
        files.sort();
        let mut rules = Vec::new();
        for file in &files {
            match std::fs::read_to_string(file) {
                Ok(text) => parse_file(file, &text, templates, &mut rules, &mut errors),
                Err(e) => errors.push(LoadError {
                    location: Location {
                        file: file.clone(),
                        line: 1,
                        col: 1,
                    },
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        let mut seen: HashMap<String, Location> = HashMap::new();
        rules.retain(|rule| match seen.get(&rule.id) {
            Some(first) => {
                errors.push(LoadError {
                    location: rule.location.clone(),
                    message: format!(
                        "rule id `{}` is already used at {first}; ids must be unique",
                        rule.id
                    ),
                });
                false
            }
            None => {
                seen.insert(rule.id.clone(), rule.location.clone());
                true
            }
        });
        (RuleSet::new(rules), errors)
    }
}

/// Parses one file; appends its rules and its errors.
fn parse_file(
    file: &Path,
    text: &str,
    templates: &dyn TemplateIndex,
    rules: &mut Vec<Rule>,
    errors: &mut Vec<LoadError>,
) {
    let map = SourceMap { file, text };
    let parsed: RuleFile = match toml::from_str(text) {
        Ok(parsed) => parsed,
        Err(e) => {
            errors.push(LoadError {
                location: map.at(e.span().map_or(0, |s| s.start)),
                message: e.message().to_owned(),
            });
            return;
        }
    };
    for raw in parsed.rule {
        let start = map.at(raw.span().start);
        if let Some(rule) = validate(&map, start, raw.into_inner(), templates, errors) {
            rules.push(rule);
        }
    }
}

fn validate(
    map: &SourceMap<'_>,
    location: Location,
    raw: RawRule,
    templates: &dyn TemplateIndex,
    errors: &mut Vec<LoadError>,
) -> Option<Rule> {
    let before = errors.len();
    let id = raw.id.get_ref().trim().to_owned();
    let id_ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if !id_ok {
        errors.push(map.error(
            &raw.id,
            format!("rule id `{id}` must be lower-case letters, digits, `-`, `_` or `.`"),
        ));
    }

    let mut on = Vec::new();
    if raw.on.get_ref().is_empty() {
        errors.push(map.error(&raw.on, "`on` must list at least one event type"));
    }
    for t in raw.on.get_ref() {
        match EventType::parse(t.get_ref()) {
            Some(event_type) => on.push(event_type),
            None => errors.push(map.error(
                t,
                format!(
                    "unknown event type `{}` (known: {})",
                    t.get_ref(),
                    EventType::ALL.map(EventType::as_str).join(", ")
                ),
            )),
        }
    }

    let mut channels = Vec::new();
    if raw.channels.get_ref().is_empty() {
        errors.push(map.error(&raw.channels, "`channels` must list at least one channel"));
    }
    for c in raw.channels.get_ref() {
        match c.get_ref().as_str() {
            "preferred" => channels.push(ChannelChoice::Preferred),
            other => match Channel::from_str(other) {
                Ok(channel) => channels.push(ChannelChoice::Channel(channel)),
                Err(message) => errors.push(map.error(
                    c,
                    format!("{message}, or `preferred` for the customer's own order"),
                )),
            },
        }
    }

    let category = match &raw.category {
        None => Category::Transactional,
        Some(c) => Category::from_str(c.get_ref()).unwrap_or_else(|message| {
            errors.push(map.error(c, message));
            Category::Transactional
        }),
    };

    let priority = match &raw.priority {
        None => 0,
        Some(p) => i32::try_from(*p.get_ref()).unwrap_or_else(|_| {
            errors.push(map.error(p, "`priority` is out of range"));
            0
        }),
    };

    let template = raw.template.get_ref().trim().to_owned();
    match templates.channels_of(&template) {
        None => errors.push(map.error(
            &raw.template,
            format!(
                "template `{template}` does not exist (expected a folder templates/{template}/)"
            ),
        )),
        Some(served) => {
            let serves_one = channels.iter().any(|choice| match choice {
                ChannelChoice::Preferred => !served.is_empty(),
                ChannelChoice::Channel(c) => served.contains(c),
            });
            if !serves_one && !channels.is_empty() {
                errors.push(map.error(
                    &raw.template,
                    format!(
                        "template `{template}` has parts for none of this rule's channels \
                         (it serves: {})",
                        if served.is_empty() {
                            "nothing".to_owned()
                        } else {
                            served
                                .iter()
                                .map(|c| c.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                ));
            }
        }
    }

    // Expressions compile now, so a syntax error is reported at load with where it is, never
    // at the first matching event.
    let when = compile(map, raw.when.as_ref(), errors);
    let once_per = compile(map, raw.once_per.as_ref(), errors);
    let offer = raw
        .offer
        .as_ref()
        .and_then(|offer| offer_spec(map, offer.get_ref(), errors));

    if errors.len() > before {
        return None;
    }
    Some(Rule {
        id,
        on,
        when,
        template,
        channels,
        category,
        priority,
        once_per,
        offer,
        location,
    })
}

/// Compiles one CEL expression, reporting syntax errors at their place in the file.
fn compile(
    map: &SourceMap<'_>,
    value: Option<&Spanned<String>>,
    errors: &mut Vec<LoadError>,
) -> Option<Expression> {
    let value = value?;
    let start = map.at(value.span().start);
    match Expression::compile(value.get_ref(), start) {
        Ok(expression) => Some(expression),
        Err(syntax) => {
            // One mistake often upsets the parser more than once (`a = 'b'` is an unknown
            // `=` and then an unexpected `'b'`): the first error is the one to fix.
            if let Some(e) = syntax.first() {
                errors.push(LoadError {
                    location: map.inside_string(value, e.line, e.col),
                    message: format!("invalid expression: {}", e.message),
                });
            }
            None
        }
    }
}

/// `[rule.offer]`: a fixed percent or a CEL expression, and how long the code is valid.
fn offer_spec(
    map: &SourceMap<'_>,
    offer: &RawOffer,
    errors: &mut Vec<LoadError>,
) -> Option<OfferSpec> {
    let percent = &offer.discount_percent;
    let discount_percent = match percent.get_ref() {
        RawPercent::Fixed(n) if (0..=100).contains(n) => {
            Expression::compile(&n.to_string(), map.at(percent.span().start)).ok()
        }
        RawPercent::Fixed(_) => {
            errors.push(map.error(percent, "`discount_percent` must be between 0 and 100"));
            None
        }
        RawPercent::Expression(text) => {
            let spanned = Spanned::new(percent.span(), text.clone());
            compile(map, Some(&spanned), errors)
        }
    };
    let valid_days = match &offer.valid_days {
        None => Some(OfferSpec::DEFAULT_VALID_DAYS),
        Some(days) => match u32::try_from(*days.get_ref()) {
            Ok(d) if (1..=OfferSpec::MAX_VALID_DAYS).contains(&d) => Some(d),
            _ => {
                errors.push(map.error(
                    days,
                    format!(
                        "`valid_days` must be between 1 and {}",
                        OfferSpec::MAX_VALID_DAYS
                    ),
                ));
                None
            }
        },
    };
    Some(OfferSpec {
        discount_percent: discount_percent?,
        valid_days: valid_days?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Templates;
    impl TemplateIndex for Templates {
        fn channels_of(&self, template: &str) -> Option<BTreeSet<Channel>> {
            (template == "delay-apology").then(|| [Channel::Sms, Channel::Email].into())
        }
    }

    /// Loads `files` from a temporary folder; errors are shown relative to it.
    fn load(files: &[(&str, &str)]) -> Result<RuleSet, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let prefix = format!("{}/", dir.path().display());
        RuleSet::load(dir.path(), &Templates).map_err(|errors| {
            errors
                .iter()
                .map(|e| e.to_string().replace(&prefix, ""))
                .collect()
        })
    }

    const GOOD: &str = r#"
[[rule]]
id = "shipment-delay-apology"
on = ["shipment.delayed"]
template = "delay-apology"
channels = ["preferred", "sms"]
priority = 50
"#;

    #[test]
    fn a_valid_rule_loads_with_its_defaults() {
        let set = load(&[("a.toml", GOOD)]).unwrap();
        let rule = &set.rules()[0];
        assert_eq!(rule.category, Category::Transactional);
        assert_eq!(rule.location.line, 2);
        assert_eq!(set.candidates(EventType::ShipmentDelayed).count(), 1);
        assert_eq!(set.candidates(EventType::OrderPlaced).count(), 0);
    }

    #[test]
    fn every_error_is_reported_with_file_line_and_column() {
        let bad = r#"[[rule]]
id = "x"
on = ["shipment.teleported"]
template = "nope"
channels = ["fax"]
"#;
        let errors = load(&[("bad.toml", bad)]).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].starts_with("bad.toml:3:7: unknown event type `shipment.teleported`"),
            "{errors:#?}"
        );
        assert!(
            errors[1].starts_with("bad.toml:5:13: unknown channel `fax`"),
            "{errors:#?}"
        );
        assert!(
            errors[2].starts_with("bad.toml:4:12: template `nope` does not exist"),
            "{errors:#?}"
        );
    }

    #[test]
    fn a_toml_syntax_error_points_at_its_line() {
        let errors = load(&[("broken.toml", "[[rule]]\nid = \n")]).unwrap_err();
        assert!(errors[0].starts_with("broken.toml:2:"), "{errors:?}");
    }

    #[test]
    fn a_missing_field_and_an_unknown_key_are_refused() {
        let errors = load(&[(
            "m.toml",
            "[[rule]]\nid = \"x\"\non = [\"order.placed\"]\nchannels = [\"sms\"]\n",
        )])
        .unwrap_err();
        assert!(errors[0].contains("missing field `template`"), "{errors:?}");
        let errors = load(&[("u.toml", &GOOD.replace("priority", "prioritty"))]).unwrap_err();
        assert!(errors[0].contains("prioritty"), "{errors:?}");
    }

    #[test]
    fn duplicate_ids_across_files_are_refused() {
        let errors = load(&[("a.toml", GOOD), ("b.toml", GOOD)]).unwrap_err();
        assert!(
            errors[0].starts_with(
                "b.toml:2:1: rule id `shipment-delay-apology` is already used at a.toml:2:1"
            ),
            "{errors:#?}"
        );
    }

    #[test]
    fn a_template_that_serves_none_of_the_channels_is_refused() {
        let errors = load(&[(
            "p.toml",
            &GOOD.replace("\"preferred\", \"sms\"", "\"push\""),
        )])
        .unwrap_err();
        assert!(
            errors[0].contains("has parts for none of this rule's channels"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_cel_syntax_error_points_at_its_line_and_column_in_the_rule_file() {
        let with_when = GOOD.replace("priority = 50", "priority = 50\nwhen = \"data.reason == \"");
        let errors = load(&[("w.toml", &with_when)]).unwrap_err();
        assert!(errors[0].starts_with("w.toml:8:"), "{errors:?}");
        assert!(errors[0].contains("invalid expression"), "{errors:?}");
    }

    #[test]
    fn a_single_equals_is_one_problem_at_its_own_column() {
        let with_when = GOOD.replace(
            "priority = 50",
            "priority = 50\nwhen = \"customer.segment = 'vip'\"",
        );
        let errors = load(&[("w.toml", &with_when)]).unwrap_err();
        assert_eq!(
            errors,
            ["w.toml:8:26: invalid expression: `=` is not a comparison: write `==`"]
        );
    }

    #[test]
    fn a_valid_condition_and_key_compile_at_load() {
        let rule = GOOD.replace(
            "priority = 50",
            "priority = 50\nwhen = \"data.reason == 'weather'\"\nonce_per = \"data.shipment_id\"",
        );
        let set = load(&[("w.toml", &rule)]).unwrap();
        assert!(set.rules()[0].when.is_some());
        assert!(set.rules()[0].once_per.is_some());
    }

    #[test]
    fn an_offer_is_a_fixed_percent_or_an_expression() {
        let fixed = format!("{GOOD}[rule.offer]\ndiscount_percent = 10\nvalid_days = 14\n");
        let set = load(&[("o.toml", &fixed)]).unwrap();
        let offer = set.rules()[0].offer.as_ref().unwrap();
        assert_eq!(offer.valid_days, 14);
        let computed = format!(
            "{GOOD}[rule.offer]\ndiscount_percent = \"data.reason == 'weather' ? 20 : 10\"\n"
        );
        let set = load(&[("o.toml", &computed)]).unwrap();
        assert_eq!(
            set.rules()[0].offer.as_ref().unwrap().valid_days,
            OfferSpec::DEFAULT_VALID_DAYS
        );
    }

    #[test]
    fn a_bad_offer_is_refused_where_it_is_written() {
        let bad =
            format!("{GOOD}[rule.offer]\ndiscount_percent = \"data.reason ==\"\nvalid_days = 0\n");
        let errors = load(&[("o.toml", &bad)]).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("o.toml:9:35: invalid expression"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("o.toml:10:14: `valid_days` must be between 1 and"),
            "{errors:?}"
        );
        let too_much = format!("{GOOD}[rule.offer]\ndiscount_percent = 150\n");
        let errors = load(&[("o.toml", &too_much)]).unwrap_err();
        assert!(errors[0].contains("between 0 and 100"), "{errors:?}");
    }

    #[test]
    fn the_highest_priority_comes_first_then_the_id() {
        let two = format!(
            "{GOOD}\n[[rule]]\nid = \"a-low\"\non = [\"shipment.delayed\"]\ntemplate = \"delay-apology\"\nchannels = [\"sms\"]\npriority = 50\n\n[[rule]]\nid = \"z-high\"\non = [\"shipment.delayed\"]\ntemplate = \"delay-apology\"\nchannels = [\"sms\"]\npriority = 90\n"
        );
        let set = load(&[("r.toml", &two)]).unwrap();
        let ids: Vec<&str> = set
            .candidates(EventType::ShipmentDelayed)
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(ids, ["z-high", "a-low", "shipment-delay-apology"]);
    }
}
