// The micro-benchmark cases: inputs, and a driver per implementation that runs one operation.
// Shared by frames.mjs (timing) and alloc.mjs (heap bytes per frame) so both measure exactly
// the same work. Nothing here times or asserts anything.
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '../..');

const DIST = path.join(ROOT, 'dist/src');
if (!fs.existsSync(path.join(DIST, 'protocol/frame-parser.js'))) {
  throw new Error(`murmur is not built (${path.relative(ROOT, DIST)} missing): run npx tsc -p tsconfig.json in ${ROOT}`);
}
const load = (rel) => import(pathToFileURL(path.join(DIST, rel)).href);
const { FrameParser } = await load('protocol/frame-parser.js');
const { unmaskInPlace, MaskKeyPool } = await load('protocol/mask.js');
const { isValidUtf8, Utf8Validator } = await load('protocol/utf8.js');
const { encodeFrame, writeFrameHeader, frameHeaderSize } = await load('protocol/frame-encoder.js');
const { acceptKey } = await load('protocol/handshake.js');
const { RequestHeadParser } = await load('http/request-head.js');
const { DEFAULT_LIMITS } = await load('limits.js');

// The rival is the root devDependency (ws 8.23), loaded by file path: native-bench/node_modules
// holds an older ws (8.13) next to bufferutil, which module resolution from this folder would
// find first. From the root, ws finds no bufferutil and uses its JS mask/unmask fallback.
const rootRequire = createRequire(path.join(ROOT, 'package.json'));
const WS_DIR = path.dirname(rootRequire.resolve('ws/package.json'));
const wsRequire = createRequire(path.join(WS_DIR, 'package.json'));
export const WS_VERSION = wsRequire('./package.json').version;
const Receiver = wsRequire('./lib/receiver.js');
const Sender = wsRequire('./lib/sender.js');
const wsBufferUtil = wsRequire('./lib/buffer-util.js');
const wsValidation = wsRequire('./lib/validation.js');
/** What ws's unmask resolves to here: 'js' (the byte loop) or a native binding. */
export const WS_UNMASK_KIND = wsBufferUtil.unmask.toString().includes('websocketUnmask')
  ? 'node:http websocketUnmask'
  : wsBufferUtil.unmask.toString().includes('bufferUtil')
    ? 'bufferutil'
    : 'js';

// bufferutil (the native addon ws 8.13 uses in native-bench/servers/ws-server.mjs): only a
// reference line in the C table, never the rival.
let bufferutil = null;
try {
  bufferutil = createRequire(path.join(ROOT, 'native-bench/package.json'))('bufferutil');
} catch {
  bufferutil = null;
}
export const HAS_BUFFERUTIL = bufferutil !== null;

const KiB = 1024;
const MiB = 1024 * KiB;
const MAX_PAYLOAD = 64 * MiB;

/** A fixed, non-zero mask key (a zero key lets both parsers skip unmasking). */
const KEY = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

// ---------------------------------------------------------------- inputs

/** Mixed text: 1-, 2-, 3- and 4-byte UTF-8 sequences, mostly ASCII as chat text is. */
const TEXT_UNIT = Buffer.from('Grüße an alle, naïve café – ✓ 世界 🙂 the quick brown fox jumps over 12 lazy dogs. ', 'utf8');

/** Exactly n bytes of valid UTF-8: TEXT_UNIT repeated, cut at a code point and padded with ASCII. */
export function text(n) {
  const out = Buffer.alloc(n, 0x61);
  let at = 0;
  while (at < n) {
    const take = Math.min(TEXT_UNIT.length, n - at);
    TEXT_UNIT.copy(out, at, 0, take);
    at += take;
  }
  // Do not end inside a multi-byte sequence: back up to its lead byte and pad with 'a'.
  let k = n - 1;
  while (k > 0 && (out[k] & 0xc0) === 0x80) k--;
  if (k >= 0 && out[k] >= 0xc0) {
    const len = out[k] < 0xe0 ? 2 : out[k] < 0xf0 ? 3 : 4;
    if (k + len > n) out.fill(0x61, k);
  }
  if (!Buffer.from(out.toString('utf8'), 'utf8').equals(out)) throw new Error('text(): not valid UTF-8');
  return out;
}

