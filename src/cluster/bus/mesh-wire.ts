/**
 * The records of a mesh link (link protocol 1). A link is one WebSocket connection from
 * the node that publishes (the dialer) to a node that may have subscribers (the acceptor);
 * every WebSocket message on it is binary and holds one or more records, back to back.
 *
 * Dialer -> acceptor:
 *   Publish         [1][flags u8: bit 0 = binary][topic length u16][topic][data length u32][data]
 *   Forward         [6][topic u16+][origin u8+][seq f64][known epoch u8+][known offset f64][from f64][record u32+]
 *                   a publish of a history topic, sent to the topic's owner (docs/cluster.md);
 *                   `from`: the origin's oldest publish of the topic not yet back ordered
 *   Ordered         [7][flags u8: bit 0 = ack wanted][topic u16+][epoch u8+][offset f64][origin u8+][seq f64][frame u32+]
 *                   a message at its cluster-wide position, from the topic's owner
 *   Ack             [8][topic u16+][epoch u8+][offset f64]   the replica holds every message up to offset
 *   FillRequest     [9][topic u16+][epoch u8+][from f64][to f64]   send me offsets from..to (1 <= from <= to)
 *                   of this epoch: they never reached me (a gap in the ordered messages)
 *   FillEnd         [10][topic u16+][epoch u8+][first f64][last f64]   the answer to a FillRequest, after
 *                   the Ordered records it holds: `epoch` is the responder's, first..last what it could send
 *                   (first > last: none; first above the asked `from`: the older ones are trimmed there)
 *                   Two epochs are not epochs but questions (murmur's epochs are base64url, never
 *                   starting with '~'): LINE_QUERY (from 1 to 1) asks the topic's owner where its line
 *                   stands, for a subscribe on a node that holds none of it; RESERVE_PREFIX + epoch
 *                   (from 1 to 1), from the owner to its replica, says the epoch the owner reserved for
 *                   the topic's first message. Both are answered with a FillEnd whose `first` is 0
 *                   (never so for an ordinary answer): to LINE_QUERY, epoch and last offset of the
 *                   line (last 0: the reserved epoch, before the first message), or LINE_QUERY itself
 *                   when the responder cannot tell yet (not the owner in its view, line not known,
 *                   reservation not held by the replica yet); to a reservation, the same epoch field
 *                   once the replica holds it. Older builds answer both as requests for another
 *                   epoch (`first` 1): the asker then falls back to its own history.
 *   TailRequest     [11][topic u16+]   send me the tail of your history of this topic (a node that
 *                   owns the topic and holds no line of it asks before it orders)
 * (`u16+` is a u16 length then that many bytes; f64 fields hold safe non-negative integers.)
 * Acceptor -> dialer:
 *   Hello           [5][proof: 32 bytes]           first record, proves the acceptor holds the key
 *   InterestAdd     [2][count u16]([length u16][topic])*   topics that gained a local subscriber
 *   InterestRemove  [3][count u16]([length u16][topic])*   topics that lost their last one
 *   Synced          [4]                            the full interest set has been sent
 *   Ordered, FillEnd                               the answer to a FillRequest sent on this link
 *   Ack                                            the replica's ack of Ordered records sent on this link
 *   Tail            [12][topic u16+][epoch u8+][first f64][count u32]([frame u32+]){count}
 *                   the answer to a TailRequest: the last messages of the responder's history,
 *                   offsets first..first+count-1 (epoch '' and count 0: it holds none; count 0 with
 *                   an epoch: it holds none, and the epoch is the one reserved for the line's first message)
 *   Origins         [13][topic u16+][count u16]([origin u8+][seq f64]){count}   sent before a Tail:
 *                   the last sequence number the responder saw ordered per origin, so the new owner
 *                   recognises a forward ordered before it held the line when its origin resends it
 * Answers travel back on the link their request came on: the requester's own link, which is up
 * when it asks (the responder's link to the requester may still be coming back after a restart).
 *
 * Integers are big-endian; topics are UTF-8. Record types are append-only. A record of the
 * wrong direction, an unknown type, a truncated record, an empty or over-long topic or a
 * topic that is not UTF-8 fails the link.
 */
