/**
 * Node's internal stream bindings, as far as the lean transport relies on them.
 *
 * They are reached through `process.binding('tcp_wrap')` and `process.binding('stream_wrap')`,
 * the two allowlisted modules node:net itself is built on. On Node 20 neither call warns
 * (DEP0111 is documentation-only for them), but `--pending-deprecation` wraps process.binding
 * in a warning function and the permission model makes it throw: in both cases, and whenever
 * anything else looks different from what this file expects, the bindings count as missing and
 * the server keeps the portable transport. Nothing here is loaded until first asked for.
 */

import { Buffer } from 'node:buffer';

/** The handle a TCP connection lives in (node's TCPWrap, a LibuvStreamWrap). Opaque to callers. */
export interface LeanHandle {
  readStart(): number;
  readStop(): number;
  writeBuffer(req: WriteReq, data: Buffer): number;
  writev(req: WriteReq, chunks: Buffer[], allBuffers: true): number;
  shutdown(req: ShutdownReq): number;
  close(callback?: (this: LeanHandle) => void): void;
  getpeername(out: { address?: string; family?: string; port?: number }): number;
  setNoDelay(enable: boolean): number;
  readonly writeQueueSize: number;
  /** The descriptor (Unix); -1 once closed. */
  readonly fd: number;
  onread: (this: LeanHandle, buffer: ArrayBuffer | undefined) => unknown;
  /**
   * Reads go into `buffer` from now on (node's CustomBufferJSListener, what net.Socket's
   * `onread` option uses): onread gets no ArrayBuffer, the bytes are at the buffer's start.
   * Optional: where it is missing, reads stay in node's own buffers.
   */
  useUserBuffer?(buffer: Buffer): void;
}

/** A write request (node's WriteWrap). `buffer` keeps the bytes alive until oncomplete. */
export interface WriteReq {
  oncomplete: (this: WriteReq, status: number, handle: LeanHandle) => void;
  buffer: Buffer | Buffer[] | null;
}

export interface ShutdownReq {
  oncomplete: (this: ShutdownReq, status: number, handle: LeanHandle) => void;
}

export interface LeanBindings {
  TCP: new (type: number) => LeanHandle;
  tcpConstants: { SOCKET: number; SERVER: number };
  WriteWrap: new () => WriteReq;
  ShutdownWrap: new () => ShutdownReq;
  /** Shared with every stream in the process: read right after the call that filled it. */
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
  kBytesWritten: number;
  kLastWriteWasAsync: number;
  /**
   * The key under which a handle points back to its connection: node's own `owner_symbol`,
   * which the TCP handle template already gives every handle (as null), so storing the owner
   * there adds no property and the handle keeps its shared hidden class and its 3-slot
   * property array. kLeanOwner when that symbol is not found (a new property per handle:
   * about 24 bytes more, nothing else changes).
   */
  ownerKey: symbol;
}

/** The fallback owner key (see LeanBindings.ownerKey). */
export const kLeanOwner: unique symbol = Symbol('murmur.lean');

/** libuv's UV_EOF (the same on every platform); the live self-check confirms it. */
export const UV_EOF = -4095;

let loaded: LeanBindings | null = null;
let loadFailure: string | null = null;

/** The bindings, or null with leanBindingsFailure() saying why. Loaded once. */
export function leanBindings(): LeanBindings | null {
  if (loaded !== null || loadFailure !== null) return loaded;
  try {
    loaded = load();
  } catch (err) {
    loadFailure = err instanceof Error ? err.message : String(err);
  }
  return loaded;
}

export function leanBindingsFailure(): string | null {
  leanBindings();
  return loadFailure;
}

type BindingFn = (name: string) => unknown;

