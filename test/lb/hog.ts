// Loaded into a `murmur serve` node with `node --import` by test/lb/overload.test.ts: after a
// SIGUSR2, keeps the node's event loop busy in proportion to its TCP sockets
// (MURMUR_TEST_HOG_US_PER_SOCKET microseconds per socket out of every 100 ms, at most 95 ms),
// so the node is overloaded while it holds many connections and recovers by shedding them.
// A second SIGUSR2 stops it.
const usPerSocket = Number(process.env.MURMUR_TEST_HOG_US_PER_SOCKET ?? 0);
let timer: NodeJS.Timeout | null = null;

function burn(): void {
  let sockets = 0;
  for (const r of process.getActiveResourcesInfo()) if (r === 'TCPSocketWrap' || r === 'TCPWrap') sockets++;
  const end = performance.now() + Math.min(95, (sockets * usPerSocket) / 1000);
  while (performance.now() < end);
}

if (usPerSocket > 0) {
  process.on('SIGUSR2', () => {
    if (timer === null) {
      timer = setInterval(burn, 100);
      timer.unref();
    } else {
      clearInterval(timer);
      timer = null;
    }
  });
}