import { isUtf8 } from 'node:buffer';
import { ACCEPT_PROOF_BYTES } from './auth.js';

export const LinkRecord = { Publish: 1, InterestAdd: 2, InterestRemove: 3, Synced: 4, Hello: 5, Forward: 6, Ordered: 7, Ack: 8, FillRequest: 9, FillEnd: 10, TailRequest: 11, Tail: 12, Origins: 13 } as const;
export type LinkRecord = (typeof LinkRecord)[keyof typeof LinkRecord];

const FLAG_BINARY = 1;
/** Type, flags, topic length, data length. */
export const PUBLISH_OVERHEAD = 1 + 1 + 2 + 4;

/** One Publish record, header and payload in one buffer: encoded once, shared by every link. */
export function encodePublish(topic: string, topicBytes: number, data: Buffer, isBinary: boolean): Buffer {
  const out = Buffer.allocUnsafe(PUBLISH_OVERHEAD + topicBytes + data.length);
  out[0] = LinkRecord.Publish;
  out[1] = isBinary ? FLAG_BINARY : 0;
  out.writeUInt16BE(topicBytes, 2);
  out.write(topic, 4, topicBytes, 'utf8');
  out.writeUInt32BE(data.length, 4 + topicBytes);
  data.copy(out, PUBLISH_OVERHEAD + topicBytes);
  return out;
}

export const SYNCED_RECORD: Buffer = Buffer.from([LinkRecord.Synced]);

export function encodeHello(proof: Buffer): Buffer {
  const out = Buffer.allocUnsafe(1 + proof.length);
  out[0] = LinkRecord.Hello;
  proof.copy(out, 1);
  return out;
}

/**
 * InterestAdd or InterestRemove records for `topics`, split so that no record is larger
 * than `maxRecordBytes` (nor holds more than 65,535 topics).
 */
export function encodeInterest(type: typeof LinkRecord.InterestAdd | typeof LinkRecord.InterestRemove, topics: Iterable<string>, maxRecordBytes: number): Buffer[] {
  const out: Buffer[] = [];
  let parts: Buffer[] = [];
  let size = 3;
  const flush = (): void => {
    if (parts.length === 0) return;
    const head = Buffer.allocUnsafe(3);
    head[0] = type;
    head.writeUInt16BE(parts.length / 2, 1);
    out.push(Buffer.concat([head, ...parts], size));
    parts = [];
    size = 3;
  };
  for (const t of topics) {
    const name = Buffer.from(t, 'utf8');
    if (name.length === 0 || name.length > 0xffff) continue;
    if (parts.length > 0 && (size + 2 + name.length > maxRecordBytes || parts.length / 2 >= 0xffff)) flush();
    const len = Buffer.allocUnsafe(2);
    len.writeUInt16BE(name.length, 0);
    parts.push(len, name);
    size += 2 + name.length;
  }
  flush();
  return out;
}

/** What the acceptor side of a link does with the dialer's records. `data` is a view, valid only during the call. */
export type PublishSink = (topic: string, data: Buffer, isBinary: boolean) => void;

/** A history topic's publish on its way to the owner. Views are valid only during the call. */
export interface ForwardRecord {
  topic: string;
  origin: string;
  seq: number;
  /** The position of the topic the origin applied last (epoch '' when none). */
  known: { epoch: string; offset: number };
  /**
   * The origin's oldest sequence number of the topic not yet back ordered (at most `seq`):
   * every earlier one was ordered (or given up), so an owner that does not remember the origin
   * takes its numbers from here, not from whichever forward reaches it first.
   */
  from: number;
  record: Buffer;
}

/** A message at its cluster-wide position. `frame` is a view, valid only during the call. */
export interface OrderedRecord {
  topic: string;
  epoch: string;
  offset: number;
  origin: string;
  seq: number;
  ackWanted: boolean;
  frame: Buffer;
}

