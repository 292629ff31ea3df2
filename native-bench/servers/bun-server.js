// Rival: Bun's built-in WebSocket server (Bun.serve, uWebSockets inside), as users write it
// (BENCH-CONTRACT). Run with the bun binary, not node:
//   native-bench/node_modules/bun/bin/bun.exe native-bench/servers/bun-server.js --port P [--host H] [--mode echo|broadcast]
// echo: every data message back with its opcode. broadcast: every connection subscribes to one
// topic on open; the text message "pub M S" publishes M binary messages of S bytes with
// server.publish (encoded once, written to every subscriber, the sender included) from a fresh
// tick (setImmediate). Compression off, maxPayloadLength 16 MiB, no idle timeout and no
// automatic pings (idle connections stay idle during the memory scenario), backpressure limit
// 64 MiB like murmur's echo. A plain GET without upgrade gets 426.
// SIGUSR2: Bun.gc(true) (a full, synchronous collection; no --expose-gc in Bun), then
// `STATS {process.memoryUsage()}`: heapUsed/heapTotal are JavaScriptCore's, not V8's.
// Many topics (README): "sub K" unsubscribes from the default topic, subscribes to "t:K" and
// answers "sub K"; "pubt M S" publishes M messages to every topic with server.publish.
import { parseArgs, parsePub, parseTopicCmd } from './common.mjs';

const opts = parseArgs(process.argv.slice(2), ['echo', 'broadcast']);
const TOPIC = 'all';
let open = 0;
const topics = new Set(); // "t:K" for every "sub K" seen

const server = Bun.serve({
  hostname: opts.host,
  port: opts.port,
  fetch(req, srv) {
    if (srv.upgrade(req)) return undefined;
    return new Response('Upgrade Required', { status: 426, headers: { 'Content-Type': 'text/plain' } });
  },
  websocket: {
    perMessageDeflate: false,
    maxPayloadLength: 16 * 1024 * 1024,
    backpressureLimit: 64 * 1024 * 1024,
    closeOnBackpressureLimit: false,
    idleTimeout: 0,
    sendPings: false,
    publishToSelf: true,
    open(ws) {
      open++;
      if (opts.mode === 'broadcast') ws.subscribe(TOPIC);
    },
    close() {
      open--;
    },
    message(ws, data) {
      // data: string for text frames, Buffer for binary ones
      if (opts.mode === 'echo') {
        ws.send(data);
        return;
      }
      if (typeof data !== 'string') return;
      const pub = parsePub(data);
      if (pub) return void setImmediate(publish, pub.count, pub.size);
      const cmd = parseTopicCmd(data);
      if (!cmd) return;
      if (cmd.pubt) return void setImmediate(publishAll, cmd.pubt.count, cmd.pubt.size);
      const t = `t:${cmd.sub}`;
      ws.unsubscribe(TOPIC);
      ws.subscribe(t);
      topics.add(t);
      ws.send(data);
    },
  },
});

function publish(count, size) {
  const buf = Buffer.alloc(size, 0x61);
  for (let i = 0; i < count; i++) server.publish(TOPIC, buf);
}

function publishAll(count, size) {
  const buf = Buffer.alloc(size, 0x61);
  for (let i = 0; i < count; i++) {
    server.publish(TOPIC, buf);
    for (const t of topics) server.publish(t, buf);
  }
}

process.stdout.write(`LISTENING ${server.port}\n`);

process.on('SIGUSR2', () => {
  Bun.gc(true);
  const stats = { ...process.memoryUsage(), gc: true, runtime: `bun ${Bun.version}`, clients: open };
  process.stdout.write(`STATS ${JSON.stringify(stats)}\n`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
