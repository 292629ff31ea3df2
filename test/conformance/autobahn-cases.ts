/**
 * Autobahn|Testsuite sections 1-10 (301 cases), re-expressed from the behaviour of the
 * case definitions in crossbario/autobahn-testsuite (autobahntestsuite/case/case*.py):
 * the same frames, the same chopping, the same timers and expected outcomes. Only
 * continueLater() delays are scaled (see RunOptions.continueScale).
 */
import {
  CLOSE_INVALID_PAYLOAD,
  CLOSE_NORMAL,
  CLOSE_PROTOCOL_ERROR,
  FAILED,
  INFORMATIONAL,
  NON_STRICT,
  OK,
  WRONG_CODE,
  msg,
  pong,
  repeatTo,
  timeoutEv,
} from './fuzz-client.js';
import type { CaseSpec, FuzzClient } from './fuzz-client.js';
import { Utf8Stream } from './utf8.js';
import { section12, section13 } from './autobahn-deflate-cases.js';

/** Bytes written as latin1 escapes, like the Python 2 byte strings of the originals. */
const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const u = (s: string): Buffer => Buffer.from(s, 'utf8');
const fill = (n: number, byte: number | string): Buffer => Buffer.alloc(n, byte);

const normalClose = { closedByMe: true, closeCode: [CLOSE_NORMAL], requireClean: true };
const failProto = { closedByMe: false, closeCode: [CLOSE_PROTOCOL_ERROR], requireClean: false };
const failUtf8 = { closedByMe: false, closeCode: [CLOSE_INVALID_PAYLOAD], requireClean: false };

function c(id: string, description: string, onOpen: (p: FuzzClient) => void, extra: Partial<CaseSpec> = {}): CaseSpec {
  return { id, description, onOpen, ...extra };
}

// ---- section 1: framing ------------------------------------------------------------------

function section1(): CaseSpec[] {
  const out: CaseSpec[] = [];
  const sizes: Array<[number, number | undefined, number]> = [
    [0, undefined, 1],
    [125, undefined, 1],
    [126, undefined, 1],
    [127, undefined, 1],
    [128, undefined, 1],
    [65535, undefined, 10],
    [65536, undefined, 10],
    [65536, 997, 10],
  ];
  for (const [binary, sub] of [[false, 1], [true, 2]] as const) {
    sizes.forEach(([len, chop, kill], i) => {
      const payload = fill(len, binary ? 0xfe : '*');
      out.push(
        c(`1.${sub}.${i + 1}`, `${binary ? 'binary' : 'text'} message of ${len} bytes${chop ? `, sent in chops of ${chop}` : ''}`, (p) => {
          p.expected = [[OK, [msg(payload, binary)]]];
          p.expectedClose = normalClose;
          p.sendFrame(binary ? 2 : 1, payload, { chopsize: chop });
          p.killAfter(kill);
        }),
      );
    });
  }
  return out;
}

// ---- section 2: pings/pongs ----------------------------------------------------------------

function section2(): CaseSpec[] {
  const pingCase = (id: string, description: string, payload: Buffer, chopsize?: number, closeAfter = 1): CaseSpec =>
    c(id, description, (p) => {
      p.expected = [[OK, [pong(payload)]]];
      p.expectedClose = normalClose;
      p.sendFrame(9, payload, { chopsize });
      p.closeAfter(closeAfter);
    });
  const tenPings = (id: string, chopsize?: number): CaseSpec =>
    c(id, `10 pings with payload${chopsize ? ', octet-wise chops' : ''}`, (p) => {
      const exp = [];
      for (let i = 0; i < 10; i++) {
        const payload = u(`payload-${i}`);
        exp.push(pong(payload));
        p.sendFrame(9, payload, { chopsize });
      }
      p.expected = [[OK, exp]];
      p.expectedClose = normalClose;
      p.closeAfter(3);
    });
  return [
    pingCase('2.1', 'ping without payload', Buffer.alloc(0)),
    pingCase('2.2', 'ping with small text payload', u('Hello, world!')),
    pingCase('2.3', 'ping with small binary payload', b('\x00\xff\xfe\xfd\xfc\xfb\x00\xff')),
    pingCase('2.4', 'ping with 125-byte binary payload', fill(125, 0xfe)),
    c('2.5', 'ping with 126-byte payload (too long for a control frame)', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = failProto;
      p.sendFrame(9, fill(126, 0xfe));
      p.killAfter(1);
    }),
    pingCase('2.6', 'ping with 125-byte payload, octet-wise chops', fill(125, 0xfe), 1, 2),
    c('2.7', 'unsolicited pong without payload, then close', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = normalClose;
      p.sendFrame(10);
      p.sendClose(CLOSE_NORMAL);
      p.closeAfter(1);
    }),
    c('2.8', 'unsolicited pong with payload, then close', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = normalClose;
      p.sendFrame(10, u('unsolicited pong payload'));
      p.sendClose(CLOSE_NORMAL);
      p.closeAfter(1);
    }),
    c('2.9', 'unsolicited pong, then ping', (p) => {
      p.expected = [[OK, [pong('ping payload')]]];
      p.expectedClose = normalClose;
      p.sendFrame(10, u('unsolicited pong payload'));
      p.sendFrame(9, u('ping payload'));
      p.closeAfter(1);
    }),
    tenPings('2.10'),
    tenPings('2.11', 1),
  ];
}

