import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundlesEqual } from '../../../src/core/bundle/diff.js';
import type { TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { type StateFs, StateStore, stateFileStem } from '../../../src/engine/federation/state-store.js';
import { RuntimeError } from '../../../src/errors.js';
import { CrashError, CrashFs } from '../../fakes/crash-fs.js';
import { makeBundle, td } from './helpers.js';

const DIR = '/state';
const T0 = Date.parse('2026-03-01T10:00:00Z');
const peer = td('peer.test');

function store(fs: CrashFs, now = () => T0): StateStore {
  let n = 0;
  return new StateStore({ dir: DIR }, { fs, now, randomSuffix: () => (n++).toString(16) });
}

let old: TrustBundle;
let next: TrustBundle;
let other: TrustBundle;

beforeAll(async () => {
  old = await makeBundle('peer.test', { sequence: 5n, refreshHint: 300 });
  next = await makeBundle('peer.test', { sequence: (1n << 64n) - 2n, refreshHint: 60, jwt: 2 });
  other = await makeBundle('other.test', { sequence: 1n });
});

function same(a: TrustBundle | undefined, b: TrustBundle): boolean {
  return (
    a !== undefined && bundlesEqual(a, b) && a.sequence === b.sequence && a.refreshHint === b.refreshHint
  );
}

describe('StateStore round trip', () => {
  it('persists last-known-good and the high-water mark, and loadAll returns them re-parsed', async () => {
    const fs = new CrashFs(DIR);
    const s = store(fs);
    await s.init();
    await s.saveAccepted(old, { etag: '"v5"' });
    await s.saveAccepted(other);
    expect(fs.names()).toEqual([
      'other.test.bundle.json',
      'other.test.sequence.json',
      'peer.test.bundle.json',
      'peer.test.sequence.json',
    ]);
    const { peers, problems } = await store(fs).loadAll();
    expect(problems).toEqual([]);
    expect(peers.map((p) => p.trustDomain.name)).toEqual(['other.test', 'peer.test']);
    const p = peers[1]!;
    expect(same(p.lastKnownGood?.bundle, old)).toBe(true);
    expect(p.lastKnownGood?.etag).toBe('"v5"');
    expect(p.lastKnownGood?.acceptedAt).toBe(T0);
    expect(p.sequenceHighWaterMark).toBe(5n);
  });

  it('writes the documented envelope with the peer’s own hint and sequence and a checksum', async () => {
    const fs = new CrashFs(DIR);
    await store(fs).saveAccepted(next);
    const env = JSON.parse(fs.get('peer.test.bundle.json')!);
    expect(Object.keys(env).sort()).toEqual([
      'acceptedAt',
      'bundle',
      'sequence',
      'sha256',
      'trustDomain',
      'version',
    ]);
    expect(env.version).toBe(1);
    expect(env.trustDomain).toBe('peer.test');
    expect(env.sequence).toBe('18446744073709551614');
    expect(env.acceptedAt).toBe('2026-03-01T10:00:00.000Z');
    expect(env.bundle).toContain('"spiffe_sequence":18446744073709551614');
    expect(env.bundle).toContain('"spiffe_refresh_hint":60');
    expect(env.sha256).toMatch(/^[0-9a-f]{64}$/);
    const seq = JSON.parse(fs.get('peer.test.sequence.json')!);
    expect(seq).toMatchObject({
      version: 1,
      trustDomain: 'peer.test',
      highWaterMark: '18446744073709551614',
      reason: 'accepted',
    });
  });

  it('never lowers the high-water mark on save; an operator reset does, and leaves the bundle', async () => {
    const fs = new CrashFs(DIR);
    const s = store(fs);
    await s.saveAccepted(next);
    await s.saveAccepted(old); // policy allowed it (e.g. rollback permitted); the mark stays
    expect(await s.sequenceHighWaterMark(peer)).toBe((1n << 64n) - 2n);
    expect(await s.resetSequence(peer)).toEqual({ previous: (1n << 64n) - 2n });
    const reloaded = await store(fs).load(peer);
    expect(reloaded.problems).toEqual([]);
    expect(reloaded.state.sequenceHighWaterMark).toBe(0n);
    expect(same(reloaded.state.lastKnownGood?.bundle, old)).toBe(true);
    expect(JSON.parse(fs.get('peer.test.sequence.json')!).reason).toBe('reset');
    await s.saveAccepted(old);
    expect(await store(fs).sequenceHighWaterMark(peer)).toBe(5n);
  });

  it('refuses a bad reset value as API misuse', async () => {
    const s = store(new CrashFs(DIR));
    await expect(s.resetSequence(peer, -1n)).rejects.toThrow(TypeError);
    await expect(s.resetSequence(peer, 1n << 64n)).rejects.toThrow(TypeError);
  });

  it('an empty or missing directory loads as no peers', async () => {
    expect(await store(new CrashFs(DIR, { dirExists: false })).loadAll()).toEqual({
      peers: [],
      problems: [],
    });
    const fs = new CrashFs(DIR, { dirExists: false });
    await store(fs).init();
    expect(await store(fs).loadAll()).toEqual({ peers: [], problems: [] });
  });

  it('remove() deletes both files (relationship terminated)', async () => {
    const fs = new CrashFs(DIR);
    const s = store(fs);
    await s.saveAccepted(old);
    await s.remove(peer);
    expect(fs.names()).toEqual([]);
    expect(await s.sequenceHighWaterMark(peer)).toBeUndefined();
  });

  it('uses a hashed file name for trust domain names too long for a file name', async () => {
    const long = `${'a'.repeat(240)}.test`;
    const b = await makeBundle(long, { sequence: 3n });
    const fs = new CrashFs(DIR);
    await store(fs).saveAccepted(b);
    expect(stateFileStem(td(long))).toMatch(/^~sha256-[0-9a-f]{64}$/);
    expect(fs.names().every((n) => n.length < 100)).toBe(true);
    const { peers, problems } = await store(fs).loadAll();
    expect(problems).toEqual([]);
    expect(peers[0]?.trustDomain.name).toBe(long);
    expect(peers[0]?.sequenceHighWaterMark).toBe(3n);
  });
});

describe('StateStore refuses files it cannot trust', () => {
  async function seeded(): Promise<CrashFs> {
    const fs = new CrashFs(DIR);
    await store(fs).saveAccepted(old, { etag: '"v5"' });
    return fs;
  }

  const cases: [string, (env: Record<string, unknown>) => unknown][] = [
    ['a flipped checksum', (e) => ({ ...e, sha256: '0'.repeat(64) })],
    ['an edited etag (checksum covers it)', (e) => ({ ...e, etag: '"v6"' })],
    ['another trust domain', (e) => ({ ...e, trustDomain: 'other.test' })],
    ['an unknown version', (e) => ({ ...e, version: 2 })],
    ['a bundle that does not parse', (e) => ({ ...e, bundle: '{"keys":7}' })],
  ];
  for (const [what, edit] of cases) {
    it(`quarantines ${what} and reports ERR_STATE_CORRUPT, keeping the mark from its own file`, async () => {
      const fs = await seeded();
      const env = JSON.parse(fs.get('peer.test.bundle.json')!) as Record<string, unknown>;
      fs.put('peer.test.bundle.json', JSON.stringify(edit(env)));
      const { peers, problems } = await store(fs, () => T0 + 1234).loadAll();
      expect(problems.map((p) => p.code)).toEqual(['ERR_STATE_CORRUPT']);
      expect(problems[0]).toBeInstanceOf(RuntimeError);
      expect(problems[0]!.message).toContain('peer.test.bundle.json');
      expect(peers).toHaveLength(1);
      expect(peers[0]!.lastKnownGood).toBeUndefined();
      expect(peers[0]!.sequenceHighWaterMark).toBe(5n);
      // Never deleted: renamed aside with the time.
      expect(fs.names()).toContain('peer.test.bundle.json.corrupt-20260301T100001.234Z');
      expect(fs.names()).not.toContain('peer.test.bundle.json');
    });
  }

  it('a sequence file unreadable at start-up is read again before the next save (its mark is never assumed absent)', async () => {
    const fs = await seeded();
    fs.failOn('readFile', 'EIO', /sequence/);
    const s = store(fs);
    expect((await s.loadAll()).problems.map((p) => p.code)).toEqual(['ERR_STATE_READ']);
    // Readable again: a bundle older than the mark (5) must not lower it.
    await s.saveAccepted(await makeBundle('peer.test', { sequence: 2n }));
    expect(await s.sequenceHighWaterMark(peer)).toBe(5n);
    expect((await store(fs).loadAll()).peers[0]!.sequenceHighWaterMark).toBe(5n);
  });

  it('re-parses a checksum-consistent envelope and still refuses a bundle/sequence disagreement', async () => {
    const fs = await seeded();
    const env = JSON.parse(fs.get('peer.test.bundle.json')!) as Record<string, string>;
    // Recompute a valid checksum over a lying sequence: the parser still catches it.
    const lie: Record<string, string> = { ...env, sequence: '6' };
    lie.sha256 = createHash('sha256')
      .update(
        JSON.stringify([1, lie.trustDomain, lie.sequence, lie.acceptedAt, lie.etag ?? null, lie.bundle]),
      )
      .digest('hex');
    fs.put('peer.test.bundle.json', JSON.stringify(lie));
    const { problems } = await store(fs).loadAll();
    expect(problems.map((p) => p.code)).toEqual(['ERR_STATE_CORRUPT']);
    expect(problems[0]!.message).toMatch(/sequence 6 differs/);
  });

  it('quarantines non-JSON and a corrupt sequence file (falling back to the bundle’s sequence)', async () => {
    const fs = await seeded();
    fs.put('peer.test.sequence.json', 'not json{');
    const { peers, problems } = await store(fs).loadAll();
    expect(problems.map((p) => p.code)).toEqual(['ERR_STATE_CORRUPT']);
    expect(peers[0]!.sequenceHighWaterMark).toBe(5n);
    expect(same(peers[0]!.lastKnownGood?.bundle, old)).toBe(true);
  });

  it('never overwrites an earlier quarantined file', async () => {
    const fs = await seeded();
    fs.put('peer.test.bundle.json', 'garbage 1');
    await store(fs).loadAll();
    fs.put('peer.test.bundle.json', 'garbage 2');
    await store(fs).loadAll();
    expect(fs.get('peer.test.bundle.json.corrupt-20260301T100000.000Z')).toBe('garbage 1');
    expect(fs.get('peer.test.bundle.json.corrupt-20260301T100000.000Z-1')).toBe('garbage 2');
  });

  it('a file that cannot be read is reported ERR_STATE_READ and left in place', async () => {
    const fs = await seeded();
    fs.failOn('readFile', 'EACCES', /bundle\.json$/);
    const { problems, peers } = await store(fs).loadAll();
    expect(problems.map((p) => p.code)).toEqual(['ERR_STATE_READ']);
    expect(peers[0]!.sequenceHighWaterMark).toBe(5n);
    expect(fs.names()).toContain('peer.test.bundle.json');
  });
});

describe('StateStore write failures', () => {
  for (const op of ['open', 'writeFile', 'sync', 'rename'] as const) {
    it(`${op} failing with ENOSPC → ERR_STATE_WRITE, the old file intact, no temp left`, async () => {
      const fs = new CrashFs(DIR);
      await store(fs).saveAccepted(old);
      fs.failOn(op, 'ENOSPC', /bundle\.json/);
      const err = await store(fs)
        .saveAccepted(next)
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RuntimeError);
      expect((err as RuntimeError).code).toBe('ERR_STATE_WRITE');
      expect((err as RuntimeError).message).toContain('ENOSPC');
      expect(fs.names().filter((n) => n.includes('.tmp-'))).toEqual([]);
      const { peers, problems } = await store(fs).loadAll();
      expect(problems).toEqual([]);
      expect(same(peers[0]?.lastKnownGood?.bundle, old)).toBe(true);
    });
  }

  it('init() removes temp files left by a crash and creates the directory', async () => {
    const fs = new CrashFs(DIR, { dirExists: false });
    await expect(store(fs).saveAccepted(old)).rejects.toMatchObject({ code: 'ERR_STATE_WRITE' });
    fs.put('peer.test.bundle.json.tmp-1f', '{"half":');
    await store(fs).init();
    expect(fs.names()).toEqual([]);
    expect(fs.log).toContain('mkdir state');
  });
});