function load(): LeanBindings {
  const binding = (process as unknown as { binding?: BindingFn }).binding;
  if (typeof binding !== 'function') throw new Error('process.binding is not available');
  // Node's own function is named "binding"; --pending-deprecation replaces it with a wrapper
  // (named "deprecated") that prints DEP0111 on every call: never call that one.
  if (binding.name !== 'binding') throw new Error(`process.binding is wrapped ("${binding.name}"), e.g. by --pending-deprecation`);

  // Any warning these two calls would print (a future Node deprecating them at runtime) makes
  // the lean transport unavailable instead of reaching the user's terminal.
  const warnings: string[] = [];
  const emitWarning = process.emitWarning;
  let tcp: Record<string, unknown>;
  let stream: Record<string, unknown>;
  process.emitWarning = ((w: string | Error) => {
    warnings.push(typeof w === 'string' ? w : w.message);
  }) as typeof process.emitWarning;
  try {
    tcp = binding.call(process, 'tcp_wrap') as Record<string, unknown>;
    stream = binding.call(process, 'stream_wrap') as Record<string, unknown>;
  } finally {
    process.emitWarning = emitWarning;
  }
  if (warnings.length > 0) throw new Error(`process.binding warns: ${warnings[0]}`);

  const TCP = tcp.TCP;
  const constants = tcp.constants as { SOCKET?: unknown; SERVER?: unknown } | undefined;
  if (typeof TCP !== 'function') throw new Error('tcp_wrap.TCP is missing');
  if (constants === undefined || typeof constants.SOCKET !== 'number' || typeof constants.SERVER !== 'number') {
    throw new Error('tcp_wrap.constants.SOCKET/SERVER are missing');
  }
  const proto = TCP.prototype as Record<string, unknown>;
  for (const m of ['readStart', 'readStop', 'writeBuffer', 'writev', 'shutdown', 'close', 'getpeername', 'setNoDelay']) {
    if (typeof proto[m] !== 'function') throw new Error(`TCP.prototype.${m} is missing`);
  }
  for (const a of ['onread', 'writeQueueSize']) {
    if (!(a in proto)) throw new Error(`TCP.prototype.${a} is missing`);
  }
  const { WriteWrap, ShutdownWrap, streamBaseState } = stream;
  if (typeof WriteWrap !== 'function') throw new Error('stream_wrap.WriteWrap is missing');
  if (typeof ShutdownWrap !== 'function') throw new Error('stream_wrap.ShutdownWrap is missing');
  if (!(streamBaseState instanceof Int32Array)) throw new Error('stream_wrap.streamBaseState is not an Int32Array');
  const idx: number[] = [];
  for (const k of ['kReadBytesOrError', 'kArrayBufferOffset', 'kBytesWritten', 'kLastWriteWasAsync']) {
    const v = stream[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= streamBaseState.length || idx.includes(v)) {
      throw new Error(`stream_wrap.${k} is not a usable index`);
    }
    idx.push(v);
  }
  // The handle template's own symbol slot (net.Socket stores itself there). Looked up on a
  // fresh handle by its description, since node does not export the symbol.
  let ownerKey: symbol = kLeanOwner;
  const probe = new (TCP as new (type: number) => LeanHandle)(constants.SOCKET);
  try {
    for (const sym of Object.getOwnPropertySymbols(probe)) {
      if (sym.description === 'owner_symbol' && (probe as unknown as Record<symbol, unknown>)[sym] === null) ownerKey = sym;
    }
  } finally {
    probe.close();
  }
  return {
    TCP: TCP as LeanBindings['TCP'],
    tcpConstants: { SOCKET: constants.SOCKET, SERVER: constants.SERVER },
    WriteWrap: WriteWrap as LeanBindings['WriteWrap'],
    ShutdownWrap: ShutdownWrap as LeanBindings['ShutdownWrap'],
    streamBaseState,
    kReadBytesOrError: idx[0]!,
    kArrayBufferOffset: idx[1]!,
    kBytesWritten: idx[2]!,
    kLastWriteWasAsync: idx[3]!,
    ownerKey,
  };
}