// ---- sections 3 and 4: reserved bits and opcodes ------------------------------------------------

/** text message, then a bad frame, then a ping: echo then fail (OK) or just fail (NON-STRICT). */
function echoThenBad(id: string, description: string, bad: { opcode: number; payload?: Buffer; rsv?: number }, how: 'plain' | 'sync' | 'chop'): CaseSpec {
  return c(id, description, (p) => {
    const payload = u('Hello, world!');
    p.expected = [
      [OK, [msg(payload)]],
      [NON_STRICT, []],
    ];
    p.expectedClose = failProto;
    const o = how === 'sync' ? { sync: true } : how === 'chop' ? { chopsize: 1 } : {};
    p.sendFrame(1, payload, o);
    p.sendFrame(bad.opcode, bad.payload, { ...o, rsv: bad.rsv });
    p.sendFrame(9, undefined, o);
    p.killAfter(1);
  });
}

function justBad(id: string, description: string, opcode: number, payload?: Buffer, rsv?: number): CaseSpec {
  return c(id, description, (p) => {
    p.expected = [[OK, []]];
    p.expectedClose = failProto;
    p.sendFrame(opcode, payload, { rsv });
    p.killAfter(1);
  });
}

function section3(): CaseSpec[] {
  return [
    justBad('3.1', 'small text message with RSV = 1', 1, u('Hello, world!'), 1),
    echoThenBad('3.2', 'text, then text with RSV = 2, then ping', { opcode: 1, payload: u('Hello, world!'), rsv: 2 }, 'plain'),
    echoThenBad('3.3', 'text, then text with RSV = 3, then ping, frame-wise chops', { opcode: 1, payload: u('Hello, world!'), rsv: 3 }, 'sync'),
    echoThenBad('3.4', 'text, then text with RSV = 4, then ping, octet-wise chops', { opcode: 1, payload: u('Hello, world!'), rsv: 4 }, 'chop'),
    justBad('3.5', 'small binary message with RSV = 5', 2, b('\x00\xff\xfe\xfd\xfc\xfb\x00\xff'), 5),
    // The original sends opcode 2 here although its description says "Ping".
    justBad('3.6', 'frame with RSV = 6', 2, u('Hello, world!'), 6),
    justBad('3.7', 'close with RSV = 7', 8, undefined, 7),
  ];
}

function section4(): CaseSpec[] {
  const pl = u('reserved opcode payload');
  const hello = u('Hello, world!');
  return [
    justBad('4.1.1', 'reserved non-control opcode 3', 3),
    justBad('4.1.2', 'reserved non-control opcode 4 with payload', 4, pl),
    echoThenBad('4.1.3', 'text, then opcode 5, then ping', { opcode: 5 }, 'plain'),
    echoThenBad('4.1.4', 'text, then opcode 6 with payload, then ping', { opcode: 6, payload: hello }, 'plain'),
    echoThenBad('4.1.5', 'text, then opcode 7 with payload, then ping, octet-wise chops', { opcode: 7, payload: hello }, 'chop'),
    justBad('4.2.1', 'reserved control opcode 11', 11),
    justBad('4.2.2', 'reserved control opcode 12 with payload', 12, pl),
    echoThenBad('4.2.3', 'text, then opcode 13, then ping', { opcode: 13 }, 'plain'),
    echoThenBad('4.2.4', 'text, then opcode 14 with payload, then ping', { opcode: 14, payload: hello }, 'plain'),
    echoThenBad('4.2.5', 'text, then opcode 15 with payload, then ping, octet-wise chops', { opcode: 15, payload: hello }, 'chop'),
  ];
}

// ---- section 5: fragmentation ------------------------------------------------------------------

type Fr = [opcode: number, fin: boolean, payload: string];

function fragFail(id: string, description: string, frames: Fr[], how: 'plain' | 'sync' | 'chop'): CaseSpec {
  return c(id, description, (p) => {
    p.expected = [[OK, []]];
    p.expectedClose = failProto;
    const o = how === 'sync' ? { sync: true } : how === 'chop' ? { chopsize: 1 } : {};
    for (const [op, fin, pl] of frames) p.sendFrame(op, u(pl), { ...o, fin });
    p.killAfter(1);
  });
}

function fragOk(id: string, description: string, frames: Fr[], expected: ReturnType<typeof msg>[], how: 'plain' | 'sync' | 'chop'): CaseSpec {
  return c(id, description, (p) => {
    p.expected = [[OK, expected]];
    p.expectedClose = normalClose;
    const o = how === 'sync' ? { sync: true } : how === 'chop' ? { chopsize: 1 } : {};
    for (const [op, fin, pl] of frames) p.sendFrame(op, u(pl), { ...o, fin });
    p.closeAfter(1);
  });
}

