"""Peer: stefuna (PyPI), activities: a poller in the parent and a
multiprocessing pool of `processes` workers (default: one per CPU), each
with its own boto3 client. Run as `python -m stefuna.stefuna --config
stefuna_peer.config` from this folder; bench/run.py does that.
"""
import json
import os

from stefuna import Worker


class EchoWorker(Worker):
    def run_task(self, task_token, input_data):
        return json.loads(input_data)


config = {
    "name": "bench",
    "activity_arn": os.environ.get("BENCH_ACTIVITY_ARN"),
    "processes": int(os.environ.get("BENCH_CONCURRENCY", "0")) or None,
    "heartbeat": 0,
    "healthcheck": None,
    "maxtasksperchild": 100,
    "worker": "stefuna_peer.EchoWorker",
    "loglevel": "warning",
    "start_method": "spawn",
}
