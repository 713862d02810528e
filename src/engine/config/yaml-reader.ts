import {
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  type Pair,
  parseDocument,
  type YAMLMap,
} from 'yaml';
import type { ConfigErrorCode } from '../../errors.js';
import { parseByteSize, parseDuration } from './duration.js';
import type { ConfigIssue } from './types.js';

/**
 * Internal: walks a parsed YAML document node by node, collecting position-precise
 * {@link ConfigIssue}s instead of stopping at the first problem. Each reader method returns
 * `undefined` after recording an issue, so callers keep going and report everything at once.
 * @module
 */

/** A node and where it sits, as a JSON-pointer-like path. `node` is undefined for a missing value. */
export interface Field {
  readonly node: Node | undefined;
  readonly path: string;
  /** Offset used for messages when the node itself has no range (e.g. `key:` with no value). */
  readonly offset: number;
}

/** A parsed document ready to be read, or the syntax issues that stopped it. */
export interface LoadedYaml {
  readonly reader: YamlReader;
  readonly root: Field;
  readonly doc: Document.Parsed;
}

/** Joins a JSON-pointer path and a key (escaping `~` and `/` per RFC 6901). */
export function childPath(path: string, key: string | number): string {
  return `${path}/${String(key).replace(/~/g, '~0').replace(/\//g, '~1')}`;
}

/** Parses YAML text with positions; syntax errors and warnings become `ERR_CONFIG_YAML` issues. */
export function loadYaml(text: string): LoadedYaml {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const reader = new YamlReader(lineCounter);
  for (const e of [...doc.errors, ...doc.warnings]) {
    const message = e.code === 'DUPLICATE_KEY' ? 'duplicate key' : e.message.split('\n')[0]!;
    reader.reportAt(e.pos[0], '', message, 'ERR_CONFIG_YAML');
  }
  return { reader, doc, root: { node: doc.contents ?? undefined, path: '', offset: 0 } };
}

/**
 * Where the value at `path` (a JSON pointer as {@link ConfigIssue.path} writes it, e.g.
 * `/peers/0/bundleEndpoint/caFile`) sits in `text`: 1-based line and column of the value (of the
 * key when it has no value), or undefined when the path is not in the document. Used to point at a
 * key after the text was parsed into typed values, which keep no positions.
 */
export function locateField(text: string, path: string): { line: number; column: number } | undefined {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const segments =
    path === ''
      ? []
      : path
          .slice(1)
          .split('/')
          .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0];
  for (const seg of segments) {
    if (isMap(node)) {
      const pair = (node.items as Pair<unknown, unknown>[]).find(
        (p) => isScalar(p.key) && String(p.key.value) === seg,
      );
      if (!pair) return undefined;
      const key = pair.key as Node;
      node = pair.value;
      offset = (pair.value as Node | null)?.range?.[0] ?? key.range?.[0];
    } else if (isSeq(node)) {
      const item = (node.items as unknown[])[Number(seg)];
      if (!/^\d+$/.test(seg) || item === undefined) return undefined;
      node = item;
      offset = (item as Node | null)?.range?.[0] ?? offset;
    } else {
      return undefined;
    }
  }
  if (offset === undefined) return undefined;
  const { line, col } = lineCounter.linePos(offset);
  return { line, column: col };
}

/** A YAML mapping whose keys were checked against an allowlist of names. */
export interface MapView {
  readonly field: Field;
  readonly node: YAMLMap;
  /** The field for `key`, or undefined when absent. */
  get(key: string): Field | undefined;
  /** Like {@link MapView.get} but records "missing" when absent. */
  require(key: string): Field | undefined;
  has(key: string): boolean;
}

/** Collects issues while reading typed values out of YAML nodes. */
export class YamlReader {
  readonly issues: ConfigIssue[] = [];
  readonly #lc: LineCounter;

  constructor(lineCounter: LineCounter) {
    this.#lc = lineCounter;
  }

  /** Records an issue at a source offset. */
  reportAt(offset: number, path: string, message: string, code: ConfigErrorCode = 'ERR_CONFIG_SCHEMA'): void {
    const { line, col } = this.#lc.linePos(offset);
    this.issues.push({ line, column: col, path, message, code });
  }

  /** Records an issue at a field's node (or where its value should have been). */
  report(f: Field, message: string, code: ConfigErrorCode = 'ERR_CONFIG_SCHEMA'): void {
    this.reportAt(f.node?.range?.[0] ?? f.offset, f.path, message, code);
  }

  /** 1-based line of a field, for values that keep their position (e.g. PeerConfig.line). */
  lineOf(f: Field): number {
    return this.#lc.linePos(f.node?.range?.[0] ?? f.offset).line;
  }

  /** True when the field is absent or an explicit YAML null (`key:` / `key: ~`). */
  isNull(f: Field): boolean {
    return f.node === undefined || (isScalar(f.node) && f.node.value === null);
  }

