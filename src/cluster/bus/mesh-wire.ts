/**
 * The records of a mesh link (link protocol 1). A link is one WebSocket connection from
 * the node that publishes (the dialer) to a node that may have subscribers (the acceptor);
 * every WebSocket message on it is binary and holds one or more records, back to back.
 *
 * Dialer -> acceptor:
 *   Publish         [1][flags u8: bit 0 = binary][topic length u16][topic][data length u32][data]
 * Acceptor -> dialer:
 *   Hello           [5][proof: 32 bytes]           first record, proves the acceptor holds the key
 *   InterestAdd     [2][count u16]([length u16][topic])*   topics that gained a local subscriber
 *   InterestRemove  [3][count u16]([length u16][topic])*   topics that lost their last one
 *   Synced          [4]                            the full interest set has been sent
 *
 * Integers are big-endian; topics are UTF-8. Record types are append-only. A record of the
 * wrong direction, an unknown type, a truncated record, an empty or over-long topic or a
 * topic that is not UTF-8 fails the link.
 */
import { isUtf8 } from 'node:buffer';
import { ACCEPT_PROOF_BYTES } from './auth.js';

export const LinkRecord = { Publish: 1, InterestAdd: 2, InterestRemove: 3, Synced: 4, Hello: 5 } as const;
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

/**
 * Parses one message from a dialer: Publish records only. Returns null, or why the link
 * must fail. Records before a failure have been delivered (the link then closes).
 */
export function parsePublishes(msg: Buffer, maxTopicBytes: number, sink: PublishSink): string | null {
  let o = 0;
  const end = msg.length;
  if (end === 0) return 'empty message';
  while (o < end) {
    if (msg[o] !== LinkRecord.Publish) return `record type ${msg[o]} from a dialer`;
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

/** Parses one message from an acceptor. Returns null, or why the link must fail. */
export function parseAcceptorRecords(msg: Buffer, maxTopicBytes: number, sink: AcceptorRecordSink): string | null {
  let o = 0;
  const end = msg.length;
  if (end === 0) return 'empty message';
  while (o < end) {
    const type = msg[o]!;
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