/** Deterministic pseudo-random bytes (binary payloads). */
export function bytes(n, seed = 1) {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** One client frame (masked with KEY), built here rather than by either implementation. */
export function clientFrame(opcode, payload, fin = true) {
  const n = payload.length;
  const ext = n < 126 ? 0 : n < 0x10000 ? 2 : 8;
  const out = Buffer.allocUnsafe(2 + ext + 4 + n);
  out[0] = (fin ? 0x80 : 0) | opcode;
  out[1] = 0x80 | (n < 126 ? n : n < 0x10000 ? 126 : 127);
  if (ext === 2) out.writeUInt16BE(n, 2);
  if (ext === 8) out.writeBigUInt64BE(BigInt(n), 2);
  KEY.copy(out, 2 + ext);
  const p = 2 + ext + 4;
  for (let i = 0; i < n; i++) out[p + i] = payload[i] ^ KEY[i & 3];
  return out;
}

/** Splits buf into pieces of `size` bytes (the last may be shorter). */
function split(buf, size) {
  const out = [];
  for (let at = 0; at < buf.length; at += size) out.push(buf.subarray(at, Math.min(at + size, buf.length)));
  return out;
}

const fmtSize = (n) => (n >= MiB ? `${n / MiB} MiB` : n >= KiB ? `${n / KiB} KiB` : `${n} B`);

// ---------------------------------------------------------------- parse cases

/**
 * A parse case: `chunks` are pushed in order, each as one socket read; one operation parses
 * all of them and yields `messages` messages of `payloadBytes` bytes in all, in `frames` frames.
 */
function parseCase(id, label, { chunks, frames, messages, payloadBytes, isBinary, expect }) {
  return { kind: 'parse', id, label, chunks, frames, messages, payloadBytes, isBinary, expect };
}

function single(kindName, n) {
  const isBinary = kindName === 'binary';
  const payload = isBinary ? bytes(n, n) : text(n);
  return parseCase(`parse-${kindName}-${n}`, `${kindName} ${fmtSize(n)}, 1 frame`, {
    chunks: [clientFrame(isBinary ? 2 : 1, payload)],
    frames: 1,
    messages: 1,
    payloadBytes: n,
    isBinary,
    expect: payload,
  });
}

function many(kindName, count, n) {
  const isBinary = kindName === 'binary';
  const payload = isBinary ? bytes(n, 7) : text(n);
  const frame = clientFrame(isBinary ? 2 : 1, payload);
  return parseCase(`parse-${kindName}-${count}x${n}`, `${kindName} ${count} x ${fmtSize(n)} in 1 chunk`, {
    chunks: [Buffer.concat(Array(count).fill(frame))],
    frames: count,
    messages: count,
    payloadBytes: count * n,
    isBinary,
    expect: payload,
  });
}

function spanning(kindName, n, chunk) {
  const isBinary = kindName === 'binary';
  const payload = isBinary ? bytes(n, 3) : text(n);
  const chunks = split(clientFrame(isBinary ? 2 : 1, payload), chunk);
  return parseCase(`parse-${kindName}-${n}-in-${chunk}`, `${kindName} ${fmtSize(n)}, 1 frame in ${chunks.length} x ${fmtSize(chunk)} chunks`, {
    chunks,
    frames: 1,
    messages: 1,
    payloadBytes: n,
    isBinary,
    expect: payload,
  });
}

function fragmented(kindName, n, fragment) {
  const isBinary = kindName === 'binary';
  const payload = isBinary ? bytes(n, 5) : text(n);
  const count = Math.ceil(n / fragment);
  const frames = [];
  // Cut on byte boundaries regardless of code points: fragments may split a character.
  for (let i = 0; i < count; i++) {
    const piece = payload.subarray(i * fragment, Math.min((i + 1) * fragment, n));
    frames.push(clientFrame(i === 0 ? (isBinary ? 2 : 1) : 0, piece, i === count - 1));
  }
  return parseCase(`parse-${kindName}-${n}-frag-${fragment}`, `${kindName} ${fmtSize(n)} in ${count} x ${fmtSize(fragment)} fragments, 1 chunk`, {
    chunks: [Buffer.concat(frames)],
    frames: count,
    messages: 1,
    payloadBytes: n,
    isBinary,
    expect: payload,
  });
}

/** Parse cases by group; each group runs in its own process. */
export const PARSE_GROUPS = {
  'parse-small': () => [single('binary', 2), single('binary', 20), single('binary', 125), single('text', 20), single('text', 125)],
  'parse-medium': () => [single('binary', KiB), single('binary', 16 * KiB), single('binary', 64 * KiB), single('text', KiB), single('text', 64 * KiB)],
  'parse-large': () => [single('binary', MiB), single('text', MiB)],
  'parse-many': () => [many('binary', 1000, 20), many('text', 1000, 20)],
  'parse-split': () => [spanning('binary', MiB, 64 * KiB), spanning('binary', MiB, KiB), spanning('text', MiB, 64 * KiB)],
  'parse-fragmented': () => [fragmented('binary', 64 * KiB, KiB), fragmented('text', 64 * KiB, KiB)],
};

/**
 * Each socket read is a fresh buffer that the parser may unmask in place (both parsers do).
 * So one operation first copies every input chunk into its own preallocated scratch buffer
 * (TypedArray.set: no allocation), then parses the scratch buffers. The 'copy' driver does the
 * copies alone; run.mjs reports parse time net of it, and the copy time beside it.
 */
function scratchOf(c) {
  return c.chunks.map((ch) => Buffer.allocUnsafeSlow(ch.length));
}

export const parseDrivers = {
  copy(c) {
    const { chunks } = c;
    const scratch = scratchOf(c);
    return {
      run() {
        for (let i = 0; i < chunks.length; i++) scratch[i].set(chunks[i]);
      },
      // A sink so the copies are observable.
      result: () => scratch[scratch.length - 1][0],
    };
  },

  murmur(c, onMessage) {
    const { chunks } = c;
    const scratch = scratchOf(c);
    const state = { messages: 0, bytes: 0, error: null };
    const handler = {
      onMessage: onMessage ?? ((data) => {
        state.messages++;
        state.bytes += data.length;
      }),
      onPing() {},
      onPong() {},
      onClose() {},
      onProtocolError(err) {
        state.error = err;
      },
    };
    const parser = new FrameParser(handler, { maxPayload: MAX_PAYLOAD, expectMasked: true });
    return {
      run() {
        for (let i = 0; i < chunks.length; i++) {
          const s = scratch[i];
          s.set(chunks[i]);
          parser.push(s);
        }
      },
      state,
    };
  },

  ws(c, onMessage) {
    const { chunks } = c;
    const scratch = scratchOf(c);
    const state = { messages: 0, bytes: 0, error: null };
    const receiver = new Receiver({ isServer: true, maxPayload: MAX_PAYLOAD, skipUTF8Validation: false });
    receiver.on('message', onMessage ?? ((data) => {
      state.messages++;
      state.bytes += data.length;
    }));
    receiver.on('error', (err) => {
      state.error = err;
    });
    return {
      // write(), not _write(): ws's socketOnData calls receiver.write(chunk), so the
      // Writable bookkeeping is part of ws's cost per socket read.
      run() {
        for (let i = 0; i < chunks.length; i++) {
          const s = scratch[i];
          s.set(chunks[i]);
          receiver.write(s);
        }
      },
      state,
    };
  },
};

/** Parses once with a handler that keeps copies, and checks messages and bytes. Throws on a mismatch. */
export function verifyParse(c, impl) {
  const got = [];
  const d = parseDrivers[impl](c, (data, isBinary) => got.push([Buffer.from(data), isBinary]));
  d.run();
  d.run();
  if (d.state.error) throw new Error(`${impl} ${c.id}: ${d.state.error.message}`);
  if (got.length !== 2 * c.messages) throw new Error(`${impl} ${c.id}: ${got.length} messages, expected ${2 * c.messages}`);
  for (const [data, isBinary] of got) {
    if (isBinary !== c.isBinary) throw new Error(`${impl} ${c.id}: isBinary ${isBinary}`);
    if (!data.equals(c.expect)) throw new Error(`${impl} ${c.id}: payload differs`);
  }
}

// ---------------------------------------------------------------- other cases

/**
 * A function case: `murmur` and `ws` are zero-argument functions doing one operation on the
 * same input; `bytes` is the payload size for a bytes/s figure (0: none). `rival` names what
 * the ws column holds when it is not ws.
 */
function fnCase(group, id, label, bytesPerOp, murmur, ws, rival) {
  return { kind: 'fn', group, id, label, bytes: bytesPerOp, murmur, ws, rival };
}

const SIZES = [2, 20, 125, KiB, 16 * KiB, 64 * KiB, MiB];

function unmaskCases() {
  return SIZES.map((n) => {
    // Unmasking the same buffer again and again is fine: the contents do not matter to XOR.
    const a = Buffer.allocUnsafeSlow(n);
    bytes(n).copy(a);
    const b = Buffer.allocUnsafeSlow(n);
    bytes(n).copy(b);
    return fnCase(
      'unmask', `unmask-${n}`, `unmask ${fmtSize(n)}`, n,
      () => unmaskInPlace(a, 0, n, KEY, 0, 0),
      () => wsBufferUtil.unmask(b, KEY),
    );
  });
}

function utf8Cases() {
  const out = [];
  for (const n of [20, 125, KiB, 64 * KiB]) {
    const t = text(n);
    out.push(fnCase('utf8', `utf8-${n}`, `UTF-8 validate ${fmtSize(n)} (mixed)`, n, () => isValidUtf8(t), () => wsValidation.isValidUTF8(t)));
  }
  const ascii = Buffer.alloc(64 * KiB, 0x61);
  out.push(fnCase('utf8', 'utf8-ascii-65536', 'UTF-8 validate 64 KiB (ASCII)', ascii.length, () => isValidUtf8(ascii), () => wsValidation.isValidUTF8(ascii)));
  // murmur validates fragments as they arrive; ws validates the joined message once.
  const t = text(64 * KiB);
  const v = new Utf8Validator();
  out.push(fnCase(
    'utf8', 'utf8-stream-65536-by-1024', 'UTF-8 64 KiB: murmur streaming in 64 x 1 KiB pieces vs ws whole', t.length,
    () => {
      v.reset();
      for (let at = 0; at < t.length; at += KiB) v.update(t, at, at + KiB);
      return v.finish();
    },
    () => wsValidation.isValidUTF8(t),
    'ws isValidUTF8 on the whole 64 KiB',
  ));
  return out;
}

function encodeCases() {
  const out = [];
  const wsServerOpts = { fin: true, opcode: 2, mask: false, readOnly: false, rsv1: false };
  for (const n of [20, KiB, 64 * KiB]) {
    const p = bytes(n);
    // Server side, as sent for payloads above 1 KiB: a new header buffer, payload untouched.
    out.push(fnCase(
      'encode', `encode-header-${n}`, `encode server header for ${fmtSize(n)} (payload not copied)`, 0,
      () => {
        const h = Buffer.allocUnsafe(frameHeaderSize(n, false));
        writeFrameHeader(h, 0, 2, n, true, false, null, 0);
        return h;
      },
      () => Sender.frame(p, wsServerOpts),
    ));
  }
  const pool = new MaskKeyPool();
  const wsClientOpts = { fin: true, opcode: 2, mask: true, readOnly: true, rsv1: false };
  for (const n of [20, KiB, 64 * KiB]) {
    const p = bytes(n);
    // Client side: one new buffer, header + payload masked with a fresh random key.
    out.push(fnCase(
      'encode', `encode-masked-${n}`, `encode masked client frame ${fmtSize(n)} (copy + mask)`, n,
      () => encodeFrame(2, p, true, pool),
      () => Sender.frame(p, wsClientOpts),
    ));
  }
  return out;
}

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** A Chrome-like upgrade request head. */
function upgradeHead(cookieBytes) {
  const lines = [
    'GET /chat?room=lobby HTTP/1.1',
    'Host: example.com:8080',
    'Connection: Upgrade',
    'Pragma: no-cache',
    'Cache-Control: no-cache',
    'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36',
    'Upgrade: websocket',
    'Origin: https://example.com',
    'Sec-WebSocket-Version: 13',
    'Accept-Encoding: gzip, deflate, br, zstd',
    'Accept-Language: en-GB,en;q=0.9,de;q=0.8',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits',
  ];
  if (cookieBytes > 0) lines.push(`Cookie: ${'session=' + 'x'.repeat(cookieBytes - 8)}`);
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'latin1');
}

