import { chmod, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RuntimeError } from '../../src/errors.js';
import {
  LOCK_FILE,
  lockStateDir,
  PRIVATE_FILE_FORBIDDEN,
  STATE_DIR_FORBIDDEN,
  securePath,
} from '../../src/platform/state-dir.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sb-statedir-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(RuntimeError);
    return (err as RuntimeError).code;
  }
}

describe('lockStateDir (issue 16 item 13: two brokers on one state directory)', () => {
  it('the second broker is refused while the first holds the lock; released, it can start', async () => {
    const first = await lockStateDir(dir, { pid: 100, hostname: 'h', alive: () => true });
    const second = lockStateDir(dir, { pid: 200, hostname: 'h', alive: () => true });
    await expect(second).rejects.toMatchObject({ code: 'ERR_STATE_LOCKED' });
    await expect(second).rejects.toThrow(/pid 100 on h/);
    await first.release();
    const again = await lockStateDir(dir, { pid: 200, hostname: 'h', alive: () => true });
    expect(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8')).pid).toBe(200);
    await again.release();
  });

  it('takes over a lock whose holder on this host died (SIGKILL), or that is our own pid (container restart)', async () => {
    await lockStateDir(dir, { pid: 100, hostname: 'h', alive: () => true }); // never released
    const taken = await lockStateDir(dir, { pid: 200, hostname: 'h', alive: (pid) => pid !== 100 });
    await taken.release();
    // What a container's previous incarnation (PID 1, same host name) left behind at SIGKILL.
    await writeFile(join(dir, LOCK_FILE), '{"pid":1,"hostname":"pod","startedAt":"2026-01-01T00:00:00Z"}\n');
    const restarted = await lockStateDir(dir, { pid: 1, hostname: 'pod', alive: () => true });
    await restarted.release();
  });

  it('another host: refused while its heartbeat is fresh, taken over once it is stale', async () => {
    let now = Date.now();
    await lockStateDir(dir, { pid: 100, hostname: 'node-a', now: () => now });
    expect(
      await code(lockStateDir(dir, { pid: 100, hostname: 'node-b', now: () => now, alive: () => false })),
    ).toBe('ERR_STATE_LOCKED');
    now += 31_000;
    const taken = await lockStateDir(dir, { pid: 100, hostname: 'node-b', now: () => now });
    expect(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8')).hostname).toBe('node-b');
    await taken.release();
  });

  it('hold() keeps the heartbeat fresh and releases on abort; release never removes a lock taken over', async () => {
    const lock = await lockStateDir(dir, { pid: 100, hostname: 'h' });
    const old = new Date(Date.now() - 60_000);
    await utimes(join(dir, LOCK_FILE), old, old);
    const stop = new AbortController();
    const held = lock.hold(stop.signal);
    stop.abort();
    await held;
    await expect(stat(join(dir, LOCK_FILE))).rejects.toMatchObject({ code: 'ENOENT' });
    // A lock file that is not ours anymore stays.
    const mine = await lockStateDir(dir, { pid: 100, hostname: 'h' });
    await writeFile(join(dir, LOCK_FILE), '{"pid":5,"hostname":"other","startedAt":"x"}\n');
    await mine.release();
    expect(await readFile(join(dir, LOCK_FILE), 'utf8')).toContain('other');
  });
});

describe('securePath (issue 16 item 12)', () => {
  it('removes group/other write from a state directory this process owns', async () => {
    await chmod(dir, 0o777);
    expect(await securePath(dir, STATE_DIR_FORBIDDEN, 'state directory')).toEqual({ fixed: 0o022 });
    expect((await stat(dir)).mode & 0o777).toBe(0o755);
  });

  it('makes an audit key readable by others private', async () => {
    const key = join(dir, 'audit.key');
    await writeFile(key, 'secret', { mode: 0o644 });
    expect((await securePath(key, PRIVATE_FILE_FORBIDDEN, 'audit key')).fixed).toBe(0o044);
    expect((await stat(key)).mode & 0o777).toBe(0o600);
  });

  it('refuses with ERR_STATE_PERMISSIONS what it does not own and cannot fix', async () => {
    await chmod(dir, 0o777);
    const owner = (await stat(dir)).uid;
    const p = securePath(dir, STATE_DIR_FORBIDDEN, 'state directory', { uid: owner + 1000 });
    await expect(p).rejects.toMatchObject({ code: 'ERR_STATE_PERMISSIONS' });
    await expect(p).rejects.toThrow(/group-writable, world-writable.*chmod 0755/);
    expect((await stat(dir)).mode & 0o777).toBe(0o777);
  });

  it('a missing path and a private one pass untouched', async () => {
    expect(await securePath(join(dir, 'nope'), PRIVATE_FILE_FORBIDDEN, 'audit key')).toEqual({ fixed: 0 });
    await chmod(dir, 0o700);
    expect(await securePath(dir, STATE_DIR_FORBIDDEN, 'state directory')).toEqual({ fixed: 0 });
  });
});

describe('lockStateDir after a kill mid-write (found by the crash test)', () => {
  it('never leaves an empty lock: it appears whole; temp files of killed brokers are removed', async () => {
    await writeFile(join(dir, `${LOCK_FILE}.4242.1.tmp`), '');
    const lock = await lockStateDir(dir, { pid: 100, hostname: 'h' });
    expect(JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8')).pid).toBe(100);
    const { readdir } = await import('node:fs/promises');
    expect((await readdir(dir)).sort()).toEqual([LOCK_FILE]);
    await lock.release();
  });

  it('an unreadable lock left by an older broker is taken over after two seconds, not thirty', async () => {
    let now = Date.now();
    await writeFile(join(dir, LOCK_FILE), '');
    expect(await code(lockStateDir(dir, { pid: 200, hostname: 'h', now: () => now }))).toBe(
      'ERR_STATE_LOCKED',
    );
    now += 2_500;
    const taken = await lockStateDir(dir, { pid: 200, hostname: 'h', now: () => now });
    await taken.release();
  });
});
