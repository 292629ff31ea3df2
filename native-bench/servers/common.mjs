// Shared by the rival servers: BENCH-CONTRACT argument parsing and the SIGUSR2 STATS line.
import * as v8module from 'node:v8';

const v8 = typeof v8module.getHeapSpaceStatistics === 'function' ? v8module : null;

export function parseArgs(argv, modes) {
  const opts = { port: 0, host: '127.0.0.1', mode: modes[0] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) fail(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') opts.port = Number(v());
    else if (a === '--host') opts.host = v();
    else if (a === '--mode') opts.mode = v();
    else fail(`unknown option ${a}`);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) fail('--port must be 0..65535');
  if (!modes.includes(opts.mode)) fail(`--mode must be one of ${modes.join('|')}`);
  return opts;
}

function fail(msg) {
  process.stderr.write(`${msg}\n`);
  process.exit(2);
}

/**
 * SIGUSR2: full GC when started with --expose-gc, then `STATS {process.memoryUsage()}` on stdout,
 * with V8's physical size per heap space (`spaces`, as murmur's STATS line has) where the
 * runtime reports them: the harness separates the young generation from the rest of RSS.
 */
export function installStats(extra) {
  process.on('SIGUSR2', () => {
    if (typeof globalThis.gc === 'function') {
      globalThis.gc();
      globalThis.gc();
    }
    const stats = { ...process.memoryUsage(), gc: typeof globalThis.gc === 'function', ...spaces(), ...(extra ? extra() : {}) };
    process.stdout.write(`STATS ${JSON.stringify(stats)}\n`);
  });
  process.on('SIGTERM', () => process.exit(0));
  process.on('SIGINT', () => process.exit(0));
}

/** { spaces: { new_space: bytes, ... } } from v8.getHeapSpaceStatistics(), or {} (Bun). */
function spaces() {
  if (process.versions.bun !== undefined || v8 === null) return {};
  const out = {};
  for (const sp of v8.getHeapSpaceStatistics()) out[sp.space_name] = sp.physical_space_size;
  return { spaces: out };
}

/** Parses `pub M S`; returns null for anything else. */
export function parsePub(text) {
  const m = /^pub (\d{1,9}) (\d{1,9})$/.exec(text);
  if (!m) return null;
  const count = Number(m[1]);
  const size = Number(m[2]);
  if (count > 1e6 || size > 16 * 1024 * 1024) return null;
  return { count, size };
}

/**
 * The many-topics extension of broadcast mode (native-bench/README.md): `sub K` (K: 0..999999)
 * moves the connection from the default topic to topic K and is answered with the same text
 * once subscribed; `pubt M S` publishes M binary messages of S bytes to every topic (the
 * default one and each K some connection asked for), message by message across the topics.
 * Returns { sub: K } or { pubt: { count, size } }, or null for anything else.
 */
export function parseTopicCmd(text) {
  let m = /^sub (\d{1,6})$/.exec(text);
  if (m) return { sub: Number(m[1]) };
  m = /^pubt (\d{1,9}) (\d{1,9})$/.exec(text);
  if (!m) return null;
  const count = Number(m[1]);
  const size = Number(m[2]);
  if (count > 1e6 || size > 16 * 1024 * 1024) return null;
  return { pubt: { count, size } };
}
