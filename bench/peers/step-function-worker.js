// Peer: step-function-worker (npm), activities, on aws-sdk v2 as it ships.
// `concurrency` is its documented throughput knob: that many pollers, each
// running one task at a time.
const StepFunctionWorker = require("step-function-worker");

const env = process.env;
const holdMs = Number(env.BENCH_HOLD_MS || 0);
const heartbeatMs = Number(env.BENCH_HEARTBEAT_SECS || 0) * 1000;

const worker = new StepFunctionWorker({
  activityArn: env.BENCH_ACTIVITY_ARN,
  workerName: "bench",
  concurrency: Number(env.BENCH_CONCURRENCY || 1),
  awsConfig: { endpoint: env.BENCH_ENDPOINT, region: env.AWS_REGION },
  fn: (input, cb, heartbeat) => {
    if (holdMs <= 0) return cb(null, input);
    const beat = heartbeatMs > 0 ? setInterval(heartbeat, heartbeatMs) : undefined;
    setTimeout(() => { clearInterval(beat); cb(null, input); }, holdMs);
  },
});
worker.on("error", (err) => console.error("error", err && err.message));
