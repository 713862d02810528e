import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { get } from 'node:https';
import { describe, expect, it } from 'vitest';
import { parseBundle } from '../../src/core/bundle/codec.js';
import { OUTPUT_FORMATS } from '../../src/core/bundle/outputs.js';
import type { TrustBundle } from '../../src/core/bundle/trust-bundle.js';
import { SpiffeId } from '../../src/core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../../src/core/spiffeid/trust-domain.js';
import { fetchPeerBundle } from '../../src/engine/federation/fetch.js';
import { runCliCapture } from '../support/cli.js';

interface ReadyLine {
  ready: boolean;
  spire: string;
  spireServerBin: string | null;
  trustDomains: {
    name: string;
    bundleEndpoint: string;
    profile: string;
    endpointSpiffeId: string;
    admin: string;
    spireSockets: string[];
    outputs: { files: Record<string, string>; relayBase: string; oidcDiscovery: string; oidcCa: string };
  }[];
}

/** GET over HTTPS trusting only `caPem` (IPv4: the lab listens on 127.0.0.1). */
function httpsJson(url: string, caPem: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    get(url, { ca: caPem, family: 4 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`${url}: ${res.statusCode} ${body}`));
        else resolve(JSON.parse(body) as Record<string, unknown>);
      });
    }).on('error', reject);
  });
}

const sha = (b: TrustBundle) => b.x509Authorities.map((a) => a.sha256).sort();
const kids = (b: TrustBundle) => [...b.jwtAuthorities.keys()].sort();

/**
 * What anyone can check of a running lab with only its ready line: every file output lists the
 * other two domains, the relay serves each peer's accepted bundle, and OIDC discovery over HTTPS
 * (trusting the lab's CA file) serves the domain's JWT keys.
 */
async function checkOutputsFromOutside(line: ReadyLine): Promise<void> {
  const names = line.trustDomains.map((d) => d.name);
  /** `td`'s bundle as `holder`'s broker accepted it, read from `holder`'s bundle file output. */
  const held = async (holder: ReadyLine['trustDomains'][0], td: string) =>
    parseBundle(
      TrustDomain.parse(td),
      await readFile(holder.outputs.files.bundle!.replace('<trust domain>', td)),
    ).bundle;
  for (const d of line.trustDomains) {
    const others = names.filter((n) => n !== d.name);
    const o = d.outputs;
    expect(Object.keys(o.files).sort()).toEqual([...OUTPUT_FORMATS].sort());
    // 1. Files: the three maps list exactly the two peers; each peer has its per-domain files.
    for (const f of ['grpc-bundle-map', 'envoy-bundle-map', 'bundle-map']) {
      const map = JSON.parse(await readFile(o.files[f]!, 'utf8')) as { trust_domains: object };
      expect(Object.keys(map.trust_domains).sort(), `${d.name} ${f}`).toEqual(others);
    }
    for (const p of others) {
      expect(await readFile(o.files.pem!.replace('<trust domain>', p), 'utf8')).toContain(
        '-----BEGIN CERTIFICATE-----',
      );
      const jwks = JSON.parse(await readFile(o.files.jwks!.replace('<trust domain>', p), 'utf8')) as {
        keys: { kid: string }[];
      };
      expect(jwks.keys.map((k) => k.kid).sort()).toEqual(kids(await held(d, p)));
      expect(existsSync(o.files.bundle!.replace('<trust domain>', p))).toBe(true);
    }
    // 2. Relay: https_spiffe, the server authenticated as d's broker with d's bundle as a peer holds it.
    expect(o.relayBase).toBe(`${d.bundleEndpoint}bundles/`);
    const dBundle = await held(line.trustDomains.find((x) => x.name !== d.name)!, d.name);
    for (const p of others) {
      const got = await fetchPeerBundle({
        trustDomain: TrustDomain.parse(p),
        urls: [`${o.relayBase}${p}`],
        profile: {
          kind: 'https_spiffe',
          endpointSpiffeId: SpiffeId.parse(d.endpointSpiffeId),
          bundles: dBundle,
        },
      });
      if (got.kind !== 'bundle') throw new Error('relay answered not-modified to a plain GET');
      const want = await held(d, p);
      expect(got.bundle.trustDomain.name).toBe(p);
      expect(sha(got.bundle)).toEqual(sha(want));
      expect(kids(got.bundle)).toEqual(kids(want));
      expect(got.bundle.sequence).toBe(want.sequence);
    }
    // 3. OIDC discovery over HTTPS with the lab's CA; its JWKS holds d's JWT keys, SPIFFE members stripped.
    const ca = await readFile(o.oidcCa, 'utf8');
    const disc = await httpsJson(o.oidcDiscovery, ca);
    expect(`${disc.issuer}/.well-known/openid-configuration`).toBe(o.oidcDiscovery);
    const jwks = (await httpsJson(String(disc.jwks_uri), ca)) as { keys: Record<string, unknown>[] };
    expect(jwks.keys.map((k) => k.kid).sort()).toEqual(kids(dBundle));
    expect(jwks.keys.length).toBeGreaterThan(0);
    for (const k of jwks.keys) {
      expect(k.use).toBe('sig');
      expect(Object.keys(k).filter((m) => m.startsWith('spiffe_'))).toEqual([]);
    }
  }
}

