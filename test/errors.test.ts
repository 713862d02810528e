import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const NODE_CODE =
  /^ERR_(SSL|TLS|OSSL|HTTP|HTTP2|STREAM|SOCKET|INVALID|UNHANDLED|MODULE|CHILD_PROCESS|FS|IPC)_/;

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });
}

describe('docs/errors.md', () => {
  const docs = readFileSync('docs/errors.md', 'utf8');
  const documented = new Map<string, string>();
  for (const m of docs.matchAll(/^\|\s*`(ERR_[A-Z0-9_]+)`\s*\|\s*(.*?)\s*\|\s*$/gm))
    documented.set(m[1]!, m[2]!);

  const used = new Set<string>();
  for (const file of walk('src')) {
    for (const m of readFileSync(file, 'utf8').matchAll(/'(ERR_[A-Z0-9]+(?:_[A-Z0-9]+)*)'/g)) {
      // Node's own error codes (TLS, sockets, …) are matched on, not produced.
      if (!NODE_CODE.test(m[1]!)) used.add(m[1]!);
    }
  }

  it('finds codes in the code base (guards the scan itself)', () => {
    expect(used.size).toBeGreaterThan(20);
  });

  it('documents every code used in src/', () => {
    const missing = [...used].filter((c) => !documented.has(c)).sort();
    expect(missing).toEqual([]);
  });

  it('gives every documented code a meaning', () => {
    const empty = [...documented].filter(([, meaning]) => meaning.trim() === '' || meaning === 'TODO');
    expect(empty.map(([c]) => c)).toEqual([]);
  });
});
