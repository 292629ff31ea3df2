/**
 * Who the mesh links to. The mesh needs only its own id, the current peers with the URL of
 * each one's link endpoint, and a signal when that changes: `MeshMembership`. Two sources:
 * `StaticMembership` (a list set by hand: tests, fixed clusters) and `gossipMembership`
 * (the live members of a GossipNode, whose metadata advertises their HTTP address).
 */
import type { GossipNode } from '../gossip/node.js';
import type { MemberInfo } from '../gossip/transport.js';
import { parseAddr } from '../gossip/node.js';
import { MESH_PATH } from './bus-config.js';

export interface MeshPeer {
  /** The peer's node id (unique in the cluster). */
  readonly id: string;
  /** Where its link endpoint is: ws://host:port/cluster/bus (wss:// with TLS). */
  readonly url: string;
}

export interface MeshMembership {
  /** Our own node id. */
  readonly self: string;
  /** The peers to link to now (never ourselves). */
  peers(): MeshPeer[];
  /** Calls `listener` after the peers may have changed; returns a function that stops it. */
  onChange(listener: () => void): () => void;
  /**
   * Whether a peer that is no longer in peers() went away on purpose (a graceful leave, or
   * removed by hand): its links close at once. A peer gone without that (declared dead by
   * failure detection) keeps a link that still carries traffic until the link closes or goes
   * silent, so a false suspicion under load costs no messages. Absent: every peer that is
   * not listed counts as departed.
   */
  departed?(id: string): boolean;
  /**
   * Our established link to `id` closed without a goodbye (no close frame: the peer's kernel
   * closed the TCP connection of a process that died). Evidence for the failure detector,
   * never a verdict by itself. Absent: ignored.
   */
  linkLost?(id: string): void;
}

/** A membership set by hand. */
export class StaticMembership implements MeshMembership {
  readonly self: string;
  #peers: MeshPeer[];
  readonly #listeners = new Set<() => void>();

  constructor(self: string, peers: MeshPeer[] = []) {
    this.self = self;
    this.#peers = peers.filter((p) => p.id !== self);
  }

  peers(): MeshPeer[] {
    return this.#peers.slice();
  }

  /** Replaces the peer list and tells the mesh. */
  set(peers: MeshPeer[]): void {
    this.#peers = peers.filter((p) => p.id !== this.self);
    for (const l of [...this.#listeners]) l();
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

export interface GossipMembershipOptions {
  /** The link path on every peer. Default MESH_PATH. */
  path?: string;
  /** Link with wss:// instead of ws://. */
  secure?: boolean;
}

/** The key of the gossip member metadata (UTF-8 JSON) that holds a node's HTTP address. */
export const META_HTTP_KEY = 'http';

/**
 * The HTTP address ("host:port") a member advertises in its metadata, UTF-8 JSON
 * `{"http":"host:port"}`; null when absent or malformed.
 */
export function httpAddressFromMeta(meta: Uint8Array): string | null {
  if (meta.length === 0) return null;
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(meta.buffer, meta.byteOffset, meta.byteLength).toString('utf8'));
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const http = (value as Record<string, unknown>)[META_HTTP_KEY];
  if (typeof http !== 'string' || parseAddr(http) === null) return null;
  return http;
}

/** ws://host:port/path for an address "host:port" or "[v6]:port". */
export function linkUrl(address: string, path = MESH_PATH, secure = false): string | null {
  const a = parseAddr(address);
  if (a === null) return null;
  const host = a.host.includes(':') ? `[${a.host}]` : a.host;
  return `${secure ? 'wss' : 'ws'}://${host}:${a.port}${path}`;
}

/**
 * The peers of a GossipNode: every member alive or suspect (a suspicion is often a passing
 * stall, and tearing links down on it would lose messages for nothing) whose metadata
 * advertises an HTTP address. A member that is declared dead or leaves drops out, and the
 * mesh closes its links. Every membership event is a change.
 */
export function gossipMembership(node: GossipNode, options: GossipMembershipOptions = {}): MeshMembership {
  const path = options.path ?? MESH_PATH;
  const secure = options.secure ?? false;
  const events = ['join', 'alive', 'suspect', 'dead', 'leave', 'update'] as const;
  // peers() runs on every membership event (each member's load update among them): a member's
  // metadata is parsed once per version of it, not once per event.
  const parsed = new WeakMap<Uint8Array, string | null>();
  const addressOf = (meta: Uint8Array): string | null => {
    let http = parsed.get(meta);
    if (http === undefined) parsed.set(meta, (http = httpAddressFromMeta(meta)));
    return http;
  };
  return {
    self: node.name,
    peers(): MeshPeer[] {
      const out: MeshPeer[] = [];
      for (const m of node.liveMembers() as MemberInfo[]) {
        if (m.name === node.name) continue;
        const http = addressOf(m.meta);
        if (http === null) continue;
        const url = linkUrl(http, path, secure);
        if (url !== null) out.push({ id: m.name, url });
      }
      return out;
    },
    departed(id: string): boolean {
      const m = node.member(id);
      return m === undefined || m.state === 'left';
    },
    linkLost(id: string): void {
      node.linkLost(id);
    },
    onChange(listener: () => void): () => void {
      const fn = (): void => listener();
      for (const e of events) node.on(e, fn);
      return () => {
        for (const e of events) node.off(e, fn);
      };
    },
  };
}
