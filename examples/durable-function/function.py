"""A durable function (aws-durable-execution-sdk-python) whose
`wait_for_callback` submitter puts the callback id on an SQS queue, for the
sfn-worker durable-callback tests.

Event: {"queue_url": ..., "input": <task input>, "timeout": s, "heartbeat": s}
(timeout and heartbeat 0 = none). The SQS message is
{"callbackId": <id>, "input": <task input>}, as a `completes =
"durable-callback"` binding with `input_pointer = "/input"` expects. The
function returns {"result": <what the worker reported>}.
"""
import json
import os

import boto3
from aws_durable_execution_sdk_python.config import Duration, WaitForCallbackConfig
from aws_durable_execution_sdk_python.context import DurableContext
from aws_durable_execution_sdk_python.execution import durable_execution

SQS = boto3.client(
    "sqs",
    endpoint_url=os.environ["SQS_ENDPOINT_URL"],
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
)


@durable_execution
def handler(event: dict, context: DurableContext):
    config = WaitForCallbackConfig(
        timeout=Duration.from_seconds(event.get("timeout", 0)),
        heartbeat_timeout=Duration.from_seconds(event.get("heartbeat", 0)),
    )

    def submitter(callback_id: str, _ctx) -> None:
        SQS.send_message(
            QueueUrl=event["queue_url"],
            MessageBody=json.dumps({"callbackId": callback_id, "input": event["input"]}),
        )

    result = context.wait_for_callback(submitter, name="worker", config=config)
    return {"result": json.loads(result)}
