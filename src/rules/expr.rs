//! CEL expressions in rules (`when`, `once_per`): compiled once when the rules load, evaluated
//! against each event.
//!
//! The `cel` crate is the maintained CEL interpreter for Rust (its predecessor
//! `cel-interpreter` panics on some invalid input; rules are user input). Variables are
//! `event`, `data`, `customer`, `risk`, `incident` and `now`. JSON integers become CEL `int`
//! (serde's positive integers would otherwise be `uint`, and `data.days_late + 1` would fail).

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

impl Expression {
    /// Compiles `source`; all syntax errors are returned.
    pub fn compile(source: &str, location: Location) -> Result<Self, Vec<SyntaxError>> {
        match env().compile(source) {
            Ok(program) => Ok(Expression {
                source: source.to_owned(),
                location,
                program: Arc::new(program),
            }),
            Err(errors) => Err(errors
                .errors
                .iter()
                .map(|e| SyntaxError {
                    line: usize::try_from(e.pos.0).unwrap_or(1).max(1),
                    col: usize::try_from(e.pos.1).unwrap_or(0) + 1,
                    message: e.msg.clone(),
                })
                .collect()),
        }
    }

    /// Evaluates against `bindings`.
    pub fn evaluate(&self, bindings: &Bindings) -> Result<cel::Value, String> {
        let mut scope = bindings.root.new_inner_scope();
        for (name, value) in &bindings.variables {
            scope.add_variable_from_value(*name, value.clone());
        }
        self.program.execute(&scope).map_err(|e| e.to_string())
    }
}

/// The variables one event's expressions see.
pub struct Bindings {
    root: cel::Context<'static, 'static>,
    variables: Vec<(&'static str, cel::Value)>,
}

impl Bindings {
    /// Binds `event`, `data`, `customer`, `risk`, `incident` (null outside outage events) and
    /// `now`.
    pub fn new(
        event: &Json,
        customer: &Json,
        risk: &Json,
        incident: &Json,
        now: DateTime<Utc>,
    ) -> Self {
        let data = event.get("data").cloned().unwrap_or(Json::Null);
        Bindings {
            root: cel::Context::with_env(env().clone()),
            variables: vec![
                ("event", to_cel(event)),
                ("data", to_cel(&data)),
                ("customer", to_cel(customer)),
                ("risk", to_cel(risk)),
                ("incident", to_cel(incident)),
                ("now", cel::Value::Timestamp(now.fixed_offset())),
            ],
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

    fn bindings(data: Json) -> Bindings {
        Bindings::new(
            &json!({"type": "shipment.delayed", "data": data}),
            &json!({"id": "c-1", "segment": "vip"}),
            &json!({}),
            &Json::Null,
            Utc::now(),
        )
    }

    #[test]
    fn json_integers_add_to_int_literals() {
        let e = Expression::compile("data.days_late + 1 == 3", location()).unwrap();
        assert_eq!(
            e.evaluate(&bindings(json!({"days_late": 2}))),
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
            e.evaluate(&bindings(json!({"reason": "weather"}))),
            Ok(cel::Value::Bool(true))
        );
        assert_eq!(
            e.evaluate(&bindings(json!({}))),
            Ok(cel::Value::Bool(false))
        );
    }

    #[test]
    fn a_missing_field_is_an_error_not_false() {
        let e = Expression::compile("data.reason == 'weather'", location()).unwrap();
        assert!(e.evaluate(&bindings(json!({}))).is_err());
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
