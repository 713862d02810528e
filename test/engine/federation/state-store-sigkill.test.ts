import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { marshalBundle } from '../../../src/core/bundle/codec.js';
import { authoritiesUnchanged, diffBundles } from '../../../src/core/bundle/diff.js';
import type { TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { StateStore } from '../../../src/engine/federation/state-store.js';
import { makeBundle } from './helpers.js';

/**
 * Real file system, real process death: a child saves bundles in a tight loop and is SIGKILLed at
 * an arbitrary moment, many times over the same directory. After every kill the state must load
 * with no problem and hold one of the two bundles, with the high-water mark ≥ its sequence.
 * (SIGKILL keeps the page cache, so this checks atomicity — never a torn or half-renamed file —
 * while the fake-fs test covers power loss.)
 */
const ITERATIONS = Number(process.env.STATE_SIGKILL_ITERATIONS ?? 25);
const CHILD = join(import.meta.dirname, 'fixtures', 'state-writer-child.ts');

describe('StateStore survives SIGKILL mid-write (real fs, child process)', () => {
  let dir: string;
  let a: TrustBundle;
  let b: TrustBundle;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'state-kill-'));
    a = await makeBundle('peer.test', { refreshHint: 30 });
    b = await makeBundle('peer.test', { refreshHint: 60, jwt: 3 });
    await writeFile(join(dir, 'a.json'), marshalBundle(a));
    await writeFile(join(dir, 'b.json'), marshalBundle(b));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function runAndKill(delayMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', CHILD, join(dir, 'state'), 'peer.test', join(dir, 'a.json'), join(dir, 'b.json')],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      child.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('ready')) setTimeout(() => child.kill('SIGKILL'), delayMs);
      });
      child.on('error', reject);
      child.on('exit', (code, signal) => {
        if (signal === 'SIGKILL') resolve();
        else reject(new Error(`child exited ${code} before the kill: ${stderr}`));
      });
    });
  }

  it(`loads cleanly after each of ${ITERATIONS} kills`, {
    timeout: 20_000 + ITERATIONS * 5_000,
  }, async () => {
    let lastMark = 0n;
    for (let i = 0; i < ITERATIONS; i++) {
      await runAndKill(1 + ((i * 7) % 40));
      const store = new StateStore({ dir: join(dir, 'state') });
      const { peers, problems } = await store.loadAll();
      expect(problems, `kill ${i}`).toEqual([]);
      expect(peers).toHaveLength(1);
      const lkg = peers[0]!.lastKnownGood!.bundle;
      const isA = authoritiesUnchanged(diffBundles(a, lkg));
      const isB = authoritiesUnchanged(diffBundles(b, lkg));
      expect(isA || isB, `kill ${i}`).toBe(true);
      const mark = peers[0]!.sequenceHighWaterMark!;
      expect(mark >= lkg.sequence, `kill ${i}`).toBe(true);
      expect(mark >= lastMark, `kill ${i}: the mark never goes back`).toBe(true);
      lastMark = mark;
    }
    // The loop really wrote many times, and init() of the last child left no temp file behind
    // that the next load would mistake for state.
    expect(lastMark).toBeGreaterThan(BigInt(ITERATIONS));
    const names = await readdir(join(dir, 'state'));
    expect(names.filter((n) => n.includes('.corrupt-'))).toEqual([]);
  });
});
