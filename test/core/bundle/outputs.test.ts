import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCa } from '../../../src/adapters/pki/index.js';
import {
  marshalBundleMap,
  parseBundle,
  parseBundleMap,
  RenderCache,
  renderOutput,
  renderX509BundleMap,
  TrustBundle,
} from '../../../src/core/bundle/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import { OutputError } from '../../../src/errors.js';
import { DAY, makePki, T0, type TestPki } from '../../support/fixtures.js';

let a: TestPki;
let b: TestPki;
let rsa: TestPki;
let ed: TestPki;

beforeAll(async () => {
  [a, b, rsa, ed] = await Promise.all([
    makePki('a.example'),
    makePki('b.example'),
    makePki('rsa.example', { keyAlg: 'rsa-2048' }),
    makePki('ed.example', { keyAlg: 'ed25519' }),
  ]);
});

function jwtOnly(p: TestPki): TrustBundle {
  return TrustBundle.create({
    trustDomain: p.td,
    jwtAuthorities: [...p.bundle.jwtAuthorities.values()],
    sequence: 3n,
  });
}

function keysOf(mapText: string, td: string): Record<string, unknown>[] {
  const doc = JSON.parse(mapText) as { trust_domains: Record<string, { keys: Record<string, unknown>[] }> };
  return doc.trust_domains[td]!.keys;
}

describe('renderX509BundleMap (gRPC / Envoy SPIFFE Bundle Map)', () => {
  it('carries X.509 authorities only: use x509-svid, one x5c, RSA or EC members, no kid', () => {
    const { text, trustDomains, omitted } = renderX509BundleMap([a.bundle, rsa.bundle]);
    expect(trustDomains).toEqual(['a.example', 'rsa.example']);
    expect(omitted).toEqual([]);
    const ec = keysOf(text, 'a.example');
    expect(ec).toHaveLength(1);
    expect(Object.keys(ec[0]!).sort()).toEqual(['crv', 'kty', 'use', 'x', 'x5c', 'y']);
    expect(ec[0]).toMatchObject({ use: 'x509-svid', kty: 'EC', crv: 'P-256' });
    expect(ec[0]!.x5c).toEqual([Buffer.from(a.root.der).toString('base64')]);
    const r = keysOf(text, 'rsa.example');
    expect(Object.keys(r[0]!).sort()).toEqual(['e', 'kty', 'n', 'use', 'x5c']);
    // The bundles' JWT authorities (four each) are not in the map.
    expect(text).not.toContain('jwt-svid');
    expect(text).not.toContain('"kid"');
  });

  it('round-trips through the strict parser to the same X.509 authorities', () => {
    const { text } = renderX509BundleMap([a.bundle, b.bundle]);
    const parsed = parseBundleMap(text);
    expect([...parsed.bundles.keys()]).toEqual(['a.example', 'b.example']);
    expect(parsed.bundles.get('a.example')!.x509Authorities.map((x) => x.sha256)).toEqual([
      a.bundle.x509Authorities[0]!.sha256,
    ]);
    expect(parsed.bundles.get('a.example')!.jwtAuthorities.size).toBe(0);
  });

  it('leaves out a trust domain with no X.509 authority instead of writing it empty', () => {
    const empty = TrustBundle.create({ trustDomain: TrustDomain.parse('revoked.example') });
    const { text, trustDomains, omitted } = renderX509BundleMap([a.bundle, jwtOnly(b), empty]);
    expect(trustDomains).toEqual(['a.example']);
    expect(Object.keys(JSON.parse(text).trust_domains)).toEqual(['a.example']);
    expect(omitted.map((o) => o.trustDomain)).toEqual(['b.example', 'revoked.example']);
    expect(omitted[0]!.reason).toMatch(/no X\.509 authority/);
  });

  it('leaves out authorities whose key grpc-go would refuse (Ed25519), and then the domain', () => {
    const mixed = TrustBundle.create({
      trustDomain: a.td,
      x509Authorities: [a.root.der, ed.root.der],
    });
    const { text, omitted, trustDomains } = renderX509BundleMap([mixed, ed.bundle]);
    expect(trustDomains).toEqual(['a.example']);
    expect(keysOf(text, 'a.example')).toHaveLength(1);
    expect(omitted).toEqual([
      {
        trustDomain: 'a.example',
        authority: ed.bundle.x509Authorities[0]!.sha256,
        reason: expect.stringMatching(/key type ed25519 is not RSA or EC/),
      },
      {
        trustDomain: 'ed.example',
        authority: ed.bundle.x509Authorities[0]!.sha256,
        reason: expect.stringMatching(/ed25519/),
      },
      { trustDomain: 'ed.example', reason: expect.stringMatching(/no X\.509 authority with an RSA or EC/) },
    ]);
  });

  it('is deterministic: input order and authority order do not change the bytes', async () => {
    const second = await createCa({
      trustDomain: a.td,
      notBefore: new Date(T0 - DAY),
      notAfter: new Date(T0 + DAY),
    });
    const ab = TrustBundle.create({ trustDomain: a.td, x509Authorities: [a.root.der, second.der] });
    const ba = TrustBundle.create({ trustDomain: a.td, x509Authorities: [second.der, a.root.der] });
    const one = renderX509BundleMap([ab, b.bundle, rsa.bundle]).text;
    const two = renderX509BundleMap([rsa.bundle, b.bundle, ba]).text;
    expect(two).toBe(one);
    expect(Object.keys(JSON.parse(one).trust_domains)).toEqual(['a.example', 'b.example', 'rsa.example']);
  });

  it('refuses a trust domain given twice (bundles are never merged)', () => {
    expect(() => renderX509BundleMap([a.bundle, a.bundle])).toThrow(TypeError);
  });

  it('renders an empty map for no bundles (Envoy refuses it: include the local domain)', () => {
    expect(renderX509BundleMap([]).text).toBe('{"trust_domains":{}}');
  });
});

