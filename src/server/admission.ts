import { BlockList, isIP } from 'node:net';

/** What the server counts for one peer address. */
export class AddressEntry {
  /** The address as the transport gave it; connections of this address share this string. */
  readonly peer: string;
  handshakes: number;
  sockets: number;

  constructor(peer: string) {
    this.peer = peer;
    this.handshakes = 0;
    this.sockets = 0;
  }
}

/**
 * Counts per peer address, kept by the server (never by a connection): an entry exists only
 * while one of its counts is above zero, so the table holds one entry per address with
 * sockets, and an address that leaves costs nothing afterwards.
 */
export class AddressTable {
  readonly #entries = new Map<string, AddressEntry>();

  get(peer: string): AddressEntry | undefined {
    return this.#entries.get(peer);
  }

  /** A new entry for `peer` (call only when get() found none). */
  add(peer: string): AddressEntry {
    const entry = new AddressEntry(peer);
    this.#entries.set(peer, entry);
    return entry;
  }

  /** Removes the entry once both its counts are zero. */
  release(entry: AddressEntry): void {
    if (entry.handshakes <= 0 && entry.sockets <= 0) this.#entries.delete(entry.peer);
  }

  /** Addresses with a count above zero. */
  get size(): number {
    return this.#entries.size;
  }
}

/**
 * What the server counts to admit a socket: handshakes in flight (in all, and per address),
 * sockets per address, and whether the socket at hand took a reserved descriptor. The per-connection
 * side is three bits of Connection.flags; everything else lives here, once per server.
 */
export class Admission {
  /** Sockets accepted whose upgrade is not answered yet (refused ones are never counted). */
  handshakes: number;
  /** Handshakes per address (when maxHandshakesPerAddress is on) and sockets per address (when maxConnectionsPerAddress is on). */
  readonly addresses: AddressTable;
  /** The socket being admitted lies in the descriptor reserve (the process is nearly out): refuse it with 503. */
  descriptorsExhausted: boolean;
  readonly #trusted: BlockList | null;

  /** @throws TypeError when an entry of `trusted` is neither an IP address nor a CIDR block. */
  constructor(trusted: readonly string[] = []) {
    this.handshakes = 0;
    this.addresses = new AddressTable();
    this.descriptorsExhausted = false;
    this.#trusted = trusted.length > 0 ? trustedList(trusted) : null;
  }

  /** An IPv4-mapped IPv6 address (a dual-stack listener's view of IPv4) as the IPv4 address, for the trust check. */
  static unmapped(address: string): string {
    return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
  }

  /** Whether `peer` is a trusted proxy's address: exempt from every per-address limit. */
  isTrusted(peer: string): boolean {
    const t = this.#trusted;
    if (t === null) return false;
    const key = Admission.unmapped(peer);
    const family = isIP(key);
    return family !== 0 && t.check(key, family === 4 ? 'ipv4' : 'ipv6');
  }
}

function trustedList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const slash = entry.indexOf('/');
    const address = slash < 0 ? entry : entry.slice(0, slash);
    const family = isIP(address);
    const prefix = slash < 0 ? NaN : Number(entry.slice(slash + 1));
    const max = family === 4 ? 32 : 128;
    if (family === 0 || (slash >= 0 && !(Number.isInteger(prefix) && prefix >= 0 && prefix <= max && /^\d+$/.test(entry.slice(slash + 1))))) {
      throw new TypeError(`trusted address '${entry}' is neither an IP address nor a CIDR block (10.0.0.0/8, fd00::/8)`);
    }
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (slash < 0) list.addAddress(address, type);
    else list.addSubnet(address, prefix, type);
  }
  return list;
}
