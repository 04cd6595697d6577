//! [`LedgerApi`] on DynamoDB's JSON protocol, signed and sent like the
//! other direct clients ([`crate::aws::signed`]): two calls per task on
//! the happy path, where the SDK's per-request machinery would cost more
//! CPU than the rest of the task (BENCHMARKS.md).

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use serde_json::{Value, json};

use super::{Claim, ClaimRequest, KEY, LedgerApi, Stored, TTL_ATTRIBUTE, TableShape};
use crate::aws::signed::{DirectClientError, Endpoint, InFlight, SignedHttp, configured_endpoint};
use crate::aws::{ApiError, Operation};

/// A ledger call not answered in this long is a failure (retried by the
/// ledger's rules): a claim stands between a task and its handler.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const IN_PROGRESS: &str = "IN_PROGRESS";
const COMPLETED: &str = "COMPLETED";
const CONDITION_FAILED: &str = "ConditionalCheckFailedException";

/// The attributes an expression names, as `#name`: DynamoDB reserves
/// hundreds of words, and spelling them out is cheaper than knowing the
/// list. Only those used (DynamoDB refuses a name an expression does not use).
fn names(used: &[&str]) -> Value {
    let all = [
        ("#pk", KEY),
        ("#st", "st"),
        ("#h", "holder"),
        ("#l", "lease_ms"),
        ("#x", TTL_ATTRIBUTE),
    ];
    Value::Object(
        all.iter()
            .filter(|(n, _)| used.contains(n))
            .map(|(n, a)| ((*n).to_owned(), Value::from(*a)))
            .collect(),
    )
}

/// The ledger table in DynamoDB.
pub struct DirectDynamo {
    signed: SignedHttp,
    url: Endpoint,
    endpoint: String,
    table: String,
}

