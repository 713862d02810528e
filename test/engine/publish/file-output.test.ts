import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { LocalBundle } from '../../../src/adapters/endpoint/local-bundle.js';
import { parseBundle, parseBundleMap, TrustBundle } from '../../../src/core/bundle/index.js';
import { FederatedBundleStore } from '../../../src/engine/federation/bundle-store.js';
import { nodeStateFs, type StateFs } from '../../../src/engine/federation/state-store.js';
import { FileOutputSink, outputFileName } from '../../../src/engine/publish/file-output.js';
import type { SinkReport } from '../../../src/engine/publish/sink.js';
import { FakeClock } from '../../fakes/fake-clock.js';
import { makePki, type TestPki } from '../../support/fixtures.js';

let a: TestPki;
let b: TestPki;
let local: TestPki;
let dir: string;

beforeAll(async () => {
  [a, b, local] = await Promise.all([makePki('a.example'), makePki('b.example'), makePki('local.example')]);
});
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'file-output-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The real file system, counting temp-file opens, with a switch that fails renames onto one name. */
function countingFs(): StateFs & { writes: string[]; failRenameTo: string | undefined } {
  const fs = {
    ...nodeStateFs,
    writes: [] as string[],
    failRenameTo: undefined as string | undefined,
    open: (p: string, flags: 'wx' | 'r', mode?: number) => {
      if (flags === 'wx') fs.writes.push(p);
      return nodeStateFs.open(p, flags, mode);
    },
    rename: async (from: string, to: string) => {
      if (fs.failRenameTo !== undefined && to.endsWith(`/${fs.failRenameTo}`)) {
        throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
      }
      return nodeStateFs.rename(from, to);
    },
  };
  return fs;
}

const desired = (bundles: TrustBundle[], retained: string[] = []) => ({
  bundles: new Map(bundles.map((x) => [x.trustDomain.name, x])),
  retained: new Set(retained),
});

const ALL = ['grpc-bundle-map', 'envoy-bundle-map', 'bundle-map', 'bundle', 'pem', 'jwks'] as const;
const read = (name: string) => readFileSync(join(dir, name), 'utf8');
const mapDomains = (name: string) => [...parseBundleMap(read(name)).bundles.keys()];

