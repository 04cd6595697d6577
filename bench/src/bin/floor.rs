//! The floor: the same request sequence per task that a worker makes, sent by
//! a bare HTTP/1.1 client with keep-alive and no AWS SDK (no signing, no
//! retries, no interceptors). Whatever a worker spends beyond this is the
//! worker's own cost.
//!
//! - `activity`: `GetActivityTask` then `SendTaskSuccess`, on `--concurrency` loops.
//! - `sqs`: `ReceiveMessage` (10), one `SendTaskSuccess` per message, one
//!   `DeleteMessageBatch`, on `--concurrency` loops.
//! - `heartbeat`: take `--hold` activity tasks, then send `SendTaskHeartbeat`
//!   for each every `--heartbeat-secs`, timed from when the task arrived, as
//!   a worker does.

use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Activity,
    Sqs,
    Heartbeat,
}

#[derive(Parser)]
struct Args {
    #[arg(long)]
    endpoint: String,
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(
        long,
        default_value = "arn:aws:states:us-east-1:123456789012:activity:bench"
    )]
    activity_arn: String,
    #[arg(long, default_value = "")]
    queue_url: String,
    #[arg(long, default_value_t = 0)]
    hold: usize,
    #[arg(long, default_value_t = 10)]
    heartbeat_secs: u64,
}

#[derive(Clone)]
struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: hyper::Uri,
}

impl Api {
    async fn call(&self, target: &'static str, body: Vec<u8>) -> Option<Bytes> {
        let request = hyper::Request::post(self.uri.clone())
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", target)
            .body(Full::new(Bytes::from(body)))
            .ok()?;
        match self.client.request(request).await {
            Ok(response) => {
                let ok = response.status().is_success();
                let bytes = response.into_body().collect().await.ok()?.to_bytes();
                ok.then_some(bytes)
            }
            Err(e) => {
                eprintln!("floor: {target}: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                None
            }
        }
    }

    async fn poll(&self, arn: &str) -> Option<(String, String)> {
        #[derive(Serialize)]
        struct Req<'a> {
            #[serde(rename = "activityArn")]
            arn: &'a str,
            #[serde(rename = "workerName")]
            worker: &'a str,
        }
        #[derive(Deserialize)]
        struct Resp {
            #[serde(rename = "taskToken", default)]
            token: String,
            #[serde(default)]
            input: String,
        }
        let body = serde_json::to_vec(&Req {
            arn,
            worker: "floor",
        })
        .ok()?;
        let bytes = self.call("AWSStepFunctions.GetActivityTask", body).await?;
        let r: Resp = serde_json::from_slice(&bytes).ok()?;
        (!r.token.is_empty()).then_some((r.token, r.input))
    }

    async fn success(&self, token: &str, output: &str) {
        #[derive(Serialize)]
        struct Req<'a> {
            #[serde(rename = "taskToken")]
            token: &'a str,
            output: &'a str,
        }
        if let Ok(body) = serde_json::to_vec(&Req { token, output }) {
            self.call("AWSStepFunctions.SendTaskSuccess", body).await;
        }
    }

    async fn heartbeat(&self, token: &str) {
        let body = serde_json::json!({ "taskToken": token })
            .to_string()
            .into_bytes();
        self.call("AWSStepFunctions.SendTaskHeartbeat", body).await;
    }

    async fn receive_and_complete(&self, queue_url: &str) {
        #[derive(Deserialize)]
        struct Message {
            #[serde(rename = "Body")]
            body: String,
            #[serde(rename = "ReceiptHandle")]
            receipt: String,
        }
        #[derive(Deserialize)]
        struct Resp {
            #[serde(rename = "Messages", default)]
            messages: Vec<Message>,
        }
        #[derive(Deserialize)]
        struct Body<'a> {
            #[serde(rename = "taskToken", borrow)]
            token: &'a str,
            #[serde(borrow)]
            input: &'a serde_json::value::RawValue,
        }
        let request = serde_json::json!({
            "QueueUrl": queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 20
        });
        let Some(bytes) = self
            .call("AmazonSQS.ReceiveMessage", request.to_string().into_bytes())
            .await
        else {
            return;
        };
        let Ok(resp) = serde_json::from_slice::<Resp>(&bytes) else {
            return;
        };
        if resp.messages.is_empty() {
            return;
        }
        let reports = resp.messages.iter().filter_map(|m| {
            let body: Body<'_> = serde_json::from_str(&m.body).ok()?;
            Some(self.success(body.token, body.input.get()))
        });
        futures::future::join_all(reports).await;
        let entries: Vec<_> = resp
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| serde_json::json!({ "Id": i.to_string(), "ReceiptHandle": m.receipt }))
            .collect();
        let delete = serde_json::json!({ "QueueUrl": queue_url, "Entries": entries });
        self.call(
            "AmazonSQS.DeleteMessageBatch",
            delete.to_string().into_bytes(),
        )
        .await;
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let Ok(uri) = args.endpoint.parse::<hyper::Uri>() else {
        eprintln!("floor: --endpoint {} is not a URI", args.endpoint);
        std::process::exit(2);
    };
    let api = Api {
        client: Client::builder(TokioExecutor::new()).build_http(),
        uri,
    };
    let mut loops = tokio::task::JoinSet::new();
    match args.mode {
        Mode::Activity => {
            for _ in 0..args.concurrency {
                let (api, arn) = (api.clone(), args.activity_arn.clone());
                loops.spawn(async move {
                    loop {
                        if let Some((token, input)) = api.poll(&arn).await {
                            api.success(&token, &input).await;
                        }
                    }
                });
            }
        }
        Mode::Sqs => {
            for _ in 0..args.concurrency {
                let (api, url) = (api.clone(), args.queue_url.clone());
                loops.spawn(async move {
                    loop {
                        api.receive_and_complete(&url).await;
                    }
                });
            }
        }
        Mode::Heartbeat => {
            let every = Duration::from_secs(args.heartbeat_secs);
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            for _ in 0..args.concurrency {
                let (api, arn, tx) = (api.clone(), args.activity_arn.clone(), tx.clone());
                loops.spawn(async move {
                    while let Some((token, _)) = api.poll(&arn).await {
                        if tx.send(token).is_err() {
                            break;
                        }
                    }
                });
            }
            let mut held = 0;
            while held < args.hold {
                let Some(token) = rx.recv().await else { break };
                held += 1;
                let api = api.clone();
                tokio::spawn(async move {
                    let mut next = tokio::time::Instant::now() + every;
                    loop {
                        tokio::time::sleep_until(next).await;
                        api.heartbeat(&token).await;
                        next += every;
                    }
                });
            }
        }
    }
    while loops.join_next().await.is_some() {}
    std::future::pending::<()>().await;
}
