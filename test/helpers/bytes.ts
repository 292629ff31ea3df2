/**
 * Readable byte literals for protocol tests.
 * hex('81 05 48 65 6c 6c 6f') and bits('1 000 0001  0 0000101') both give Buffers;
 * whitespace is ignored in both.
 */
export function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

export function bits(s: string): Buffer {
  const b = s.replace(/\s+/g, '');
  if (b.length % 8 !== 0 || /[^01]/.test(b)) throw new Error(`bits(): need whole bytes of 0/1, got ${b.length} bits`);
  const out = Buffer.alloc(b.length / 8);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(b.slice(i * 8, i * 8 + 8), 2);
  return out;
}

/** Splits a buffer at random points (deterministic for a seed) into copies. */
export function randomChunks(buf: Buffer, seed: number, maxChunk = 17): Buffer[] {
  const rnd = lcg(seed);
  const out: Buffer[] = [];
  let i = 0;
  while (i < buf.length) {
    const n = 1 + Math.floor(rnd() * maxChunk);
    out.push(Buffer.from(buf.subarray(i, Math.min(buf.length, i + n))));
    i += n;
  }
  return out;
}

/** A small deterministic PRNG in [0, 1). */
export function lcg(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}
