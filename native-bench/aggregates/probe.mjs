// Preloaded into a server process: prints the longest event-loop stall of each second on stderr.
import { monitorEventLoopDelay } from 'node:perf_hooks';
const h = monitorEventLoopDelay({ resolution: 1 });
h.enable();
setInterval(() => { process.stderr.write(`PROBE max=${(h.max / 1e6).toFixed(0)}\n`); h.reset(); }, 1000).unref();