function case5_19(id: string, sync: boolean): CaseSpec {
  return c(id, `fragmented text with pings between, a wait in the middle${sync ? ', sync writes' : ''}`, (p) => {
    const fr = ['fragment1', 'fragment2', 'fragment3', 'fragment4', 'fragment5'];
    const pings = ['pongme 1!', 'pongme 2!'];
    p.expected = [[OK, [pong(pings[0]!), pong(pings[1]!), msg(fr.join(''))]]];
    p.expectedClose = normalClose;
    p.sendFrame(1, u(fr[0]!), { fin: false, sync });
    p.sendFrame(0, u(fr[1]!), { fin: false, sync });
    p.sendFrame(9, u(pings[0]!), { sync });
    p.continueLater(1, () => {
      p.sendFrame(0, u(fr[2]!), { fin: false, sync });
      p.sendFrame(0, u(fr[3]!), { fin: false, sync });
      p.sendFrame(9, u(pings[1]!), { sync });
      p.sendFrame(0, u(fr[4]!), { fin: true, sync });
      p.closeAfter(1);
    });
  });
}

function section5(): CaseSpec[] {
  const two: Fr[] = [
    [1, false, 'fragment1'],
    [0, true, 'fragment2'],
  ];
  const withPing: Fr[] = [
    [1, false, 'fragment1'],
    [9, true, 'ping payload'],
    [0, true, 'fragment2'],
  ];
  const contFin: Fr[] = [
    [0, true, 'non-continuation payload'],
    [1, true, 'Hello, world!'],
  ];
  const contNoFin: Fr[] = [
    [0, false, 'non-continuation payload'],
    [1, true, 'Hello, world!'],
  ];
  const rep = (first: boolean): Fr[] => {
    const f: Fr[] = [];
    for (let i = 0; i < 2; i++) f.push([0, first, 'fragment1'], [1, false, 'fragment2'], [0, true, 'fragment3']);
    return f;
  };
  return [
    fragFail('5.1', 'ping fragmented into 2 fragments', [
      [9, false, 'fragment1'],
      [0, true, 'fragment2'],
    ], 'plain'),
    fragFail('5.2', 'pong fragmented into 2 fragments', [
      [10, false, 'fragment1'],
      [0, true, 'fragment2'],
    ], 'plain'),
    fragOk('5.3', 'text in 2 fragments', two, [msg('fragment1fragment2')], 'plain'),
    fragOk('5.4', 'text in 2 fragments, frame-wise chops', two, [msg('fragment1fragment2')], 'sync'),
    fragOk('5.5', 'text in 2 fragments, octet-wise chops', two, [msg('fragment1fragment2')], 'chop'),
    fragOk('5.6', 'text in 2 fragments, ping in between', withPing, [pong('ping payload'), msg('fragment1fragment2')], 'plain'),
    fragOk('5.7', 'text in 2 fragments, ping in between, frame-wise chops', withPing, [pong('ping payload'), msg('fragment1fragment2')], 'sync'),
    fragOk('5.8', 'text in 2 fragments, ping in between, octet-wise chops', withPing, [pong('ping payload'), msg('fragment1fragment2')], 'chop'),
    fragFail('5.9', 'continuation (FIN) with nothing to continue, then text', contFin, 'plain'),
    fragFail('5.10', 'continuation (FIN) with nothing to continue, then text, frame-wise chops', contFin, 'sync'),
    fragFail('5.11', 'continuation (FIN) with nothing to continue, then text, octet-wise chops', contFin, 'chop'),
    fragFail('5.12', 'continuation (no FIN) with nothing to continue, then text', contNoFin, 'plain'),
    fragFail('5.13', 'continuation (no FIN) with nothing to continue, then text, frame-wise chops', contNoFin, 'sync'),
    fragFail('5.14', 'continuation (no FIN) with nothing to continue, then text, octet-wise chops', contNoFin, 'chop'),
    c('5.15', 'text in 2 fragments, then continuation with nothing to continue, then text', (p) => {
      p.expected = [
        [OK, [msg('fragment1fragment2')]],
        [NON_STRICT, []],
      ];
      p.expectedClose = failProto;
      p.sendFrame(1, u('fragment1'), { fin: false });
      p.sendFrame(0, u('fragment2'), { fin: true });
      p.sendFrame(0, u('fragment3'), { fin: false });
      p.sendFrame(1, u('fragment4'), { fin: true });
      p.killAfter(1);
    }),
    fragFail('5.16', '2x: continuation (no FIN) with nothing to continue, then text in 2 fragments', rep(false), 'plain'),
    fragFail('5.17', '2x: continuation (FIN) with nothing to continue, then text in 2 fragments', rep(true), 'plain'),
    fragFail('5.18', 'text in 2 fragments, both with opcode text', [
      [1, false, 'fragment1'],
      [1, true, 'fragment2'],
    ], 'plain'),
    case5_19('5.19', false),
    case5_19('5.20', true),
  ];
}

// ---- section 6: UTF-8 -----------------------------------------------------------------------

const KOSME = b('\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5');

