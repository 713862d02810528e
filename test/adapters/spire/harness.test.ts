/**
 * The real-SPIRE harness itself: several spire-server processes at once, health, CLI helpers,
 * clean stop. Skips loudly without the binary (fails with CI=true).
 */
import { existsSync } from 'node:fs';
import https from 'node:https';
import { afterAll, describe, expect, it } from 'vitest';
import { SpireServerClient } from '../../../src/adapters/spire/client.js';
import { parseBundle } from '../../../src/core/bundle/codec.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import {
  realSpireOrSkip,
  type SpireServerInstance,
  startSpireServer,
  stopAllSpireServers,
} from '../../support/spire-harness.js';

const haveSpire = await realSpireOrSkip('spire-harness');

describe.skipIf(!haveSpire)('spire-harness (real spire-server)', () => {
  let a: SpireServerInstance;
  let b: SpireServerInstance;

  afterAll(async () => {
    await stopAllSpireServers();
  });

  it('starts two servers at once, each healthy on its own socket', async () => {
    [a, b] = await Promise.all([
      startSpireServer({ trustDomain: 'harness-a.test', bundleEndpoint: true }),
      startSpireServer({ trustDomain: 'harness-b.test' }),
    ]);
    expect(Buffer.byteLength(a.socketPath)).toBeLessThan(100);
    expect(a.socketPath).not.toBe(b.socketPath);
    expect(a.tcpPort).not.toBe(b.tcpPort);
    for (const s of [a, b]) {
      const c = new SpireServerClient({ address: s.address });
      expect(await c.healthCheck()).toBe('SERVING');
      expect((await c.getBundle()).trustDomain.name).toBe(s.trustDomain);
      c.close();
    }
    expect((await a.cli(['healthcheck'])).stdout).toContain('Server is healthy.');
  });

  it('serves the SPIFFE bundle endpoint when asked, with the configured refresh hint', async () => {
    expect(a.bundleEndpointUrl).toBe(`https://127.0.0.1:${a.bundleEndpointPort}`);
    expect(b.bundleEndpointUrl).toBeUndefined();
    // Server authentication (https_spiffe) is the fetcher's business; here only the document.
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get(a.bundleEndpointUrl!, { rejectUnauthorized: false }, (res) => {
          let data = '';
          res.on('data', (d: Buffer) => {
            data += d.toString();
          });
          res.on('end', () => resolve(data));
        })
        .on('error', reject);
    });
    const doc = JSON.parse(body) as { keys: unknown[]; spiffe_refresh_hint: number };
    expect(doc.spiffe_refresh_hint).toBe(60);
    expect(doc.keys.length).toBeGreaterThanOrEqual(2);
  });

  it('exchanges bundles with the CLI (bundle show / bundle set / bundle list)', async () => {
    const json = await b.bundleShow();
    const parsed = parseBundle(TrustDomain.parse('harness-b.test'), json);
    expect(parsed.bundle.x509Authorities.length).toBeGreaterThan(0);
    await a.bundleSet('harness-b.test', json);
    const c = new SpireServerClient({ address: a.address });
    const stored = await c.getFederatedBundle('harness-b.test');
    expect(stored.x509Authorities.map((x) => x.sha256)).toEqual(
      parsed.bundle.x509Authorities.map((x) => x.sha256),
    );
    c.close();
    expect(await a.bundleList()).toContain('harness-b.test');
  });

  it('prepares and activates local authorities, and mints X509-SVIDs', async () => {
    const c = new SpireServerClient({ address: a.address });
    const before = await c.getBundle();
    const id = await a.prepareAuthority('x509');
    expect(id).toMatch(/^[0-9a-f]{40}$/);
    expect((await c.getBundle()).sequence).toBe(before.sequence + 1n);
    await a.activateAuthority('x509', id);
    const minted = await a.x509Mint('spiffe://harness-a.test/admin', '10m');
    expect(minted.certChainPem).toContain('BEGIN CERTIFICATE');
    expect(minted.privateKeyPem).toContain('PRIVATE KEY');
    expect(minted.bundlePem).toContain('BEGIN CERTIFICATE');
    c.close();
  });

  it('reports a failing CLI command with its exit code instead of throwing', async () => {
    const r = await a.cli(['bundle', 'show', '-format', 'nope']);
    expect(r.code).not.toBe(0);
  });

  it('stops with SIGTERM and removes its temp dir', async () => {
    const dir = b.dir;
    const pid = b.pid;
    await b.stop();
    expect(existsSync(dir)).toBe(false);
    expect(() => process.kill(pid, 0)).toThrow();
  });

  it('fails fast with the log tail when the config is refused', async () => {
    await expect(startSpireServer({ trustDomain: 'Not A Valid TD', readyTimeoutMs: 20_000 })).rejects.toThrow(
      /exited early|not healthy/,
    );
  });
});
