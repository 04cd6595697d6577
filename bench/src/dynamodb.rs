//! DynamoDB (JSON 1.0), as much as the task ledger uses: `PutItem`,
//! `UpdateItem` (`SET`), `DeleteItem`, `GetItem`, `DescribeTable`,
//! `DescribeTimeToLive`, with condition expressions evaluated as the
//! service does (`attribute_not_exists`, `=`, `<`, `AND`, `OR`,
//! parentheses; `#name` and `:value` placeholders) and the service's rules
//! that a client can trip over enforced: every `ExpressionAttributeNames`
//! and `...Values` entry must be used, a failed condition answers
//! `ConditionalCheckFailedException` (with the item when
//! `ReturnValuesOnConditionCheckFailure` is `ALL_OLD`), an item is at most
//! 400 KB.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::{aws_error, aws_ok};

type Item = Map<String, Value>;

/// The tables, by name (created on first use: the fake has no CreateTable).
#[derive(Default)]
pub(crate) struct Tables(Mutex<HashMap<String, HashMap<String, Item>>>);

const KEY: &str = "pk";
/// DynamoDB's item size limit.
const MAX_ITEM_BYTES: usize = 400 * 1024;

fn validation(message: &str) -> Response {
    aws_error(StatusCode::BAD_REQUEST, "ValidationException", message)
}

