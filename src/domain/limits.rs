//! How long the text an event carries may be.
//!
//! Ids, names and messages end up in keys, indexes, log lines, dead-letter headers and rendered
//! messages. NATS bounds a whole body (1 MiB by default), but not one field of it: a 200 KB `id`
//! or `reason` is a mistake or an attack, and it is refused at the edge with its length said,
//! never echoed.

use serde_json::Value;

use super::DataError;

/// The longest `id`, `source` and `subject` accepted, in bytes. Ids are keys (stored, indexed,
/// logged).
pub(super) const MAX_ATTRIBUTE_BYTES: usize = 256;
/// The longest `type` accepted, in bytes, prefix included.
pub(super) const MAX_TYPE_BYTES: usize = 128;
/// The longest string (or object key) accepted anywhere in `data`, in bytes: room for an
/// incident's message or a street address several times over, not for a document.
pub const MAX_DATA_TEXT_BYTES: usize = 4096;

/// Refuses the first string or object key in `data` longer than [`MAX_DATA_TEXT_BYTES`], naming
/// its path (`data.items[2].name`) and its length.
pub(super) fn check_data_text(data: &Value) -> Result<(), DataError> {
    let mut path = String::from("data");
    walk(data, &mut path)
}

fn walk(value: &Value, path: &mut String) -> Result<(), DataError> {
    match value {
        Value::String(text) => within_limit(text, path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| descend(path, &format!("[{i}]"), |path| walk(item, path))),
        Value::Object(fields) => fields.iter().try_for_each(|(key, item)| {
            within_limit(key, path)?;
            descend(path, &format!(".{key}"), |path| walk(item, path))
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// Runs `inside` with `step` appended to `path`, then takes it off again.
fn descend(
    path: &mut String,
    step: &str,
    inside: impl FnOnce(&mut String) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let depth = path.len();
    path.push_str(step);
    let result = inside(path);
    path.truncate(depth);
    result
}

fn within_limit(text: &str, path: &str) -> Result<(), DataError> {
    if text.len() <= MAX_DATA_TEXT_BYTES {
        return Ok(());
    }
    Err(DataError {
        field: path.to_owned(),
        message: format!(
            "text of {} bytes; at most {MAX_DATA_TEXT_BYTES} are accepted",
            text.len()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_long_string_is_refused_by_its_path_and_length() {
        let long = "x".repeat(MAX_DATA_TEXT_BYTES + 1);
        let data = json!({"order_id": "o", "items": [{"sku": "S"}, {"sku": "S", "name": long}]});
        let err = check_data_text(&data).unwrap_err();
        assert_eq!(err.field, "data.items[1].name");
        assert_eq!(
            err.message,
            format!(
                "text of {} bytes; at most 4096 are accepted",
                MAX_DATA_TEXT_BYTES + 1
            )
        );
    }

    #[test]
    fn a_long_key_is_refused_at_its_parent() {
        let mut data = json!({"customer": {}});
        data["customer"][&"k".repeat(5000)] = json!(1);
        let err = check_data_text(&data).unwrap_err();
        assert_eq!(err.field, "data.customer");
        assert!(err.message.starts_with("text of 5000 bytes"));
    }

    #[test]
    fn text_at_the_limit_and_every_other_kind_of_value_pass() {
        let data = json!({"message": "가".repeat(MAX_DATA_TEXT_BYTES / 3), "n": 1, "b": true,
                          "none": null, "list": [[["deep"]]]});
        assert!(check_data_text(&data).is_ok());
    }
}
