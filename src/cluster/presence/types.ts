/**
 * The presence store contract: who is in a topic, and which users are online anywhere. It
 * lives at the cluster layer so that both the single-process store of `murmur serve`
 * (src/app/presence.ts, which re-exports these types) and the cluster-wide store
 * (ClusterPresence, beside this file) implement the same interface without an upward import.
 */

/** Free-form, small, JSON-serialisable data a member shows others (a display name, a status). */
export type PresenceMeta = Record<string, unknown>;

export interface PresenceEntry {
  user: string;
  /** The connection id: one user may be present several times, once per connection. */
  conn: string;
  meta: PresenceMeta | null;
  /** ms since the epoch. */
  since: number;
}

export type PresenceChange =
  | { kind: 'join' | 'update' | 'leave'; topic: string; entry: PresenceEntry }
  | { kind: 'online' | 'offline'; user: string };

export type JoinResult = 'joined' | 'updated' | 'full' | 'meta-too-large' | 'too-many-topics';

/**
 * The answer of `askOnline`: the users online anywhere (`partial`: a node did not answer in
 * time, so a user of it may be missing), or 'busy' when too many asks are waiting already.
 */
export type OnlineResult = { online: ReadonlySet<string>; partial: boolean } | 'busy';

export interface PresenceStore {
  /** A connection of `user` opened: the user is online (anywhere) from now on. */
  connect(user: string, conn: string): void;
  /** The connection closed: it leaves every topic it was in, and the user may go offline. */
  disconnect(user: string, conn: string): void;
  /** Enters `topic` (or updates the entry's meta when the connection is already in it). */
  join(topic: string, entry: PresenceEntry): JoinResult;
  /** Leaves `topic`; returns the entry that left, if it was there. */
  leave(topic: string, conn: string): PresenceEntry | undefined;
  list(topic: string): PresenceEntry[];
  count(topic: string): number;
  /** Online as far as this process knows without asking anyone (in a cluster: a connection on this node). */
  isOnline(user: string): boolean;
  /**
   * Which of `users` are online anywhere. `done` is called synchronously when the answer is
   * known here (one process; or every user has a connection here), else once the other nodes
   * answered (ClusterPresence.askOnline has the bounds).
   */
  askOnline(users: readonly string[], done: (result: OnlineResult) => void): void;
  /** Calls `cb` for every change; returns a function that stops it. */
  onChange(cb: (change: PresenceChange) => void): () => void;
  stats(): { topics: number; entries: number; users: number };
}

export interface PresenceLimits {
  /** Entries per topic; a join beyond it is refused ('full'). */
  maxMembers: number;
  /** Bytes of an entry's meta as JSON. */
  maxMetaBytes: number;
  /** Topics one connection may be present in. */
  maxTopicsPerConn: number;
}
