import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { METRIC_DEFS } from '../../../src/adapters/metrics/index.js';

const doc = readFileSync(new URL('../../../docs/metrics.md', import.meta.url), 'utf8');

/** Rows of the docs/metrics.md table: name → { type, labels }. */
function documented(): Map<string, { type: string; labels: string[] }> {
  const rows = new Map<string, { type: string; labels: string[] }>();
  for (const line of doc.split('\n')) {
    const m = /^\|\s*`(spiffe_broker_[a-z0-9_]+)`\s*\|\s*(\w+)\s*\|([^|]*)\|/.exec(line);
    if (!m) continue;
    const labels = [...(m[3] ?? '').matchAll(/`([a-z_]+)`/g)].map((x) => x[1]!);
    rows.set(m[1]!, { type: m[2]!, labels });
  }
  return rows;
}

describe('docs/metrics.md', () => {
  const rows = documented();

  it.each(METRIC_DEFS.map((d) => [d.name, d] as const))('documents %s with its type and labels', (_n, d) => {
    const row = rows.get(d.name);
    expect(row, `${d.name} is missing from docs/metrics.md`).toBeDefined();
    expect(row?.type).toBe(d.type);
    expect(row?.labels).toEqual([...d.labels]);
  });

  it('documents no metric that does not exist', () => {
    const defined = new Set(METRIC_DEFS.map((d) => d.name));
    expect([...rows.keys()].filter((n) => !defined.has(n))).toEqual([]);
  });
});

describe('names.ts', () => {
  it('follows the naming conventions', () => {
    for (const d of METRIC_DEFS) {
      expect(d.name).toMatch(/^spiffe_broker_[a-z0-9_]+$/);
      if (d.type === 'counter') expect(d.name).toMatch(/_total$/);
      else expect(d.name).not.toMatch(/_total$/);
      if (d.type === 'histogram') {
        expect(d.buckets?.length).toBeGreaterThan(3);
        expect(d.name).toMatch(/_seconds$/);
      }
      expect(d.help.length).toBeGreaterThan(10);
    }
    expect(new Set(METRIC_DEFS.map((d) => d.name)).size).toBe(METRIC_DEFS.length);
  });

  it('has propagation buckets down to 10 ms', () => {
    const p = METRIC_DEFS.find((d) => d.name === 'spiffe_broker_propagation_seconds');
    expect(p?.buckets?.[0]).toBe(0.01);
  });
});
