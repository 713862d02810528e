import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { StateStore } from '../../../src/engine/federation/state-store.js';
import { FileManagedSetStore } from '../../../src/engine/publish/managed-set-store.js';
import { RuntimeError } from '../../../src/errors.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function setup() {
  const dir = await mkdtemp(join(tmpdir(), 'managed-'));
  dirs.push(dir);
  const state = new StateStore({ dir });
  await state.init();
  return { dir, state, store: new FileManagedSetStore(state) };
}

describe('FileManagedSetStore', () => {
  it('starts empty, round-trips per server, and is ignored by the bundle loader', async () => {
    const { dir, state, store } = await setup();
    expect(await store.load('main')).toEqual(new Set());
    await store.save('main', new Set(['b.test', 'a.test']));
    await store.save('dr', new Set(['c.test']));
    expect(await store.load('main')).toEqual(new Set(['a.test', 'b.test']));
    expect(await store.load('dr')).toEqual(new Set(['c.test']));
    expect(JSON.parse(await readFile(join(dir, 'managed-main.json'), 'utf8'))).toEqual({
      version: 1,
      server: 'main',
      trustDomains: ['a.test', 'b.test'],
    });
    expect(await state.loadAll()).toEqual({ peers: [], problems: [] });
  });

  it('refuses a corrupt or foreign file instead of forgetting what it owns', async () => {
    const { dir, store } = await setup();
    await writeFile(join(dir, 'managed-main.json'), '{"version":1,"server":"other","trustDomains":[]}');
    await expect(store.load('main')).rejects.toMatchObject({ code: 'ERR_STATE_CORRUPT' });
    await writeFile(join(dir, 'managed-main.json'), 'garbage');
    await expect(store.load('main')).rejects.toBeInstanceOf(RuntimeError);
  });
});