/** The test sequence table of case6_x_x.py (from Markus Kuhn's UTF-8-test.txt), in order. */
export function utf8TestSequences(): Array<[string, Array<[boolean, Buffer]>]> {
  const t: Array<[string, Array<[boolean, Buffer]>]> = [];
  t.push([
    'Some valid UTF-8 sequences',
    [
      [true, b('hello\x24world')],
      [true, b('hello\xC2\xA2world')],
      [true, b('hello\xE2\x82\xACworld')],
      [true, b('hello\xF0\xA4\xAD\xA2world')],
      [true, KOSME],
    ],
  ]);
  const prefixes: Array<[boolean, Buffer]> = [];
  for (let i = 1; i <= KOSME.length; i++) {
    const v = new Utf8Stream();
    const [ok, complete] = v.validate(KOSME.subarray(0, i));
    prefixes.push([ok && complete, KOSME.subarray(0, i)]);
  }
  t.push(['All prefixes of a valid UTF-8 string that contains multi-byte code points', prefixes]);
  t.push(['First possible sequence of a certain length', [[true, b('\x00')], [true, b('\xc2\x80')], [true, b('\xe0\xa0\x80')], [true, b('\xf0\x90\x80\x80')]]]);
  t.push(['First possible sequence length 5/6 (invalid codepoints)', [[false, b('\xf8\x88\x80\x80\x80')], [false, b('\xfc\x84\x80\x80\x80\x80')]]]);
  t.push(['Last possible sequence of a certain length', [[true, b('\x7f')], [true, b('\xdf\xbf')], [true, b('\xef\xbf\xbf')], [true, b('\xf4\x8f\xbf\xbf')]]]);
  t.push(['Last possible sequence length 4/5/6 (invalid codepoints)', [[false, b('\xf7\xbf\xbf\xbf')], [false, b('\xfb\xbf\xbf\xbf\xbf')], [false, b('\xfd\xbf\xbf\xbf\xbf\xbf')]]]);
  t.push([
    'Other boundary conditions',
    [[true, b('\xed\x9f\xbf')], [true, b('\xee\x80\x80')], [true, b('\xef\xbf\xbd')], [true, b('\xf4\x8f\xbf\xbf')], [false, b('\xf4\x90\x80\x80')]],
  ]);
  const cont: Array<[boolean, Buffer]> = [
    [false, b('\x80')],
    [false, b('\xbf')],
    [false, b('\x80\xbf')],
    [false, b('\x80\xbf\x80')],
    [false, b('\x80\xbf\x80\xbf')],
    [false, b('\x80\xbf\x80\xbf\x80')],
    [false, b('\x80\xbf\x80\xbf\x80\xbf')],
  ];
  const all: number[] = [];
  for (let i = 0x80; i < 0xbf; i++) all.push(i); // Python xrange(0x80, 0xbf): 0xbf excluded
  cont.push([false, Buffer.from(all)]);
  t.push(['Unexpected continuation bytes', cont]);
  const lonely: Array<[boolean, Buffer]> = [];
  for (const [lo, hi] of [[0xc0, 0xdf], [0xe0, 0xef], [0xf0, 0xf7], [0xf8, 0xfb], [0xfc, 0xfd]] as const) {
    const s: number[] = [];
    for (let i = lo; i < hi; i++) s.push(i, 0x20);
    lonely.push([false, Buffer.from(s)]);
  }
  t.push(['Lonely start characters', lonely]);
  const k = ['\xc0', '\xe0\x80', '\xf0\x80\x80', '\xf8\x80\x80\x80', '\xfc\x80\x80\x80\x80', '\xdf', '\xef\xbf', '\xf7\xbf\xbf', '\xfb\xbf\xbf\xbf', '\xfd\xbf\xbf\xbf\xbf'];
  t.push(['Sequences with last continuation byte missing', k.map((s) => [false, b(s)] as [boolean, Buffer])]);
  t.push(['Concatenation of incomplete sequences', [[false, b(k.join(''))]]]);
  t.push(['Impossible bytes', [[false, b('\xfe')], [false, b('\xff')], [false, b('\xfe\xfe\xff\xff')]]]);
  t.push([
    'Examples of an overlong ASCII character',
    [[false, b('\xc0\xaf')], [false, b('\xe0\x80\xaf')], [false, b('\xf0\x80\x80\xaf')], [false, b('\xf8\x80\x80\x80\xaf')], [false, b('\xfc\x80\x80\x80\x80\xaf')]],
  ]);
  t.push([
    'Maximum overlong sequences',
    [[false, b('\xc1\xbf')], [false, b('\xe0\x9f\xbf')], [false, b('\xf0\x8f\xbf\xbf')], [false, b('\xf8\x87\xbf\xbf\xbf')], [false, b('\xfc\x83\xbf\xbf\xbf\xbf')]],
  ]);
  t.push([
    'Overlong representation of the NUL character',
    [[false, b('\xc0\x80')], [false, b('\xe0\x80\x80')], [false, b('\xf0\x80\x80\x80')], [false, b('\xf8\x80\x80\x80\x80')], [false, b('\xfc\x80\x80\x80\x80\x80')]],
  ]);
  t.push([
    'Single UTF-16 surrogates',
    ['\xed\xa0\x80', '\xed\xad\xbf', '\xed\xae\x80', '\xed\xaf\xbf', '\xed\xb0\x80', '\xed\xbe\x80', '\xed\xbf\xbf'].map((s) => [false, b(s)] as [boolean, Buffer]),
  ]);
  t.push([
    'Paired UTF-16 surrogates',
    [
      '\xed\xa0\x80\xed\xb0\x80',
      '\xed\xa0\x80\xed\xbf\xbf',
      '\xed\xad\xbf\xed\xb0\x80',
      '\xed\xad\xbf\xed\xbf\xbf',
      '\xed\xae\x80\xed\xb0\x80',
      '\xed\xae\x80\xed\xbf\xbf',
      '\xed\xaf\xbf\xed\xb0\x80',
      '\xed\xaf\xbf\xed\xbf\xbf',
    ].map((s) => [false, b(s)] as [boolean, Buffer]),
  ]);
  const nonChars: Array<[boolean, Buffer]> = [
    [true, b('\xef\xbf\xbe')],
    [true, b('\xef\xbf\xbf')],
  ];
  for (const z1 of ['\xf0', '\xf1', '\xf2', '\xf3', '\xf4']) {
    for (const z2 of ['\x8f', '\x9f', '\xaf', '\xbf']) {
      if (z1 === '\xf4' && z2 !== '\x8f') continue; // above U+10FFFF
      for (const z3 of ['\xbe', '\xbf']) {
        const zz = z1 + z2 + '\xbf' + z3;
        if (zz === '\xf0\x8f\xbf\xbe' || zz === '\xf0\x8f\xbf\xbf') continue; // overlong
        nonChars.push([true, b(zz)]);
      }
    }
  }
  t.push(['Non-character code points (valid UTF-8)', nonChars]);
  t.push([
    'Unicode specials (i.e. replacement char)',
    ['\xef\xbf\xb9', '\xef\xbf\xba', '\xef\xbf\xbb', '\xef\xbf\xbc', '\xef\xbf\xbd', '\xef\xbf\xbe', '\xef\xbf\xbf'].map((s) => [true, b(s)] as [boolean, Buffer]),
  ]);
  return t;
}

