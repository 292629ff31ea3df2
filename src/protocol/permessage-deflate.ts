/**
 * permessage-deflate (RFC 7692) negotiation: parsing Sec-WebSocket-Extensions (RFC 6455 9.1),
 * answering a client's offers on a server, building a client's offer and checking the server's
 * response. Pure: strings in, values out; no zlib here (compression lives above, in
 * server/deflate.ts).
 */

/** One extension of a Sec-WebSocket-Extensions list: its name and its parameters in order (value true when a parameter has none). */
export interface ExtensionOffer {
  name: string;
  params: Array<[string, string | true]>;
}

/** What both ends agreed for one connection. Window bits are 8..15. */
export interface DeflateAgreement {
  /** The server resets its compression context after each message (server_no_context_takeover). */
  serverNoContextTakeover: boolean;
  /** The client resets its compression context after each message (client_no_context_takeover). */
  clientNoContextTakeover: boolean;
  /** The largest LZ77 window the server may compress with (server_max_window_bits, 15 when absent). */
  serverMaxWindowBits: number;
  /** The largest LZ77 window the client may compress with (client_max_window_bits, 15 when absent). */
  clientMaxWindowBits: number;
}

/** A server's side of the negotiation: what it asks of every connection it accepts the extension on. */
export interface DeflateServerPolicy {
  /** Largest window this server compresses with (8..15); a client's lower server_max_window_bits wins. */
  serverMaxWindowBits: number;
  /** Largest window asked of clients that allow it (client_max_window_bits in their offer), 8..15. */
  clientMaxWindowBits: number;
}

export const PERMESSAGE_DEFLATE = 'permessage-deflate';

const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;

function isTchar(c: number): boolean {
  return c < 128 && TCHAR[c] === 1;
}

function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (!isTchar(s.charCodeAt(i))) return false;
  return true;
}

/**
 * Parses a Sec-WebSocket-Extensions value (RFC 6455 9.1: `1#extension`, each
 * `token *( ";" token [ "=" ( token / quoted-string ) ] )`, names case-insensitive and returned
 * in lower case). A quoted value is unescaped and must then be a token (RFC 6455 9.1).
 * Returns null when the value does not follow the grammar. One linear pass.
 */
export function parseExtensions(value: string): ExtensionOffer[] | null {
  const out: ExtensionOffer[] = [];
  const n = value.length;
  let i = 0;
  const skipOws = (): void => {
    while (i < n && (value.charCodeAt(i) === 0x20 || value.charCodeAt(i) === 0x09)) i++;
  };
  const readToken = (): string => {
    const start = i;
    while (i < n && isTchar(value.charCodeAt(i))) i++;
    return value.slice(start, i);
  };
  for (;;) {
    skipOws();
    // Empty list elements are allowed by RFC 7230 7 (`#rule`), not required.
    if (i < n && value.charCodeAt(i) === 0x2c) {
      i++;
      continue;
    }
    if (i >= n) break;
    const name = readToken();
    if (name === '') return null;
    const ext: ExtensionOffer = { name: name.toLowerCase(), params: [] };
    skipOws();
    while (i < n && value.charCodeAt(i) === 0x3b) {
      i++;
      skipOws();
      const param = readToken();
      if (param === '') return null;
      skipOws();
      let v: string | true = true;
      if (i < n && value.charCodeAt(i) === 0x3d) {
        i++;
        skipOws();
        if (i < n && value.charCodeAt(i) === 0x22) {
          i++;
          let s = '';
          for (;;) {
            if (i >= n) return null;
            const c = value.charCodeAt(i++);
            if (c === 0x22) break;
            if (c === 0x5c) {
              if (i >= n) return null;
              s += value[i++];
            } else s += value[i - 1];
          }
          if (!isToken(s)) return null;
          v = s;
        } else {
          v = readToken();
          if (v === '') return null;
        }
        skipOws();
      }
      ext.params.push([param.toLowerCase(), v]);
    }
    out.push(ext);
    if (i >= n) break;
    if (value.charCodeAt(i) !== 0x2c) return null;
    i++;
  }
  return out;
}

/** A window-bits value as RFC 7692 7.1.2 writes it: 8..15, decimal, no leading zero. NaN when invalid. */
function windowBits(v: string | true): number {
  if (v === true || v.length === 0 || v.length > 2 || v.charCodeAt(0) === 0x30) return NaN;
  for (let i = 0; i < v.length; i++) if (v.charCodeAt(i) < 0x30 || v.charCodeAt(i) > 0x39) return NaN;
  const bits = Number(v);
  return bits >= 8 && bits <= 15 ? bits : NaN;
}

/** The parameters of one permessage-deflate element; null when one is unknown, repeated or has an invalid value (RFC 7692 7, 5.1). */
interface DeflateParams {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  /** 0 when absent. */
  serverMaxWindowBits: number;
  /** 0 when absent, -1 when present without a value. */
  clientMaxWindowBits: number;
}

