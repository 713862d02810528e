import { describe, expect, it } from 'vitest';
import {
  type AllowlistUpdate,
  AllowlistWatcher,
  ConfigValidationError,
  diffAllowlists,
  FULL_READ_EVERY,
  parseAllowlist,
} from '../../../src/engine/config/index.js';
import type { ConfigError } from '../../../src/errors.js';

/** A fake clock whose sleeps resolve only when the test advances time. */
class FakeClock {
  now = 0;
  #sleepers: { at: number; resolve: () => void }[] = [];
  sleep = (ms: number, signal: AbortSignal): Promise<void> =>
    new Promise((resolve) => {
      const s = { at: this.now + ms, resolve };
      this.#sleepers.push(s);
      signal.addEventListener(
        'abort',
        () => {
          this.#sleepers = this.#sleepers.filter((x) => x !== s);
          resolve();
        },
        { once: true },
      );
    });
  get pending(): number {
    return this.#sleepers.length;
  }
  async advance(ms: number): Promise<void> {
    this.now += ms;
    const due = this.#sleepers.filter((s) => s.at <= this.now);
    this.#sleepers = this.#sleepers.filter((s) => s.at > this.now);
    for (const s of due) s.resolve();
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

function peer(td: string, url = `https://${td}/`): string {
  return `  - trustDomain: ${td}\n    bundleEndpoint: { urls: ["${url}"], profile: https_web }\n`;
}
function doc(...peers: string[]): string {
  return `apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\npeers:${peers.length ? `\n${peers.join('')}` : ' []\n'}`;
}

function setup(initialText: string | undefined) {
  const files = new Map<string, string>();
  if (initialText !== undefined) files.set('/al.yaml', initialText);
  const clock = new FakeClock();
  const updates: AllowlistUpdate[] = [];
  const errors: { error: ConfigError; keptVersion?: string }[] = [];
  const watcher = new AllowlistWatcher(
    {
      path: '/al.yaml',
      intervalMs: 1000,
      parseOptions: { localTrustDomain: 'example.org' },
      onChange: (u) => {
        updates.push(u);
      },
      onError: (error, info) => {
        errors.push(info.keptVersion === undefined ? { error } : { error, keptVersion: info.keptVersion });
      },
    },
    {
      fs: {
        readFile: async (p) => {
          const t = files.get(p);
          if (t === undefined) throw new Error('ENOENT: no such file');
          return t;
        },
      },
      sleep: clock.sleep,
    },
  );
  return { files, clock, updates, errors, watcher };
}

describe('AllowlistWatcher', () => {
  it('loads, then delivers edits with their diff, polling on the injected clock', async () => {
    const { files, clock, updates, errors, watcher } = setup(doc(peer('a.example'), peer('b.example')));
    const ac = new AbortController();
    const done = watcher.run(ac.signal);
    await settle();
    expect(updates).toHaveLength(1);
    expect(updates[0]!.previous).toBeUndefined();
    expect(updates[0]!.diff.added.map((p) => p.trustDomain.name)).toEqual(['a.example', 'b.example']);

    // No change: nothing delivered however long we wait.
    await clock.advance(5000);
    expect(updates).toHaveLength(1);

    files.set('/al.yaml', doc(peer('a.example', 'https://a2.example/'), peer('c.example')));
    await clock.advance(999);
    expect(updates).toHaveLength(1);
    await clock.advance(1);
    expect(updates).toHaveLength(2);
    const d = updates[1]!.diff;
    expect(d.added.map((p) => p.trustDomain.name)).toEqual(['c.example']);
    expect(d.removed.map((p) => p.trustDomain.name)).toEqual(['b.example']);
    expect(d.changed.map((c) => [c.before.urls[0]!.href, c.after.urls[0]!.href])).toEqual([
      ['https://a.example/', 'https://a2.example/'],
    ]);
    expect(updates[1]!.previous).toBe(updates[0]!.allowlist);
    expect(watcher.current).toBe(updates[1]!.allowlist);
    expect(errors).toEqual([]);

    ac.abort();
    await done;
    expect(clock.pending).toBe(0);
  });

  it('keeps the previous allowlist in force on an invalid edit and reports the issues once', async () => {
    const { files, clock, updates, errors, watcher } = setup(doc(peer('a.example')));
    const first = await watcher.load();
    const ac = new AbortController();
    const done = watcher.run(ac.signal);
    files.set('/al.yaml', doc(peer('a.example', 'http://a.example/'), peer('example.org')));
    await clock.advance(1000);
    expect(updates).toEqual([]);
    expect(watcher.current).toBe(first);
    expect(errors).toHaveLength(1);
    const err = errors[0]!.error as ConfigValidationError;
    expect(err).toBeInstanceOf(ConfigValidationError);
    expect(err.issues.map((i) => [i.line, i.code])).toEqual([
      [5, 'ERR_CONFIG_URL'],
      [6, 'ERR_CONFIG_LOCAL_TRUST_DOMAIN'],
    ]);
    expect(errors[0]!.keptVersion).toBe(first.version);

    // The same broken content is not reported again on every poll.
    await clock.advance(3000);
    expect(errors).toHaveLength(1);

    // Fixed: applied, diffed against the allowlist that stayed in force.
    files.set('/al.yaml', doc(peer('a.example'), peer('d.example')));
    await clock.advance(1000);
    expect(updates).toHaveLength(1);
    expect(updates[0]!.previous).toBe(first);
    expect(updates[0]!.diff.added.map((p) => p.trustDomain.name)).toEqual(['d.example']);
    ac.abort();
    await done;
  });

  it('reports an unreadable file as ERR_CONFIG_READ and recovers when it returns', async () => {
    const { files, clock, updates, errors, watcher } = setup(doc(peer('a.example')));
    await watcher.load();
    const ac = new AbortController();
    const done = watcher.run(ac.signal);
    files.delete('/al.yaml');
    await clock.advance(1000);
    await clock.advance(1000);
    expect(errors.map((e) => e.error.code)).toEqual(['ERR_CONFIG_READ']);
    files.set('/al.yaml', doc(peer('a.example')));
    await clock.advance(1000);
    // Same content as before the outage: nothing to deliver.
    expect(updates).toEqual([]);
    ac.abort();
    await done;
  });

  it('delivers a comment-only edit with an empty diff (the version changes)', async () => {
    const { files, clock, updates, watcher } = setup(doc(peer('a.example')));
    const first = await watcher.load();
    const ac = new AbortController();
    const done = watcher.run(ac.signal);
    files.set('/al.yaml', `# reviewed\n${doc(peer('a.example'))}`);
    await clock.advance(1000);
    expect(updates).toHaveLength(1);
    expect(updates[0]!.allowlist.version).not.toBe(first.version);
    expect(updates[0]!.diff).toEqual({ added: [], removed: [], changed: [] });
    ac.abort();
    await done;
  });

  it('reload() checks at once without waiting for the interval', async () => {
    const { files, updates, watcher } = setup(doc());
    await watcher.load();
    const ac = new AbortController();
    const done = watcher.run(ac.signal);
    await settle();
    files.set('/al.yaml', doc(peer('a.example')));
    watcher.reload();
    await settle();
    expect(updates).toHaveLength(1);
    ac.abort();
    await done;
  });

  it('load() throws on an invalid file at start-up', async () => {
    const { watcher } = setup(doc(peer('example.org')));
    await expect(watcher.load()).rejects.toMatchObject({ code: 'ERR_CONFIG_LOCAL_TRUST_DOMAIN' });
    const missing = setup(undefined);
    await expect(missing.watcher.load()).rejects.toMatchObject({ code: 'ERR_CONFIG_READ' });
  });
});

describe('diffAllowlists', () => {
  it('ignores the source line but sees every setting', () => {
    const a = parseAllowlist(doc(peer('a.example'), peer('b.example')));
    const b = parseAllowlist(doc(peer('b.example'), peer('a.example')));
    expect(diffAllowlists(a, b)).toEqual({ added: [], removed: [], changed: [] });
    const c = parseAllowlist(doc(peer('a.example'), `${peer('b.example')}    allowEmptyBundle: true\n`));
    expect(diffAllowlists(a, c).changed.map((x) => x.after.trustDomain.name)).toEqual(['b.example']);
  });
});

describe('AllowlistWatcher with stat', () => {
  function statSetup(text: string) {
    const file = { text, ino: 1, mtimeMs: 1000, ctimeMs: 1000 };
    let reads = 0;
    const updates: AllowlistUpdate[] = [];
    const watcher = new AllowlistWatcher(
      {
        path: '/al.yaml',
        parseOptions: { localTrustDomain: 'example.org' },
        onChange: (u) => {
          updates.push(u);
        },
        onError: () => undefined,
      },
      {
        fs: {
          readFile: async () => {
            reads++;
            return file.text;
          },
          stat: async () => ({
            ino: file.ino,
            size: file.text.length,
            mtimeMs: file.mtimeMs,
            ctimeMs: file.ctimeMs,
          }),
        },
      },
    );
    return { file, watcher, updates, reads: () => reads };
  }

  it('reads the file only when its stat changed, and in full every FULL_READ_EVERY polls', async () => {
    const t = statSetup(doc(peer('a.example')));
    await t.watcher.check();
    expect(t.reads()).toBe(1);
    for (let i = 0; i < FULL_READ_EVERY - 1; i++) expect(await t.watcher.check()).toBe('unchanged');
    expect(t.reads()).toBe(1);
    expect(await t.watcher.check()).toBe('unchanged'); // the periodic full read
    expect(t.reads()).toBe(2);

    // An editor replacing the file by rename: another inode.
    t.file.text = doc(peer('a.example'), peer('b.example'));
    t.file.ino = 2;
    expect(await t.watcher.check()).toBe('changed');
    expect(t.updates.at(-1)!.diff.added.map((p) => p.trustDomain.name)).toEqual(['b.example']);
  });

  it('an edit that keeps size and timestamps is found by the periodic full read', async () => {
    const t = statSetup(doc(peer('a.example')));
    await t.watcher.check();
    t.file.text = doc(peer('z.example')); // same length, same stamps
    let changedAt = -1;
    for (let i = 1; i <= FULL_READ_EVERY && changedAt < 0; i++)
      if ((await t.watcher.check()) === 'changed') changedAt = i;
    expect(changedAt).toBe(FULL_READ_EVERY);
  });

  it('a refused file is refused once; its fix is taken at the next poll', async () => {
    const t = statSetup('peers: [not, an, allowlist');
    expect(await t.watcher.check()).toBe('failed');
    expect(await t.watcher.check()).toBe('unchanged'); // same text: not reported twice
    t.file.text = doc(peer('a.example'));
    t.file.mtimeMs += 1;
    expect(await t.watcher.check()).toBe('changed');
    expect(t.updates).toHaveLength(1);
  });
});
