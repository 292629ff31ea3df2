// A worker process for supervisor.test.ts: a plain TCP server on the shared port that answers
// each connection with its pid, on the supervisor's worker side.
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { runSupervisedWorker, sendUser, workerIndex } from '../../src/server/supervised.js';

if (workerIndex() !== -1) {
  const server = createServer((s) => s.end(`${process.pid}\n`));
  runSupervisedWorker({
    start: (settings, index, target) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        const done = (): void => resolve({ address: server.address() as AddressInfo, handle: (server as unknown as { _handle: object })._handle, info: { settings, index } });
        if ('handle' in target) server.listen(target.handle, done);
        else server.listen({ port: target.port, host: target.host, ...(target.reusePort ? { reusePort: true } : {}) }, done);
      }),
    stop: () => new Promise((resolve) => server.close(() => resolve())),
    stopTimeoutMs: () => 5_000,
    answer: (what) => `${what}:${process.pid}`,
    onMessage: (body) => void sendUser({ back: body }),
  });
}