/** What the acceptor side of a link does with the ordering records (docs/cluster.md). */
export interface OrderingSink {
  onForward(r: ForwardRecord): void;
  onOrdered(r: OrderedRecord): void;
  onAck(topic: string, epoch: string, offset: number): void;
  onFillRequest(r: FillRange): void;
  onFillEnd(r: FillRange): void;
  onTailRequest(topic: string): void;
  onTail(r: TailAnswer): void;
  onOrigins(topic: string, origins: Array<[string, number]>): void;
}

/** The tail of a responder's history: frames of offsets first.. (views, valid only during the call); epoch '' when it holds none. */
export interface TailAnswer {
  topic: string;
  epoch: string;
  first: number;
  frames: Buffer[];
}

/** A range of offsets of one topic's epoch: asked for (FillRequest) or answered (FillEnd). */
export interface FillRange {
  topic: string;
  epoch: string;
  first: number;
  last: number;
}

/** The epoch field of a FillRequest that asks the owner where a topic's line stands (see above). */
export const LINE_QUERY = '~line';
/** The prefix of the epoch field of a FillRequest by which an owner tells its replica a reserved epoch. */
export const RESERVE_PREFIX = '~reserve:';

/** Longest epoch on a link: murmur's are 8 characters; room for other writers. */
export const MAX_EPOCH_BYTES = 64;
/** Longest origin id on a link: a node id and an instance id. */
export const MAX_ORIGIN_BYTES = 255;
const FLAG_ACK = 1;

/**
 * Writes one ordering record's fields, in wire order, into one buffer allocated once (the
 * hot path of every history-topic message): `str` fields are UTF-8 with a 1- or 2-byte
 * length, `num` fields 8-byte doubles, a `blob` a u32 length and its bytes.
 */
type Field = readonly ['byte', number] | readonly ['u16', number] | readonly ['u32', number] | readonly ['str', string, 1 | 2] | readonly ['num', number] | readonly ['blob', Buffer];

function encodeFields(fields: readonly Field[]): Buffer {
  let size = 0;
  for (const f of fields) {
    if (f[0] === 'byte') size += 1;
    else if (f[0] === 'u16') size += 2;
    else if (f[0] === 'u32') size += 4;
    else if (f[0] === 'str') size += f[2] + Buffer.byteLength(f[1]);
    else if (f[0] === 'num') size += 8;
    else size += 4 + f[1].length;
  }
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  for (const f of fields) {
    if (f[0] === 'byte') out[o++] = f[1];
    else if (f[0] === 'u16') o = out.writeUInt16BE(f[1], o);
    else if (f[0] === 'u32') o = out.writeUInt32BE(f[1], o);
    else if (f[0] === 'str') {
      const n = out.write(f[1], o + f[2], 'utf8');
      if (f[2] === 1) out[o] = n;
      else out.writeUInt16BE(n, o);
      o += f[2] + n;
    } else if (f[0] === 'num') o = out.writeDoubleBE(f[1], o);
    else {
      o = out.writeUInt32BE(f[1].length, o);
      out.set(f[1], o);
      o += f[1].length;
    }
  }
  return out;
}

export function encodeForward(r: ForwardRecord): Buffer {
  return encodeFields([['byte', LinkRecord.Forward], ['str', r.topic, 2], ['str', r.origin, 1], ['num', r.seq], ['str', r.known.epoch, 1], ['num', r.known.offset], ['num', r.from], ['blob', r.record]]);
}

export function encodeOrdered(r: OrderedRecord): Buffer {
  return encodeFields([
    ['byte', LinkRecord.Ordered],
    ['byte', r.ackWanted ? FLAG_ACK : 0],
    ['str', r.topic, 2],
    ['str', r.epoch, 1],
    ['num', r.offset],
    ['str', r.origin, 1],
    ['num', r.seq],
    ['blob', r.frame],
  ]);
}

/** The same Ordered record without its ack request (a copy: the original may still be queued on a link). */
export function orderedWithoutAck(rec: Buffer): Buffer {
  const out = Buffer.from(rec);
  out[1] = 0;
  return out;
}

