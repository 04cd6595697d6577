// Peer: sqs-consumer (bbc/sqs-consumer) with a handler that reports through
// the AWS SDK for JavaScript v3, as its README recommends for parallel work:
// handleMessageBatch with batchSize 10 (one DeleteMessageBatch per batch),
// BENCH_CONSUMERS consumers on the queue. Settings are recorded in BENCHMARKS.md.
import { Consumer } from "sqs-consumer";
import { SQSClient } from "@aws-sdk/client-sqs";
import { SFNClient, SendTaskSuccessCommand, SendTaskHeartbeatCommand } from "@aws-sdk/client-sfn";

const env = process.env;
const endpoint = env.BENCH_ENDPOINT;
const holdMs = Number(env.BENCH_HOLD_MS || 0);
const heartbeatMs = Number(env.BENCH_HEARTBEAT_SECS || 0) * 1000;
const sqs = new SQSClient({ endpoint });
const sfn = new SFNClient({ endpoint });

async function handle(message) {
  const body = JSON.parse(message.Body);
  let beat;
  if (holdMs > 0) {
    if (heartbeatMs > 0) {
      beat = setInterval(() => {
        sfn.send(new SendTaskHeartbeatCommand({ taskToken: body.taskToken })).catch(() => {});
      }, heartbeatMs);
    }
    await new Promise((resolve) => setTimeout(resolve, holdMs));
    clearInterval(beat);
  }
  await sfn.send(new SendTaskSuccessCommand({ taskToken: body.taskToken, output: JSON.stringify(body.input ?? {}) }));
  return message;
}

for (let i = 0; i < Number(env.BENCH_CONSUMERS || 1); i++) {
  const consumer = Consumer.create({
    queueUrl: env.BENCH_QUEUE_URL,
    sqs,
    batchSize: 10,
    waitTimeSeconds: 20,
    visibilityTimeout: holdMs > 0 ? 30 : undefined,
    heartbeatInterval: holdMs > 0 ? 10 : undefined,
    handleMessageBatch: (messages) => Promise.all(messages.map(handle)),
  });
  consumer.on("error", (err) => console.error("error", err.message));
  consumer.on("processing_error", (err) => console.error("processing_error", err.message));
  consumer.start();
}