describe('StateStore crash safety (fake fs stops after step k)', () => {
  /** How many fs operations one save takes, measured rather than assumed. */
  async function stepsOfSave(): Promise<number> {
    const fs = new CrashFs(DIR);
    await store(fs).saveAccepted(old);
    const s = store(fs);
    await s.sequenceHighWaterMark(peer); // warm the cache the same way the crash runs do
    const before = fs.log.length;
    await s.saveAccepted(next);
    return fs.log.length - before;
  }

  for (const model of ['durable', 'eager'] as const) {
    it(`every crash point leaves the old or the new bundle (${model} directory model)`, async () => {
      const steps = await stepsOfSave();
      expect(steps).toBeGreaterThanOrEqual(12); // two atomic writes of six steps each
      const seen = new Set<string>();
      for (let k = 0; k <= steps; k++) {
        const fs = new CrashFs(DIR);
        await store(fs).saveAccepted(old);
        const s = store(fs);
        await s.sequenceHighWaterMark(peer);
        fs.crashAfter(k);
        const result = await s.saveAccepted(next).then(
          () => 'completed',
          (e: unknown) => e,
        );
        if (k < steps) expect(result).toBeInstanceOf(RuntimeError);
        if (k < steps) expect((result as RuntimeError).cause as Error).toBeInstanceOf(CrashError);
        const after = fs.recover(model);
        const reopened = store(after);
        await reopened.init();
        const { peers, problems } = await reopened.loadAll();
        expect(problems, `k=${k}`).toEqual([]);
        const lkg = peers[0]?.lastKnownGood?.bundle;
        const which = same(lkg, old) ? 'old' : same(lkg, next) ? 'new' : 'neither';
        expect(which, `k=${k}`).not.toBe('neither');
        seen.add(which);
        // Rollback protection holds in every crash state: mark ≥ the stored bundle's sequence.
        expect(peers[0]!.sequenceHighWaterMark! >= lkg!.sequence, `k=${k}`).toBe(true);
        expect(
          after.names().filter((n) => n.includes('.tmp-')),
          `k=${k}`,
        ).toEqual([]);
      }
      expect([...seen].sort()).toEqual(['new', 'old']);
    });
  }
});

