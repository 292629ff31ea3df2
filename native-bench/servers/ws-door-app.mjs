// The same small echo app three ways, for native-bench/ws-door.mjs:
//   node --expose-gc native-bench/servers/ws-door-app.mjs --impl ws|door|native --port P [--host H]
// ws and door run one source, written for ws's API (only the import differs); native is the
// same app on murmur's own Server API. SIGUSR2 prints a STATS line (see common.mjs).
import { installStats } from './common.mjs';

const argv = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : fallback;
};
const impl = arg('--impl', 'ws');
const port = Number(arg('--port', '0'));
const host = arg('--host', '127.0.0.1');

if (impl === 'native') {
  const { Server } = await import('../../dist/src/index.js');
  const server = new Server({ handlers: { message: (conn, data, isBinary) => conn.send(data, isBinary) }, limits: { maxPayload: 16 * 1024 * 1024 } });
  const addr = await server.listen(port, host);
  process.stdout.write(`LISTENING ${addr.port} transport=${server.transportKind}\n`);
  installStats(() => ({ clients: server.openCount }));
} else {
  const { WebSocketServer } = impl === 'door' ? await import('../../dist/src/ws/index.js') : await import('ws');
  const wss = new WebSocketServer({ host, port, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });
  wss.on('connection', (ws) => {
    ws.on('error', () => {});
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  wss.on('error', (err) => {
    process.stderr.write(`ws-door-app: ${err.message}\n`);
    process.exit(1);
  });
  wss.on('listening', () => process.stdout.write(`LISTENING ${wss.address().port}\n`));
  installStats(() => ({ clients: wss.clients.size }));
}
