import { BlockList, isIP } from 'node:net';

/**
 * Counts per peer address, kept by the server (never by a connection): an entry exists only
 * while its count is above zero, so the map holds one entry per address with sockets, and an
 * address that leaves costs nothing afterwards.
 */
export class AddressCounts {
  readonly #counts = new Map<string, number>();

  get(address: string): number {
    return this.#counts.get(address) ?? 0;
  }

  increment(address: string): void {
    this.#counts.set(address, (this.#counts.get(address) ?? 0) + 1);
  }

  decrement(address: string): void {
    const n = (this.#counts.get(address) ?? 0) - 1;
    if (n > 0) this.#counts.set(address, n);
    else this.#counts.delete(address);
  }

  /** Addresses with a count above zero. */
  get size(): number {
    return this.#counts.size;
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
  readonly handshakesByAddress: AddressCounts;
  /** Sockets per address, kept only when maxConnectionsPerAddress is on. */
  readonly socketsByAddress: AddressCounts;
  /** The socket being admitted lies in the descriptor reserve (the process is nearly out): refuse it with 503. */
  descriptorsExhausted: boolean;
  readonly #trusted: BlockList | null;

  /** @throws TypeError when an entry of `trusted` is neither an IP address nor a CIDR block. */
  constructor(trusted: readonly string[] = []) {
    this.handshakes = 0;
    this.handshakesByAddress = new AddressCounts();
    this.socketsByAddress = new AddressCounts();
    this.descriptorsExhausted = false;
    this.#trusted = trusted.length > 0 ? trustedList(trusted) : null;
  }

  /** The key an address is counted under: IPv4-mapped IPv6 (a dual-stack listener's view of IPv4) counts as the IPv4 address. */
  static key(address: string): string {
    return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
  }

  /** Whether `key` (see key()) is a trusted proxy's address: exempt from every per-address limit. */
  isTrusted(key: string): boolean {
    const t = this.#trusted;
    if (t === null) return false;
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
