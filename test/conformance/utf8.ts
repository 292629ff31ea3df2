/**
 * An incremental UTF-8 validator (RFC 3629: no overlongs, no surrogates, nothing above
 * U+10FFFF) with the same answers as the validator the Autobahn fuzzing client uses:
 * validate() returns [no error so far, the input so far ends on a code point boundary].
 * Written for the conformance driver; independent of murmur's own src/protocol/utf8.ts.
 */
export class Utf8Stream {
  private need = 0;
  private lo = 0x80;
  private hi = 0xbf;
  private failed = false;

  reset(): void {
    this.need = 0;
    this.lo = 0x80;
    this.hi = 0xbf;
    this.failed = false;
  }

  validate(buf: Uint8Array): [boolean, boolean] {
    if (this.failed) return [false, false];
    let need = this.need;
    let lo = this.lo;
    let hi = this.hi;
    const n = buf.length;
    for (let i = 0; i < n; i++) {
      const b = buf[i]!;
      if (need === 0) {
        if (b < 0x80) continue;
        if (b >= 0xc2 && b <= 0xdf) {
          need = 1;
        } else if (b === 0xe0) {
          need = 2;
          lo = 0xa0;
        } else if (b === 0xed) {
          need = 2;
          hi = 0x9f;
        } else if (b >= 0xe1 && b <= 0xef) {
          need = 2;
        } else if (b === 0xf0) {
          need = 3;
          lo = 0x90;
        } else if (b >= 0xf1 && b <= 0xf3) {
          need = 3;
        } else if (b === 0xf4) {
          need = 3;
          hi = 0x8f;
        } else {
          this.failed = true;
          return [false, false];
        }
      } else {
        if (b < lo || b > hi) {
          this.failed = true;
          return [false, false];
        }
        lo = 0x80;
        hi = 0xbf;
        need--;
      }
    }
    this.need = need;
    this.lo = lo;
    this.hi = hi;
    return [true, need === 0];
  }
}

/** True when the whole buffer is complete, valid UTF-8. */
export function isCompleteUtf8(buf: Uint8Array): boolean {
  const v = new Utf8Stream();
  const [ok, complete] = v.validate(buf);
  return ok && complete;
}
