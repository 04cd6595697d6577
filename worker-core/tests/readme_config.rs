//! The README's configuration table is tested against the configuration
//! types themselves (their JSON schema, derived with `schemars`): every
//! field the types accept has a row and every row is a field, each default
//! the types apply is the one the row states, and required fields say so.
//! A table that drifts from the code fails here.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde_json::Value;
use sfn_worker_core::Config;
use sfn_worker_core::config::defaults;

/// A field as the types define it: its path (`worker.max_concurrency`,
/// `queue[].url`), its default (if serde applies one), whether required.
#[derive(Debug)]
struct Field {
    default: Option<Value>,
    required: bool,
}

fn schema_fields() -> BTreeMap<String, Field> {
    let schema = serde_json::to_value(schemars::schema_for!(Config)).unwrap();
    let defs = &schema["$defs"];
    let resolve = |v: &Value| -> Value {
        match v["$ref"].as_str() {
            Some(r) => defs[r.trim_start_matches("#/$defs/")].clone(),
            None => v.clone(),
        }
    };
    let mut fields = BTreeMap::new();
    for (section, prop) in schema["properties"].as_object().unwrap() {
        // An optional section (`[ledger]`) is `anyOf` its table and null.
        let optional = prop["anyOf"]
            .as_array()
            .and_then(|any| any.iter().find(|p| p.get("$ref").is_some()));
        let (prefix, object) = match (prop["type"].as_str(), optional) {
            (Some("array"), _) => (format!("{section}[]"), resolve(&prop["items"])),
            (_, Some(table)) => (section.clone(), resolve(table)),
            _ => (section.clone(), resolve(prop)),
        };
        let required: Vec<&str> = object["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (name, field) in object["properties"].as_object().unwrap() {
            fields.insert(
                format!("{prefix}.{name}"),
                Field {
                    default: field.get("default").cloned(),
                    required: required.contains(&name.as_str()),
                },
            );
        }
    }
    fields
}

/// The table's rows: field path -> the default column's text.
fn readme_rows(readme: &str) -> BTreeMap<String, String> {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Configuration"))
        .expect("README has a ## Configuration section");
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let name = cells[0].trim_start_matches("| ").trim_matches('`');
            (name.to_owned(), cells.get(2).unwrap_or(&"").to_string())
        })
        .collect()
}

/// What is wrong with `readme` against `fields`, one line per problem.
fn drift(fields: &BTreeMap<String, Field>, readme: &str) -> Vec<String> {
    let rows = readme_rows(readme);
    let mut problems = Vec::new();
    for (name, field) in fields {
        let Some(default_cell) = rows.get(name) else {
            problems.push(format!(
                "{name}: a field of the config types with no row in the README's table"
            ));
            continue;
        };
        if field.required && !default_cell.contains("required") {
            problems.push(format!(
                "{name}: required, but the table's default says {default_cell:?}"
            ));
        }
        let expected = match &field.default {
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            _ => None,
        };
        if let Some(expected) = expected {
            let stated = default_cell.trim().trim_matches('`');
            // "256", "`direct`", "`127.0.0.1:9464`": the value, alone.
            if stated != expected {
                problems.push(format!(
                    "{name}: the types default to {expected}, the table says {default_cell:?}"
                ));
            }
        }
    }
    for name in rows.keys() {
        if !fields.contains_key(name) {
            problems.push(format!(
                "{name}: a row in the README's table that the config types do not accept"
            ));
        }
    }
    problems
}

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn the_readme_config_table_matches_the_config_types() {
    let problems = drift(&schema_fields(), &readme());
    assert!(
        problems.is_empty(),
        "README.md's configuration table drifted from the config types:\n  {}",
        problems.join("\n  ")
    );
}

/// Defaults computed when a field is absent (no serde default to read):
/// the table states them from the same constants.
#[test]
fn the_readme_states_the_computed_defaults() {
    let rows = readme_rows(&readme());
    assert!(rows["queue[].token_pointer"].contains(defaults::TOKEN_POINTER));
    assert!(rows["queue[].callback_id_pointer"].contains(defaults::CALLBACK_ID_POINTER));
    assert!(
        rows["queue[].receivers"].contains(&format!(
            "concurrency/{}, 1 to {}",
            defaults::SLOTS_PER_RECEIVER,
            defaults::MAX_DEFAULT_RECEIVERS
        )),
        "{}",
        rows["queue[].receivers"]
    );
}

/// The control: a table with a row missing, a row too many, a changed
/// default and a required field without "required" is caught, each.
#[test]
fn a_drifted_table_is_caught() {
    let good = readme();
    let drifted = good
        .replace("| `worker.threads` |", "| `worker.thread_count` |")
        .replace(
            "| `worker.max_concurrency` | integer > 0 | 256 |",
            "| `worker.max_concurrency` | integer > 0 | 128 |",
        )
        .replace("| activity ARN | required |", "| activity ARN | none |");
    assert_ne!(good, drifted, "the control's replacements must apply");
    let problems = drift(&schema_fields(), &drifted);
    let about = |f: &str| problems.iter().filter(|p| p.starts_with(f)).count();
    assert_eq!(about("worker.threads:"), 1, "{problems:#?}");
    assert_eq!(about("worker.thread_count:"), 1, "{problems:#?}");
    assert_eq!(about("worker.max_concurrency:"), 1, "{problems:#?}");
    assert_eq!(about("activity[].arn:"), 1, "{problems:#?}");
    assert_eq!(problems.len(), 4, "{problems:#?}");
}
