/**
 * The records of a liveness link (watch-links.ts): a long-lived, idle TCP connection on the
 * gossip port from a member to one it watches, whose close without a goodbye is evidence
 * that the watched process died.
 *
 *   hello  = sealed on channel WatchHello, dialer → acceptor, first on the connection (the
 *            gossip port tells it from a push-pull head by its channel byte). Its plaintext
 *            has a fixed size, so its length is known from the clear header:
 *            `[u8 fromLen][from, 255 bytes padded][u8 toLen][to, 255 bytes padded][nonce 16]`.
 *   record = sealed on channel Watch, either way, fixed plaintext `[u8 type][nonce 16][nonce 16]`:
 *            Welcome (acceptor → dialer: the hello's nonce echoed, so the acceptor holds the
 *            key and is not a replay, then a challenge of its own), Proof (dialer → acceptor:
 *            the challenge echoed, so the hello was no replay either), Ping (heartbeat), Bye
 *            (the sender closes the link on purpose: its close is no evidence). Unused nonces
 *            are zero.
 * A refusal is the clear `[2][4][reason]` of stream-head.ts. Sans-I/O: bytes in, records out.
 */
import { Channel, NONCE_BYTES, TAG_BYTES, type AesGcmSealer } from './security.js';

/** Record types on a liveness link. WARNING: ONLY APPEND TO THIS TABLE. */
export const WatchRecord = { Welcome: 1, Ping: 2, Bye: 3, Proof: 4 } as const;
export type WatchRecord = (typeof WatchRecord)[keyof typeof WatchRecord];

/** Bytes of the nonce a hello carries and its welcome echoes. */
export const WATCH_NONCE_BYTES = 16;
const NAME_FIELD = 1 + 255;
/** Plaintext bytes of a hello: two padded names and the nonce. */
export const WATCH_HELLO_PLAIN_BYTES = 2 * NAME_FIELD + WATCH_NONCE_BYTES;
const RECORD_PLAIN_BYTES = 1 + 2 * WATCH_NONCE_BYTES;
/** Bytes before the label: version, channel, label length. */
const PREFIX_BYTES = 3;
const ZERO_NONCE = Buffer.alloc(WATCH_NONCE_BYTES);

/** Bytes of a sealed hello for a label of `labelLength` bytes. */
export function watchHelloBytes(labelLength: number): number {
  return PREFIX_BYTES + labelLength + NONCE_BYTES + WATCH_HELLO_PLAIN_BYTES + TAG_BYTES;
}

/** Bytes of a sealed record for a label of `labelLength` bytes. */
export function watchRecordBytes(labelLength: number): number {
  return PREFIX_BYTES + labelLength + NONCE_BYTES + RECORD_PLAIN_BYTES + TAG_BYTES;
}

export interface WatchHello {
  /** The dialer (the watcher). */
  from: string;
  /** The member it means to watch; an acceptor of another name refuses the link. */
  to: string;
  nonce: Uint8Array;
}

function putName(out: Buffer, at: number, name: string): void {
  const n = out.write(name, at + 1, 255, 'utf8');
  if (n !== Buffer.byteLength(name) || n === 0) throw new RangeError('a member name is 1..255 UTF-8 bytes');
  out[at] = n;
}

/** @throws RangeError for a name outside 1..255 bytes. */
export function encodeWatchHello(sealer: AesGcmSealer, hello: WatchHello): Uint8Array {
  const plain = Buffer.alloc(WATCH_HELLO_PLAIN_BYTES);
  putName(plain, 0, hello.from);
  putName(plain, NAME_FIELD, hello.to);
  plain.set(hello.nonce.subarray(0, WATCH_NONCE_BYTES), 2 * NAME_FIELD);
  return sealer.seal(plain, Channel.WatchHello);
}

/** The hello in an authenticated plaintext, or null when it does not decode. */
export function decodeWatchHello(plain: Uint8Array): WatchHello | null {
  if (plain.length !== WATCH_HELLO_PLAIN_BYTES) return null;
  const b = Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength);
  const name = (at: number): string | null => {
    const n = b[at] as number;
    return n === 0 ? null : b.toString('utf8', at + 1, at + 1 + n);
  };
  const from = name(0);
  const to = name(NAME_FIELD);
  if (from === null || to === null) return null;
  return { from, to, nonce: Buffer.from(b.subarray(2 * NAME_FIELD)) };
}

export function encodeWatchRecord(sealer: AesGcmSealer, type: WatchRecord, nonce: Uint8Array = ZERO_NONCE, nonce2: Uint8Array = ZERO_NONCE): Uint8Array {
  const plain = Buffer.alloc(RECORD_PLAIN_BYTES);
  plain[0] = type;
  plain.set(nonce.subarray(0, WATCH_NONCE_BYTES), 1);
  plain.set(nonce2.subarray(0, WATCH_NONCE_BYTES), 1 + WATCH_NONCE_BYTES);
  return sealer.seal(plain, Channel.Watch);
}

/** What a reader found in one chunk. Anything but records ends the link. */
export type WatchEvent =
  | { kind: 'record'; type: WatchRecord; nonce: Buffer; nonce2: Buffer }
  | { kind: 'refused'; reason: number }
  | { kind: 'fail' };

/**
 * Reads the records of one direction of a liveness link, after the hello. Holds at most one
 * record's bytes (a few dozen plus the label), in one buffer made once.
 */
export class WatchReader {
  readonly #sealer: AesGcmSealer;
  readonly #buf: Buffer;
  readonly #size: number;
  #have = 0;
  #done = false;

  constructor(sealer: AesGcmSealer) {
    this.#sealer = sealer;
    this.#size = watchRecordBytes(sealer.label.length);
    this.#buf = Buffer.allocUnsafe(this.#size);
  }

  /** Records in `chunk` (and bytes held from before), in order; a failure or refusal ends the list and the reader. */
  push(chunk: Buffer): WatchEvent[] {
    const out: WatchEvent[] = [];
    let off = 0;
    while (!this.#done && off < chunk.length) {
      const take = Math.min(chunk.length - off, this.#size - this.#have);
      chunk.copy(this.#buf, this.#have, off, off + take);
      this.#have += take;
      off += take;
      if (this.#have >= PREFIX_BYTES && this.#buf[1] === Channel.Refusal) {
        this.#done = true;
        out.push({ kind: 'refused', reason: this.#buf[2] as number });
        break;
      }
      if (this.#have < this.#size) break;
      this.#have = 0;
      const opened = this.#sealer.open(this.#buf, Channel.Watch);
      const type = opened.ok ? (opened.plain[0] as number) : 0;
      if (!opened.ok || type < WatchRecord.Welcome || type > WatchRecord.Proof) {
        this.#done = true;
        out.push({ kind: 'fail' });
        break;
      }
      const p = Buffer.from(opened.plain);
      out.push({ kind: 'record', type: type as WatchRecord, nonce: p.subarray(1, 1 + WATCH_NONCE_BYTES), nonce2: p.subarray(1 + WATCH_NONCE_BYTES) });
    }
    return out;
  }
}
