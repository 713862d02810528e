import { BundleError } from '../../errors.js';

/**
 * A strict JSON reader for peer-supplied documents.
 *
 * `JSON.parse` is not enough for SPIFFE bundles: it rounds integers above 2^53 (`spiffe_sequence`
 * is a uint64, SPIFFE Trust Domain and Bundle §4.1.1) and silently keeps the last of duplicate
 * object members, which lets two parsers disagree about one document. This reader keeps every
 * number as its source text ({@link JsonNumber}), refuses duplicate members and bounds nesting
 * depth, and reports errors with line and column. Input must be valid UTF-8 (RFC 8259 §8.1).
 *
 * @module
 */

/** A JSON number kept as its exact source text. */
export class JsonNumber {
  constructor(readonly raw: string) {}

  /** True when the text is an integer with no fraction or exponent (`-0` counts as one). */
  isInteger(): boolean {
    return /^-?(0|[1-9][0-9]*)$/.test(this.raw);
  }
}

/** A parsed JSON value. Objects have a null prototype; numbers are {@link JsonNumber}s. */
export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;
/** A JSON object: member names mapped to values, null prototype, no duplicate names. */
export interface JsonObject {
  [member: string]: JsonValue;
}

/** Maximum nesting of arrays and objects. A bundle needs 3; a Bundle Map 4. */
export const MAX_JSON_DEPTH = 32;

const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Describes a JSON value's type for error messages. */
export function jsonTypeName(v: JsonValue | undefined): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (v instanceof JsonNumber) return 'number';
  if (Array.isArray(v)) return 'array';
  return typeof v === 'object' ? 'object' : typeof v;
}

/** True for a JSON object (not an array, not null). */
export function isJsonObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonNumber);
}

/**
 * Parses UTF-8 bytes (or an already-decoded string) as one JSON value.
 * @throws BundleError `ERR_BUNDLE_ENCODING`, `ERR_BUNDLE_JSON_SYNTAX`, `ERR_BUNDLE_JSON_DEPTH`,
 *   `ERR_BUNDLE_JSON_DUPLICATE_MEMBER`
 */
export function parseJson(input: Uint8Array | string): JsonValue {
  let text: string;
  if (typeof input === 'string') {
    text = input;
  } else {
    try {
      text = decoder.decode(input);
    } catch (cause) {
      throw new BundleError('ERR_BUNDLE_ENCODING', 'document is not valid UTF-8', { cause });
    }
  }
  return new Reader(text).document();
}