function section6(): CaseSpec[] {
  const out: CaseSpec[] = [];
  out.push(
    c('6.1.1', 'text message of length 0', (p) => {
      p.expected = [[OK, [msg('')]]];
      p.expectedClose = normalClose;
      p.sendFrame(1, '');
      p.closeAfter(1);
    }),
    c('6.1.2', 'fragmented text, 3 empty fragments', (p) => {
      p.expected = [[OK, [msg('')]]];
      p.expectedClose = normalClose;
      p.sendFrame(1, '', { fin: false });
      p.sendFrame(0, '', { fin: false });
      p.sendFrame(0, '', { fin: true });
      p.closeAfter(1);
    }),
    c('6.1.3', 'fragmented text, empty first and last fragment', (p) => {
      p.expected = [[OK, [msg('middle frame payload')]]];
      p.expectedClose = normalClose;
      p.sendFrame(1, '', { fin: false });
      p.sendFrame(0, 'middle frame payload', { fin: false });
      p.sendFrame(0, '', { fin: true });
      p.closeAfter(1);
    }),
  );
  const hello = 'Hello-µ@ßöäüàá-UTF-8!!';
  out.push(
    c('6.2.1', 'valid UTF-8 text in one fragment', (p) => {
      p.expected = [[OK, [msg(hello)]]];
      p.expectedClose = normalClose;
      p.sendMessage(hello);
      p.closeAfter(1);
    }),
    c('6.2.2', 'valid UTF-8 text in two fragments, split on a code point boundary', (p) => {
      p.expected = [[OK, [msg(hello)]]];
      p.expectedClose = normalClose;
      p.sendFrame(1, 'Hello-µ@ßöä', { fin: false });
      p.sendFrame(0, 'üàá-UTF-8!!', { fin: true });
      p.closeAfter(1);
    }),
    c('6.2.3', 'valid UTF-8 text in 1-octet fragments', (p) => {
      p.expected = [[OK, [msg(hello)]]];
      p.expectedClose = normalClose;
      p.sendMessage(hello, false, 1);
      p.closeAfter(1);
    }),
    c('6.2.4', 'valid UTF-8 text (kosme) in 1-octet fragments', (p) => {
      p.expected = [[OK, [msg(KOSME)]]];
      p.expectedClose = normalClose;
      p.sendMessage(KOSME, false, 1);
      p.closeAfter(1);
    }),
  );
  const bad631 = Buffer.concat([KOSME, b('\xed\xa0\x80'), b('\x65\x64\x69\x74\x65\x64')]);
  out.push(
    c('6.3.1', 'invalid UTF-8 text, unfragmented', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = failUtf8;
      p.sendMessage(bad631);
      p.killAfter(1);
    }),
    c('6.3.2', 'invalid UTF-8 text in 1-octet fragments', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = failUtf8;
      p.sendMessage(bad631, false, 1);
      p.killAfter(1);
    }),
  );
  // 6.4.x: fail fast. PART2 makes the payload invalid; the server must fail the connection
  // before the next continueLater() fires, or 'timeout B' is recorded (NON-STRICT).
  const p1 = KOSME;
  const p2 = b('\xf4\x90\x80\x80');
  const p3 = b('\x65\x64\x69\x74\x65\x64');
  const whole = Buffer.concat([p1, p2, p3]);
  const failFast = (id: string, description: string, parts: Buffer[], streamed: boolean): CaseSpec =>
    c(id, description, (p) => {
      p.expected = [
        [OK, [timeoutEv('A')]],
        [NON_STRICT, [timeoutEv('A'), timeoutEv('B')]],
      ];
      p.expectedClose = failUtf8;
      if (streamed) {
        p.beginMessageFrame(false, whole.length);
        p.sendMessageFrameData(parts[0]!);
      } else {
        p.sendFrame(1, parts[0]!, { fin: false });
      }
      p.continueLater(1, () => {
        if (p.state !== 'open') return;
        p.received.push(timeoutEv('A'));
        p.note('timeout A: sending part 2');
        if (streamed) p.sendMessageFrameData(parts[1]!);
        else p.sendFrame(0, parts[1]!, { fin: false });
        p.continueLater(1, () => {
          if (p.state !== 'open') return;
          p.received.push(timeoutEv('B'));
          p.note('timeout B: the server did not fail fast; sending part 3');
          if (streamed) {
            p.sendMessageFrameData(parts[2]!);
            p.endMessage();
          } else {
            p.sendFrame(0, parts[2]!, { fin: true });
          }
          p.killAfter(1);
        });
      });
    });
  out.push(
    failFast('6.4.1', 'invalid UTF-8 in 3 frames; frame 2 makes it invalid (U+110000)', [p1, p2, p3], false),
    failFast('6.4.2', 'as 6.4.1, frame 2 is just the octet that makes it invalid', [whole.subarray(0, 12), whole.subarray(12, 13), whole.subarray(13)], false),
    failFast('6.4.3', 'as 6.4.1, but 3 chops of one frame', [p1, p2, p3], true),
    failFast('6.4.4', 'as 6.4.2, but 3 chops of one frame', [whole.subarray(0, 12), whole.subarray(12, 13), whole.subarray(13)], true),
  );
  let i = 5;
  for (const [title, seqs] of utf8TestSequences()) {
    let j = 1;
    for (const [valid, payload] of seqs) {
      out.push(
        c(`6.${i}.${j}`, `${title}: ${valid ? 'valid' : 'invalid'} 0x${payload.toString('hex')}`, (p) => {
          if (valid) {
            p.expected = [[OK, [msg(payload)]]];
            p.expectedClose = normalClose;
          } else {
            p.expected = [[OK, []]];
            p.expectedClose = failUtf8;
          }
          p.sendMessage(payload);
          p.killAfter(0.5);
        }),
      );
      j++;
    }
    i++;
  }
  return out;
}