/**
 * The baseline head parser: latin1 string, split on CRLF, lower-cased names, trimmed values.
 * No limits, no validation; what a quick hand-written parser does. Not ws (ws gets its
 * request from Node's llhttp through http.Server).
 */
function naiveHead(buf) {
  const s = buf.toString('latin1');
  const end = s.indexOf('\r\n\r\n');
  const lines = s.slice(0, end).split('\r\n');
  const [method, target, version] = lines[0].split(' ');
  const headers = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(':');
    headers.push([line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()]);
  }
  return { method, target, version, headers, rest: buf.subarray(end + 4) };
}

function handshakeCases() {
  const key = 'dGhlIHNhbXBsZSBub25jZQ==';
  const out = [
    fnCase(
      'handshake', 'accept-key', 'Sec-WebSocket-Accept (SHA-1 + base64)', 0,
      () => acceptKey(key),
      // ws computes it inline in websocket-server.js with exactly this expression.
      () => createHash('sha1').update(key + GUID).digest('base64'),
      "ws's inline expression (identical code: a noise check)",
    ),
  ];
  for (const cookie of [0, 1500]) {
    const head = upgradeHead(cookie);
    out.push(fnCase(
      'handshake', `head-${head.length}`, `upgrade head ${head.length} B${cookie ? ' (with cookie)' : ''}, 1 chunk`, 0,
      () => new RequestHeadParser(DEFAULT_LIMITS).push(head),
      () => naiveHead(head),
      'naive latin1 + split parser, not ws',
    ));
  }
  return out;
}

