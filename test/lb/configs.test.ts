// The load-balancer configurations of docs/operations.md are valid: `haproxy -c` and
// `nginx -t` accept them as written (the HAProxy one is also run by test/lb/mesh and redis).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { docBlock, haproxyConfig, requireBinary, stopAll, tempDir } from './lb.js';

test.after(stopAll);

test('the HAProxy configuration of docs/operations.md passes haproxy -c', () => {
  const bin = requireBinary('haproxy', 'haproxy');
  const dir = tempDir('murmur-cfg-');
  for (const [name, text] of [['doc.cfg', docBlock('haproxy')], ['test.cfg', haproxyConfig(18080, [{ id: 'node1', port: 18081 }])]] as const) {
    const file = join(dir, name);
    writeFileSync(file, text);
    const r = spawnSync(bin, ['-c', '-f', file], { encoding: 'utf8' });
    assert.is(r.status, 0, `${name}: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout + r.stderr, /Configuration file is valid/);
  }
});

test('the nginx configuration of docs/operations.md passes nginx -t', () => {
  const bin = requireBinary('nginx', 'nginx-light');
  const dir = tempDir('murmur-cfg-');
  const file = join(dir, 'nginx.conf');
  const text = docBlock('nginx');
  assert.match(text, /proxy_set_header Upgrade \$http_upgrade/);
  writeFileSync(file, text);
  const r = spawnSync(bin, ['-t', '-c', file, '-p', dir, '-e', 'stderr'], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout + r.stderr, /test is successful/);
});

test('a broken configuration is refused (the check can fail)', () => {
  const bin = requireBinary('haproxy', 'haproxy');
  const file = join(tempDir('murmur-cfg-'), 'bad.cfg');
  writeFileSync(file, docBlock('haproxy').replace('balance roundrobin', 'balance no-such-algorithm'));
  assert.is.not(spawnSync(bin, ['-c', '-f', file], { encoding: 'utf8' }).status, 0);
});

test.run();
