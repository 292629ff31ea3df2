/**
 * Permission sets shared between connections. Every token carries its permissions, and most
 * tokens of an application carry one of a handful of sets (a role): without sharing, each
 * connection would keep three arrays and their strings of its own (about 300 bytes for a
 * short set). A bounded map from the set's JSON to the first copy seen; when it is full it
 * starts over, which loses sharing for a while but never correctness (sessions keep the object
 * they were given; nothing is ever changed through it).
 */
import type { Permissions } from './token.js';

export class PermissionScopes {
  readonly #max: number;
  #byKey: Map<string, Permissions>;
  /** The JSON of each shared set (its key), for the welcome: serialised once per set, not once per connection. */
  readonly #json = new WeakMap<Permissions, string>();

  /** `max`: distinct sets remembered at once (0: no sharing). */
  constructor(max: number) {
    this.#max = max;
    this.#byKey = new Map();
  }

  /** The shared set equal to `perms`, or `perms` itself when it is the first of its kind. */
  share(perms: Permissions): Permissions {
    if (this.#max === 0) return perms;
    const key = permissionsJson(perms);
    const known = this.#byKey.get(key);
    if (known !== undefined) return known;
    if (this.#byKey.size >= this.#max) this.#byKey = new Map();
    this.#byKey.set(key, perms);
    this.#json.set(perms, key);
    return perms;
  }

  /** `perms` as JSON `{"subscribe":[...],"publish":[...],"presence":[...]}`: kept for a shared set, made for any other. */
  jsonOf(perms: Permissions): string {
    return this.#json.get(perms) ?? permissionsJson(perms);
  }

  get size(): number {
    return this.#byKey.size;
  }
}

function permissionsJson(p: Permissions): string {
  return JSON.stringify({ subscribe: p.subscribe, publish: p.publish, presence: p.presence });
}
