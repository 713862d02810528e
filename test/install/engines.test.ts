import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

/**
 * Issue 15 item 8: `npm ci` on Node 20 warned EBADENGINE because fastify → light-my-request →
 * cookie@2.0.2 wants Node >= 22. package.json overrides light-my-request's cookie with 1.1.1
 * (Node >= 18, same `stringifySetCookie` light-my-request calls). This test reads the lock file
 * npm ci installs from and fails when any locked package's `engines.node` refuses a Node line the
 * README says is supported — the lowest release of each line, so a later patch cannot hide it.
 */
const SUPPORTED_NODE_FLOORS = ['20.19.0', '24.0.0'] as const;

// semver is a production dependency of fastify; resolve it the way fastify does.
const fastifyRequire = createRequire(createRequire(import.meta.url).resolve('fastify/package.json'));
const semver = fastifyRequire('semver') as {
  satisfies(version: string, range: string, opts?: { loose?: boolean }): boolean;
  validRange(range: string, opts?: { loose?: boolean }): string | null;
};

interface LockEntry {
  readonly version?: string;
  readonly engines?: Record<string, string> | string[];
}

const root = new URL('../../', import.meta.url);
const lock = JSON.parse(readFileSync(new URL('package-lock.json', root), 'utf8')) as {
  packages: Record<string, LockEntry>;
};
const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
  engines: { node: string };
};

function nodeRange(entry: LockEntry): string | undefined {
  const e = entry.engines;
  if (!e || Array.isArray(e)) return undefined; // legacy array form carries no node range npm checks
  return e.node;
}

describe('Node engines of the locked dependency tree', () => {
  it.each(SUPPORTED_NODE_FLOORS)('every locked package admits Node %s (no EBADENGINE on npm ci)', (node) => {
    const refused: string[] = [];
    for (const [path, entry] of Object.entries(lock.packages)) {
      const range = nodeRange(entry);
      if (range === undefined) continue;
      expect(semver.validRange(range, { loose: true }), `${path}: engines.node ${range}`).not.toBeNull();
      if (!semver.satisfies(node, range, { loose: true })) {
        refused.push(`${path || '(root)'}@${entry.version ?? '?'} wants node ${range}`);
      }
    }
    expect(refused).toEqual([]);
  });

  it("the project's own engines field admits both supported lines and nothing older than 20.19", () => {
    for (const node of SUPPORTED_NODE_FLOORS) expect(semver.satisfies(node, pkg.engines.node)).toBe(true);
    expect(semver.satisfies('20.18.3', pkg.engines.node)).toBe(false);
  });

  it('light-my-request gets a cookie release that supports Node 20 (the override is in force)', () => {
    const cookie =
      lock.packages['node_modules/light-my-request/node_modules/cookie'] ??
      lock.packages['node_modules/cookie'];
    expect(cookie?.version).toBeDefined();
    expect(semver.satisfies('20.19.0', nodeRange(cookie!) ?? '*')).toBe(true);
  });
});
