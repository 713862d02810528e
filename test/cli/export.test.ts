import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportCommand } from '../../src/cli/export-command.js';
import { runCli } from '../../src/cli/index.js';
import { marshalBundleMap, parseBundleMap, renderOutput, TrustBundle } from '../../src/core/bundle/index.js';
import { StateStore } from '../../src/engine/federation/state-store.js';
import { capture } from '../adapters/admin/cli-capture.js';
import { makePki, type TestPki } from '../support/fixtures.js';

let local: TestPki;
let a: TestPki;
let b: TestPki;
let jwtOnly: TrustBundle;
let mapBody: string;
let stateDir: string;

beforeAll(async () => {
  [local, a, b] = await Promise.all([makePki('local.example'), makePki('a.example'), makePki('b.example')]);
  jwtOnly = TrustBundle.create({
    trustDomain: a.td,
    jwtAuthorities: [...a.bundle.jwtAuthorities.values()],
    sequence: 18446744073709551615n,
  });
  // What a running broker's /v1/bundles serves: the local bundle and every accepted peer.
  mapBody = marshalBundleMap([local.bundle, jwtOnly, b.bundle]);
  stateDir = mkdtempSync(join(tmpdir(), 'export-state-'));
  const store = new StateStore({ dir: stateDir });
  await store.init();
  await store.saveAccepted(a.bundle);
  await store.saveAccepted(b.bundle, { etag: '"7"' });
});
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

const admin = () => ({ status: 200, body: mapBody });
const run = (args: string[], answer: Parameters<typeof capture>[2] = admin) =>
  capture(exportCommand, args, answer);

describe('spiffe-broker export from a running broker (GET /v1/bundles)', () => {
  it('grpc-bundle-map: the same bytes the file output writes; JWT-only a.example left out', async () => {
    const r = await run(['--format', 'grpc-bundle-map']);
    expect(r.code).toBe(0);
    expect(r.calls).toEqual([{ target: { url: new URL('http://127.0.0.1:8089') }, path: '/v1/bundles' }]);
    expect(r.stdout).toBe(
      renderOutput('grpc-bundle-map', { bundles: [local.bundle, jwtOnly, b.bundle] }).text,
    );
    expect([...parseBundleMap(r.stdout).bundles.keys()]).toEqual(['b.example', 'local.example']);
  });

  it('--json names the domains and what was left out', async () => {
    const r = await run(['--format', 'envoy-bundle-map', '--json', '--admin', 'http://127.0.0.1:9999']);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({
      ok: true,
      format: 'envoy-bundle-map',
      trustDomains: ['b.example', 'local.example'],
      omitted: [{ trustDomain: 'a.example', reason: expect.stringMatching(/no X\.509 authority/) }],
    });
    expect(r.calls[0]!.target).toEqual({ url: new URL('http://127.0.0.1:9999') });
  });

  it('bundle-map keeps a uint64 sequence exactly; pem and jwks are one trust domain', async () => {
    const map = await run(['--format', 'bundle-map']);
    expect(map.stdout).toContain('"spiffe_sequence":18446744073709551615');
    const pem = await run(['--format', 'pem', '--trust-domain', 'spiffe://b.example']);
    expect(pem).toMatchObject({ code: 0, stdout: b.root.pem });
    const jwks = await run(['--format', 'jwks', '--trust-domain', 'a.example']);
    expect(JSON.parse(jwks.stdout).keys).toHaveLength(4);
  });

  it('oidc and cluster-trust-bundle use the OIDC and Kubernetes renderers', async () => {
    const oidc = await run([
      '--format',
      'oidc',
      '--trust-domain',
      'a.example',
      '--issuer',
      'https://oidc.a.example',
    ]);
    expect(JSON.parse(oidc.stdout)).toMatchObject({
      issuer: 'https://oidc.a.example',
      jwks_uri: 'https://oidc.a.example/keys',
    });
    const noIssuer = await run(['--format', 'oidc', '--trust-domain', 'a.example']);
    expect(noIssuer.code).toBe(2);
    const ctb = await run(['--format', 'cluster-trust-bundle']);
    const list = JSON.parse(ctb.stdout);
    expect(list.kind).toBe('List');
    expect(list.items.map((i: { metadata: { name: string } }) => i.metadata.name)).toEqual([
      'spiffe-broker.dev:federation:b.example',
      'spiffe-broker.dev:federation:local.example',
    ]);
    expect(list.items[0].spec).toEqual({
      signerName: 'spiffe-broker.dev/federation',
      trustBundle: b.root.pem,
    });
  });

  it('an unknown format is a usage error: ERR_OUTPUT_FORMAT, exit 2, nothing fetched', async () => {
    const r = await run(['--format', 'yaml', '--json']);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, code: 'ERR_OUTPUT_FORMAT' });
    expect(r.calls).toEqual([]);
    const missing = await run(['--format', 'pem']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/ERR_OUTPUT_FORMAT/);
    expect((await run([])).code).toBe(2);
  });

  it('an unknown trust domain: ERR_OUTPUT_TRUST_DOMAIN, exit 1', async () => {
    for (const format of ['bundle', 'pem', 'grpc-bundle-map']) {
      const r = await run(['--format', format, '--trust-domain', 'nope.example', '--json']);
      expect(r.code).toBe(1);
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, code: 'ERR_OUTPUT_TRUST_DOMAIN' });
    }
  });

  it('an unreachable broker: ERR_API_CONNECT, exit 1, with a hint', async () => {
    const r = await run(['--format', 'bundle-map'], () => {
      throw new Error('connect ECONNREFUSED');
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_API_CONNECT[\s\S]*hint: no broker answered/);
  });

  it('is a registered command', async () => {
    let out = '';
    const code = await runCli(['export', '--help'], {
      stdout: (t) => {
        out += t;
      },
      stderr: () => {},
      readFile: async () => new Uint8Array(),
      now: () => 0,
      env: {},
      signal: new AbortController().signal,
    });
    expect(code).toBe(0);
    expect(out).toMatch(/spiffe-broker export --format <format>/);
  });
});

