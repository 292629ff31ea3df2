/**
 * Helpers for protocol tests: an independent frame builder (it does not use the encoder
 * under test), a handler that records what the parser reports as plain values, and a
 * one-call parse.
 */
import { FrameParser, type FrameHandler, type FrameParserOptions } from '../../src/protocol/frame-parser.js';
import type { ProtocolError } from '../../src/protocol/errors.js';
import { lcg } from './bytes.js';

export interface FrameSpec {
  opcode: number;
  payload?: Buffer | string;
  fin?: boolean;
  /** RSV bits as the 0x70 part of byte 0. */
  rsv?: number;
  /** 4-byte mask key; null or omitted: unmasked. */
  mask?: Buffer | null;
  /** Length field form: 7, 16 or 64 bits. Default: the shortest. */
  lengthBits?: 7 | 16 | 64;
}

/** Builds the wire bytes of one frame with a naive byte loop. */
export function frame(spec: FrameSpec): Buffer {
  const payload = typeof spec.payload === 'string' ? Buffer.from(spec.payload) : (spec.payload ?? Buffer.alloc(0));
  const len = payload.length;
  const bitsForm = spec.lengthBits ?? (len < 126 ? 7 : len < 65536 ? 16 : 64);
  const head: number[] = [((spec.fin ?? true) ? 0x80 : 0) | (spec.rsv ?? 0) | spec.opcode];
  const maskBit = spec.mask ? 0x80 : 0;
  if (bitsForm === 7) head.push(maskBit | len);
  else if (bitsForm === 16) head.push(maskBit | 126, len >> 8, len & 255);
  else {
    head.push(maskBit | 127);
    const hi = Math.floor(len / 2 ** 32);
    const lo = len % 2 ** 32;
    head.push(hi >>> 24, (hi >>> 16) & 255, (hi >>> 8) & 255, hi & 255, lo >>> 24, (lo >>> 16) & 255, (lo >>> 8) & 255, lo & 255);
  }
  const out = Buffer.alloc(head.length + (spec.mask ? 4 : 0) + len);
  Buffer.from(head).copy(out);
  let at = head.length;
  if (spec.mask) {
    spec.mask.copy(out, at, 0, 4);
    at += 4;
    for (let i = 0; i < len; i++) out[at + i] = payload[i]! ^ spec.mask[i % 4]!;
  } else {
    payload.copy(out, at);
  }
  return out;
}

/** A fixed mask key for masked test frames. */
export const KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

/** Shorthand for a masked (client-to-server) frame. */
export function cframe(spec: FrameSpec): Buffer {
  return frame({ mask: KEY, ...spec });
}

export type Event =
  | ['message', string, boolean]
  | ['ping', string]
  | ['pong', string]
  | ['close', number, string]
  | ['error', string, number];

/** Records parser output; payloads as hex so events compare with assert.equal. */
export class Recorder implements FrameHandler {
  readonly events: Event[] = [];
  errors: ProtocolError[] = [];
  /** Called after each event is recorded (to halt the parser from a callback, say). */
  after: ((e: Event) => void) | null = null;

  private record(e: Event): void {
    this.events.push(e);
    this.after?.(e);
  }
  onMessage(data: Buffer, isBinary: boolean): void {
    this.record(['message', data.toString('hex'), isBinary]);
  }
  onPing(data: Buffer): void {
    this.record(['ping', data.toString('hex')]);
  }
  onPong(data: Buffer): void {
    this.record(['pong', data.toString('hex')]);
  }
  onClose(code: number, reason: string): void {
    this.record(['close', code, reason]);
  }
  onProtocolError(err: ProtocolError): void {
    this.errors.push(err);
    this.record(['error', err.code, err.closeCode]);
  }
}

export const SERVER: FrameParserOptions = { maxPayload: 16 * 1024 * 1024, expectMasked: true };
export const CLIENT: FrameParserOptions = { maxPayload: 16 * 1024 * 1024, expectMasked: false };

/**
 * Feeds the chunks and returns the events. The bytes are copied once first (the parser
 * unmasks in place, and the caller's buffers must survive), then fed as views of the copy
 * cut at the same boundaries.
 */
export function parse(chunks: Buffer | Buffer[], options: FrameParserOptions = SERVER): Event[] {
  const list = Array.isArray(chunks) ? chunks : [chunks];
  const copy = Buffer.concat(list);
  const rec = new Recorder();
  const parser = new FrameParser(rec, options);
  let at = 0;
  for (const c of list) {
    parser.push(copy.subarray(at, at + c.length));
    at += c.length;
  }
  return rec.events;
}

/** Hex of a UTF-8 string, for expected message events. */
export function hexOf(s: string | Buffer): string {
  return (typeof s === 'string' ? Buffer.from(s) : s).toString('hex');
}

/** Splits a buffer into single-byte views. */
export function bytewise(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i++) out.push(buf.subarray(i, i + 1));
  return out;
}

/**
 * Parses a copy of `buf` fed in pieces of 1..maxChunk bytes cut at random points
 * (deterministic for a seed; maxChunk 1 feeds byte by byte). Views are made one at a time,
 * so a long stream costs no array of chunks.
 */
export function parseSplit(buf: Buffer, seed: number, maxChunk: number, options: FrameParserOptions = SERVER): Event[] {
  const copy = Buffer.from(buf);
  const rnd = lcg(seed);
  const rec = new Recorder();
  const parser = new FrameParser(rec, options);
  let i = 0;
  while (i < copy.length) {
    const n = maxChunk === 1 ? 1 : 1 + Math.floor(rnd() * maxChunk);
    parser.push(copy.subarray(i, i + n));
    i += n;
  }
  return rec.events;
}

/** Splits a buffer into views of 1..maxChunk bytes at random points (deterministic for a seed). */
export function randomSplit(buf: Buffer, seed: number, maxChunk: number): Buffer[] {
  const rnd = lcg(seed);
  const out: Buffer[] = [];
  let i = 0;
  while (i < buf.length) {
    const n = 1 + Math.floor(rnd() * maxChunk);
    out.push(buf.subarray(i, i + n));
    i += n;
  }
  return out;
}