// ---- section 7: close handling --------------------------------------------------------------

/** The override most 7.x cases have: a wrong close code fails the whole case. */
const wrongCodeFails = (p: FuzzClient): void => {
  if (p.behaviorClose === WRONG_CODE) {
    p.behavior = FAILED;
    p.result = p.resultClose;
  }
};
const informational = (p: FuzzClient): void => {
  p.behavior = INFORMATIONAL;
  p.behaviorClose = INFORMATIONAL;
};

function section7(): CaseSpec[] {
  const out: CaseSpec[] = [];
  const hw = u('Hello World!');
  out.push(
    c('7.1.1', 'message, then close (after the echo)', (p) => {
      p.expected = [[OK, [msg(hw)]]];
      p.expectedClose = normalClose;
      p.sendFrame(1, hw);
      p.killAfter(1);
    }, { afterVerdict: wrongCodeFails }),
    c('7.1.2', 'two close frames', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = normalClose;
      p.sendClose(CLOSE_NORMAL);
      p.sendFrame(8);
      p.killAfter(1);
    }, { suppressClose: true, afterVerdict: wrongCodeFails }),
    c('7.1.3', 'ping after close', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = normalClose;
      p.sendClose(CLOSE_NORMAL);
      p.sendFrame(9);
      p.killAfter(1);
    }, { suppressClose: true, afterVerdict: wrongCodeFails }),
    c('7.1.4', 'text message after close', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = normalClose;
      p.sendClose(CLOSE_NORMAL);
      p.sendFrame(1, hw);
      p.killAfter(1);
    }, { suppressClose: true, afterVerdict: wrongCodeFails }),
    c('7.1.5', 'fragment 1, close, fragment 2', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = normalClose;
      p.sendFrame(1, 'fragment1', { fin: false });
      p.sendClose(CLOSE_NORMAL);
      p.sendFrame(0, 'fragment2', { fin: true });
      p.killAfter(1);
    }, { suppressClose: true, afterVerdict: wrongCodeFails }),
    c('7.1.6', '256K message, message, close, ping (informational)', (p) => {
      p.expected = [
        [OK, [msg(hw)]],
        [NON_STRICT, []],
      ];
      p.expectedClose = normalClose;
      p.sendFrame(1, u('BAsd7&jh23'), { payloadLen: 256 * 1024 });
      p.sendFrame(1, hw);
      p.sendClose(CLOSE_NORMAL);
      p.sendFrame(9);
      p.killAfter(1);
    }, { suppressClose: true, afterVerdict: informational }),
    c('7.3.1', 'close with empty payload', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = normalClose;
      p.sendCloseFrame();
      p.killAfter(1);
    }, { suppressClose: true, afterVerdict: wrongCodeFails }),
    c('7.3.2', 'close with 1-byte payload', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = { closedByMe: true, closeCode: [CLOSE_PROTOCOL_ERROR], requireClean: false };
      p.sendCloseFrame(undefined, u('a'));
      p.killAfter(1);
    }, { suppressClose: true, afterVerdict: wrongCodeFails }),
    c('7.3.3', 'close with code only', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = normalClose;
      p.sendClose(CLOSE_NORMAL);
      p.killAfter(1);
    }, { suppressClose: true, afterVerdict: wrongCodeFails }),
    c('7.3.4', 'close with code and reason', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = normalClose;
      p.sendClose(CLOSE_NORMAL, 'Hello World!');
      p.killAfter(1);
    }, { suppressClose: true, afterVerdict: wrongCodeFails }),
    c('7.3.5', 'close with code and 123-byte reason', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = normalClose;
      p.sendClose(CLOSE_NORMAL, '*'.repeat(123));
      p.killAfter(1);
    }, { suppressClose: true, afterVerdict: wrongCodeFails }),
    c('7.3.6', 'close with code and 124-byte reason (payload 126)', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = { closedByMe: true, closeCode: [CLOSE_PROTOCOL_ERROR], requireClean: false };
      p.sendCloseFrame(CLOSE_NORMAL, u('*'.repeat(124)));
      p.killAfter(1);
    }, { suppressClose: true, afterVerdict: wrongCodeFails }),
    c('7.5.1', 'close with invalid UTF-8 reason', (p) => {
      p.expected = [[OK, []]];
      p.expectedClose = { closedByMe: true, closeCode: [CLOSE_PROTOCOL_ERROR, CLOSE_INVALID_PAYLOAD], requireClean: false };
      p.sendCloseFrame(CLOSE_NORMAL, b('\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64'));
      p.killAfter(1);
    }, { suppressClose: true, afterVerdict: wrongCodeFails }),
  );
  [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999].forEach((code, k) => {
    out.push(
      c(`7.7.${k + 1}`, `close with valid code ${code}`, (p) => {
        p.expected = [[OK, []]];
        p.expectedClose = { closedByMe: true, closeCode: [CLOSE_NORMAL, code], requireClean: true };
        p.sendCloseFrame(code);
        p.killAfter(1);
      }, { afterVerdict: wrongCodeFails }),
    );
  });
  [0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999].forEach((code, k) => {
    out.push(
      c(`7.9.${k + 1}`, `close with invalid code ${code}`, (p) => {
        p.expected = [[OK, []]];
        p.expectedClose = { closedByMe: true, closeCode: [CLOSE_PROTOCOL_ERROR], requireClean: false };
        p.sendCloseFrame(code);
        p.killAfter(1);
      }, { afterVerdict: wrongCodeFails }),
    );
  });
  for (const [k, code] of [[1, 5000], [2, 65535]] as const) {
    out.push(
      c(`7.13.${k}`, `close with code ${code} (informational)`, (p) => {
        p.expected = [[OK, []]];
        p.expectedClose = { closedByMe: true, closeCode: [CLOSE_NORMAL, code, CLOSE_PROTOCOL_ERROR], requireClean: false };
        p.sendCloseFrame(code);
        p.killAfter(1);
      }, { suppressClose: true, afterVerdict: informational }),
    );
  }
  return out;
}