describe('StateStore after loadAll', () => {
  it('does not read files for a peer that had none when the directory was listed', async () => {
    const fs = new CrashFs(DIR);
    await store(fs).saveAccepted(old);
    const s = store(fs);
    expect((await s.loadAll()).peers).toHaveLength(1);
    const before = fs.log.length;
    await s.saveAccepted(other);
    expect(fs.log.slice(before).filter((l) => l.startsWith('readFile'))).toEqual([]);
    // A listed peer's mark is the one on disk, never assumed absent: saving an older bundle
    // after a restart does not lower it.
    const s2 = store(fs);
    await s2.loadAll();
    await s2.saveAccepted(next);
    const s3 = store(fs);
    await s3.loadAll();
    await s3.saveAccepted(old);
    expect(await s3.sequenceHighWaterMark(peer)).toBe(next.sequence);
    expect(await store(fs).sequenceHighWaterMark(other.trustDomain)).toBe(other.sequence);
  });
});

describe('StateStore durability under concurrency', () => {
  it('under random interleavings, a save is durable when it resolves (property)', async () => {
    const bundles = await Promise.all(
      Array.from({ length: 12 }, (_, i) => makeBundle(`q${i}.test`, { sequence: 1n })),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 64, maxLength: 64 }),
        async (delays) => {
          const fs = new CrashFs(DIR);
          let i = 0;
          // Every operation, and every fsync after it took effect, waits a random number of turns.
          const later = async () => {
            for (let k = delays[i++ % delays.length]!; k > 0; k--) await new Promise(setImmediate);
          };
          const delayed =
            <A extends unknown[], T>(op: (...args: A) => Promise<T>) =>
            async (...args: A): Promise<T> => {
              await later();
              return op(...args);
            };
          const jittered: StateFs = {
            mkdir: delayed((p: string) => fs.mkdir(p)),
            readdir: delayed((p: string) => fs.readdir(p)),
            readFile: delayed((p: string) => fs.readFile(p)),
            rename: delayed((a: string, b: string) => fs.rename(a, b)),
            unlink: delayed((p: string) => fs.unlink(p)),
            open: delayed(async (p: string, f: 'wx' | 'r') => {
              const h = await fs.open(p, f);
              return {
                ...h,
                sync: async () => {
                  await h.sync();
                  await later();
                },
              };
            }),
          };
          const s = new StateStore({ dir: DIR }, { fs: jittered, now: () => T0 });
          const missing: string[] = [];
          await Promise.all(
            bundles.map(async (b) => {
              await later();
              await s.saveAccepted(b);
              const { peers } = await new StateStore({ dir: DIR }, { fs: fs.recover('durable') }).loadAll();
              const held = peers.find((p) => p.trustDomain.equals(b.trustDomain))?.lastKnownGood;
              if (held === undefined) missing.push(b.trustDomain.name);
            }),
          );
          expect(missing).toEqual([]);
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe('StateStore on the real file system', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'state-store-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes 0600 files atomically and reloads them', async () => {
    const s = new StateStore({ dir: join(dir, 'state') });
    await s.init();
    await s.saveAccepted(old, { etag: '"x"' });
    await s.saveAccepted(next);
    const names = (await readdir(join(dir, 'state'))).sort();
    expect(names).toEqual(['peer.test.bundle.json', 'peer.test.sequence.json']);
    const { peers } = await new StateStore({ dir: join(dir, 'state') }).loadAll();
    expect(same(peers[0]?.lastKnownGood?.bundle, next)).toBe(true);
    await writeFile(join(dir, 'state', 'peer.test.bundle.json'), 'oops');
    const r = await new StateStore({ dir: join(dir, 'state') }).loadAll();
    expect(r.problems.map((p) => p.code)).toEqual(['ERR_STATE_CORRUPT']);
    const quarantined = (await readdir(join(dir, 'state'))).find((n) => n.includes('.corrupt-'));
    expect(await readFile(join(dir, 'state', quarantined!), 'utf8')).toBe('oops');
  });
});