describe('spiffe-broker lab', () => {
  it('--json prints one ready line once federated, runs until stopped, then removes its temp dirs; every output checks from outside', async () => {
    const stop = new AbortController();
    let stdout = '';
    let ready: (line: string) => void = () => undefined;
    const readyLine = new Promise<string>((r) => {
      ready = r;
    });
    const running = runCliCapture(['lab', '--json', '--spire', 'emulator'], {
      io: {
        signal: stop.signal,
        stdout: (t) => {
          stdout += t;
          if (t.includes('"ready"')) ready(t);
        },
      },
    });
    let line: ReadyLine | undefined;
    try {
      const first = await Promise.race([
        readyLine,
        running.then((r) => {
          throw new Error(`lab ended before ready (${r.code}): ${stdout}\n${r.stderr}`);
        }),
      ]);
      line = JSON.parse(first.trim().split('\n')[0]!) as ReadyLine;
      await checkOutputsFromOutside(line);
    } finally {
      stop.abort();
    }
    const r = await running;
    expect(r.code, `stdout: ${stdout}\nstderr: ${r.stderr}`).toBe(0);
    expect(line.ready).toBe(true);
    expect(line.spire).toBe('emulator');
    expect(line.spireServerBin).toBeNull();
    expect(line.trustDomains.map((d) => d.name)).toEqual(['alpha.lab', 'beta.lab', 'gamma.lab']);
    for (const d of line.trustDomains) {
      expect(d.bundleEndpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
      expect(d.admin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(d.profile).toBe('https_spiffe');
      expect(d.endpointSpiffeId).toBe(`spiffe://${d.name}/spiffe-broker`);
      expect(existsSync(d.spireSockets[0]!)).toBe(false); // removed on stop
      expect(existsSync(d.outputs.oidcCa)).toBe(false);
    }
  }, 60_000);

  it('narrates the demo: rotation, mTLS, outage (STALE, still trusted), revocation', async () => {
    const r = await runCliCapture(['lab', '--spire', 'emulator']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/reached alpha\.lab's and gamma\.lab's SPIRE servers in \d+ ms/);
    expect(r.stdout).toContain('frontend -> backend: backend served spiffe://beta.lab/frontend');
    expect(r.stdout).toMatch(/beta\.lab\/intruder -> backend: refused/);
    expect(r.stdout).toMatch(/reports gamma\.lab STALE \(ERR_PEER_STALE\)/);
    expect(r.stdout).toContain('still trusted.');
    expect(r.stdout).toMatch(/beta\.lab's bundle was deleted from alpha\.lab's SPIRE server/);
    expect(r.stdout).toMatch(/backend now: refused/);
  }, 90_000);
});
