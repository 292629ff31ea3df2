// Rival: uWebSockets.js on Node (the @trufflesuite/uws-js-unofficial 20.30 build, which ships a
// binary for Node 20's ABI), as users write it (BENCH-CONTRACT).
//   node [--expose-gc] native-bench/servers/uws-server.mjs --port P [--host H] [--mode echo|broadcast]
// echo: every data message back with its opcode. broadcast: every connection subscribes to one
// topic on open; "pub M S" publishes M binary messages of S bytes with app.publish (encoded
// once) from a fresh tick (setImmediate). Compression off (on with MURMUR_BENCH_DEFLATE=1, see
// below), maxPayloadLength 16 MiB, idle
// timeout off (0) and no automatic pings, maxBackpressure 64 MiB (murmur's echo default; uWS's
// own 64 KiB would drop echoes of 100x16x16384). A plain GET without upgrade gets 426.
// The package silently falls back to a slow pure-JS implementation when its binary does not
// load; this script loads the binary itself and exits with status 3 and a message instead.
import { createRequire } from 'node:module';
import path from 'node:path';
// Many topics (README): "sub K" unsubscribes from the default topic, subscribes to "t:K" and
// answers "sub K"; "pubt M S" publishes M messages to every topic with app.publish.
import { installStats, parseArgs, parsePub, parseTopicCmd } from './common.mjs';

const opts = parseArgs(process.argv.slice(2), ['echo', 'broadcast']);
const require = createRequire(import.meta.url);
let uWS;
try {
  const dir = path.dirname(require.resolve('@trufflesuite/uws-js-unofficial/package.json'));
  uWS = require(path.join(dir, 'binaries', `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`));
} catch (e) {
  process.stderr.write(`uws-server: the uWebSockets.js binary does not load on Node ${process.version}: ${e.message.split('\n')[0]}\n`);
  process.exit(3);
}

const TOPIC = 'all';
// MURMUR_BENCH_DEFLATE=1 (native-bench/deflate-bench.mjs): the shared compressor, uWS's usual
// choice for many connections (no sliding window per connection), and every send and publish
// asks for compression: uWS compresses only the messages whose `compress` argument is true
// (the harness counts the RSV1 frames it gets back).
const DEFLATE = process.env.MURMUR_BENCH_DEFLATE === '1';
let open = 0;
const topics = new Set(); // "t:K" for every "sub K" seen
const app = uWS.App();
app.ws('/*', {
  compression: DEFLATE ? uWS.SHARED_COMPRESSOR : uWS.DISABLED,
  maxPayloadLength: 16 * 1024 * 1024,
  maxBackpressure: 64 * 1024 * 1024,
  closeOnBackpressureLimit: false,
  idleTimeout: 0,
  maxLifetime: 0,
  sendPingsAutomatically: false,
  open(ws) {
    open++;
    if (opts.mode === 'broadcast') ws.subscribe(TOPIC);
  },
  close() {
    open--;
  },
  message(ws, message, isBinary) {
    // message is an ArrayBuffer valid during this call only; send copies it
    if (opts.mode === 'echo') {
      ws.send(message, isBinary, DEFLATE);
      return;
    }
    if (isBinary) return;
    const text = Buffer.from(message).toString('latin1');
    const pub = parsePub(text);
    if (pub) return void setImmediate(publish, pub.count, pub.size);
    const cmd = parseTopicCmd(text);
    if (!cmd) return;
    if (cmd.pubt) return void setImmediate(publishAll, cmd.pubt.count, cmd.pubt.size);
    const t = `t:${cmd.sub}`;
    ws.unsubscribe(TOPIC);
    ws.subscribe(t);
    topics.add(t);
    ws.send(text, false, DEFLATE);
  },
});
// Non-upgrade requests: the ws route yields them, this answers.
app.any('/*', (res) => {
  res.writeStatus('426 Upgrade Required').writeHeader('Content-Type', 'text/plain').end('Upgrade Required');
});

function publish(count, size) {
  const buf = Buffer.alloc(size, 0x61);
  for (let i = 0; i < count; i++) app.publish(TOPIC, buf, true, DEFLATE);
}

function publishAll(count, size) {
  const buf = Buffer.alloc(size, 0x61);
  for (let i = 0; i < count; i++) {
    app.publish(TOPIC, buf, true, DEFLATE);
    for (const t of topics) app.publish(t, buf, true, DEFLATE);
  }
}

// Before listening: uWS calls back from inside listen(), and the harness may signal as soon as
// it reads LISTENING.
installStats(() => ({ clients: open }));
app.listen(opts.host, opts.port, (listenSocket) => {
  if (!listenSocket) {
    process.stderr.write(`uws-server: cannot listen on ${opts.host}:${opts.port}\n`);
    process.exit(1);
  }
  process.stdout.write(`LISTENING ${uWS.us_socket_local_port(listenSocket)}\n`);
});