describe('spiffe-broker export --state-dir', () => {
  it('renders the last-known-good bundles of a state directory', async () => {
    const r = await run(['--format', 'bundle-map', '--state-dir', stateDir], () => {
      throw new Error('the admin API must not be asked');
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${marshalBundleMap([a.bundle, b.bundle])}\n`);
    const pem = await run(['--format', 'pem', '--trust-domain', 'a.example', '--state-dir', stateDir]);
    expect(pem.stdout).toBe(a.root.pem);
    const unknown = await run([
      '--format',
      'pem',
      '--trust-domain',
      'local.example',
      '--state-dir',
      stateDir,
    ]);
    expect(unknown.code).toBe(1);
  });

  it('reports a corrupt state file and changes nothing in the directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'export-corrupt-'));
    try {
      const store = new StateStore({ dir });
      await store.init();
      await store.saveAccepted(b.bundle);
      writeFileSync(join(dir, 'a.example.bundle.json'), '{"version":1,');
      const before = readdirSync(dir).sort();
      const r = await run(['--format', 'grpc-bundle-map', '--state-dir', dir, '--json']);
      expect(r.code).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc.trustDomains).toEqual(['b.example']);
      expect(doc.problems).toEqual([
        expect.stringMatching(/a\.example\.bundle\.json[\s\S]*ERR_STATE_CORRUPT/),
      ]);
      expect(r.stderr).toMatch(/warning: .*could not be quarantined/);
      expect(readdirSync(dir).sort()).toEqual(before);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses --state-dir together with --admin', async () => {
    const r = await run(['--format', 'pem', '--state-dir', stateDir, '--admin', 'http://127.0.0.1:1']);
    expect(r.code).toBe(2);
  });
});