pub(crate) fn handle(tables: &Tables, operation: &str, r: &Value) -> Response {
    let table = r["TableName"].as_str().unwrap_or_default().to_owned();
    match operation {
        "DescribeTable" => {
            return aws_ok(json!({"Table": {
                "TableName": table, "TableStatus": "ACTIVE",
                "KeySchema": [{"AttributeName": KEY, "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": KEY, "AttributeType": "S"}],
            }}));
        }
        "DescribeTimeToLive" => {
            return aws_ok(json!({"TimeToLiveDescription": {
                "TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}}));
        }
        _ => {}
    }
    let mut all = tables.0.lock().unwrap_or_else(|p| p.into_inner());
    let items = all.entry(table).or_default();
    let names = r["ExpressionAttributeNames"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let values = r["ExpressionAttributeValues"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let condition = r["ConditionExpression"].as_str().unwrap_or_default();
    let update = r["UpdateExpression"].as_str().unwrap_or_default();
    // Every placeholder given must be used, as DynamoDB requires.
    let text = format!("{condition} {update}");
    for n in names.keys() {
        if !uses(&text, n) {
            return validation(&format!(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {{{n}}}"
            ));
        }
    }
    for v in values.keys() {
        if !uses(&text, v) {
            return validation(&format!(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {{{v}}}"
            ));
        }
    }
    let key = match operation {
        "PutItem" => &r["Item"][KEY]["S"],
        _ => &r["Key"][KEY]["S"],
    };
    let Some(key) = key.as_str().map(str::to_owned) else {
        return validation("One of the required keys was not given a value");
    };
    let old = items.get(&key).cloned();
    if !condition.is_empty() {
        let holds = match Condition::parse(condition, &names, &values) {
            Ok(c) => c.holds(old.as_ref()),
            Err(e) => return validation(&format!("Invalid ConditionExpression: {e}")),
        };
        if !holds {
            let mut body = json!({
                "__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
                "message": "The conditional request failed",
            });
            if r["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
                && let Some(old) = &old
            {
                body["Item"] = Value::Object(old.clone());
            }
            return (
                StatusCode::BAD_REQUEST,
                [("content-type", "application/x-amz-json-1.0")],
                body.to_string(),
            )
                .into_response();
        }
    }
    let new = match operation {
        "PutItem" => r["Item"].as_object().cloned(),
        "UpdateItem" => {
            let mut item = old.clone().unwrap_or_else(|| {
                let mut i = Map::new();
                i.insert(KEY.into(), json!({"S": key}));
                i
            });
            match apply_set(&mut item, update, &names, &values) {
                Ok(()) => Some(item),
                Err(e) => return validation(&format!("Invalid UpdateExpression: {e}")),
            }
        }
        "DeleteItem" => None,
        "GetItem" => {
            return aws_ok(match &old {
                Some(item) => json!({"Item": item}),
                None => json!({}),
            });
        }
        _ => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "UnknownOperationException",
                operation,
            );
        }
    };
    match new {
        Some(item) => {
            if Value::Object(item.clone()).to_string().len() > MAX_ITEM_BYTES {
                return validation("Item size has exceeded the maximum allowed size");
            }
            items.insert(key, item);
        }
        None => {
            items.remove(&key);
        }
    }
    let answer = match (&old, r["ReturnValues"].as_str()) {
        (Some(old), Some("ALL_OLD")) => json!({"Attributes": old}),
        _ => json!({}),
    };
    aws_ok(answer)
}

/// Whether `text` uses the placeholder `p` (as a whole word).
fn uses(text: &str, p: &str) -> bool {
    text.match_indices(p).any(|(i, _)| {
        text[i + p.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

/// `SET #a = :v, #b = :w`.
fn apply_set(
    item: &mut Item,
    update: &str,
    names: &Map<String, Value>,
    values: &Map<String, Value>,
) -> Result<(), String> {
    let assignments = update
        .trim()
        .strip_prefix("SET ")
        .ok_or("only SET is supported")?;
    for a in assignments.split(',') {
        let (name, value) = a.split_once('=').ok_or("expected #name = :value")?;
        let name = resolve_name(name.trim(), names)?;
        let value = values
            .get(value.trim())
            .ok_or_else(|| format!("no value {}", value.trim()))?;
        item.insert(name, value.clone());
    }
    Ok(())
}

fn resolve_name(token: &str, names: &Map<String, Value>) -> Result<String, String> {
    if token.starts_with('#') {
        names
            .get(token)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("An expression attribute name used in the document path is not defined; attribute name: {token}"))
    } else {
        Ok(token.to_owned())
    }
}

/// A condition expression.
enum Condition {
    NotExists(String),
    Compare(String, Op, Value),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
}

#[derive(Clone, Copy)]
enum Op {
    Eq,
    Lt,
}

impl Condition {
    fn parse(
        text: &str,
        names: &Map<String, Value>,
        values: &Map<String, Value>,
    ) -> Result<Condition, String> {
        let spaced = text.replace('(', " ( ").replace(')', " ) ");
        let tokens: Vec<&str> = spaced.split_whitespace().collect();
        let mut p = Parser {
            tokens,
            at: 0,
            names,
            values,
        };
        let c = p.or()?;
        if p.at != p.tokens.len() {
            return Err(format!("unexpected {}", p.tokens[p.at]));
        }
        Ok(c)
    }

    fn holds(&self, item: Option<&Item>) -> bool {
        match self {
            Condition::NotExists(name) => item.is_none_or(|i| !i.contains_key(name)),
            Condition::Compare(name, op, want) => {
                let Some(have) = item.and_then(|i| i.get(name)) else {
                    return false;
                };
                match (have.get("S"), want.get("S"), have.get("N"), want.get("N")) {
                    (Some(a), Some(b), _, _) => match op {
                        Op::Eq => a == b,
                        Op::Lt => a.as_str() < b.as_str(),
                    },
                    (_, _, Some(a), Some(b)) => {
                        let (a, b) = (num(a), num(b));
                        match op {
                            Op::Eq => a == b,
                            Op::Lt => a < b,
                        }
                    }
                    _ => false,
                }
            }
            Condition::And(a, b) => a.holds(item) && b.holds(item),
            Condition::Or(a, b) => a.holds(item) || b.holds(item),
        }
    }
}

fn num(v: &Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

struct Parser<'a> {
    tokens: Vec<&'a str>,
    at: usize,
    names: &'a Map<String, Value>,
    values: &'a Map<String, Value>,
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Result<&'a str, String> {
        let t = *self.tokens.get(self.at).ok_or("unexpected end")?;
        self.at += 1;
        Ok(t)
    }

    fn peek(&self) -> Option<&'a str> {
        self.tokens.get(self.at).copied()
    }

    fn or(&mut self) -> Result<Condition, String> {
        let mut left = self.and()?;
        while self.peek().is_some_and(|t| t.eq_ignore_ascii_case("OR")) {
            self.at += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, String> {
        let mut left = self.atom()?;
        while self.peek().is_some_and(|t| t.eq_ignore_ascii_case("AND")) {
            self.at += 1;
            left = Condition::And(Box::new(left), Box::new(self.atom()?));
        }
        Ok(left)
    }

    fn atom(&mut self) -> Result<Condition, String> {
        let t = self.next()?.to_owned();
        if t == "(" {
            let c = self.or()?;
            return match self.next()? {
                ")" => Ok(c),
                other => Err(format!("expected ), got {other}")),
            };
        }
        if t == "attribute_not_exists" {
            if self.next()? != "(" {
                return Err("expected (".into());
            }
            let name = resolve_name(self.next()?, self.names)?;
            if self.next()? != ")" {
                return Err("expected )".into());
            }
            return Ok(Condition::NotExists(name));
        }
        let name = resolve_name(&t, self.names)?;
        let op = match self.next()? {
            "=" => Op::Eq,
            "<" => Op::Lt,
            other => return Err(format!("unsupported operator {other}")),
        };
        let v = self.next()?;
        let value = self
            .values
            .get(v)
            .cloned()
            .ok_or_else(|| format!("An expression attribute value used in expression is not defined; attribute value: {v}"))?;
        Ok(Condition::Compare(name, op, value))
    }
}
