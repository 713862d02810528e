import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as {
  bin: Record<string, string>;
  exports: Record<string, string | { types: string; default: string }>;
  sideEffects: boolean;
};

const src = (distPath: string) =>
  distPath
    .replace(/^\.?\/?dist\//, 'src/')
    .replace(/\.js$/, '.ts')
    .replace(/\.d\.ts$/, '.ts');

describe('package.json', () => {
  it('has an explicit exports map for the library API and no side effects', () => {
    expect(Object.keys(pkg.exports)).toEqual([
      '.',
      './spiffeid',
      './bundle',
      './verify',
      './tls',
      './package.json',
    ]);
    expect(pkg.sideEffects).toBe(false);
  });

  it('every export and the bin point at a source module that exists', () => {
    for (const [key, target] of Object.entries(pkg.exports)) {
      if (key === './package.json') continue;
      const t = target as { types: string; default: string };
      expect(existsSync(src(t.default)), `${key} → ${t.default}`).toBe(true);
      expect(t.types.replace(/\.d\.ts$/, '.js')).toBe(t.default);
    }
    expect(existsSync(src(pkg.bin['spiffe-broker']!))).toBe(true);
  });

  it('entry points re-export names explicitly (no export *)', () => {
    for (const target of Object.values(pkg.exports)) {
      if (typeof target === 'string') continue;
      const text = readFileSync(src(target.default), 'utf8');
      expect(text).not.toMatch(/export \*/);
    }
  });
});