export function encodeAck(topic: string, epoch: string, offset: number): Buffer {
  return encodeFields([['byte', LinkRecord.Ack], ['str', topic, 2], ['str', epoch, 1], ['num', offset]]);
}

export function encodeFillRequest(r: FillRange): Buffer {
  return encodeFields([['byte', LinkRecord.FillRequest], ['str', r.topic, 2], ['str', r.epoch, 1], ['num', r.first], ['num', r.last]]);
}

export function encodeFillEnd(r: FillRange): Buffer {
  return encodeFields([['byte', LinkRecord.FillEnd], ['str', r.topic, 2], ['str', r.epoch, 1], ['num', r.first], ['num', r.last]]);
}

export function encodeTailRequest(topic: string): Buffer {
  return encodeFields([['byte', LinkRecord.TailRequest], ['str', topic, 2]]);
}

export function encodeTail(r: TailAnswer): Buffer {
  const fields: Field[] = [['byte', LinkRecord.Tail], ['str', r.topic, 2], ['str', r.epoch, 1], ['num', r.first], ['u32', r.frames.length]];
  for (const f of r.frames) fields.push(['blob', f]);
  return encodeFields(fields);
}

export function encodeOrigins(topic: string, origins: ReadonlyMap<string, number>): Buffer {
  const fields: Field[] = [['byte', LinkRecord.Origins], ['str', topic, 2], ['u16', origins.size]];
  for (const [origin, seq] of origins) fields.push(['str', origin, 1], ['num', seq]);
  return encodeFields(fields);
}

/** Reads the fields of one record; a field that does not hold throws a WireFault with the reason. */
class WireFault extends Error {}
class RecordReader {
  constructor(
    readonly msg: Buffer,
    public o: number,
  ) {}
  need(n: number): void {
    if (this.msg.length - this.o < n) throw new WireFault('truncated record');
  }
  byte(): number {
    this.need(1);
    return this.msg[this.o++]!;
  }
  /** A UTF-8 string with a 1- or 2-byte length, 1..max bytes. */
  str(lengthBytes: 1 | 2, max: number, what: string): string {
    this.need(lengthBytes);
    const len = lengthBytes === 1 ? this.msg[this.o]! : this.msg.readUInt16BE(this.o);
    this.o += lengthBytes;
    if (len > max) throw new WireFault(`bad ${what} length`);
    this.need(len);
    const view = this.msg.subarray(this.o, this.o + len);
    if (!isUtf8(view)) throw new WireFault(`${what} is not UTF-8`);
    this.o += len;
    return view.toString('utf8');
  }
  /** A topic, then an epoch, then an offset: the head every ordering record after Forward shares. */
  position(maxTopicBytes: number): { topic: string; epoch: string; offset: number } {
    const topic = this.str(2, maxTopicBytes, 'topic');
    const epoch = this.str(1, MAX_EPOCH_BYTES, 'epoch');
    return { topic, epoch, offset: this.num('offset') };
  }
  num(what: string): number {
    this.need(8);
    const v = this.msg.readDoubleBE(this.o);
    this.o += 8;
    if (!Number.isSafeInteger(v) || v < 0) throw new WireFault(`bad ${what}`);
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.msg.readUInt32BE(this.o);
    this.o += 4;
    return v;
  }
  blob(): Buffer {
    const len = this.u32();
    this.need(len);
    const view = this.msg.subarray(this.o, this.o + len);
    this.o += len;
    return view;
  }
}

