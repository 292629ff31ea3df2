/**
 * Autobahn|Testsuite sections 1-10 (the fuzzing client against a server), reproduced with
 * an Autobahn-like driver (fuzz-client.ts, autobahn-cases.ts) against exactly what
 * `murmur echo` runs. A case passes when Autobahn would report it OK or INFORMATIONAL with an
 * OK close; NON-STRICT, FAILED, WRONG CODE, UNCLEAN, FAILED BY CLIENT or a hang fail the
 * section's test, which lists every deviating case.
 *
 * Environment: MURMUR_AUTOBAHN_CASES=6.4.*,7.1.1 runs only matching case ids;
 * MURMUR_AUTOBAHN_SCALE=1 waits the original 1 s in continueLater() (default 0.2);
 * MURMUR_AUTOBAHN_TRACE=1 prints every case's verdict and wire trace;
 * MURMUR_AUTOBAHN_TARGET=127.0.0.1:9001 runs against an already running server (e.g. a
 * `murmur echo --port 9001` process) instead of the in-process one.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Server } from '../../src/server/server.js';
import { SECTIONS } from './autobahn-cases.js';
import { FuzzClient, deviates, explain, FAILED_BY_CLIENT, NON_STRICT, OK, WRONG_CODE, UNCLEAN } from './fuzz-client.js';
import type { CaseResult, CaseSpec } from './fuzz-client.js';
import { startMisbehaving } from './misbehaving-server.js';

const continueScale = Number(process.env.MURMUR_AUTOBAHN_SCALE ?? 0.2);
const filters = (process.env.MURMUR_AUTOBAHN_CASES ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s !== '')
  .map((s) => new RegExp(`^${s.replace(/\./g, '\\.').replace(/\*/g, '.*')}$`));
const selected = (id: string): boolean => filters.length === 0 || filters.some((r) => r.test(id));

const results: CaseResult[] = [];
let server: Server | null = null;
let port = 0;
let host = '127.0.0.1';

test.before(async () => {
  const target = process.env.MURMUR_AUTOBAHN_TARGET;
  if (target) {
    const i = target.lastIndexOf(':');
    host = target.slice(0, i);
    port = Number(target.slice(i + 1));
    return;
  }
  // Exactly what `murmur echo` runs (src/cli/echo.ts) with a 16 MiB maximum message.
  server = new Server({
    limits: { maxPayload: 16 * 1024 * 1024, maxBackpressure: 64 * 1024 * 1024 },
    perMessageDeflate: true,
    handlers: {
      message(conn, data, isBinary) {
        conn.send(data, isBinary);
      },
    },
  });
  ({ port } = await server.listen(0, '127.0.0.1'));
});

test.after(async () => {
  await server?.close();
  if (results.length === 0) return;
  const slow = [...results].sort((a, b) => b.durationMs - a.durationMs).slice(0, 10);
  const total = results.reduce((s, r) => s + r.durationMs, 0);
  const bad = results.filter(deviates).length;
  const lines = [`Autobahn-like run: ${results.length} cases, ${bad} deviating, ${(total / 1000).toFixed(1)} s in cases. Slowest 10:`];
  for (const r of slow) lines.push(`  ${r.id.padEnd(8)} ${String(r.durationMs).padStart(6)} ms  ${r.behavior}/${r.behaviorClose}  ${r.description}`);
  console.log(lines.join('\n'));
});

for (const [name, make] of SECTIONS) {
  const cases = make().filter((c) => selected(c.id));
  if (cases.length === 0) continue;
  test(`Autobahn section ${name}: all ${cases.length} cases OK`, async () => {
    const bad: CaseResult[] = [];
    for (const spec of cases) {
      const r = await FuzzClient.run(spec, { port, host, continueScale });
      results.push(r);
      if (deviates(r)) bad.push(r);
      if (process.env.MURMUR_AUTOBAHN_TRACE) console.log(explain(r));
    }
    assert.ok(bad.length === 0, `${bad.length} of ${cases.length} cases deviate:\n${bad.map(explain).join('\n')}\n`);
  });
}

// ---- the driver itself can fail -------------------------------------------------------------

function findCase(id: string): CaseSpec {
  for (const [, make] of SECTIONS) {
    const c = make().find((x) => x.id === id);
    if (c) return c;
  }
  throw new Error(`no case ${id}`);
}

test('driver: a server answering a protocol error with 1000 gets WRONG CODE (2.5)', async () => {
  const bad = await startMisbehaving('close-1000');
  try {
    const r = await FuzzClient.run(findCase('2.5'), { port: bad.port, continueScale });
    assert.is(r.behavior, OK);
    assert.is(r.behaviorClose, WRONG_CODE, explain(r));
    assert.ok(deviates(r));
  } finally {
    await bad.close();
  }
});

test('driver: a server that never drops TCP after the close handshake is UNCLEAN (1.1.2)', async () => {
  const bad = await startMisbehaving('echo-no-drop');
  try {
    const r = await FuzzClient.run(findCase('1.1.2'), { port: bad.port, continueScale });
    assert.is(r.behavior, OK);
    assert.is(r.behaviorClose, UNCLEAN, explain(r));
    assert.ok(r.droppedByMe);
  } finally {
    await bad.close();
  }
});

test('driver: a server without fail-fast UTF-8 is NON-STRICT (6.4.1) and echoing invalid UTF-8 fails (6.3.1)', async () => {
  const bad = await startMisbehaving('echo-lax');
  try {
    const r = await FuzzClient.run(findCase('6.4.1'), { port: bad.port, continueScale });
    assert.ok(r.behavior !== OK, explain(r));
    // The lax server echoes the invalid message: our client fails on it (drops TCP).
    const r2 = await FuzzClient.run(findCase('6.3.1'), { port: bad.port, continueScale });
    assert.ok(deviates(r2), explain(r2));
    assert.is(r2.behaviorClose === FAILED_BY_CLIENT || r2.behaviorClose === 'FAILED', true, explain(r2));
    const r3 = await FuzzClient.run(findCase('6.4.2'), { port: bad.port, continueScale });
    assert.ok([NON_STRICT, 'FAILED'].includes(r3.behavior), explain(r3));
  } finally {
    await bad.close();
  }
});

test.run();
