/**
 * Drives a ClusterPresence over a running GossipNode: its broadcasts and pulls go through the
 * node, membership events reach it, each event-loop turn's changes are flushed once (one
 * batch per turn, however many changes the turn made), and one interval timer runs repairs.
 */
import type { GossipNode } from '../gossip/node.js';
import type { MemberInfo } from '../gossip/transport.js';
import type { ClusterPresence, PresenceHost } from './store.js';

export class PresenceReplicator {
  readonly presence: ClusterPresence;
  readonly node: GossipNode;
  #timer: NodeJS.Timeout | null = null;
  #flushQueued = false;
  readonly #onJoin = (m: MemberInfo): void => this.presence.onMember('join', m.name);
  readonly #onDead = (m: MemberInfo): void => this.presence.onMember('dead', m.name);
  readonly #onLeave = (m: MemberInfo): void => this.presence.onMember('leave', m.name);

  /** `node` must have been created with `presence.delegate` as its delegate. */
  constructor(presence: ClusterPresence, node: GossipNode) {
    this.presence = presence;
    this.node = node;
  }

  /** Call after `node.start()`. Announces this node's presence epoch and version. */
  start(): void {
    if (this.#timer !== null) return;
    const node = this.node;
    const host: PresenceHost = {
      broadcast: (payload, key) => node.broadcast(payload, key),
      get maxPayloadBytes() {
        return node.maxBroadcastBytes;
      },
      syncWith: (name) => node.syncWith(name),
      query: (name, payload) => node.query(name, payload),
      isLive: (name) => {
        const m = node.member(name);
        return m !== undefined && (m.state === 'alive' || m.state === 'suspect');
      },
    };
    node.on('join', this.#onJoin);
    node.on('dead', this.#onDead);
    node.on('leave', this.#onLeave);
    this.presence.onPending = () => {
      if (this.#flushQueued) return;
      this.#flushQueued = true;
      // After the I/O of this turn: every change it made goes out in one batch.
      setImmediate(() => {
        this.#flushQueued = false;
        this.presence.flush();
      });
    };
    this.presence.attach(host);
    // Half a gossip round: a repair is never late by more than that.
    const every = Math.max(10, Math.floor(node.machine.config.gossipIntervalMs / 2));
    this.#timer = setInterval(() => this.presence.tick(), every);
    this.#timer.unref();
  }

  /** Stop driving (before or after the node stops). Pending changes are flushed first. */
  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.presence.flush();
    this.presence.onPending = null;
    this.presence.detach();
    this.node.off('join', this.#onJoin);
    this.node.off('dead', this.#onDead);
    this.node.off('leave', this.#onLeave);
  }
}