/** Parses one ordering record at `o`; returns where the next starts. @throws WireFault */
function parseOrdering(msg: Buffer, o: number, maxTopicBytes: number, sink: OrderingSink): number {
  const r = new RecordReader(msg, o);
  const type = r.byte();
  if (type === LinkRecord.Forward) {
    const topic = r.str(2, maxTopicBytes, 'topic');
    const origin = r.str(1, MAX_ORIGIN_BYTES, 'origin');
    const seq = r.num('sequence number');
    const epoch = r.str(1, MAX_EPOCH_BYTES, 'epoch');
    const offset = r.num('offset');
    const from = r.num('sequence number');
    const record = r.blob();
    if (topic === '' || origin === '') throw new WireFault('empty topic or origin');
    if (from > seq) throw new WireFault('forward from a later sequence number than its own');
    sink.onForward({ topic, origin, seq, known: { epoch, offset }, from, record });
  } else if (type === LinkRecord.Ordered) {
    const flags = r.byte();
    if ((flags & ~FLAG_ACK) !== 0) throw new WireFault('unknown flags');
    const { topic, epoch, offset } = r.position(maxTopicBytes);
    const origin = r.str(1, MAX_ORIGIN_BYTES, 'origin');
    const seq = r.num('sequence number');
    const frame = r.blob();
    if (topic === '' || epoch === '' || offset === 0 || frame.length < 2) throw new WireFault('empty ordered record');
    sink.onOrdered({ topic, epoch, offset, origin, seq, ackWanted: (flags & FLAG_ACK) !== 0, frame });
  } else if (type === LinkRecord.Ack) {
    const { topic, epoch, offset } = r.position(maxTopicBytes);
    if (topic === '' || epoch === '') throw new WireFault('empty ack');
    sink.onAck(topic, epoch, offset);
  } else if (type === LinkRecord.TailRequest) {
    const topic = r.str(2, maxTopicBytes, 'topic');
    if (topic === '') throw new WireFault('empty topic');
    sink.onTailRequest(topic);
  } else if (type === LinkRecord.Tail) {
    const topic = r.str(2, maxTopicBytes, 'topic');
    const epoch = r.str(1, MAX_EPOCH_BYTES, 'epoch');
    const first = r.num('offset');
    const count = r.u32();
    // Each frame takes at least 4 bytes: a count the message cannot hold is refused before anything is allocated for it.
    if (count > (msg.length - r.o) / 4) throw new WireFault('truncated record');
    const frames: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const f = r.blob();
      if (f.length < 2) throw new WireFault('empty frame');
      frames.push(f);
    }
    if (topic === '' || (count > 0 && (epoch === '' || first === 0))) throw new WireFault('empty tail record');
    sink.onTail({ topic, epoch, first, frames });
  } else if (type === LinkRecord.Origins) {
    const topic = r.str(2, maxTopicBytes, 'topic');
    r.need(2);
    const count = msg.readUInt16BE(r.o);
    r.o += 2;
    // Each entry takes at least 10 bytes: a count the message cannot hold is refused before anything is allocated for it.
    if (topic === '' || count > (msg.length - r.o) / 10) throw new WireFault('truncated record');
    const origins: Array<[string, number]> = [];
    for (let i = 0; i < count; i++) origins.push([r.str(1, MAX_ORIGIN_BYTES, 'origin'), r.num('sequence number')]);
    sink.onOrigins(topic, origins);
  } else {
    const { topic, epoch, offset: first } = r.position(maxTopicBytes);
    const last = r.num('offset');
    if (topic === '' || epoch === '') throw new WireFault('empty fill record');
    if (type === LinkRecord.FillRequest) {
      // A request for nothing, or for offset 0 (never a message), is a broken peer.
      if (first === 0 || last < first) throw new WireFault('bad fill range');
      sink.onFillRequest({ topic, epoch, first, last });
    } else sink.onFillEnd({ topic, epoch, first, last });
  }
  return r.o;
}

/** parseOrdering, with a fault as its reason: the next record's start, or why the link must fail. */
function orderingRecord(msg: Buffer, o: number, maxTopicBytes: number, sink: OrderingSink): number | string {
  try {
    return parseOrdering(msg, o, maxTopicBytes, sink);
  } catch (err) {
    if (err instanceof WireFault) return err.message;
    throw err;
  }
}

/**
 * Parses one message from a dialer: Publish records, and the ordering records when `ordering`
 * is given. Returns null, or why the link must fail. Records before a failure have been
 * delivered (the link then closes).
 */