  #noAlias(f: Field): boolean {
    if (f.node && isAlias(f.node)) {
      this.report(f, 'YAML aliases are not supported in configuration; write the value out');
      return false;
    }
    return true;
  }

  /**
   * Reads a mapping and refuses keys not in `allowed` (a typo must never silently disable a
   * setting). Unknown keys are reported with a suggestion when one allowed key is close.
   */
  map(f: Field, allowed: readonly string[], what = 'a mapping'): MapView | undefined {
    if (!this.#noAlias(f)) return undefined;
    if (!f.node || !isMap(f.node)) {
      this.report(f, `must be ${what}`);
      return undefined;
    }
    const node = f.node;
    const fields = new Map<string, Field>();
    for (const pair of node.items as Pair<unknown, unknown>[]) {
      const keyNode = pair.key as Node | null;
      const keyOffset = keyNode?.range?.[0] ?? node.range?.[0] ?? f.offset;
      if (!keyNode || !isScalar(keyNode) || typeof keyNode.value !== 'string') {
        this.reportAt(keyOffset, f.path, 'keys must be plain strings');
        continue;
      }
      const key = keyNode.value;
      const path = childPath(f.path, key);
      if (!allowed.includes(key)) {
        const hint = closest(key, allowed);
        this.reportAt(
          keyOffset,
          path,
          `unknown key ${JSON.stringify(key)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}; allowed: ${allowed.join(', ')}`,
        );
        continue;
      }
      const valueNode = pair.value as Node | null;
      fields.set(key, { node: valueNode ?? undefined, path, offset: keyNode.range?.[1] ?? keyOffset });
    }
    const view: MapView = {
      field: f,
      node,
      get: (key) => fields.get(key),
      has: (key) => fields.has(key) && !this.isNull(fields.get(key)!),
      require: (key) => {
        const got = fields.get(key);
        if (!got || this.isNull(got)) {
          if (got) this.report(got, `${JSON.stringify(key)} must have a value`);
          else
            this.reportAt(
              node.range?.[0] ?? f.offset,
              childPath(f.path, key),
              `missing required key "${key}"`,
            );
          return undefined;
        }
        return got;
      },
    };
    return view;
  }

  /** Reads a sequence's items (an empty sequence gives `[]`). */
  seq(f: Field, what = 'a list'): Field[] | undefined {
    if (!this.#noAlias(f)) return undefined;
    if (!f.node || !isSeq(f.node)) {
      this.report(f, `must be ${what}`);
      return undefined;
    }
    const start = f.node.range?.[0] ?? f.offset;
    return (f.node.items as (Node | null)[]).map((n, i) => ({
      node: n ?? undefined,
      path: childPath(f.path, i),
      offset: start,
    }));
  }

  #scalar(f: Field): unknown {
    if (!this.#noAlias(f)) return undefined;
    if (!f.node || !isScalar(f.node)) return undefined;
    return f.node.value;
  }

  /** A non-empty string. */
  string(f: Field, what = 'a non-empty string'): string | undefined {
    const v = this.#scalar(f);
    if (typeof v !== 'string' || v.length === 0) {
      this.report(f, `must be ${what}`);
      return undefined;
    }
    return v;
  }

  /** One of the given strings. */
  oneOf<T extends string>(f: Field, values: readonly T[]): T | undefined {
    const v = this.#scalar(f);
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
      this.report(f, `must be one of ${values.join(', ')}`);
      return undefined;
    }
    return v as T;
  }

  boolean(f: Field): boolean | undefined {
    const v = this.#scalar(f);
    if (typeof v !== 'boolean') {
      this.report(f, 'must be true or false');
      return undefined;
    }
    return v;
  }

  /** An integer in [min, max]. */
  integer(f: Field, min: number, max: number = Number.MAX_SAFE_INTEGER): number | undefined {
    const v = this.#scalar(f);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
      this.report(
        f,
        max === Number.MAX_SAFE_INTEGER
          ? `must be an integer ≥ ${min}`
          : `must be an integer in ${min}..${max}`,
      );
      return undefined;
    }
    return v;
  }

  /** A duration (see parseDuration), in milliseconds, within [minMs, maxMs]. */
  duration(f: Field, minMs: number, maxMs: number): number | undefined {
    const v = this.#scalar(f);
    if (typeof v !== 'string' && typeof v !== 'number') {
      this.report(f, 'must be a duration such as "30s", "5m" or a number of seconds');
      return undefined;
    }
    let ms: number;
    try {
      ms = parseDuration(v);
    } catch (err) {
      this.report(f, (err as Error).message);
      return undefined;
    }
    if (ms < minMs || ms > maxMs) {
      this.report(f, `must be between ${formatMs(minMs)} and ${formatMs(maxMs)}, got ${formatMs(ms)}`);
      return undefined;
    }
    return ms;
  }

  /** A byte size (see parseByteSize) within [min, max]. */
  byteSize(f: Field, min: number, max: number): number | undefined {
    const v = this.#scalar(f);
    if (typeof v !== 'string' && typeof v !== 'number') {
      this.report(f, 'must be a size in bytes or e.g. "64KiB", "1MiB"');
      return undefined;
    }
    let n: number;
    try {
      n = parseByteSize(v);
    } catch (err) {
      this.report(f, (err as Error).message);
      return undefined;
    }
    if (n < min || n > max) {
      this.report(f, `must be between ${min} and ${max} bytes, got ${n}`);
      return undefined;
    }
    return n;
  }
}

/** Renders milliseconds for messages: `250ms`, `5s`, `300s`. */
export function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** The allowed key within edit distance 2 of `key` (case-insensitive), if exactly one is closest. */
function closest(key: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const a of allowed) {
    const d = editDistance(key.toLowerCase(), a.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = a;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
