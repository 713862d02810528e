import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type AdminTokenFs, ensureAdminToken, nodeAdminTokenFs } from '../../../src/adapters/admin/index.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sb-admin-token-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('ensureAdminToken (issue 16 item 3)', () => {
  it('creates <stateDir>/admin.token with 32 random bytes, mode 0600, and reuses it', async () => {
    const stateDir = join(dir, 'state');
    const first = await ensureAdminToken(stateDir);
    expect(first.created).toBe(true);
    expect(first.path).toBe(join(stateDir, 'admin.token'));
    expect(first.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(first.token, 'base64url')).toHaveLength(32);
    expect((await stat(first.path)).mode & 0o777).toBe(0o600);
    expect((await stat(stateDir)).mode & 0o077).toBe(0);
    expect((await readFile(first.path, 'utf8')).trim()).toBe(first.token);
    const again = await ensureAdminToken(stateDir);
    expect(again).toEqual({ token: first.token, path: first.path, created: false });
    // Two state directories never share a token.
    expect((await ensureAdminToken(join(dir, 'other'))).token).not.toBe(first.token);
  });

  it('resets a token file that group or others can read to 0600 and says so', async () => {
    const first = await ensureAdminToken(dir);
    await chmod(first.path, 0o644);
    const fixed = await ensureAdminToken(dir);
    expect(fixed).toMatchObject({ token: first.token, fixedMode: 0o644 });
    expect((await stat(first.path)).mode & 0o777).toBe(0o600);
  });

  it('refuses a symlink and a directory (ERR_API_TOKEN)', async () => {
    const target = join(dir, 'elsewhere');
    await writeFile(target, `${'a'.repeat(43)}\n`, { mode: 0o600 });
    const linked = join(dir, 'linked');
    await mkdir(linked);
    await symlink(target, join(linked, 'admin.token'));
    await expect(ensureAdminToken(linked)).rejects.toMatchObject({ code: 'ERR_API_TOKEN' });
    const asDir = join(dir, 'as-dir');
    await mkdir(join(asDir, 'admin.token'), { recursive: true });
    await expect(ensureAdminToken(asDir)).rejects.toMatchObject({ code: 'ERR_API_TOKEN' });
  });

  it('replaces a file that holds no token (empty after a crash, or edited), and a crash leftover', async () => {
    for (const content of ['', 'short\n', `${'x'.repeat(2000)}\n`]) {
      const d = await mkdtemp(join(dir, 'bad-'));
      await writeFile(join(d, 'admin.token'), content, { mode: 0o600 });
      await writeFile(join(d, 'admin.token.new'), 'leftover', { mode: 0o600 });
      const r = await ensureAdminToken(d);
      expect(r).toMatchObject({ created: true, replacedInvalid: true });
      expect(r.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect((await readFile(join(d, 'admin.token'), 'utf8')).trim()).toBe(r.token);
      expect((await stat(join(d, 'admin.token'))).mode & 0o777).toBe(0o600);
      await expect(stat(join(d, 'admin.token.new'))).rejects.toMatchObject({ code: 'ENOENT' });
      expect((await ensureAdminToken(d)).token).toBe(r.token);
    }
  });

  it('never shows a partial file: the token is written under a temporary name, then linked into place', async () => {
    const steps: string[] = [];
    const fs: AdminTokenFs = {
      ...nodeAdminTokenFs,
      createExclusive: async (p, data, mode) => {
        steps.push(`create ${p.split('/').pop()} ${data.trim().length} ${mode.toString(8)}`);
        await nodeAdminTokenFs.createExclusive(p, data, mode);
      },
      link: async (a, b) => {
        steps.push(`link ${a.split('/').pop()} ${b.split('/').pop()}`);
        await nodeAdminTokenFs.link(a, b);
      },
    };
    await ensureAdminToken(dir, { fs });
    expect(steps).toEqual(['create admin.token.new 43 600', 'link admin.token.new admin.token']);
    await expect(stat(join(dir, 'admin.token.new'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('uses the token of a process that created the file first (exclusive create)', async () => {
    const theirs = 'b'.repeat(43);
    let linked = false;
    const fs: AdminTokenFs = {
      ...nodeAdminTokenFs,
      lstat: async () => (linked ? { mode: 0o100600, isFile: true } : undefined),
      mkdir: async () => undefined,
      createExclusive: async () => undefined,
      remove: async () => undefined,
      link: async () => {
        linked = true;
        throw Object.assign(new Error('exists'), { code: 'EEXIST' });
      },
      readFile: async () => `${theirs}\n`,
    };
    expect(await ensureAdminToken('/state', { fs })).toEqual({
      token: theirs,
      path: '/state/admin.token',
      created: false,
    });
  });
});
