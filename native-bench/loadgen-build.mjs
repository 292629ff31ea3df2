// Builds native-bench/build/loadgen from loadgen.c when the binary is missing or older than
// its source (the comparison harness and the million-socket ramp both drive it).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const LOADGEN_SRC = path.join(HERE, 'loadgen.c');
export const LOADGEN = path.join(HERE, 'build', 'loadgen');

/** Compiles the load generator if needed; `log` says so. */
export function buildLoadgen(log) {
  const srcTime = fs.statSync(LOADGEN_SRC).mtimeMs;
  let binTime = 0;
  try {
    binTime = fs.statSync(LOADGEN).mtimeMs;
  } catch {}
  if (binTime >= srcTime) return;
  fs.mkdirSync(path.dirname(LOADGEN), { recursive: true });
  log('building native-bench/build/loadgen');
  execFileSync('gcc', ['-O2', '-Wall', '-o', LOADGEN, LOADGEN_SRC], { stdio: 'inherit' });
}
