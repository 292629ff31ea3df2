// The quiet-time GC in `murmur serve`: on by default (the process ticker runs while serve
// listens), off with idleGc: false (--idle-gc=false); /metrics shows what it did.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { idleGc } from '../../src/server/idle-gc.js';
import { testApp, closeAll, http } from './helpers.js';

test.after.each(closeAll);

test('serve holds the idle GC ticker by default and /metrics shows its figures', async () => {
  const { http: base } = await testApp({ requireToken: false });
  assert.is(idleGc.running, true);
  const body = (await http(`${base}/metrics`)).body;
  for (const line of [
    'murmur_idle_gc_total{outcome="shrunk"} ',
    'murmur_idle_gc_total{outcome="declined"} ',
    'murmur_idle_gc_skipped_total ',
    'murmur_idle_gc_freed_bytes_total ',
    'murmur_idle_gc_pause_seconds{which="max"} ',
  ])
    assert.ok(body.includes(`\n${line}`), `${line.trim()} in /metrics`);
  const young = /^nodejs_young_generation_bytes (\d+)$/m.exec(body);
  assert.ok(young !== null && Number(young[1]) > 0, 'the young generation committed bytes');
});

test('serve with idleGc: false (--idle-gc=false) starts no ticker', async () => {
  await closeAll();
  assert.is(idleGc.running, false);
  await testApp({ requireToken: false, idleGc: false });
  assert.is(idleGc.running, false);
});

test.run();