describe('renderOutput', () => {
  it('grpc-bundle-map and envoy-bundle-map are the same bytes, newline-terminated', () => {
    const g = renderOutput('grpc-bundle-map', { bundles: [a.bundle, b.bundle] });
    const e = renderOutput('envoy-bundle-map', { bundles: [b.bundle, a.bundle] });
    expect(e.text).toBe(g.text);
    expect(g.text.endsWith('}\n')).toBe(true);
    expect(g.trustDomains).toEqual(['a.example', 'b.example']);
  });

  it('bundle-map is the full map as /v1/bundles serves it (JWT authorities and sequence kept)', () => {
    const out = renderOutput('bundle-map', { bundles: [b.bundle, jwtOnly(a)] });
    expect(out.text).toBe(`${marshalBundleMap([jwtOnly(a), b.bundle])}\n`);
    expect(out.trustDomains).toEqual(['a.example', 'b.example']);
    expect(parseBundleMap(out.text).bundles.get('a.example')!.sequence).toBe(3n);
  });

  it('bundle is one trust domain’s SPIFFE bundle', () => {
    const out = renderOutput('bundle', { bundles: [a.bundle, b.bundle], trustDomain: 'b.example' });
    const parsed = parseBundle(b.td, out.text).bundle;
    expect(parsed.x509Authorities).toHaveLength(1);
    expect(parsed.jwtAuthorities.size).toBe(4);
    expect(parsed.sequence).toBe(1n);
  });

  it('pem is the trust domain’s X.509 authorities, sorted', async () => {
    const second = await createCa({
      trustDomain: a.td,
      notBefore: new Date(T0 - DAY),
      notAfter: new Date(T0 + DAY),
    });
    const one = TrustBundle.create({ trustDomain: a.td, x509Authorities: [a.root.der, second.der] });
    const two = TrustBundle.create({ trustDomain: a.td, x509Authorities: [second.der, a.root.der] });
    const p1 = renderOutput('pem', { bundles: [one], trustDomain: 'a.example' }).text;
    expect(renderOutput('pem', { bundles: [two], trustDomain: 'a.example' }).text).toBe(p1);
    const blocks = p1.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n/g)!;
    expect(blocks).toHaveLength(2);
    expect(blocks.map((x) => new X509Certificate(x).fingerprint256).sort()).toEqual(
      [a.root.certificate.fingerprint256, second.certificate.fingerprint256].sort(),
    );
  });

  it('jwks is the JWT authorities as a JWK Set for JWT libraries (use sig, sorted by kid)', () => {
    const out = renderOutput('jwks', { bundles: [a.bundle], trustDomain: 'a.example' });
    const keys = (JSON.parse(out.text) as { keys: { kid: string; use: string; x5c?: unknown }[] }).keys;
    expect(keys.map((k) => k.kid)).toEqual([...a.bundle.jwtAuthorities.keys()].sort());
    expect(keys.every((k) => k.use === 'sig' && k.x5c === undefined)).toBe(true);
    expect(out.text).not.toContain('spiffe_');
  });

  it('refuses an unknown format and a per-domain format without a trust domain (ERR_OUTPUT_FORMAT)', () => {
    for (const call of [
      () => renderOutput('yaml', { bundles: [a.bundle] }),
      () => renderOutput('pem', { bundles: [a.bundle] }),
    ]) {
      expect(call).toThrow(OutputError);
      try {
        call();
      } catch (err) {
        expect((err as OutputError).code).toBe('ERR_OUTPUT_FORMAT');
      }
    }
  });

  it('refuses a trust domain it holds no bundle for (ERR_OUTPUT_TRUST_DOMAIN)', () => {
    expect(() => renderOutput('bundle', { bundles: [a.bundle], trustDomain: 'nope.example' })).toThrow(
      expect.objectContaining({ code: 'ERR_OUTPUT_TRUST_DOMAIN' }),
    );
  });
});

describe('RenderCache', () => {
  it('renders the same bytes as without it, and reuses a bundle’s rendering by identity', () => {
    const cache = new RenderCache();
    for (const format of ['grpc-bundle-map', 'envoy-bundle-map', 'bundle-map'] as const) {
      const plain = renderOutput(format, { bundles: [a.bundle, b.bundle, rsa.bundle] });
      expect(renderOutput(format, { bundles: [a.bundle, b.bundle, rsa.bundle] }, cache)).toEqual(plain);
      expect(renderOutput(format, { bundles: [rsa.bundle, a.bundle, b.bundle] }, cache)).toEqual(plain);
    }
    for (const format of ['bundle', 'pem', 'jwks'] as const) {
      const input = { bundles: [a.bundle], trustDomain: 'a.example' };
      expect(renderOutput(format, input, cache).text).toBe(renderOutput(format, input).text);
    }
    let made = 0;
    cache.get(a.bundle, 'probe', () => ++made);
    cache.get(a.bundle, 'probe', () => ++made);
    cache.get(b.bundle, 'probe', () => ++made);
    expect(made).toBe(2);
  });
});
