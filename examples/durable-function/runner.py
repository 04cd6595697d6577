"""AWS's local durable-execution runner serving function.py in-process.

`DurableFunctionTestRunner` runs the handler in this process;
its `WebServer` serves the Lambda durable-execution API on 127.0.0.1:PORT:
POST /start-durable-execution, GET /2025-12-01/durable-executions/{arn}
(and /history), and the three callback routes
POST /2025-12-01/durable-execution-callbacks/{id}/succeed|fail|heartbeat
that sfn-worker calls. (`dex-local-runner start-server` would hand every
invocation to a Lambda endpoint such as SAM local, which is not here.)

Usage: python runner.py PORT   (prints READY once serving)
"""
import sys

from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner
from aws_durable_execution_sdk_python_testing.web.server import WebServer, WebServiceConfig

from function import handler

port = int(sys.argv[1])
# Callback timeouts and heartbeat timeouts run on real time either way.
runner = DurableFunctionTestRunner(handler, skip_time=False, execution_timeout=600)
server = WebServer(WebServiceConfig(host="127.0.0.1", port=port), runner._executor)
print("READY", flush=True)
try:
    server.serve_forever()
finally:
    server.server_close()
    runner.close()
