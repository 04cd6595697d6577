"""Peer: the plain boto3 worker loop most teams write first.

One thread: poll (GetActivityTask, or ReceiveMessage of up to 10), run the
trivial handler, SendTaskSuccess, and for SQS DeleteMessageBatch. The
endpoint comes from AWS_ENDPOINT_URL, as for any boto3 program.
"""
import json
import os

import boto3
from botocore.config import Config

env = os.environ
sfn = boto3.client("stepfunctions", config=Config(read_timeout=70))
if env.get("BENCH_QUEUE_URL"):
    sqs = boto3.client("sqs")
    queue_url = env["BENCH_QUEUE_URL"]
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                       WaitTimeSeconds=20).get("Messages", [])
        for m in messages:
            body = json.loads(m["Body"])
            sfn.send_task_success(taskToken=body["taskToken"], output=json.dumps(body.get("input", {})))
        if messages:
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
else:
    arn = env["BENCH_ACTIVITY_ARN"]
    while True:
        task = sfn.get_activity_task(activityArn=arn, workerName="bench")
        if task.get("taskToken"):
            sfn.send_task_success(taskToken=task["taskToken"], output=task["input"])