impl std::fmt::Debug for DirectDynamo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectDynamo")
            .field("endpoint", &self.endpoint)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl DirectDynamo {
    /// A client for `table` with the region and credentials of `sdk`.
    /// The endpoint: `endpoint` if given (`[ledger] endpoint_url`), else as
    /// the SDK would resolve DynamoDB's (`AWS_ENDPOINT_URL_DYNAMODB`,
    /// `[aws] endpoint_url`, `AWS_ENDPOINT_URL`), else the regional one.
    pub fn new(
        sdk: &SdkConfig,
        table: &str,
        endpoint: Option<&str>,
    ) -> Result<Self, DirectClientError> {
        let signed = SignedHttp::new(sdk, "dynamodb")?;
        let region = signed.region();
        let endpoint = endpoint
            .map(str::to_owned)
            .or_else(|| configured_endpoint(sdk, "DynamoDB"))
            .unwrap_or_else(|| {
                let domain = if region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                format!("https://dynamodb.{region}.{domain}")
            });
        let url = Endpoint::parse(&endpoint)
            .map_err(|e| DirectClientError(format!("DynamoDB endpoint {endpoint}: {e}")))?;
        Ok(Self {
            signed,
            url,
            endpoint,
            table: table.to_owned(),
        })
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// One call: the answer's JSON, or the error with the error answer's
    /// JSON (`Item` of a failed condition).
    async fn call(&self, operation: Operation, body: &Value) -> Result<Value, (ApiError, Value)> {
        let headers = [
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", operation.target()),
        ];
        let body = serde_json::to_vec(body).unwrap_or_default();
        let started = std::time::Instant::now();
        let answer = self
            .signed
            .post_answer(&self.url, &headers, body, CALL_TIMEOUT, InFlight::Bounded)
            .await;
        crate::metrics::ledger_call(operation, started.elapsed().as_secs_f64());
        match answer {
            Ok(body) => Ok(serde_json::from_slice(&body).unwrap_or(Value::Null)),
            Err((e, body)) => {
                if e.code != CONDITION_FAILED {
                    crate::metrics::api_error(operation, &e.code);
                }
                Err((e, serde_json::from_slice(&body).unwrap_or(Value::Null)))
            }
        }
    }

    /// A conditional write: `Ok(None)` if applied, `Ok(Some(item))` (the
    /// item as it was, when the service says) if its condition failed.
    async fn write(&self, operation: Operation, body: &Value) -> Result<Option<Value>, ApiError> {
        match self.call(operation, body).await {
            Ok(_) => Ok(None),
            Err((e, answer)) if e.code == CONDITION_FAILED => {
                Ok(Some(answer.get("Item").cloned().unwrap_or(Value::Null)))
            }
            Err((e, _)) => Err(e),
        }
    }
}

fn s(item: &Value, name: &str) -> Option<String> {
    item.get(name)?.get("S")?.as_str().map(str::to_owned)
}

fn n(item: &Value, name: &str) -> Option<u64> {
    item.get(name)?.get("N")?.as_str()?.parse().ok()
}

/// What an item says about its task.
fn read(item: &Value) -> Option<Claim> {
    match s(item, "st")?.as_str() {
        COMPLETED => {
            let ok = item.get("ok")?.get("BOOL")?.as_bool()?;
            Some(Claim::Completed(if ok {
                Stored::Success(s(item, "out").unwrap_or_default())
            } else {
                Stored::Failure {
                    error: s(item, "err").unwrap_or_default(),
                    cause: s(item, "cause").unwrap_or_default(),
                }
            }))
        }
        IN_PROGRESS => Some(Claim::HeldElsewhere {
            lease_ms: n(item, "lease_ms").unwrap_or(0),
        }),
        _ => None,
    }
}

#[async_trait]
impl LedgerApi for DirectDynamo {
    async fn claim(&self, r: &ClaimRequest<'_>) -> Result<Claim, ApiError> {
        let body = json!({
            "TableName": self.table,
            "Item": {
                KEY: {"S": r.key},
                "st": {"S": IN_PROGRESS},
                "holder": {"S": r.holder},
                "lease_ms": {"N": r.lease_ms.to_string()},
                TTL_ATTRIBUTE: {"N": r.expires_at.to_string()},
            },
            "ConditionExpression": "attribute_not_exists(#pk) OR (#st = :ip AND (#l < :now OR #h = :me))",
            "ExpressionAttributeNames": names(&["#pk", "#st", "#l", "#h"]),
            "ExpressionAttributeValues": {
                ":ip": {"S": IN_PROGRESS},
                ":now": {"N": r.now_ms.to_string()},
                ":me": {"S": r.holder},
            },
            "ReturnValues": "ALL_OLD",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        });
        match self.call(Operation::PutItem, &body).await {
            Ok(answer) => {
                let old = answer.get("Attributes");
                let took_over =
                    old.is_some_and(|old| s(old, "holder").as_deref() != Some(r.holder));
                Ok(Claim::Won { took_over })
            }
            // A failed condition proves the task is held or settled; with
            // no item to say which, it is taken as held for a lease (never
            // as unreachable, which fail_open would run).
            Err((e, answer)) if e.code == CONDITION_FAILED => Ok(answer
                .get("Item")
                .and_then(read)
                .unwrap_or(Claim::HeldElsewhere {
                    lease_ms: r.lease_ms,
                })),
            Err((e, _)) => Err(e),
        }
    }

    async fn renew(
        &self,
        key: &str,
        holder: &str,
        lease_ms: u64,
        expires_at: u64,
    ) -> Result<bool, ApiError> {
        let body = json!({
            "TableName": self.table,
            "Key": {KEY: {"S": key}},
            "UpdateExpression": "SET #l = :l, #x = :x",
            "ConditionExpression": "#h = :me AND #st = :ip",
            "ExpressionAttributeNames": names(&["#l", "#x", "#h", "#st"]),
            "ExpressionAttributeValues": {
                ":l": {"N": lease_ms.to_string()},
                ":x": {"N": expires_at.to_string()},
                ":me": {"S": holder},
                ":ip": {"S": IN_PROGRESS},
            },
        });
        Ok(self.write(Operation::UpdateItem, &body).await?.is_none())
    }

    async fn settle(
        &self,
        key: &str,
        holder: &str,
        outcome: &Stored,
        expires_at: u64,
    ) -> Result<bool, ApiError> {
        let mut item = json!({
            KEY: {"S": key},
            "st": {"S": COMPLETED},
            "holder": {"S": holder},
            TTL_ATTRIBUTE: {"N": expires_at.to_string()},
        });
        match outcome {
            Stored::Success(output) => {
                item["ok"] = json!({"BOOL": true});
                item["out"] = json!({"S": output});
            }
            Stored::Failure { error, cause } => {
                item["ok"] = json!({"BOOL": false});
                item["err"] = json!({"S": error});
                item["cause"] = json!({"S": cause});
            }
        }
        let body = json!({
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(#pk) OR #h = :me",
            "ExpressionAttributeNames": names(&["#pk", "#h"]),
            "ExpressionAttributeValues": {":me": {"S": holder}},
        });
        Ok(self.write(Operation::PutItem, &body).await?.is_none())
    }

    async fn release(&self, key: &str, holder: &str) -> Result<(), ApiError> {
        let body = json!({
            "TableName": self.table,
            "Key": {KEY: {"S": key}},
            "ConditionExpression": "#h = :me AND #st = :ip",
            "ExpressionAttributeNames": names(&["#h", "#st"]),
            "ExpressionAttributeValues": {":me": {"S": holder}, ":ip": {"S": IN_PROGRESS}},
        });
        self.write(Operation::DeleteItem, &body).await.map(|_| ())
    }

    async fn describe(&self) -> Result<TableShape, ApiError> {
        let table = json!({"TableName": self.table});
        let answer = self
            .call(Operation::DescribeTable, &table)
            .await
            .map_err(|(e, _)| e)?;
        let t = &answer["Table"];
        let types: std::collections::HashMap<&str, &str> = t["AttributeDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| Some((d["AttributeName"].as_str()?, d["AttributeType"].as_str()?)))
            .collect();
        let keys = t["KeySchema"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| {
                let name = k["AttributeName"].as_str()?;
                Some((
                    name.to_owned(),
                    k["KeyType"].as_str()?.to_owned(),
                    types.get(name).copied().unwrap_or("?").to_owned(),
                ))
            })
            .collect();
        let answer = self
            .call(Operation::DescribeTimeToLive, &table)
            .await
            .map_err(|(e, _)| e)?;
        let d = &answer["TimeToLiveDescription"];
        let ttl = match (d["AttributeName"].as_str(), d["TimeToLiveStatus"].as_str()) {
            (Some(attribute), Some(status)) if status != "DISABLED" => {
                Some((attribute.to_owned(), status.to_owned()))
            }
            _ => None,
        };
        Ok(TableShape { keys, ttl })
    }
}
