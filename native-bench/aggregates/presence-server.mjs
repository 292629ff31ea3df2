// Child: a murmur serve app; prints its port, then on "report" prints the loop's longest stall.
import { monitorEventLoopDelay } from 'node:perf_hooks';
const { startApp } = await import(process.argv[2] + '/dist/src/app/app.js');
const app = await startApp({ port: 0, host: '127.0.0.1', rateLimit: 10000, rateBurst: 10000 });
let h = null;
process.stdout.write(`PORT ${app.port}\n`);
process.stdin.setEncoding('utf8');
process.stdin.on('data', async (d) => {
  if (d.includes('start')) { h = monitorEventLoopDelay({ resolution: 1 }); h.enable(); process.stdout.write('STARTED\n'); }
  if (d.includes('report')) { h.disable(); process.stdout.write(`STALL max=${(h.max / 1e6).toFixed(1)}ms p99=${(h.percentile(99) / 1e6).toFixed(1)}ms msgsOut=${app.realtime.counters.messagesOut}\n`); await app.shutdown(); process.exit(0); }
});
