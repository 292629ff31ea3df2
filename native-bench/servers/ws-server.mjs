// Rival: ws 8 as users write it (BENCH-CONTRACT). perMessageDeflate off (on, with ws's
// defaults, when MURMUR_BENCH_DEFLATE=1: native-bench/deflate-bench.mjs), maxPayload 16 MiB.
//   node [--expose-gc] native-bench/servers/ws-server.mjs --port P [--host H] [--mode echo|broadcast]
// echo: every data message back with its opcode. broadcast: every client joins one set; the
// text message "pub M S" sends M binary messages of S bytes to every client from a fresh tick.
// ws has no encode-once broadcast API, so the loop calls ws.send(buf) per client.
// Many topics (README): "sub K" moves the client to set K (answered "sub K"); "pubt M S" sends
// M messages to every set, message by message across the sets.
import { WebSocketServer } from 'ws';
import { installStats, parseArgs, parsePub, parseTopicCmd } from './common.mjs';

const opts = parseArgs(process.argv.slice(2), ['echo', 'broadcast']);
const wss = new WebSocketServer({
  host: opts.host,
  port: opts.port,
  perMessageDeflate: process.env.MURMUR_BENCH_DEFLATE === '1',
  maxPayload: 16 * 1024 * 1024,
});
const topic = new Set(); // the default topic
const topics = new Map(); // K -> Set, for "sub K"

function publish(count, size) {
  const buf = Buffer.alloc(size, 0x61);
  for (let i = 0; i < count; i++) {
    for (const client of topic) client.send(buf, { binary: true });
  }
}

function publishAll(count, size) {
  const buf = Buffer.alloc(size, 0x61);
  for (let i = 0; i < count; i++) {
    for (const client of topic) client.send(buf, { binary: true });
    for (const set of topics.values()) for (const client of set) client.send(buf, { binary: true });
  }
}

wss.on('connection', (ws) => {
  ws.on('error', () => {});
  if (opts.mode === 'echo') {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  } else {
    let mine = topic;
    mine.add(ws);
    ws.on('close', () => mine.delete(ws));
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      const text = data.toString();
      const pub = parsePub(text);
      if (pub) return void setImmediate(publish, pub.count, pub.size);
      const cmd = parseTopicCmd(text);
      if (!cmd) return;
      if (cmd.pubt) return void setImmediate(publishAll, cmd.pubt.count, cmd.pubt.size);
      mine.delete(ws);
      mine = topics.get(cmd.sub);
      if (!mine) topics.set(cmd.sub, (mine = new Set()));
      mine.add(ws);
      ws.send(text);
    });
  }
});
wss.on('error', (err) => {
  process.stderr.write(`ws-server: ${err.message}\n`);
  process.exit(1);
});
wss.on('listening', () => process.stdout.write(`LISTENING ${wss.address().port}\n`));
installStats(() => ({ clients: wss.clients.size }));
