"""Peer: stepfunctions-activity-worker (PyPI), activities.

worker_count is its documented concurrency knob (a thread pool of that
size behind one poller). It prints each task's input and output to stdout,
which bench/run.py sends to /dev/null.
"""
import os
import time

import boto3
from botocore.config import Config
from stepfunctions_activity_worker import ActivityWorker

env = os.environ


HOLD_SECS = int(env.get("BENCH_HOLD_MS", "0")) / 1000


def echo(**task_input):
    if HOLD_SECS:
        time.sleep(HOLD_SECS)
    return task_input


ActivityWorker(env["BENCH_ACTIVITY_ARN"], echo, worker_count=int(env.get("BENCH_CONCURRENCY", "1")),
               heartbeat_interval=int(env.get("BENCH_HEARTBEAT_SECS", "4")),
               client=boto3.client("stepfunctions", config=Config(read_timeout=70))).listen()
