import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { once } from 'node:events';
import { until } from '../helpers/net.js';
import { startEcho, stopEcho } from '../helpers/process.js';

// Regression: `murmur echo` printed LISTENING before it handled SIGUSR2, so a harness that asked
// for STATS as soon as it read the line could kill it (SIGUSR2's default action), about 4 times
// in 10 on a loaded machine.
test('SIGUSR2 sent the moment LISTENING is read is answered with STATS, never fatal', async () => {
  for (let i = 0; i < 8; i++) {
    const echo = startEcho(['--host', '127.0.0.1']);
    try {
      // Signal from the data event itself, as a harness does, not after a poll.
      await new Promise<void>((resolve) => {
        const on = (d: Buffer): void => {
          if (!/LISTENING/.test(String(d))) return;
          echo.child.stdout!.off('data', on);
          echo.child.kill('SIGUSR2');
          resolve();
        };
        echo.child.stdout!.on('data', on);
      });
      const exited = once(echo.child, 'exit').then(() => true);
      await Promise.race([until(() => /STATS /.test(echo.out()), 10_000, 'STATS'), exited]);
      assert.is(echo.child.signalCode, null, `run ${i}: killed by ${String(echo.child.signalCode)}`);
      assert.match(echo.out(), /STATS /);
    } finally {
      await stopEcho(echo);
    }
  }
});

test.run();
