/**
 * Presence of one process: who is in a topic, and which users are online. Kept behind the
 * PresenceStore interface so `murmur serve` in a cluster replaces LocalPresence with
 * ClusterPresence (src/cluster/presence/), which merges the entries of every node and emits
 * their changes through the same onChange.
 */

import type { JoinResult, OnlineResult, PresenceChange, PresenceEntry, PresenceLimits, PresenceMeta, PresenceStore } from '../cluster/presence/types.js';

// The contract lives at the cluster layer (ClusterPresence implements it too); re-exported
// here so the app and its users keep one import path.
export type { JoinResult, OnlineResult, PresenceChange, PresenceEntry, PresenceLimits, PresenceMeta, PresenceStore };

/** Presence of this process only. Every bound is checked on join; nothing grows without one. */
export class LocalPresence implements PresenceStore {
  readonly limits: PresenceLimits;
  readonly #topics = new Map<string, Map<string, PresenceEntry>>();
  /**
   * The topics each connection is present in: the topic itself while there is one (most
   * connections are present in one topic, and a Set costs ~400 bytes), a Set from the second.
   */
  readonly #connTopics = new Map<string, string | Set<string>>();
  readonly #userConns = new Map<string, number>();
  readonly #listeners = new Set<(change: PresenceChange) => void>();
  #entries = 0;

  constructor(limits: PresenceLimits) {
    this.limits = limits;
  }

  connect(user: string, _conn: string): void {
    const n = this.#userConns.get(user) ?? 0;
    this.#userConns.set(user, n + 1);
    if (n === 0) this.#emit({ kind: 'online', user });
  }

  disconnect(user: string, conn: string): void {
    const topics = this.#connTopics.get(conn);
    if (typeof topics === 'string') this.leave(topics, conn);
    else if (topics !== undefined) for (const t of [...topics]) this.leave(t, conn);
    const n = this.#userConns.get(user) ?? 0;
    if (n <= 1) {
      if (this.#userConns.delete(user)) this.#emit({ kind: 'offline', user });
    } else this.#userConns.set(user, n - 1);
  }

  join(topic: string, entry: PresenceEntry): JoinResult {
    if (entry.meta !== null && metaBytes(entry.meta) > this.limits.maxMetaBytes) return 'meta-too-large';
    let members = this.#topics.get(topic);
    const existing = members?.get(entry.conn);
    if (existing !== undefined) {
      existing.meta = entry.meta;
      this.#emit({ kind: 'update', topic, entry: existing });
      return 'updated';
    }
    if (members !== undefined && members.size >= this.limits.maxMembers) return 'full';
    const mine = this.#connTopics.get(entry.conn);
    const present = mine === undefined ? 0 : typeof mine === 'string' ? 1 : mine.size;
    if (present >= this.limits.maxTopicsPerConn) return 'too-many-topics';
    if (members === undefined) this.#topics.set(topic, (members = new Map()));
    if (mine === undefined) this.#connTopics.set(entry.conn, topic);
    else if (typeof mine === 'string') this.#connTopics.set(entry.conn, new Set([mine, topic]));
    else mine.add(topic);
    const stored = { user: entry.user, conn: entry.conn, meta: entry.meta, since: entry.since };
    members.set(entry.conn, stored);
    this.#entries++;
    this.#emit({ kind: 'join', topic, entry: stored });
    return 'joined';
  }

  leave(topic: string, conn: string): PresenceEntry | undefined {
    const members = this.#topics.get(topic);
    const entry = members?.get(conn);
    if (members === undefined || entry === undefined) return undefined;
    members.delete(conn);
    if (members.size === 0) this.#topics.delete(topic);
    const mine = this.#connTopics.get(conn);
    if (typeof mine === 'string') this.#connTopics.delete(conn);
    else if (mine !== undefined) {
      mine.delete(topic);
      if (mine.size === 1) this.#connTopics.set(conn, mine.values().next().value!);
    }
    this.#entries--;
    this.#emit({ kind: 'leave', topic, entry });
    return entry;
  }

  list(topic: string): PresenceEntry[] {
    const members = this.#topics.get(topic);
    return members === undefined ? [] : [...members.values()];
  }

  count(topic: string): number {
    return this.#topics.get(topic)?.size ?? 0;
  }

  isOnline(user: string): boolean {
    return this.#userConns.has(user);
  }

  /** One process knows every user: answered synchronously. */
  askOnline(users: readonly string[], done: (result: OnlineResult) => void): void {
    const online = new Set<string>();
    for (const u of users) if (this.#userConns.has(u)) online.add(u);
    done({ online, partial: false });
  }

  onChange(cb: (change: PresenceChange) => void): () => void {
    this.#listeners.add(cb);
    return () => this.#listeners.delete(cb);
  }

  stats(): { topics: number; entries: number; users: number } {
    return { topics: this.#topics.size, entries: this.#entries, users: this.#userConns.size };
  }

  #emit(change: PresenceChange): void {
    for (const cb of this.#listeners) cb(change);
  }
}

/** Bytes of meta as JSON; Infinity when it cannot be serialised (a cycle, a BigInt). */
export function metaBytes(meta: PresenceMeta): number {
  try {
    return Buffer.byteLength(JSON.stringify(meta));
  } catch {
    return Infinity;
  }
}