export const FN_GROUPS = {
  unmask: unmaskCases,
  utf8: utf8Cases,
  encode: encodeCases,
  handshake: handshakeCases,
};

/** Sanity checks of the fn cases' results (the same answers from both sides). */
export function verifyFn(c) {
  if (c.group === 'unmask') {
    return; // checked bytewise below, once
  }
  const a = c.murmur();
  const b = c.ws();
  if (c.group === 'utf8' && (a !== true || b !== true)) throw new Error(`${c.id}: validators disagree or reject (${a}, ${b})`);
  if (c.id === 'accept-key' && (a !== b || a !== 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=')) throw new Error('accept key differs');
  if (c.id.startsWith('head-')) {
    if (a.kind !== 'head' || a.head.headers.length !== b.headers.length) throw new Error(`${c.id}: heads differ`);
  }
  if (c.id.startsWith('encode-header-')) {
    const h = Array.isArray(b) ? b[0] : b;
    if (!a.equals(h)) throw new Error(`${c.id}: headers differ`);
  }
  if (c.id.startsWith('encode-masked-')) {
    // Sender.frame returns [frame] when it merges (mask + readOnly); the keys differ, so compare shapes.
    const f = Array.isArray(b) ? b : [b];
    if (f.length !== 1 || a.length !== f[0].length || !a.subarray(0, 2).equals(f[0].subarray(0, 2))) throw new Error(`${c.id}: frames differ`);
  }
}

/** murmur's and ws's unmask give the same bytes as a naive loop, at every size, even and odd phases. */
export function verifyUnmask() {
  for (const n of [1, 2, 3, 20, 127, 128, 131, 1000, 4099]) {
    for (const off of [0, 1, 3]) {
      const src = bytes(n + off, n);
      const want = Buffer.from(src);
      for (let i = 0; i < n; i++) want[off + i] ^= KEY[i & 3];
      const a = Buffer.from(src);
      unmaskInPlace(a, off, off + n, KEY, 0, 0);
      const b = Buffer.from(src);
      wsBufferUtil.unmask(b.subarray(off), KEY);
      if (!a.equals(want) || !b.equals(want)) throw new Error(`unmask mismatch at n=${n} off=${off}`);
    }
  }
}

/** bufferutil's native unmask for the C-reference table, or null. */
export function bufferutilUnmaskCases() {
  if (bufferutil === null) return [];
  return SIZES.map((n) => {
    const a = Buffer.allocUnsafeSlow(n);
    bytes(n).copy(a);
    return { id: `bufferutil-unmask-${n}`, bytes: n, run: () => bufferutil.unmask(a, KEY) };
  });
}

export const UNMASK_SIZES = SIZES;
