/**
 * Autobahn|Testsuite sections 12 and 13 (permessage-deflate), re-expressed from
 * autobahntestsuite/case/case12_x_x.py: 18 message sizes and auto-fragment sizes per data
 * set; section 12 sends five data sets with autobahn's default offer, section 13 sends the
 * JSON data set under seven offers (no context takeover, server_max_window_bits 8 and 15,
 * and a list of three offers). Each case sends a message, waits for its echo (same type,
 * length and SHA-1), and sends the next.
 *
 * Autobahn sends 1,000 messages per case; MURMUR_AUTOBAHN_DEFLATE_COUNT sets the count here
 * (default 20, so the sections stay a few seconds on a shared machine). Autobahn's data files
 * (Goethe's Faust, a 512x512 bitmap, a PDF, JSON, HTML) are replaced by generated data of the
 * same kinds, deterministic so a failure reproduces.
 */
import { createHash } from 'node:crypto';
import { CLOSE_NORMAL, FAILED, OK } from './fuzz-client.js';
import type { CaseSpec, DeflateOffer, FuzzClient } from './fuzz-client.js';
import { lcg } from '../helpers/bytes.js';

const COUNT = Number(process.env.MURMUR_AUTOBAHN_DEFLATE_COUNT ?? 20);

/** (payload length, case timeout in s, auto-fragment size): autobahn's MSG_SIZES. */
const MSG_SIZES: Array<[number, number, number]> = [
  [16, 60, 0], [64, 60, 0], [256, 120, 0], [1024, 240, 0], [4096, 480, 0], [8192, 480, 0], [16384, 480, 0], [32768, 480, 0], [65536, 480, 0], [131072, 480, 0],
  [8192, 480, 256], [16384, 480, 256], [32768, 480, 256], [65536, 480, 256], [131072, 480, 256], [131072, 480, 1024], [131072, 480, 4096], [131072, 480, 32768],
];

interface DataSet {
  desc: string;
  binary: boolean;
  data: Buffer;
}

const WORDS = 'und der die das ist nicht ich mir mich zu den ein Faust Mephistopheles Gretchen Himmel Erde Geist Welt Tag Nacht wohl schon noch auch so wie was'.split(' ');

function dataSets(): DataSet[] {
  const rnd = lcg(7692);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  let faust = '';
  while (faust.length < 200_000) faust += `${Array.from({ length: 4 + Math.floor(rnd() * 8) }, () => pick(WORDS)).join(' ')}${pick([',', '.', '!', '?'])}\n`;
  // A bitmap: a header, then rows of a smooth gradient with noise (what a 512x512 grey image compresses like).
  const bmp = Buffer.alloc(262_206);
  bmp.write('BM', 0, 'latin1');
  for (let i = 62; i < bmp.length; i++) bmp[i] = ((i % 512) >> 1) ^ (rnd() < 0.2 ? Math.floor(rnd() * 16) : 0);
  // A PDF: text-like objects between runs of already-compressed (random) streams.
  const pdfParts: Buffer[] = [];
  for (let n = 0; n < 40; n++) {
    pdfParts.push(Buffer.from(`${n} 0 obj\n<< /Length 4096 /Filter /FlateDecode >>\nstream\n`, 'latin1'));
    pdfParts.push(Buffer.from(Array.from({ length: 4096 }, () => Math.floor(rnd() * 256))));
    pdfParts.push(Buffer.from('\nendstream\nendobj\n', 'latin1'));
  }
  const json: unknown[] = [];
  for (let i = 0; json.length < 3000; i++) json.push({ id: i, user: { name: pick(WORDS), karma: Math.floor(rnd() * 1000) }, tags: [pick(WORDS), pick(WORDS)], text: `${pick(WORDS)} ${pick(WORDS)} ${pick(WORDS)}`, ok: rnd() < 0.5 });
  let html = '<!DOCTYPE html><html><head><title>data</title></head><body>\n';
  while (html.length < 200_000) html += `<div class="row"><span class="${pick(WORDS)}">${pick(WORDS)} ${pick(WORDS)}</span><a href="/${pick(WORDS)}">${pick(WORDS)}</a></div>\n`;
  html += '</body></html>\n';
  return [
    { desc: "Human readable text, in the manner of Goethe's Faust I (German)", binary: true, data: Buffer.from(faust, 'utf8') },
    { desc: 'A bitmap, 512x512 grey', binary: true, data: bmp },
    { desc: 'A larger PDF', binary: true, data: Buffer.concat(pdfParts) },
    { desc: 'Large JSON data file', binary: false, data: Buffer.from(JSON.stringify(json), 'utf8') },
    { desc: 'Large HTML file', binary: false, data: Buffer.from(html, 'utf8') },
  ];
}

