//! The state machines in examples/state-machines, as shipped, against
//! LocalStack and the real binary running examples/state-machines/process-order.sh.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::*;

fn example(name: &str, substitutions: &[(&str, &str)]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/state-machines")
        .join(name);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (key, value) in substitutions {
        text = text.replace(&format!("${{{key}}}"), value);
    }
    assert!(!text.contains("${"), "{name}: unsubstituted placeholder");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_example_state_machine_runs_as_designed() {
    let (sfn, sqs) = (sfn().await, sqs().await);
    let activity = create_activity(&sfn, &unique("orders")).await;
    let queue = create_queue(&sqs, &unique("orders")).await;
    let m_activity = create_state_machine(
        &sfn,
        &unique("ex-activity"),
        example("activity.asl.json", &[("ActivityArn", &activity)]),
    )
    .await;
    let m_sqs = create_state_machine(
        &sfn,
        &unique("ex-sqs"),
        example("sqs-callback.asl.json", &[("QueueUrl", &queue)]),
    )
    .await;
    let m_map = create_state_machine(
        &sfn,
        &unique("ex-map"),
        example("map-callbacks.asl.json", &[("QueueUrl", &queue)]),
    )
    .await;

    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/state-machines/process-order.sh");
    let script = script.canonicalize().unwrap();
    let bindings = format!(
        "[[activity]]\nname = \"orders\"\narn = \"{activity}\"\nhandler = \"exec\"\nheartbeat_secs = 2\n[activity.params]\ncommand = [\"{s}\"]\n\n\
         [[queue]]\nname = \"orders-queue\"\nurl = \"{queue}\"\nhandler = \"exec\"\nheartbeat_secs = 2\ninput_pointer = \"/input\"\nconcurrency = 32\n[queue.params]\ncommand = [\"{s}\"]\n",
        s = script.display()
    );
    let dir = scratch_dir("examples");
    let daemon = Daemon::start(&dir, "", &bindings);

    for machine in [&m_activity, &m_sqs] {
        let ok = start(&sfn, machine, json!({ "id": 1 })).await;
        let rejected = start(&sfn, machine, json!({ "id": 2, "reject": true })).await;
        let long = start(&sfn, machine, json!({ "id": 3, "seconds": 8 })).await;
        let ok = wait_ended(&sfn, &ok, Duration::from_secs(60)).await;
        assert_eq!(ok.status, "SUCCEEDED", "{ok:?}\n{}", daemon.logs());
        assert_eq!(ok.output, Some(json!({ "processed": { "id": 1 } })));
        let rejected = wait_ended(&sfn, &rejected, Duration::from_secs(60)).await;
        assert_eq!(rejected.status, "SUCCEEDED", "caught: {rejected:?}");
        assert_eq!(
            rejected.output.unwrap()["rejection"]["Error"],
            "Orders.Rejected"
        );
        // 8 s of work under HeartbeatSeconds 5: alive only through heartbeats.
        let long = wait_ended(&sfn, &long, Duration::from_secs(60)).await;
        assert_eq!(long.status, "SUCCEEDED", "{long:?}\n{}", daemon.logs());
    }

    let orders: Vec<_> = (0..20)
        .map(|i| {
            if i % 7 == 3 {
                json!({ "id": i, "reject": true })
            } else {
                json!({ "id": i })
            }
        })
        .collect();
    let map = start(&sfn, &m_map, json!({ "orders": orders })).await;
    let map = wait_ended(&sfn, &map, Duration::from_secs(120)).await;
    assert_eq!(map.status, "SUCCEEDED", "{map:?}\n{}", daemon.logs());
    let results = map.output.unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 20);
    let rejected = results
        .iter()
        .filter(|r| r["rejection"]["Error"] == "Orders.Rejected")
        .count();
    let processed = results
        .iter()
        .filter(|r| r.get("processed").is_some())
        .count();
    assert_eq!((processed, rejected), (17, 3), "{results:?}");
}
