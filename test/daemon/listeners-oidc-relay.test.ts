/**
 * The daemon's wiring of the OIDC discovery listener (`oidc:`) and of the per-peer relay on the
 * bundle endpoint (allowlist `relay: true`), through the listener functions the daemon runs.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBundle } from '../../src/adapters/endpoint/local-bundle.js';
import { BrokerMetrics, createMetricsRegistry } from '../../src/adapters/metrics/broker-metrics.js';
import { createX509Svid } from '../../src/adapters/pki/index.js';
import { SpiffeId } from '../../src/core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../../src/core/spiffeid/trust-domain.js';
import {
  type ListenerContext,
  oidcStatus,
  relayProvider,
  relayStatus,
  serveOidc,
  startEndpoint,
} from '../../src/daemon/listeners.js';
import { parseAllowlist, parseBrokerConfig } from '../../src/engine/config/index.js';
import { FederatedBundleStore } from '../../src/engine/federation/bundle-store.js';
import { systemClock } from '../../src/platform/clock.js';
import { nullLogger } from '../../src/platform/logger.js';
import {
  FakeBundleGetter,
  LOCAL_TD,
  makeBundle,
  makeCa,
  NOT_AFTER,
  NOT_BEFORE,
} from '../adapters/endpoint/fixtures.js';

const HEAD = `apiVersion: spiffe-broker.dev/v1
kind: BrokerConfig
trustDomain: ${LOCAL_TD.name}
stateDir: /var/lib/b
spire:
  servers:
    - name: main
      address: unix:///run/spire.sock
allowlist: { file: /etc/al.yaml }
`;
const allowlist = parseAllowlist(
  `apiVersion: spiffe-broker.dev/v1
kind: Allowlist
peers:
  - trustDomain: relayed.test
    bundleEndpoint: { urls: [https://relayed.test/b], profile: https_web }
    relay: true
    oidcIssuer: https://oidc.relayed.test
  - trustDomain: plain.test
    bundleEndpoint: { urls: [https://plain.test/b], profile: https_web }
`,
  { localTrustDomain: LOCAL_TD, serverNames: ['main'] },
);

const registry = createMetricsRegistry();
const metrics = new BrokerMetrics({ registry, clock: systemClock });

function context(yaml: string): ListenerContext {
  return {
    config: parseBrokerConfig(yaml),
    clock: systemClock,
    logger: nullLogger,
    metrics,
    readFile: async (p) => new Uint8Array(await readFile(p)),
    source: undefined as never,
  };
}

function get(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    httpsGet(url, { ca }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

describe('daemon listeners: relay and OIDC discovery', () => {
  let dir: string;
  let caPem: string;
  let local: LocalBundle;
  const store = new FederatedBundleStore();

  beforeAll(async () => {
    dir = await mkdtemp('/tmp/lsn-');
    const ca = await makeCa(TrustDomain.parse('web-ca.test'));
    const cert = await createX509Svid({
      id: SpiffeId.parse(`spiffe://${LOCAL_TD.name}/web`),
      issuer: ca,
      notBefore: NOT_BEFORE,
      notAfter: NOT_AFTER,
      dnsNames: ['localhost'],
    });
    caPem = ca.pem;
    await writeFile(join(dir, 'tls.crt'), cert.pem);
    await writeFile(join(dir, 'tls.key'), cert.privateKeyPem!);
    local = new LocalBundle({ source: new FakeBundleGetter(await makeBundle()), trustDomain: LOCAL_TD });
    await local.refresh();
    store.set(await makeBundle({ td: TrustDomain.parse('relayed.test') }));
    store.set(await makeBundle({ td: TrustDomain.parse('plain.test') }));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('relayProvider relays only peers with relay: true, and reports changes by trust domain', async () => {
    const relay = relayProvider(store, () => allowlist.peers);
    expect(relay.bundle('relayed.test')).toBe(store.get('relayed.test'));
    expect(relay.bundle('plain.test')).toBeUndefined();
    const seen: string[] = [];
    const off = relay.subscribe((td) => seen.push(td));
    store.set(await makeBundle({ td: TrustDomain.parse('relayed.test'), sequence: 9n }));
    store.delete('plain.test');
    store.set(await makeBundle({ td: TrustDomain.parse('plain.test') }));
    off();
    expect(seen).toEqual(['relayed.test', 'plain.test', 'plain.test']);
  });

  it('startEndpoint serves the relay of relay-enabled peers on the bundle endpoint', async () => {
    const ctx = context(
      `${HEAD}endpoint: { listen: 127.0.0.1:0, profile: https_web, certFile: ${dir}/tls.crt, keyFile: ${dir}/tls.key }\n`,
    );
    const stop = new AbortController();
    const ep = await startEndpoint(ctx, local, store, stop.signal, () => allowlist.peers);
    try {
      const base = `https://localhost:${ep!.port}`;
      const ok = await get(`${base}/bundles/relayed.test`, caPem);
      expect(ok.status).toBe(200);
      expect(JSON.parse(ok.body).keys.length).toBeGreaterThan(0);
      const hidden = await get(`${base}/bundles/plain.test`, caPem);
      expect(hidden.status).toBe(404);
      expect(JSON.parse(hidden.body).code).toBe('ERR_ENDPOINT_RELAY_NOT_FOUND');
      const text = await registry.metrics();
      expect(text).toContain('spiffe_broker_relay_requests_total{result="served"} 1');
      expect(text).toContain('spiffe_broker_relay_requests_total{result="not_found"} 1');
    } finally {
      stop.abort();
      await ep?.closed;
    }
  });

  it('serveOidc serves discovery over HTTPS from the oidc: section, and nothing without it', async () => {
    const ctx = context(
      `${HEAD}oidc: { listen: 127.0.0.1:0, issuer: https://localhost, certFile: ${dir}/tls.crt, keyFile: ${dir}/tls.key }\n`,
    );
    const stop = new AbortController();
    let url: string | undefined;
    const running = serveOidc(ctx, local, stop.signal, (u) => {
      url = u;
    });
    try {
      for (let i = 0; i < 400 && !url; i++) await new Promise((r) => setTimeout(r, 5));
      const port = new URL(url!).port;
      const res = await get(`https://localhost:${port}/.well-known/openid-configuration`, caPem);
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body)).toMatchObject({
        issuer: 'https://localhost',
        jwks_uri: 'https://localhost/keys',
      });
      // While discovery is served the local bundle is polled at the fast cadence.
      expect(local.watchers()).toBe(1);
      const keys = await get(`https://localhost:${port}/keys`, caPem);
      expect(JSON.parse(keys.body).keys.map((k: { kid: string }) => k.kid)).toEqual([
        ...local.current()!.bundle.jwtAuthorities.keys(),
      ]);
      const text = await registry.metrics();
      expect(text).toContain('spiffe_broker_oidc_requests_total{document="discovery",result="served"} 1');
      expect(text).toContain('spiffe_broker_oidc_requests_total{document="jwks",result="served"} 1');
    } finally {
      stop.abort();
      await running;
    }
    expect(local.watchers()).toBe(0);
    // No oidc: section → the task returns at once.
    await serveOidc(context(HEAD), local, new AbortController().signal, () => {
      throw new Error('must not listen');
    });
  });
  it('status: relay base and relayed domains; OIDC issuer, discovery URL, served keys and peers', async () => {
    expect(relayStatus(allowlist.peers, store, 'https://127.0.0.1:8443/')).toEqual({
      base: 'https://127.0.0.1:8443/bundles/',
      trustDomains: [
        { trustDomain: 'relayed.test', accepted: true, url: 'https://127.0.0.1:8443/bundles/relayed.test' },
      ],
    });
    expect(relayStatus(allowlist.peers, new FederatedBundleStore())).toEqual({
      trustDomains: [{ trustDomain: 'relayed.test', accepted: false }],
    });
    expect(oidcStatus(context(HEAD).config, local, allowlist.peers, store)).toBeUndefined();
    const cfg = context(`${HEAD}oidc: { listen: 127.0.0.1:0, issuer: https://oidc.local.test }\n`).config;
    expect(oidcStatus(cfg, local, allowlist.peers, store, 'http://127.0.0.1:9999')).toEqual({
      url: 'http://127.0.0.1:9999',
      issuer: 'https://oidc.local.test',
      discovery: 'https://oidc.local.test/.well-known/openid-configuration',
      jwksUri: 'https://oidc.local.test/keys',
      keys: [...local.current()!.bundle.jwtAuthorities.keys()],
      localVersion: local.current()!.version,
      peers: [{ trustDomain: 'relayed.test', issuer: 'https://oidc.relayed.test', accepted: true }],
    });
  });
});