/** `len` bytes from `from`, wrapping around like autobahn's payload pointer (JSON and HTML here are ASCII: any cut is valid UTF-8). */
function slice(data: Buffer, from: number, len: number): [Buffer, number] {
  const out = Buffer.allocUnsafe(len);
  let at = from;
  for (let o = 0; o < len; ) {
    const n = Math.min(len - o, data.length - at);
    data.copy(out, o, at, at + n);
    o += n;
    at = (at + n) % data.length;
  }
  return [out, at];
}

function sha1(b: Buffer): string {
  return createHash('sha1').update(b).digest('hex');
}

function deflateCase(id: string, description: string, set: DataSet, len: number, waitSecs: number, autoFrag: number, offers: DeflateOffer[]): CaseSpec {
  let ptr = 0;
  let count = 0;
  let expected = '';
  const sendOne = (p: FuzzClient): void => {
    const [m, next] = slice(set.data, ptr, len);
    ptr = next;
    expected = sha1(m);
    p.sendMessage(m, set.binary);
    count++;
  };
  return {
    id,
    description,
    deflateOffers: offers,
    guardMs: 120_000,
    onOpen(p) {
      ptr = 0;
      count = 0;
      p.expectedClose = { closedByMe: true, closeCode: [CLOSE_NORMAL], requireClean: true };
      p.autoFragmentSize = autoFrag;
      if (p.deflate === null) {
        p.behavior = 'UNIMPLEMENTED';
        p.result = 'The server did not accept the permessage-deflate offer.';
        p.sendClose(CLOSE_NORMAL);
        return;
      }
      p.behavior = FAILED;
      p.result = `Case did not finish within ${waitSecs} seconds.`;
      p.closeAfter(waitSecs);
      sendOne(p);
    },
    onMessage(p, data, binary) {
      if (binary !== set.binary || data.length !== len || sha1(data) !== expected) {
        p.behavior = FAILED;
        p.result = binary !== set.binary ? `Echoed message type differs (binary ${binary})` : data.length !== len ? `Echoed length ${data.length}, sent ${len}` : 'Echoed contents differ (SHA-1)';
        p.sendClose(CLOSE_NORMAL);
      } else if (count < COUNT) sendOne(p);
      else {
        p.behavior = OK;
        p.result = "Ok, received all echo'ed messages in time.";
        p.sendClose(CLOSE_NORMAL);
      }
    },
  };
}

const offer = (requestNoContextTakeover = false, requestMaxWindowBits = 0): DeflateOffer => ({ acceptNoContextTakeover: true, acceptMaxWindowBits: true, requestNoContextTakeover, requestMaxWindowBits });

export function section12(): CaseSpec[] {
  const out: CaseSpec[] = [];
  dataSets().forEach((set, j) => {
    MSG_SIZES.forEach(([len, wait, frag], i) => {
      out.push(deflateCase(`12.${j + 1}.${i + 1}`, `${set.desc}: ${COUNT} compressed messages of ${len} bytes, auto-fragment ${frag}, default offer`, set, len, wait, frag, [offer()]));
    });
  });
  return out;
}

/** The client offers of section 13 (autobahn's DEFLATE_PARAMS; the server's accept functions are the server's business). */
const OFFERS_13: DeflateOffer[][] = [[offer()], [offer(true, 0)], [offer(false, 8)], [offer(false, 15)], [offer(true, 8)], [offer(true, 15)], [offer(true, 8), offer(true), offer()]];

export function section13(): CaseSpec[] {
  const json = dataSets()[3]!;
  const out: CaseSpec[] = [];
  OFFERS_13.forEach((offers, j) => {
    const desc = offers.map((o) => `(${o.requestNoContextTakeover}, ${o.requestMaxWindowBits})`).join(' ');
    MSG_SIZES.forEach(([len, wait, frag], i) => {
      out.push(deflateCase(`13.${j + 1}.${i + 1}`, `JSON: ${COUNT} compressed messages of ${len} bytes, auto-fragment ${frag}, offers ${desc}`, json, len, wait, frag, offers));
    });
  });
  return out;
}
