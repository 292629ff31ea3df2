// A subscriber straight on a Topics (no socket): records the payloads of the frames it is sent.
import type { Subscriber, Topic } from '../../src/pubsub/topics.js';

export class FrameRecorder implements Subscriber {
  topics: Topic[] | null = null;
  payloads: string[] = [];
  sendEncoded(frames: Buffer, messages: number): void {
    // Unmasked frames with short payloads: a 2-byte header each.
    let at = 0;
    for (let i = 0; i < messages; i++) {
      const len = frames[at + 1]! & 0x7f;
      this.payloads.push(frames.subarray(at + 2, at + 2 + len).toString());
      at += 2 + len;
    }
  }
}
