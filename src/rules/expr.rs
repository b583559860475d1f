//! CEL expressions in rules (`when`, `once_per`): compiled once when the rules load, evaluated
//! against each event.
//!
//! The `cel` crate is the maintained CEL interpreter for Rust (its predecessor
//! `cel-interpreter` panics on some invalid input; rules are user input). Variables are
//! `event`, `data`, `customer`, `risk`, `incident` and `now`. JSON integers become CEL `int`
//! (serde's positive integers would otherwise be `uint`, and `data.days_late + 1` would fail).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use super::rule::Location;

/// The standard CEL environment, shared by every compiled expression.
fn env() -> &'static Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(cel::Env::stdlib()))
}

/// A CEL expression as written in a rule, compiled.
#[derive(Clone)]
pub struct Expression {
    /// The source text.
    pub source: String,
    /// Where it was written.
    pub location: Location,
    program: Arc<cel::Program>,
    /// The variables it reads: only those are converted for an event.
    reads: Variables,
}

impl fmt::Debug for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Expression")
            .field("source", &self.source)
            .field("location", &self.location)
            .finish()
    }
}

/// A syntax error inside an expression: 1-based line and column within the expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Line within the expression.
    pub line: usize,
    /// Column within the expression.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

/// The variables rules see, as a set of bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Variables(u8);

impl Variables {
    const NAMES: [&'static str; 6] = ["event", "data", "customer", "risk", "incident", "now"];

    fn of(program: &cel::Program) -> Self {
        let references = program.references();
        let mut bits = 0;
        for (i, name) in Self::NAMES.iter().enumerate() {
            if references.has_variable(name) {
                bits |= 1 << i;
            }
        }
        Variables(bits)
    }

    fn missing_from(self, bound: Variables) -> impl Iterator<Item = usize> {
        (0..Self::NAMES.len()).filter(move |i| self.0 & !bound.0 & (1 << i) != 0)
    }
}

/// A value an expression gave, as a rule writer would write it: `3`, `'vip'`, `true`, or the
/// kind of value for a list or map — never the interpreter's `Int(3)`.
pub fn shown(value: &cel::Value) -> String {
    use cel::Value as V;
    match value {
        V::Int(n) => n.to_string(),
        V::UInt(n) => n.to_string(),
        V::Float(x) => x.to_string(),
        V::String(text) => format!("'{text}'"),
        V::Bool(b) => b.to_string(),
        V::Null => "null".into(),
        other => format!("a {}", other.type_of()),
    }
}

/// Why an expression failed on an event, in a rule writer's words: the interpreter's own
/// messages print its values as `Int(3)` and `String("vip")`.
fn failure_in_words(error: &cel::ExecutionError) -> String {
    use cel::ExecutionError as E;
    match error {
        E::NoSuchKey(key) => {
            format!("`{key}` is missing here; guard what may be absent with has(…)")
        }
        E::UndeclaredReference(name) => format!(
            "`{name}` is not something rules know (event, data, customer, risk, incident, now)"
        ),
        E::ValuesNotComparable(a, b) => {
            format!("{} cannot be compared with {}", shown(a), shown(b))
        }
        E::UnsupportedBinaryOperator(op, a, b) => {
            format!("`{op}` does not apply to {} and {}", shown(a), shown(b))
        }
        E::UnexpectedType { got, want } => format!("expected {want}, got {got}"),
        E::NotSupportedAsMethod { method, target } => {
            format!("`{method}` does not apply to {}", shown(target))
        }
        other => other.to_string(),
    }
}

/// The parser's complaint in a rule writer's words: its grammar talk (`token recognition
/// error`, `extraneous input … expecting {…}`) says what it wanted, not what was written wrong.
fn in_words(message: &str) -> String {
    let message = message.strip_prefix("Syntax error: ").unwrap_or(message);
    // The text the parser quotes: `'…'` after the phrase, up to ` expecting` if it follows.
    let quoted = |after: &str| -> Option<String> {
        let rest = message.strip_prefix(after)?;
        let rest = rest.split(" expecting").next().unwrap_or(rest).trim();
        let inner = rest.strip_prefix('\'')?.strip_suffix('\'')?;
        Some(inner.trim_end().to_owned())
    };
    if let Some(text) = quoted("token recognition error at: ") {
        return match text.chars().next() {
            Some('=') => "`=` is not a comparison: write `==`".into(),
            Some('&') => "`&` is not an operator: write `&&` for and".into(),
            Some('|') => "`|` is not an operator: write `||` for or".into(),
            Some('"') | Some('\'') => "a text is never closed with its quote".into(),
            _ => format!("`{text}` cannot be used in an expression"),
        };
    }
    for phrase in ["extraneous input ", "mismatched input "] {
        if let Some(text) = quoted(phrase) {
            return match text.as_str() {
                "<EOF>" => "the expression ends before it is complete".into(),
                _ => format!("`{text}` is not expected here"),
            };
        }
    }
    if let Some(text) = quoted("no viable alternative at input ") {
        return format!("cannot make sense of `{text}`");
    }
    if let Some(rest) = message.strip_prefix("missing ") {
        let mut words = rest.splitn(2, " at ");
        let missing = words.next().unwrap_or_default().trim_matches('\'');
        let before = words.next().unwrap_or_default().trim_matches('\'');
        return match before {
            "<EOF>" => format!("`{missing}` is missing at the end"),
            _ => format!("`{missing}` is missing before `{before}`"),
        };
    }
    message.to_owned()
}

impl Expression {
    /// Compiles `source`; all syntax errors are returned.
    pub fn compile(source: &str, location: Location) -> Result<Self, Vec<SyntaxError>> {
        match env().compile(source) {
            Ok(program) => Ok(Expression {
                source: source.to_owned(),
                location,
                reads: Variables::of(&program),
                program: Arc::new(program),
            }),
            Err(errors) => Err(errors
                .errors
                .iter()
                .map(|e| SyntaxError {
                    // The parser counts both from 1 already.
                    line: usize::try_from(e.pos.0).unwrap_or(1).max(1),
                    col: usize::try_from(e.pos.1).unwrap_or(1).max(1),
                    message: in_words(&e.msg),
                })
                .collect()),
        }
    }

