// Inputs for the decoder fuzz tests (gossip packets, presence deltas): random bytes, and
// mutations of valid encodings that keep most of their structure.
import type { Random } from '../../src/cluster/gossip/math.js';

export function randomBytes(r: Random, max: number): Buffer {
  const b = Buffer.alloc(Math.floor(r() * max));
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(r() * 256);
  return b;
}

/** Flip a bit, truncate, extend, splice, or overwrite length-like bytes with 0xff or 0. */
export function mutate(r: Random, input: Uint8Array): Buffer {
  const b = Buffer.from(input);
  if (b.length === 0) return randomBytes(r, 8);
  const at = Math.floor(r() * b.length);
  switch (Math.floor(r() * 6)) {
    case 0:
      b[at] = (b[at] as number) ^ (1 << Math.floor(r() * 8));
      return b;
    case 1:
      return b.subarray(0, at);
    case 2:
      return Buffer.concat([b, randomBytes(r, 16)]);
    case 3:
      return Buffer.concat([b.subarray(0, at), randomBytes(r, 8), b.subarray(at)]);
    case 4:
      b[at] = 0xff;
      if (at + 1 < b.length) b[at + 1] = 0xff;
      if (at + 2 < b.length) b[at + 2] = 0xff;
      return b;
    default:
      b[at] = 0;
      return b;
  }
}
