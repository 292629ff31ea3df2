import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { startServer } from '../helpers/server.js';
import { until } from '../helpers/net.js';

// 10,000 connections closed at once: a child process (one process may hold 20,000
// descriptors here, so the clients live in another one) opens them with real upgrades, then
// exits, and the kernel closes every socket in the same instant. The server must report each
// close exactly once, crash on none, and give every handle back.
const N = 10_000;

// A random loopback source address per run: the clients close first, so their ports sit in
// TIME_WAIT for a minute; a fresh source address keeps repeated runs from running out.
const source = `127.${1 + Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}.${2 + Math.floor(Math.random() * 250)}`;

const clientScript = `
import { connect } from 'node:net';
const [port, n, source] = process.argv.slice(-3);
const req = 'GET / HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n';
let open = 0, pending = 0, started = 0, failed = 0;
const sockets = [];
function one() {
  started++; pending++;
  const s = connect({ port: Number(port), host: '127.0.0.1', localAddress: source });
  sockets.push(s);
  let head = '';
  s.on('connect', () => s.write(req));
  s.on('data', (d) => {
    if (head.endsWith('\\r\\n\\r\\n')) return;
    head += d.toString('latin1');
    if (head.includes('\\r\\n\\r\\n')) {
      pending--;
      if (head.startsWith('HTTP/1.1 101')) open++; else failed++;
      if (open + failed === Number(n)) process.stdout.write('READY ' + open + ' ' + failed + '\\n');
      else if (started < Number(n)) one();
    }
  });
  s.on('error', () => { failed++; pending--; if (started < Number(n)) one(); });
}
for (let i = 0; i < 200; i++) one();
process.stdin.on('data', () => process.exit(0));
setTimeout(() => process.exit(2), 60000).unref();
`;

test(`${N} connections closed by the peers at once: every close reported once, nothing leaked`, async () => {
  let closes = 0;
  const { server, port } = await startServer({ handlers: { close: () => closes++ } });
  const tcpBefore = process.getActiveResourcesInfo().filter((r) => r === 'TCPWrap' || r === 'TCPSocketWrap').length;
  const child = spawn(process.execPath, ['--input-type=module', '-e', clientScript, String(port), String(N), source], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  try {
    await until(() => out.includes('READY'), 60_000, `${N} connections (${server.openCount} open so far)`);
    assert.is(out.trim(), `READY ${N} 0`);
    await until(() => server.openCount === N, 10_000, 'server sees every connection');
    child.stdin!.write('bye\n'); // the child exits: all its sockets close together
    await until(() => server.socketCount === 0, 30_000, `all closed (${server.socketCount} left)`);
    assert.is(closes, N);
    assert.is(server.openCount, 0);
    await until(
      () => process.getActiveResourcesInfo().filter((r) => r === 'TCPWrap' || r === 'TCPSocketWrap').length <= tcpBefore,
      5000,
      'every TCP handle released',
    );
  } finally {
    child.kill('SIGKILL');
    await server.close(1000);
  }
});

test.run();