    /// Evaluates against `bindings`, binding first whatever it reads that no earlier
    /// expression on this event did.
    pub fn evaluate(&self, bindings: &mut Bindings<'_>) -> Result<cel::Value, String> {
        bindings.bind(self.reads);
        self.program
            .execute(&bindings.context)
            .map_err(|e| failure_in_words(&e))
    }
}

/// The variables one event's expressions see, converted to CEL only when an expression reads
/// them and then kept for the event's other expressions: an event whose rules read only
/// `data` never pays for converting the customer record.
pub struct Bindings<'a> {
    /// The envelope's attributes, without `data`.
    attributes: Json,
    data: &'a Json,
    customer: Cow<'a, Json>,
    risk: Cow<'a, Json>,
    incident: Cow<'a, Json>,
    now: DateTime<Utc>,
    context: cel::Context<'static, 'static>,
    bound: Variables,
}

impl<'a> Bindings<'a> {
    /// `event` (the CloudEvent: `attributes` plus `data`), `data`, `customer`, `risk`,
    /// `incident` (null outside outage events) and `now`.
    pub fn new(
        attributes: Json,
        data: &'a Json,
        customer: Cow<'a, Json>,
        risk: Cow<'a, Json>,
        incident: Cow<'a, Json>,
        now: DateTime<Utc>,
    ) -> Self {
        Bindings {
            attributes,
            data,
            customer,
            risk,
            incident,
            now,
            context: cel::Context::with_env(env().clone()),
            bound: Variables::default(),
        }
    }

    fn bind(&mut self, wanted: Variables) {
        for i in wanted.missing_from(self.bound) {
            let value = match Variables::NAMES[i] {
                "event" => {
                    let mut event = self.attributes.clone();
                    if let Json::Object(map) = &mut event {
                        map.insert("data".into(), self.data.clone());
                    }
                    to_cel(&event)
                }
                "data" => to_cel(self.data),
                "customer" => to_cel(&self.customer),
                "risk" => to_cel(&self.risk),
                "incident" => to_cel(&self.incident),
                _ => cel::Value::Timestamp(self.now.fixed_offset()),
            };
            self.context
                .add_variable_from_value(Variables::NAMES[i], value);
            self.bound.0 |= 1 << i;
        }
    }
}

/// JSON → CEL, with every integer that fits as `int`.
pub fn to_cel(value: &Json) -> cel::Value {
    match value {
        Json::Null => cel::Value::Null,
        Json::Bool(b) => cel::Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => cel::Value::String(Arc::new(s.clone())),
        Json::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Json::Object(map) => {
            let map: HashMap<String, cel::Value> =
                map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(map)
        }
    }
}

/// The text of a `once_per` value: strings, integers and booleans key an outreach.
pub fn key_text(value: &cel::Value) -> Option<String> {
    match value {
        cel::Value::String(s) => Some(s.to_string()),
        cel::Value::Int(i) => Some(i.to_string()),
        cel::Value::UInt(u) => Some(u.to_string()),
        cel::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn location() -> Location {
        Location {
            file: "r.toml".into(),
            line: 1,
            col: 1,
        }
    }

    /// `e` on an event with `data`, for a VIP customer.
    fn eval(e: &Expression, data: Json) -> Result<cel::Value, String> {
        let customer = json!({"id": "c-1", "segment": "vip"});
        let mut bindings = Bindings::new(
            json!({"type": "shipment.delayed"}),
            &data,
            Cow::Borrowed(&customer),
            Cow::Owned(json!({})),
            Cow::Owned(Json::Null),
            Utc::now(),
        );
        e.evaluate(&mut bindings)
    }

    #[test]
    fn json_integers_add_to_int_literals() {
        let e = Expression::compile("data.days_late + 1 == 3", location()).unwrap();
        assert_eq!(
            eval(&e, json!({"days_late": 2})),
            Ok(cel::Value::Bool(true))
        );
    }

    #[test]
    fn conditions_see_the_customer_and_the_event() {
        let e = Expression::compile(
            "customer.segment == 'vip' && event.type == 'shipment.delayed' && has(data.reason)",
            location(),
        )
        .unwrap();
        assert_eq!(
            eval(&e, json!({"reason": "weather"})),
            Ok(cel::Value::Bool(true))
        );
        assert_eq!(eval(&e, json!({})), Ok(cel::Value::Bool(false)));
    }

    #[test]
    fn a_missing_field_is_an_error_not_false() {
        let e = Expression::compile("data.reason == 'weather'", location()).unwrap();
        assert!(eval(&e, json!({})).is_err());
    }

    #[test]
    fn invalid_input_is_an_error_with_its_position_never_a_panic() {
        for source in ["event.type ==", "((", "data.x +* 2", "'unterminated"] {
            let errors = Expression::compile(source, location()).unwrap_err();
            assert!(!errors.is_empty(), "{source}");
            assert!(errors[0].line >= 1 && errors[0].col >= 1);
        }
    }
}
