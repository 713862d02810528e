import { describe, expect, it } from 'vitest';
import { createCa } from '../../../src/adapters/pki/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import {
  type AllowlistUpdate,
  AllowlistWatcher,
  ConfigValidationError,
} from '../../../src/engine/config/index.js';
import type { ConfigError } from '../../../src/errors.js';

const WITH_CA = `apiVersion: spiffe-broker.dev/v1
kind: Allowlist
peers:
  - trustDomain: a.example
    bundleEndpoint:
      urls: [https://a.example/]
      profile: https_web
      caFile: /etc/ca.pem
`;
const PLAIN = `apiVersion: spiffe-broker.dev/v1
kind: Allowlist
peers: []
`;

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

function setup(text: string) {
  const files = new Map<string, string>([['/al.yaml', text]]);
  const updates: AllowlistUpdate[] = [];
  const errors: ConfigError[] = [];
  const reads: string[] = [];
  const read = async (p: string): Promise<string> => {
    reads.push(p);
    const t = files.get(p);
    if (t === undefined)
      throw Object.assign(new Error(`ENOENT: no such file, open '${p}'`), { code: 'ENOENT' });
    return t;
  };
  const watcher = new AllowlistWatcher(
    {
      path: '/al.yaml',
      onChange: (u) => {
        updates.push(u);
      },
      onError: (e) => {
        errors.push(e);
      },
      referencedFiles: { readFile: async (p) => new TextEncoder().encode(await read(p)) },
    },
    { fs: { readFile: read }, sleep: async () => undefined },
  );
  return { files, updates, errors, reads, watcher };
}

describe('AllowlistWatcher with referencedFiles (the daemon’s start-up and reload check)', () => {
  it('load() refuses an allowlist whose caFile is missing, with ERR_CONFIG_FILE at the key', async () => {
    const { watcher } = setup(WITH_CA);
    const err = await watcher.load().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigValidationError);
    expect(err).toMatchObject({ code: 'ERR_CONFIG_FILE' });
    expect((err as ConfigValidationError).issues).toEqual([
      expect.objectContaining({
        line: 8,
        path: '/peers/0/bundleEndpoint/caFile',
        message: 'caFile /etc/ca.pem does not exist',
      }),
    ]);
  });

  it('a reload naming a missing file keeps the previous allowlist, reports once, and applies it once the file exists', async () => {
    const { files, updates, errors, watcher } = setup(PLAIN);
    const first = await watcher.load();
    files.set('/al.yaml', WITH_CA);
    expect(await watcher.check()).toBe('failed');
    expect(watcher.current).toBe(first);
    expect(errors.map((e) => e.code)).toEqual(['ERR_CONFIG_FILE']);
    // Same text, same missing file: checked again, not reported again.
    expect(await watcher.check()).toBe('failed');
    expect(errors).toHaveLength(1);
    // The operator adds the file; the unchanged allowlist now takes effect.
    const ca = await createCa({
      trustDomain: TrustDomain.parse('a.example'),
      notBefore: new Date('2026-01-01T00:00:00Z'),
      notAfter: new Date('2036-01-01T00:00:00Z'),
    });
    files.set('/etc/ca.pem', ca.pem);
    expect(await watcher.check()).toBe('changed');
    await settle();
    expect(updates).toHaveLength(1);
    expect(updates[0]!.diff.added.map((p) => p.trustDomain.name)).toEqual(['a.example']);
    expect(await watcher.check()).toBe('unchanged');
  });

  it('without referencedFiles nothing but the allowlist is read (unchanged behaviour)', async () => {
    const reads: string[] = [];
    const w = new AllowlistWatcher(
      { path: '/al.yaml', onChange: () => undefined, onError: () => undefined },
      {
        fs: {
          readFile: async (p) => {
            reads.push(p);
            return WITH_CA;
          },
        },
      },
    );
    expect((await w.load()).peers).toHaveLength(1);
    expect(reads).toEqual(['/al.yaml']);
  });
});
