/**
 * Fault injection for the UDP runtime: drop datagrams or refuse streams on purpose, to test
 * loss and partitions over real sockets. Production code passes none.
 */
import type { Random } from './math.js';

export interface FaultInjector {
  /** True drops a datagram we were about to send to `to`. */
  dropOutbound?(to: string): boolean;
  /** True drops a datagram received from `from` before the state machine sees it. */
  dropInbound?(from: string): boolean;
  /** True makes a stream exchange with `to` fail as if the peer were unreachable. */
  blockStream?(to: string): boolean;
}

/**
 * Independent random loss of `p` on every datagram a node sends. Installed on every node,
 * each datagram in either direction (ping and ack alike) is lost with probability `p`.
 */
export function randomLoss(p: number, random: Random = Math.random): FaultInjector {
  return { dropOutbound: () => random() < p };
}

/** A switchable partition: while `blocked` holds an address, nothing flows to or from it. */
export class PartitionFaults implements FaultInjector {
  readonly blocked = new Set<string>();

  dropOutbound(to: string): boolean {
    return this.blocked.has(to);
  }

  dropInbound(from: string): boolean {
    return this.blocked.has(from);
  }

  blockStream(to: string): boolean {
    return this.blocked.has(to);
  }
}