function lineCol(text: string, pos: number): string {
  let line = 1;
  let col = 1;
  for (let i = 0; i < pos && i < text.length; i++) {
    if (text.charCodeAt(i) === 0x0a) {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  return `line ${line}, column ${col}`;
}

class Reader {
  readonly #s: string;
  #i = 0;
  #depth = 0;

  constructor(text: string) {
    this.#s = text;
  }

  document(): JsonValue {
    this.#ws();
    const v = this.#value();
    this.#ws();
    if (this.#i !== this.#s.length) this.#fail('unexpected data after the JSON value');
    return v;
  }

  #fail(what: string, at = this.#i): never {
    const found = at < this.#s.length ? JSON.stringify(this.#s[at]) : 'end of input';
    throw new BundleError(
      'ERR_BUNDLE_JSON_SYNTAX',
      `invalid JSON at ${lineCol(this.#s, at)}: ${what} (found ${found})`,
    );
  }

  #ws(): void {
    const s = this.#s;
    let i = this.#i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
    this.#i = i;
  }

  #value(): JsonValue {
    const c = this.#s.charCodeAt(this.#i);
    switch (c) {
      case 0x7b:
        return this.#object();
      case 0x5b:
        return this.#array();
      case 0x22:
        return this.#string();
      case 0x74:
        return this.#literal('true', true);
      case 0x66:
        return this.#literal('false', false);
      case 0x6e:
        return this.#literal('null', null);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.#number();
        return this.#fail('expected a value');
    }
  }

  #literal<T extends JsonValue>(word: string, value: T): T {
    if (!this.#s.startsWith(word, this.#i)) this.#fail(`expected ${word}`);
    this.#i += word.length;
    return value;
  }

  #enter(): void {
    if (++this.#depth > MAX_JSON_DEPTH) {
      throw new BundleError(
        'ERR_BUNDLE_JSON_DEPTH',
        `JSON nesting deeper than ${MAX_JSON_DEPTH} levels at ${lineCol(this.#s, this.#i)}`,
      );
    }
  }

  #object(): JsonObject {
    this.#enter();
    const start = this.#i;
    this.#i++; // {
    const obj: JsonObject = Object.create(null);
    this.#ws();
    if (this.#s.charCodeAt(this.#i) === 0x7d) {
      this.#i++;
      this.#depth--;
      return obj;
    }
    for (;;) {
      if (this.#s.charCodeAt(this.#i) !== 0x22) this.#fail('expected a member name');
      const nameAt = this.#i;
      const name = this.#string();
      if (Object.hasOwn(obj, name)) {
        throw new BundleError(
          'ERR_BUNDLE_JSON_DUPLICATE_MEMBER',
          `duplicate member ${JSON.stringify(name)} at ${lineCol(this.#s, nameAt)} in the object starting at ${lineCol(this.#s, start)}`,
        );
      }
      this.#ws();
      if (this.#s.charCodeAt(this.#i) !== 0x3a) this.#fail('expected ":"');
      this.#i++;
      this.#ws();
      obj[name] = this.#value();
      this.#ws();
      const c = this.#s.charCodeAt(this.#i);
      if (c === 0x2c) {
        this.#i++;
        this.#ws();
        continue;
      }
      if (c === 0x7d) {
        this.#i++;
        this.#depth--;
        return obj;
      }
      this.#fail('expected "," or "}"');
    }
  }

  #array(): JsonValue[] {
    this.#enter();
    this.#i++; // [
    const arr: JsonValue[] = [];
    this.#ws();
    if (this.#s.charCodeAt(this.#i) === 0x5d) {
      this.#i++;
      this.#depth--;
      return arr;
    }
    for (;;) {
      arr.push(this.#value());
      this.#ws();
      const c = this.#s.charCodeAt(this.#i);
      if (c === 0x2c) {
        this.#i++;
        this.#ws();
        continue;
      }
      if (c === 0x5d) {
        this.#i++;
        this.#depth--;
        return arr;
      }
      this.#fail('expected "," or "]"');
    }
  }

  #string(): string {
    const s = this.#s;
    const start = ++this.#i; // past the opening quote
    let i = start;
    // Fast path: no escapes.
    for (;;) {
      if (i >= s.length) this.#fail('unterminated string', i);
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        this.#i = i + 1;
        return s.slice(start, i);
      }
      if (c === 0x5c) break;
      if (c < 0x20) this.#fail('control character in string', i);
      i++;
    }
    let out = s.slice(start, i);
    for (;;) {
      if (i >= s.length) this.#fail('unterminated string', i);
      const c = s.charCodeAt(i);
      if (c === 0x22) {
        this.#i = i + 1;
        return out;
      }
      if (c < 0x20) this.#fail('control character in string', i);
      if (c !== 0x5c) {
        out += s[i];
        i++;
        continue;
      }
      const e = s.charCodeAt(i + 1);
      i += 2;
      switch (e) {
        case 0x22:
          out += '"';
          break;
        case 0x5c:
          out += '\\';
          break;
        case 0x2f:
          out += '/';
          break;
        case 0x62:
          out += '\b';
          break;
        case 0x66:
          out += '\f';
          break;
        case 0x6e:
          out += '\n';
          break;
        case 0x72:
          out += '\r';
          break;
        case 0x74:
          out += '\t';
          break;
        case 0x75: {
          const hex = s.slice(i, i + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.#fail('invalid \\u escape', i);
          out += String.fromCharCode(Number.parseInt(hex, 16));
          i += 4;
          break;
        }
        default:
          this.#fail('invalid escape', i - 1);
      }
    }
  }

  #number(): JsonNumber {
    const s = this.#s;
    const start = this.#i;
    let i = start;
    if (s.charCodeAt(i) === 0x2d) i++;
    const first = s.charCodeAt(i);
    if (first === 0x30) {
      i++;
    } else if (first >= 0x31 && first <= 0x39) {
      while (isDigit(s.charCodeAt(i))) i++;
    } else {
      this.#fail('invalid number', i);
    }
    if (s.charCodeAt(i) === 0x2e) {
      i++;
      if (!isDigit(s.charCodeAt(i))) this.#fail('invalid number: digit expected after "."', i);
      while (isDigit(s.charCodeAt(i))) i++;
    }
    const e = s.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      i++;
      const sign = s.charCodeAt(i);
      if (sign === 0x2b || sign === 0x2d) i++;
      if (!isDigit(s.charCodeAt(i))) this.#fail('invalid number: digit expected in exponent', i);
      while (isDigit(s.charCodeAt(i))) i++;
    }
    this.#i = i;
    return new JsonNumber(s.slice(start, i));
  }
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}
