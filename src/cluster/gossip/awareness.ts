/**
 * Lifeguard local health (Lifeguard §IV-A, "Local Health Multiplier"). A node that misses
 * acks and nacks is more likely to be the slow one than its peers are, so instead of
 * accusing them it stretches its own probe period. The score rises on evidence of local
 * trouble and falls one step per healthy probe.
 */
export class Awareness {
  /** 0 = healthy. Timeouts are multiplied by score + 1. */
  score = 0;
  readonly max: number;

  /** @param maxMultiplier the largest factor a timeout is stretched by (1 turns the extension off). */
  constructor(maxMultiplier: number) {
    this.max = Math.max(1, Math.floor(maxMultiplier));
  }

  /** Add `delta` (negative = healthier), clamped to [0, max - 1]. Returns the new score. */
  applyDelta(delta: number): number {
    const s = this.score + delta;
    this.score = s < 0 ? 0 : s > this.max - 1 ? this.max - 1 : s;
    return this.score;
  }

  /** `timeoutMs` stretched by the current health score. */
  scale(timeoutMs: number): number {
    return timeoutMs * (this.score + 1);
  }
}
