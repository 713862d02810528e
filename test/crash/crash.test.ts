import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compiledPath } from '../../bench/support/compile.js';
import { BundleFleet } from '../../bench/support/fleet.js';
import { SpireEmulator } from '../../src/adapters/spire/emulator/emulator.js';
import { authoritiesUnchanged, diffBundles } from '../../src/core/bundle/diff.js';
import type { TrustBundle } from '../../src/core/bundle/trust-bundle.js';
import { StateStore } from '../../src/engine/federation/state-store.js';

/**
 * Crash safety of the whole broker (real files, real process death): a broker runs in a child
 * process against 5 peers that rotate every 20 ms (long-poll, so it accepts and persists
 * continuously) and a SPIRE emulator in this process; it is SIGKILLed at a random moment
 * CRASH_KILLS times (default 100) and restarted each time. After every kill the state directory
 * must load without a problem, and each peer's last-known-good bundle must be one the peer really
 * served, never older than the last one the broker reported accepted (it reports only after
 * persisting). After the last restart SPIRE must converge to every peer's current bundle.
 */
const KILLS = Number(process.env.CRASH_KILLS ?? 100);
const PEERS = 5;
const CHILD = join(import.meta.dirname, 'crash-child.ts');

/** Deterministic PRNG (mulberry32) so a failing kill schedule can be replayed with CRASH_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const SEED = Number(process.env.CRASH_SEED ?? Date.now() % 1_000_000);

describe('broker crash safety: SIGKILL at random points, restart, state intact, SPIRE converges', () => {
  let dir: string;
  let fleet: BundleFleet;
  let emulator: SpireEmulator;
  let script: string;
  let configFile: string;
  /** Every bundle each peer served, by sequence. */
  const served = new Map<string, Map<bigint, TrustBundle>>();
  let rotating: NodeJS.Timeout | undefined;

  const remember = (): void => {
    for (let i = 0; i < fleet.count; i++) {
      const b = fleet.bundle(i);
      let m = served.get(b.trustDomain.name);
      if (!m) {
        m = new Map();
        served.set(b.trustDomain.name, m);
      }
      m.set(b.sequence, b);
    }
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sb-crash-'));
    fleet = await BundleFleet.start({ count: PEERS, hintSeconds: 300, longPoll: true });
    remember();
    emulator = new SpireEmulator({ trustDomain: 'crash.test', socketPath: join(dir, 'spire.sock') });
    const { address } = await emulator.start();
    await writeFile(join(dir, 'ca.pem'), fleet.caPem);
    const allowlist = ['apiVersion: spiffe-broker.dev/v1', 'kind: Allowlist', 'peers:'];
    for (let i = 0; i < PEERS; i++) {
      allowlist.push(
        `  - trustDomain: ${fleet.trustDomain(i)}`,
        `    bundleEndpoint: { urls: ["${fleet.url(i)}"], profile: https_web, caFile: ${join(dir, 'ca.pem')} }`,
        '    refresh: { minInterval: 100ms, maxInterval: 5m }',
      );
    }
    await writeFile(join(dir, 'allowlist.yaml'), `${allowlist.join('\n')}\n`);
    configFile = join(dir, 'broker.yaml');
    await writeFile(
      configFile,
      [
        'apiVersion: spiffe-broker.dev/v1',
        'kind: BrokerConfig',
        'trustDomain: crash.test',
        `stateDir: ${join(dir, 'state')}`,
        `spire: { servers: [{ name: spire, address: "${address}" }] }`,
        `allowlist: { file: ${join(dir, 'allowlist.yaml')} }`,
        'admin: { listen: 127.0.0.1:0 }',
        'verify: { listen: 127.0.0.1:0 }',
        'audit: { fsync: never }',
        '',
      ].join('\n'),
    );
    script = await compiledPath(CHILD);
    rotating = setInterval(() => {
      fleet.rotate(Array.from({ length: PEERS }, (_, i) => i));
      remember();
    }, 20);
  }, 60_000);

  afterAll(async () => {
    clearInterval(rotating);
    await fleet?.stop();
    await emulator?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** Last sequence the broker reported accepted (= persisted), per peer, over all runs. */
  const lastAccepted = new Map<string, bigint>();
  /** Every `accepted`/`refused` line of the current run. */
  let runLines: string[] = [];
  let acceptedEvents = 0;
  let killedWhileAccepting = 0;

  function startChild(): { child: ChildProcess; running: Promise<void>; exited: Promise<string> } {
    runLines = [];
    const child = spawn(process.execPath, [script, configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    let buf = '';
    let onRunning: () => void = () => undefined;
    const running = new Promise<void>((r) => {
      onRunning = r;
    });
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i !== -1; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line === 'running') onRunning();
        runLines.push(line);
        const m = /^accepted (\S+) (\d+)$/.exec(line);
        if (m) {
          acceptedEvents++;
          const seq = BigInt(m[2]!);
          if (seq > (lastAccepted.get(m[1]!) ?? -1n)) lastAccepted.set(m[1]!, seq);
        }
      }
    });
    const exited = new Promise<string>((resolve) =>
      child.on('exit', (code, signal) => resolve(signal ?? `exit ${code}: ${stderr}`)),
    );
    return { child, running, exited };
  }

  async function checkState(when: string): Promise<void> {
    const { peers, problems } = await new StateStore({ dir: join(dir, 'state') }).loadAll();
    expect(problems, when).toEqual([]);
    const byTd = new Map(peers.map((p) => [p.trustDomain.name, p]));
    for (const [td, seq] of lastAccepted) {
      const lkg = byTd.get(td)?.lastKnownGood?.bundle;
      expect(lkg, `${when}: ${td} has a last-known-good bundle`).toBeDefined();
      expect(lkg!.sequence >= seq, `${when}: ${td} holds #${lkg!.sequence}, reported accepted #${seq}`).toBe(
        true,
      );
      const original = served.get(td)?.get(lkg!.sequence);
      expect(original, `${when}: ${td} #${lkg!.sequence} was served by the peer`).toBeDefined();
      expect(authoritiesUnchanged(diffBundles(original!, lkg!)), `${when}: ${td} intact`).toBe(true);
      const mark = byTd.get(td)!.sequenceHighWaterMark;
      expect(mark !== undefined && mark >= lkg!.sequence, `${when}: ${td} high-water mark`).toBe(true);
    }
  }

  it(`survives ${KILLS} SIGKILLs during state writes and rotations (seed ${SEED})`, {
    timeout: 300_000,
  }, async () => {
    const random = prng(SEED);
    for (let k = 0; k < KILLS; k++) {
      const run = startChild();
      await Promise.race([
        run.running,
        run.exited.then((why) => {
          throw new Error(`kill ${k}: the broker did not start (${why})`);
        }),
      ]);
      // One kill in five anywhere in start-up (state load, SPIRE connect, first fetches); the others
      // while bundles are being accepted and persisted: 0-250 ms after this run's first accept.
      const before = acceptedEvents;
      if (random() < 0.2) await new Promise((r) => setTimeout(r, 20 + random() * 300));
      else {
        const deadline = Date.now() + 10_000;
        while (acceptedEvents === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        await new Promise((r) => setTimeout(r, random() * 250));
      }
      run.child.kill('SIGKILL');
      if (acceptedEvents > before) killedWhileAccepting++;
      const why = await run.exited;
      expect(why, `kill ${k}: the broker died of the kill, not on its own`).toBe('SIGKILL');
      await checkState(`after kill ${k}`);
    }
    // The kills landed while bundles were being accepted and persisted.
    console.log(
      `crash test: ${KILLS} kills (seed ${SEED}); ${killedWhileAccepting} of them in runs that had accepted bundles; ${acceptedEvents} accepted bundles in all`,
    );
    expect(acceptedEvents).toBeGreaterThan(KILLS);
    expect(killedWhileAccepting).toBeGreaterThanOrEqual(KILLS * 0.6);
    expect(lastAccepted.size).toBe(PEERS);

    // Last restart: rotations stop; SPIRE must converge to every peer's current bundle.
    clearInterval(rotating);
    remember();
    const last = startChild();
    await last.running;
    const want = Array.from({ length: PEERS }, (_, i) => fleet.bundle(i));
    const deadline = Date.now() + 30_000;
    for (;;) {
      const held = want.map((b) => emulator.federatedBundle(b.trustDomain));
      if (held.every((h, i) => h?.sequence === want[i]!.sequence)) break;
      if (Date.now() > deadline)
        throw new Error(`SPIRE did not converge: ${held.map((h) => h?.sequence).join(', ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const b of want)
      expect(authoritiesUnchanged(diffBundles(b, emulator.federatedBundle(b.trustDomain)!))).toBe(true);
    last.child.kill('SIGTERM');
    expect(await last.exited).toMatch(/^exit 0/);
    const stateDir = join(dir, 'state');
    await checkState('after the last, clean stop');
    expect([...lastAccepted.keys()].sort()).toEqual(want.map((b) => b.trustDomain.name).sort());

    // Rollback protection survives the loss of the last-known-good file (issue 16, item 1): the
    // bundle file of one peer is gone, its high-water mark file is not; SPIRE is down at start (so
    // the bundle cannot be re-read from it either) and the peer now serves a rolled-back bundle
    // (sequence 1, another key). It must be refused on the mark alone, and the bundle SPIRE holds
    // must not be deleted (item 2) nor replaced once SPIRE is back.
    const victim = want[0]!;
    const td0 = victim.trustDomain.name;
    const markBefore = (await new StateStore({ dir: stateDir }).loadAll()).peers.find(
      (p) => p.trustDomain.name === td0,
    )!.sequenceHighWaterMark!;
    expect(markBefore).toBe(victim.sequence);
    await rm(join(stateDir, `${td0}.bundle.json`));
    const rolledBack = BundleFleet.rolledBack(victim, 1n);
    fleet.serve(0, rolledBack);
    await emulator.down();
    const third = startChild();
    await third.running;
    const refusedLine = `refused ${td0} ERR_POLICY_SEQUENCE_ROLLBACK`;
    for (const until = Date.now() + 15_000; !runLines.includes(refusedLine); ) {
      if (Date.now() > until)
        throw new Error(`no rollback refusal; the broker said: ${runLines.join(' | ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await emulator.up();
    // Give every sync a few retries against the SPIRE that is back (backoff 0.5, 1, 2 s …).
    await new Promise((r) => setTimeout(r, 5000));
    expect(runLines.filter((l) => l.startsWith(`accepted ${td0} `))).toEqual([]);
    const inSpire = emulator.federatedBundle(td0);
    expect(inSpire?.sequence, 'SPIRE still holds the last good bundle').toBe(victim.sequence);
    expect(authoritiesUnchanged(diffBundles(victim, inSpire!))).toBe(true);
    third.child.kill('SIGTERM');
    expect(await third.exited).toMatch(/^exit 0/);
    const after = (await new StateStore({ dir: stateDir }).loadAll()).peers.find(
      (p) => p.trustDomain.name === td0,
    );
    expect(after?.sequenceHighWaterMark).toBe(markBefore);
    // The bundle file, lost above, was recovered from SPIRE once it was back? Not required: the
    // mark is what matters; but nothing lower than the mark was ever written.
    if (after?.lastKnownGood) expect(after.lastKnownGood.bundle.sequence >= markBefore).toBe(true);

    // The check itself can fail: a torn state file is reported.
    const file = (await readdir(stateDir)).find((n) => n.endsWith('.bundle.json'));
    expect(file).toBeDefined();
    const path = join(stateDir, file!);
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.slice(0, text.length / 2));
    expect((await new StateStore({ dir: stateDir }).loadAll()).problems).not.toEqual([]);
  });
});