describe('FileOutputSink', () => {
  it('writes every configured format: maps, and one file per trust domain', async () => {
    const sink = new FileOutputSink({ dir, formats: [...ALL] }, { clock: new FakeClock() });
    const report = await sink.apply(desired([a.bundle, b.bundle]));
    expect(report).toEqual({ ok: true, written: ['a.example', 'b.example'], removed: [], failed: [] });
    expect(readdirSync(dir).sort()).toEqual([
      'a.example.jwks.json',
      'a.example.pem',
      'a.example.spiffe-bundle.json',
      'b.example.jwks.json',
      'b.example.pem',
      'b.example.spiffe-bundle.json',
      'bundle-map.json',
      'envoy-bundle-map.json',
      'grpc-bundle-map.json',
    ]);
    expect(mapDomains('grpc-bundle-map.json')).toEqual(['a.example', 'b.example']);
    expect(read('envoy-bundle-map.json')).toBe(read('grpc-bundle-map.json'));
    expect(read('grpc-bundle-map.json')).not.toContain('jwt-svid');
    expect(read('bundle-map.json')).toContain('jwt-svid');
    expect(parseBundle(a.td, read('a.example.spiffe-bundle.json')).bundle.jwtAuthorities.size).toBe(4);
    expect(read('a.example.pem')).toBe(a.root.pem);
    expect(statSync(join(dir, 'a.example.pem')).mode & 0o777).toBe(0o644);
  });

  it('writes nothing when the bytes would not change — also for a new sink reading the files', async () => {
    const fs = countingFs();
    const sink = new FileOutputSink({ dir, formats: [...ALL] }, { fs });
    await sink.apply(desired([a.bundle, b.bundle]));
    expect(fs.writes).toHaveLength(9);
    const mtime = statSync(join(dir, 'grpc-bundle-map.json')).mtimeMs;
    const again = await sink.apply(desired([b.bundle, a.bundle]));
    expect(again).toEqual({ ok: true, written: [], removed: [], failed: [] });
    expect(fs.writes).toHaveLength(9);
    const fs2 = countingFs();
    const restarted = new FileOutputSink({ dir, formats: [...ALL] }, { fs: fs2 });
    expect((await restarted.apply(desired([a.bundle, b.bundle]))).ok).toBe(true);
    expect(fs2.writes).toEqual([]);
    expect(statSync(join(dir, 'grpc-bundle-map.json')).mtimeMs).toBe(mtime);
  });

  it('writes atomically: temp file in the same directory, renamed over the target, none left', async () => {
    const fs = countingFs();
    const sink = new FileOutputSink(
      { dir, formats: ['grpc-bundle-map'] },
      { fs, randomSuffix: () => 'abc123' },
    );
    await sink.apply(desired([a.bundle]));
    expect(fs.writes).toEqual([join(dir, '.grpc-bundle-map.json.tmp-abc123')]);
    expect(readdirSync(dir)).toEqual(['grpc-bundle-map.json']);
  });

  it('keeps the previous file and reports ERR_OUTPUT_WRITE when a write fails; recovers next pass', async () => {
    const clock = new FakeClock();
    const fs = countingFs();
    const reports: SinkReport[] = [];
    const sink = new FileOutputSink(
      { dir, formats: ['grpc-bundle-map', 'pem'] },
      { fs, clock, onReport: (r) => reports.push(r) },
    );
    await sink.apply(desired([a.bundle]));
    const before = read('grpc-bundle-map.json');
    const firstWrite = sink.status()[0]!.lastWrite;
    expect(firstWrite).toBe(new Date(clock.now()).toISOString());

    await clock.advance(5_000);
    fs.failRenameTo = 'grpc-bundle-map.json';
    const failed = await sink.apply(desired([a.bundle, b.bundle]));
    expect(failed.ok).toBe(false);
    expect(failed.failed).toEqual([
      {
        trustDomain: '*',
        code: 'ERR_OUTPUT_WRITE',
        message: expect.stringMatching(/grpc-bundle-map\.json: ENOSPC/),
      },
    ]);
    // The PEM of b went out; the map still holds exactly what it held, and no temp file is left.
    expect(failed.written).toEqual(['b.example']);
    expect(read('grpc-bundle-map.json')).toBe(before);
    expect(readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
    const [mapStatus, pemStatus] = sink.status();
    expect(mapStatus).toMatchObject({
      format: 'grpc-bundle-map',
      path: join(dir, 'grpc-bundle-map.json'),
      lastWrite: firstWrite,
      lastError: { code: 'ERR_OUTPUT_WRITE', at: new Date(clock.now()).toISOString() },
      // Status says what the file holds, not what the failed pass meant to write.
      trustDomains: ['a.example'],
    });
    expect(pemStatus).toMatchObject({
      format: 'pem',
      lastError: null,
      path: join(dir, '<trust domain>.pem'),
    });
    expect(reports.at(-1)).toBe(failed);

    fs.failRenameTo = undefined;
    const healed = await sink.apply(desired([a.bundle, b.bundle]));
    expect(healed.ok).toBe(true);
    expect(mapDomains('grpc-bundle-map.json')).toEqual(['a.example', 'b.example']);
    expect(sink.status()[0]!.lastError).toBeNull();
    expect(sink.status()[0]!.trustDomains).toEqual(['a.example', 'b.example']);
  });

  it('a removed or revoked peer disappears from every file on the next apply', async () => {
    const sink = new FileOutputSink({ dir, formats: [...ALL] });
    await sink.apply(desired([a.bundle, b.bundle]));
    // b revoked every key (an empty bundle accepted): a "revoked" bundle; then removed outright.
    const revoked = TrustBundle.create({ trustDomain: b.td, sequence: 9n });
    const r1 = await sink.apply(desired([a.bundle, revoked]));
    expect(r1.ok).toBe(true);
    for (const m of ['grpc-bundle-map.json', 'envoy-bundle-map.json']) {
      expect(mapDomains(m)).toEqual(['a.example']);
    }
    expect(readdirSync(dir)).not.toContain('b.example.pem');
    expect(readdirSync(dir)).not.toContain('b.example.jwks.json');
    expect(parseBundle(b.td, read('b.example.spiffe-bundle.json')).bundle.isEmpty()).toBe(true);

    const r2 = await sink.apply(desired([a.bundle]));
    expect(r2).toMatchObject({ ok: true, removed: ['b.example'] });
    expect(readdirSync(dir).filter((n) => n.startsWith('b.example'))).toEqual([]);
    for (const m of ['grpc-bundle-map.json', 'envoy-bundle-map.json', 'bundle-map.json']) {
      expect(mapDomains(m)).toEqual(['a.example']);
      expect(read(m)).not.toContain('b.example');
    }
  });

  it('leaves the files of a retained trust domain (allowlisted, no bundle held) alone', async () => {
    const sink = new FileOutputSink({ dir, formats: ['pem'] });
    await sink.apply(desired([a.bundle, b.bundle]));
    const report = await sink.apply(desired([a.bundle], ['b.example']));
    expect(report.removed).toEqual([]);
    expect(read('b.example.pem')).toBe(b.root.pem);
  });

  it('removes only its own files, and temp files left by a crash', async () => {
    writeFileSync(join(dir, 'README'), 'not ours');
    writeFileSync(join(dir, 'not a domain!.pem'), 'not ours either');
    writeFileSync(join(dir, '.grpc-bundle-map.json.tmp-deadbeef'), '{"partial');
    writeFileSync(join(dir, 'gone.example.pem'), 'stale');
    // A state-directory file name (never ours, even if someone points outputs at the state dir).
    writeFileSync(join(dir, 'peer.example.bundle.json'), '{}');
    const sink = new FileOutputSink({ dir, formats: ['grpc-bundle-map'] });
    await sink.apply(desired([a.bundle]));
    expect(readdirSync(dir).sort()).toEqual([
      'README',
      'grpc-bundle-map.json',
      'not a domain!.pem',
      'peer.example.bundle.json',
    ]);
  });

  it('tells its observer each file written, removed or failed, and each pass', async () => {
    const files: string[] = [];
    const passes: boolean[] = [];
    const fs = countingFs();
    const observer = {
      file: (o: { format: string; name: string; result: string }) =>
        files.push(`${o.result} ${o.format} ${o.name}`),
      pass: (o: { ok: boolean }) => passes.push(o.ok),
    };
    const sink = new FileOutputSink({ dir, formats: ['grpc-bundle-map', 'pem'] }, { fs, observer });
    await sink.apply(desired([a.bundle, b.bundle]));
    await sink.apply(desired([a.bundle, b.bundle]));
    fs.failRenameTo = 'grpc-bundle-map.json';
    await sink.apply(desired([a.bundle]));
    expect(files).toEqual([
      'written grpc-bundle-map grpc-bundle-map.json',
      'written pem a.example.pem',
      'written pem b.example.pem',
      'error grpc-bundle-map grpc-bundle-map.json',
      'removed pem b.example.pem',
    ]);
    expect(passes).toEqual([true, true, false]);
  });

  it('includes the local trust domain when configured', async () => {
    const localFeed = { current: () => ({ bundle: local.bundle }), subscribe: () => () => {} };
    const sink = new FileOutputSink({ dir, formats: ['envoy-bundle-map', 'pem'], local: localFeed });
    await sink.apply(desired([a.bundle]));
    expect(mapDomains('envoy-bundle-map.json')).toEqual(['a.example', 'local.example']);
    expect(read(outputFileName('pem', 'local.example'))).toBe(local.root.pem);
  });

  it("run(): a rotation of the local bundle (the daemon's LocalBundle) reaches the files", async () => {
    const rotated = TrustBundle.create({
      trustDomain: local.td,
      x509Authorities: [local.root.der, a.root.der],
      sequence: 2n,
    });
    let current = local.bundle;
    const localBundle = new LocalBundle({
      source: { getBundle: async () => current },
      trustDomain: local.td,
    });
    await localBundle.refresh();
    const store = new FederatedBundleStore();
    let next: ((r: SinkReport) => void) | undefined;
    const passed = () => new Promise<SinkReport>((resolve) => (next = resolve));
    const sink = new FileOutputSink(
      { dir, formats: ['pem'], local: localBundle, resyncMs: 3_600_000 },
      { clock: new FakeClock(), onReport: (r) => next?.(r) },
    );
    const ac = new AbortController();
    let pass = passed();
    const running = sink.run(store, ac.signal);
    expect((await pass).written).toEqual(['local.example']);
    expect(read('local.example.pem')).toBe(local.root.pem);
    pass = passed();
    current = rotated;
    await localBundle.refresh();
    expect((await pass).written).toEqual(['local.example']);
    expect(read('local.example.pem').match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    ac.abort();
    await running;
  });

  it('reports a directory it cannot create for every format', async () => {
    writeFileSync(join(dir, 'file'), 'x');
    const sink = new FileOutputSink({ dir: join(dir, 'file', 'sub'), formats: ['pem', 'bundle-map'] });
    const report = await sink.apply(desired([a.bundle]));
    expect(report.ok).toBe(false);
    expect(report.failed.every((f) => f.code === 'ERR_OUTPUT_WRITE')).toBe(true);
    expect(sink.status().map((s) => s.lastError?.code)).toEqual(['ERR_OUTPUT_WRITE', 'ERR_OUTPUT_WRITE']);
  });

  it('run(): follows the store — an accepted change and a removal reach the files without a resync', async () => {
    const clock = new FakeClock();
    const store = new FederatedBundleStore();
    store.set(a.bundle);
    let next: ((r: SinkReport) => void) | undefined;
    const sink = new FileOutputSink(
      { dir, formats: ['grpc-bundle-map'], resyncMs: 3_600_000 },
      { clock, onReport: (r) => next?.(r) },
    );
    const passed = () => new Promise<SinkReport>((resolve) => (next = resolve));
    const ac = new AbortController();
    let first = passed();
    const running = sink.run(store, ac.signal);
    expect((await first).written).toEqual(['a.example']);

    first = passed();
    store.set(b.bundle);
    expect((await first).written).toEqual(['b.example']);
    expect(mapDomains('grpc-bundle-map.json')).toEqual(['a.example', 'b.example']);

    first = passed();
    store.delete('a.example');
    expect((await first).removed).toEqual(['a.example']);
    expect(mapDomains('grpc-bundle-map.json')).toEqual(['b.example']);
    ac.abort();
    await running;
  });

  it('a full pass stats the files instead of reading them, and repairs only one edited by hand', async () => {
    const clock = new FakeClock();
    const store = new FederatedBundleStore();
    store.set(a.bundle);
    store.set(b.bundle);
    const reads: string[] = [];
    const fs: StateFs = {
      ...nodeStateFs,
      readFile: (p) => {
        reads.push(p);
        return nodeStateFs.readFile(p);
      },
    };
    let next: ((r: SinkReport) => void) | undefined;
    const sink = new FileOutputSink(
      { dir, formats: ['grpc-bundle-map', 'pem'], resyncMs: 60_000 },
      { clock, fs, onReport: (r) => next?.(r) },
    );
    const passed = () => new Promise<SinkReport>((resolve) => (next = resolve));
    const ac = new AbortController();
    let pass = passed();
    const running = sink.run(store, ac.signal);
    await pass;
    const pem = outputFileName('pem', 'a.example');
    const good = read(pem);
    writeFileSync(join(dir, pem), `${good}# edited\n`);
    reads.length = 0;
    pass = passed();
    await clock.advance(60_000); // the periodic full pass
    await pass;
    // Only the edited file was read back (and rewritten); the unchanged ones were only stat-ed.
    expect(reads.map((p) => p.slice(dir.length + 1))).toEqual([pem]);
    expect(read(pem)).toBe(good);
    ac.abort();
    await running;
  });
});
