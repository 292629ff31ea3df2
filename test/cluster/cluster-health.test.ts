// What a cut-off or conflicting cluster node tells the operator: /readyz answers 503 with the
// reason when the seeds never answered, both sides log the refusal with the address and the
// reason, and a second live process with a node id already held is refused.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FAST_LOCAL_CONFIG } from '../../src/cluster/gossip/gossip-config.js';
import { NodeIdConflictError, type ClusterOptions } from '../../src/app/cluster.js';
import { testApp, closeAll, http } from '../app/helpers.js';
import { KEY_A, KEY_B, sleep, waitFor } from './helpers.js';

test.after.each(closeAll);

const READY_TIMEOUT = 800;
const cluster = (id: string, seeds: string[] = [], more: Partial<ClusterOptions> = {}): ClusterOptions => ({ nodeId: id, port: 0, seeds, keys: [KEY_A], label: 'test', gossip: FAST_LOCAL_CONFIG, joinRetryMs: 100, readyTimeoutMs: READY_TIMEOUT, ...more });

for (const [what, more, reason] of [
  ['another key', { keys: [KEY_B] }, 'wrong key'],
  ['another label', { label: 'staging' }, 'wrong label'],
] as const) {
  test(`a node with ${what} is not ready, says why, and both sides log the refusal`, async () => {
    const seed = await testApp({ cluster: cluster('seed') });
    const seedLog: string[] = [];
    seed.app.cluster!.on('log', (l: string) => seedLog.push(l));
    const cut = await testApp({ cluster: cluster('cut', [seed.app.cluster!.node.address], more) });
    const cutLog: string[] = [];
    cut.app.cluster!.on('log', (l: string) => cutLog.push(l));
    assert.match(cut.app.cluster!.notReadyReason() ?? '', 'cluster: joining', 'not ready while it has not reached a member');
    assert.ok((await waitFor(() => cut.app.cluster!.notReadyReason()?.includes('no member reached') === true, READY_TIMEOUT + 2000)) >= 0, 'the cut-off node turns not ready');
    const r = await http(`${cut.http}/readyz`);
    assert.is(r.status, 503);
    assert.match(r.body, 'not ready: cluster: no member reached');
    assert.match(r.body, `refused: ${reason}`);
    assert.ok((await waitFor(() => seedLog.length > 0 && cutLog.length > 0, 2000)) >= 0, 'both sides logged');
    assert.match(seedLog[0]!, `: ${reason}`);
    assert.match(seedLog[0]!, '127.0.0.1:');
    assert.match(cutLog[0]!, `${seed.app.cluster!.node.address} refused our stream: ${reason}`);
    // The seed is alone but has no seeds: ready.
    assert.is((await http(`${seed.http}/readyz`)).status, 200);
  });
}

test('a node that reached its seed stays ready', async () => {
  const seed = await testApp({ cluster: cluster('seed') });
  const b = await testApp({ cluster: cluster('b', [seed.app.cluster!.node.address]) });
  assert.ok((await waitFor(() => b.app.cluster!.members().filter((m) => m.state === 'alive').length === 2, 3000)) >= 0);
  await sleep(READY_TIMEOUT + 200);
  assert.is(b.app.cluster!.notReadyReason(), null);
  assert.is((await http(`${b.http}/readyz`)).status, 200);
});

test('a second live process with a node id already held is refused; the first one logs it and keeps its presence', async () => {
  const seed = await testApp({ cluster: cluster('seed') });
  const gossip = seed.app.cluster!.node.address;
  const first = await testApp({ cluster: cluster('twin', [gossip]) });
  assert.ok((await waitFor(() => seed.app.cluster!.members().some((m) => m.id === 'twin' && m.state === 'alive'), 3000)) >= 0);
  const firstAddr = first.app.cluster!.node.address;
  const firstLog: string[] = [];
  first.app.cluster!.on('log', (l: string) => firstLog.push(l));
  await sleep(20); // a later start, as a process started second has
  const second = await testApp({ cluster: cluster('twin', [gossip]) });
  const refused = new Promise<NodeIdConflictError>((resolve) => second.app.cluster!.on('conflict', resolve));
  const err = await Promise.race([refused, sleep(5000).then(() => null)]);
  assert.ok(err instanceof NodeIdConflictError, 'the newcomer is refused');
  assert.is(err.code, 'CLUSTER_ERR_NODE_ID_CONFLICT');
  assert.match(err.message, firstAddr);
  assert.is((await http(`${second.http}/readyz`)).status, 503);
  assert.ok((await waitFor(() => firstLog.some((l) => l.includes('node id twin is also claimed')), 2000)) >= 0, `first logged: ${firstLog.join(' | ')}`);
  // The cluster settles on the first process.
  assert.ok((await waitFor(() => seed.app.cluster!.members().find((m) => m.id === 'twin')?.address === firstAddr, 3000)) >= 0);
});

test.run();