export function parsePublishes(msg: Buffer, maxTopicBytes: number, sink: PublishSink, ordering: OrderingSink | null = null): string | null {
  let o = 0;
  const end = msg.length;
  if (end === 0) return 'empty message';
  while (o < end) {
    const type = msg[o]!;
    if (ordering !== null && type >= LinkRecord.Forward && type <= LinkRecord.TailRequest) {
      const next = orderingRecord(msg, o, maxTopicBytes, ordering);
      if (typeof next === 'string') return next;
      o = next;
      continue;
    }
    if (type !== LinkRecord.Publish) return `record type ${type} from a dialer`;
    if (end - o < PUBLISH_OVERHEAD) return 'truncated record';
    const flags = msg[o + 1]!;
    if ((flags & ~FLAG_BINARY) !== 0) return 'unknown flags';
    const topicLen = msg.readUInt16BE(o + 2);
    if (topicLen === 0 || topicLen > maxTopicBytes) return 'bad topic length';
    const t0 = o + 4;
    if (end - t0 < topicLen + 4) return 'truncated record';
    const topicView = msg.subarray(t0, t0 + topicLen);
    if (!isUtf8(topicView)) return 'topic is not UTF-8';
    const dataLen = msg.readUInt32BE(t0 + topicLen);
    const d0 = t0 + topicLen + 4;
    if (end - d0 < dataLen) return 'truncated record';
    sink(topicView.toString('utf8'), msg.subarray(d0, d0 + dataLen), (flags & FLAG_BINARY) !== 0);
    o = d0 + dataLen;
  }
  return null;
}

export interface AcceptorRecordSink {
  onHello(proof: Buffer): void;
  onAdd(topic: string): void;
  onRemove(topic: string): void;
  onSynced(): void;
}

/**
 * Parses one message from an acceptor: its interest, and the answers to our requests (Ordered,
 * Ack, FillEnd, Tail) when `answers` is given. Returns null, or why the link must fail.
 */
export function parseAcceptorRecords(msg: Buffer, maxTopicBytes: number, sink: AcceptorRecordSink, answers: OrderingSink | null = null): string | null {
  let o = 0;
  const end = msg.length;
  if (end === 0) return 'empty message';
  while (o < end) {
    const type = msg[o]!;
    if (answers !== null && (type === LinkRecord.Ordered || type === LinkRecord.Ack || type === LinkRecord.FillEnd || type === LinkRecord.Tail || type === LinkRecord.Origins)) {
      const next = orderingRecord(msg, o, maxTopicBytes, answers);
      if (typeof next === 'string') return next;
      o = next;
      continue;
    }
    switch (type) {
      case LinkRecord.Hello:
        if (end - o < 1 + ACCEPT_PROOF_BYTES) return 'truncated record';
        sink.onHello(msg.subarray(o + 1, o + 1 + ACCEPT_PROOF_BYTES));
        o += 1 + ACCEPT_PROOF_BYTES;
        break;
      case LinkRecord.Synced:
        sink.onSynced();
        o += 1;
        break;
      case LinkRecord.InterestAdd:
      case LinkRecord.InterestRemove: {
        if (end - o < 3) return 'truncated record';
        const count = msg.readUInt16BE(o + 1);
        if (count === 0) return 'empty interest record';
        o += 3;
        for (let i = 0; i < count; i++) {
          if (end - o < 2) return 'truncated record';
          const len = msg.readUInt16BE(o);
          if (len === 0 || len > maxTopicBytes) return 'bad topic length';
          if (end - o - 2 < len) return 'truncated record';
          const view = msg.subarray(o + 2, o + 2 + len);
          if (!isUtf8(view)) return 'topic is not UTF-8';
          const topic = view.toString('utf8');
          if (type === LinkRecord.InterestAdd) sink.onAdd(topic);
          else sink.onRemove(topic);
          o += 2 + len;
        }
        break;
      }
      default:
        return `record type ${type} from an acceptor`;
    }
  }
  return null;
}