function readDeflateParams(params: Array<[string, string | true]>): DeflateParams | null {
  const p: DeflateParams = { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 0, clientMaxWindowBits: 0 };
  const seen = new Set<string>();
  for (const [name, v] of params) {
    if (seen.has(name)) return null;
    seen.add(name);
    switch (name) {
      case 'server_no_context_takeover':
        if (v !== true) return null;
        p.serverNoContextTakeover = true;
        break;
      case 'client_no_context_takeover':
        if (v !== true) return null;
        p.clientNoContextTakeover = true;
        break;
      case 'server_max_window_bits': {
        const bits = windowBits(v);
        if (Number.isNaN(bits)) return null;
        p.serverMaxWindowBits = bits;
        break;
      }
      case 'client_max_window_bits': {
        if (v === true) {
          p.clientMaxWindowBits = -1;
          break;
        }
        const bits = windowBits(v);
        if (Number.isNaN(bits)) return null;
        p.clientMaxWindowBits = bits;
        break;
      }
      default:
        return null;
    }
  }
  return p;
}

/**
 * A server's answer to the client's offers (RFC 7692 5.1, 7.1): the first permessage-deflate
 * offer it can accept, or null when none (the extension is then not used; an offer with an
 * unknown, repeated or invalid parameter is declined, not an error). The server always takes
 * both no-context-takeover parameters (7.1.1.1 lets it ask client_no_context_takeover of any
 * client): neither end keeps a compression context between messages, so a connection costs
 * nothing while idle and one compressed frame serves every subscriber.
 */
export function negotiateDeflate(offers: readonly ExtensionOffer[], policy: DeflateServerPolicy): { agreement: DeflateAgreement; header: string } | null {
  for (const offer of offers) {
    if (offer.name !== PERMESSAGE_DEFLATE) continue;
    const p = readDeflateParams(offer.params);
    if (p === null) continue;
    // 7.1.2.1: the response carries server_max_window_bits with the offered value or less; it
    // may carry one the offer did not ask for.
    const serverBits = p.serverMaxWindowBits > 0 ? Math.min(p.serverMaxWindowBits, policy.serverMaxWindowBits) : policy.serverMaxWindowBits;
    // 7.1.2.2: client_max_window_bits only when offered, and no more than an offered value.
    let clientBits = 15;
    if (p.clientMaxWindowBits !== 0) clientBits = Math.min(p.clientMaxWindowBits > 0 ? p.clientMaxWindowBits : 15, policy.clientMaxWindowBits);
    let header = `${PERMESSAGE_DEFLATE}; server_no_context_takeover; client_no_context_takeover`;
    if (p.serverMaxWindowBits > 0 || serverBits < 15) header += `; server_max_window_bits=${serverBits}`;
    if (p.clientMaxWindowBits !== 0 && (p.clientMaxWindowBits > 0 || clientBits < 15)) header += `; client_max_window_bits=${clientBits}`;
    return {
      agreement: { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: serverBits, clientMaxWindowBits: clientBits },
      header,
    };
  }
  return null;
}

/** What a client offers: the one permessage-deflate element it sends. */
export interface DeflateClientOffer {
  /** Ask the server to reset its context after each message (server_no_context_takeover). */
  serverNoContextTakeover: boolean;
  /** Promise to reset our own context after each message (client_no_context_takeover). */
  clientNoContextTakeover: boolean;
  /** Largest window the server may use, 8..15 (15: the parameter is left out). */
  serverMaxWindowBits: number;
}

/** The Sec-WebSocket-Extensions value of a client's offer. client_max_window_bits is always offered (we take any value). */
export function deflateOfferHeader(offer: DeflateClientOffer): string {
  let h = PERMESSAGE_DEFLATE;
  if (offer.serverNoContextTakeover) h += '; server_no_context_takeover';
  if (offer.clientNoContextTakeover) h += '; client_no_context_takeover';
  if (offer.serverMaxWindowBits < 15) h += `; server_max_window_bits=${offer.serverMaxWindowBits}`;
  return `${h}; client_max_window_bits`;
}

/**
 * Checks a server's Sec-WebSocket-Extensions response against our offer (RFC 7692 5, 7.1).
 * Returns the agreement, null when the server did not take the extension, or a string saying
 * why the response is invalid (the client must then fail the connection).
 */
export function acceptDeflateResponse(value: string | undefined, offer: DeflateClientOffer): DeflateAgreement | null | string {
  if (value === undefined) return null;
  const exts = parseExtensions(value);
  if (exts === null) return 'malformed Sec-WebSocket-Extensions';
  if (exts.length === 0) return null;
  if (exts.length > 1) return 'more than one extension in the response';
  const ext = exts[0]!;
  if (ext.name !== PERMESSAGE_DEFLATE) return `extension ${ext.name} was not offered`;
  const p = readDeflateParams(ext.params);
  if (p === null) return 'unknown, repeated or invalid permessage-deflate parameter';
  // 7.1.2.1: the server may not allow itself a larger window than we asked for.
  if (offer.serverMaxWindowBits < 15 && (p.serverMaxWindowBits === 0 || p.serverMaxWindowBits > offer.serverMaxWindowBits)) return 'server_max_window_bits above the offer';
  // 7.1.1.1: a server_no_context_takeover we asked for must be in the response.
  if (offer.serverNoContextTakeover && !p.serverNoContextTakeover) return 'server_no_context_takeover missing';
  // 7.1.2.2: a response's client_max_window_bits has a value.
  if (p.clientMaxWindowBits === -1) return 'client_max_window_bits without a value';
  return {
    serverNoContextTakeover: p.serverNoContextTakeover,
    clientNoContextTakeover: p.clientNoContextTakeover || offer.clientNoContextTakeover,
    serverMaxWindowBits: p.serverMaxWindowBits || 15,
    clientMaxWindowBits: p.clientMaxWindowBits || 15,
  };
}