// ---- section 9: limits / performance ------------------------------------------------------------

/**
 * Section 9 cases decide OK themselves: the echo must have the same type and length
 * (Autobahn does not compare the contents: "FIXME : check actual content"). We also
 * compare the contents and report a difference as a strict note, beyond Autobahn.
 */
function bigEcho(id: string, description: string, send: (p: FuzzClient) => void, want: Buffer, binary: boolean, waitSecs: number): CaseSpec {
  return c(
    id,
    description,
    (p) => {
      p.behavior = FAILED;
      p.result = `Did not receive message within ${waitSecs} seconds.`;
      p.expectedClose = normalClose;
      send(p);
      p.closeAfter(waitSecs);
    },
    {
      guardMs: 60_000,
      onMessage(p, data, isBinary) {
        if (isBinary !== binary) p.result = `Expected ${binary ? 'binary' : 'text'} message, got ${isBinary ? 'binary' : 'text'}.`;
        else if (data.length !== want.length) p.result = `Expected a message of length ${want.length}, but got ${data.length}.`;
        else {
          p.behavior = OK;
          p.result = `Received message of length ${data.length}.`;
          if (!data.equals(want)) {
            let at = 0;
            while (at < data.length && data[at] === want[at]) at++;
            p.strictNotes.push(`echoed payload differs from the one sent, first at byte ${at} of ${data.length}`);
          }
        }
        p.sendClose(CLOSE_NORMAL);
      },
    },
  );
}

function roundTrips(id: string, binary: boolean, len: number, count: number, waitSecs: number): CaseSpec {
  const payload = repeatTo(binary ? b('\xfe') : u('*'), len);
  let sent = 0;
  return c(
    id,
    `${count} ${binary ? 'binary' : 'text'} messages of ${len} bytes, one at a time`,
    (p) => {
      sent = 0;
      p.behavior = FAILED;
      p.expectedClose = normalClose;
      p.result = `Case did not finish within ${waitSecs} seconds.`;
      p.closeAfter(waitSecs);
      p.sendFrame(binary ? 2 : 1, payload);
      sent++;
    },
    {
      guardMs: 60_000,
      onMessage(p, data, isBinary) {
        if (isBinary !== binary || data.length !== len) {
          p.behavior = FAILED;
          p.result = `Echoed message type or length differs (got binary = ${isBinary}, length = ${data.length}).`;
          p.sendClose(CLOSE_NORMAL);
          return;
        }
        if (!data.equals(payload) && p.strictNotes.length === 0) p.strictNotes.push(`echo #${sent} differs from the payload sent`);
        if (sent < count) {
          p.sendFrame(binary ? 2 : 1, payload);
          sent++;
        } else {
          p.behavior = OK;
          p.result = 'Ok, received all echoed messages in time.';
          p.sendClose(CLOSE_NORMAL);
        }
      },
    },
  );
}

function section9(): CaseSpec[] {
  const out: CaseSpec[] = [];
  const K = 1024;
  const M = 1024 * 1024;
  const sizes: Array<[number, number]> = [
    [64 * K, 10],
    [256 * K, 10],
    [1 * M, 20],
    [4 * M, 100],
    [8 * M, 100],
    [16 * M, 100],
  ];
  for (const [binary, sub, seed] of [[false, 1, u('BAsd7&jh23')], [true, 2, b('\x00\xfe\x23\xfa\xf0')]] as const) {
    sizes.forEach(([len, wait], k) => {
      const want = repeatTo(seed, len);
      out.push(bigEcho(`9.${sub}.${k + 1}`, `${binary ? 'binary' : 'text'} message of ${len} bytes`, (p) => p.sendFrame(binary ? 2 : 1, want), want, binary, wait));
    });
  }
  const frags = [64, 256, 1 * K, 4 * K, 16 * K, 64 * K, 256 * K, 1 * M, 4 * M];
  for (const [binary, sub] of [[false, 3], [true, 4]] as const) {
    const want = fill(4 * M, binary ? 0xfe : '*');
    frags.forEach((fs, k) => {
      out.push(bigEcho(`9.${sub}.${k + 1}`, `fragmented ${binary ? 'binary' : 'text'} message of 4M in fragments of ${fs}`, (p) => p.sendMessage(want, binary, fs), want, binary, 100));
    });
  }
  const chops = [64, 128, 256, 512, 1024, 2048];
  for (const [binary, sub, seed] of [[false, 5, u('BAsd7&jh23')], [true, 6, b('\x00\xfe\x23\xfa\xf0')]] as const) {
    const want = repeatTo(seed, 1 * M);
    chops.forEach((chop, k) => {
      out.push(bigEcho(`9.${sub}.${k + 1}`, `${binary ? 'binary' : 'text'} message of 1M sent in chops of ${chop}`, (p) => p.sendFrame(binary ? 2 : 1, want, { chopsize: chop }), want, binary, 1000));
    });
  }
  const rtt: Array<[number, number, number]> = [
    [0, 1000, 60],
    [16, 1000, 60],
    [64, 1000, 60],
    [256, 1000, 120],
    [1024, 1000, 240],
    [4096, 1000, 480],
  ];
  for (const [binary, sub] of [[false, 7], [true, 8]] as const) {
    rtt.forEach(([len, count, wait], k) => out.push(roundTrips(`9.${sub}.${k + 1}`, binary, len, count, wait)));
  }
  return out;
}

// ---- section 10 --------------------------------------------------------------------------------

function section10(): CaseSpec[] {
  const payload = fill(65536, '*');
  return [
    c('10.1.1', 'text message of 65536 bytes auto-fragmented into 1300-byte frames', (p) => {
      p.autoFragmentSize = 1300;
      p.expected = [[OK, [msg(payload)]]];
      p.expectedClose = normalClose;
      p.sendMessage(payload);
      p.killAfter(10);
    }, {
      afterVerdict(p) {
        const want0 = Math.floor(payload.length / 1300);
        const want1 = payload.length % 1300 > 0 ? 1 : 0;
        if (!p.connectionWasOpen) {
          p.behavior = FAILED;
          p.result = 'WebSocket connection was never open';
        } else if ((p.txFrameStats[0] ?? 0) !== want0 || (p.txFrameStats[1] ?? 0) !== want1) {
          p.behavior = FAILED;
          p.result = `Frames transmitted ${JSON.stringify(p.txFrameStats)} do not match ${want0}/${want1}.`;
        }
      },
    }),
  ];
}

export const SECTIONS: Array<[string, () => CaseSpec[]]> = [
  ['1 Framing', section1],
  ['2 Pings/Pongs', section2],
  ['3 Reserved Bits', section3],
  ['4 Opcodes', section4],
  ['5 Fragmentation', section5],
  ['6 UTF-8 Handling', section6],
  ['7 Close Handling', section7],
  ['9 Limits/Performance', section9],
  ['10 Misc', section10],
  ['12 permessage-deflate', section12],
  ['13 permessage-deflate parameters', section13],
];
