import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  defaultJwksUri,
  discoveryUrl,
  issuerProblem,
  renderJwks,
  renderOidcDiscovery,
  signingAlgorithms,
} from '../../../src/core/bundle/index.js';
import { jwtAuthority, TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { keyPairSync } from '../../../src/platform/keygen.js';
import { makePki, signJws, svidClaims } from '../../support/fixtures.js';

describe('renderJwks', () => {
  it('publishes every JWT authority as a sig key with kid and alg, and nothing SPIFFE-specific', async () => {
    const pki = await makePki('oidc.test');
    const jwks = JSON.parse(renderJwks(pki.bundle)) as { keys: Record<string, unknown>[] };
    expect(Object.keys(jwks)).toEqual(['keys']);
    expect(jwks.keys.map((k) => k.kid)).toEqual([...pki.bundle.jwtAuthorities.keys()]);
    expect(jwks.keys.map((k) => k.alg)).toEqual(['ES256', 'ES384', 'ES512', 'RS256']);
    for (const k of jwks.keys) {
      expect(k.use).toBe('sig');
      expect(k).not.toHaveProperty('x5c');
      expect(Object.keys(k).filter((m) => m.startsWith('spiffe_'))).toEqual([]);
      expect(Object.keys(k)).not.toContain('d');
    }
  });

  it('leaves X.509 authorities, sequence and refresh hint out', async () => {
    const pki = await makePki('oidc.test', { sequence: 42n });
    const text = renderJwks(pki.bundle.withRefreshHint(300));
    expect(text).not.toContain('x509-svid');
    expect(text).not.toContain('spiffe_');
    expect(JSON.parse(text).keys).toHaveLength(4);
  });

  it('renders an empty key set for a bundle without JWT authorities', async () => {
    const pki = await makePki('oidc.test');
    const b = TrustBundle.create({ trustDomain: pki.td, x509Authorities: [pki.root.der] });
    expect(renderJwks(b)).toBe('{"keys":[]}');
    expect(signingAlgorithms(b)).toEqual(['ES256']);
  });

  it('publishes keys that verify the tokens their private halves sign', async () => {
    const pki = await makePki('oidc.test');
    const k = pki.jwtKeys['ec-p384'];
    const token = signJws({ alg: 'ES384', kid: k.kid, typ: 'JWT' }, svidClaims(pki.id().toString()), {
      alg: 'ES384',
      key: k.privateKey,
    });
    const jwk = (JSON.parse(renderJwks(pki.bundle)) as { keys: { kid: string }[] }).keys.find(
      (e) => e.kid === k.kid,
    );
    const key = createPublicKey({ key: jwk as never, format: 'jwk' });
    const [h, p, s] = token.split('.');
    const ok = cryptoVerify(
      'sha384',
      Buffer.from(`${h}.${p}`),
      { key, dsaEncoding: 'ieee-p1363' },
      Buffer.from(s!, 'base64url'),
    );
    expect(ok).toBe(true);
  });

  it('publishes Ed25519 keys as OKP with EdDSA', async () => {
    const pki = await makePki('oidc.test');
    const ed = keyPairSync('ed25519').publicKey;
    const b = TrustBundle.create({ trustDomain: pki.td, jwtAuthorities: [jwtAuthority('ed', ed)] });
    expect(JSON.parse(renderJwks(b)).keys[0]).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA' });
    expect(signingAlgorithms(b)).toEqual(['EdDSA']);
  });
});

describe('renderOidcDiscovery', () => {
  it('names the issuer, the jwks_uri and the algorithms of the keys', async () => {
    const pki = await makePki('oidc.test');
    const doc = JSON.parse(
      renderOidcDiscovery(pki.bundle, {
        issuer: 'https://oidc.example.test',
        jwksUri: defaultJwksUri('https://oidc.example.test'),
      }),
    );
    expect(doc).toEqual({
      issuer: 'https://oidc.example.test',
      jwks_uri: 'https://oidc.example.test/keys',
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['ES256', 'ES384', 'ES512', 'RS256'],
    });
    expect(discoveryUrl('https://a.test/td')).toBe('https://a.test/td/.well-known/openid-configuration');
  });
});

describe('issuerProblem', () => {
  it.each([
    ['https://oidc.example.org', undefined],
    ['https://oidc.example.org:8443/tenant', undefined],
  ])('accepts %s', (issuer, problem) => {
    expect(issuerProblem(issuer)).toBe(problem);
  });

  it.each([
    ['oidc.example.org', /absolute URL/],
    ['http://oidc.example.org', /https/],
    ['https://oidc.example.org/', /end with/],
    ['https://oidc.example.org?x=1', /query/],
    ['https://oidc.example.org#f', /fragment/],
    ['https://u:p@oidc.example.org', /user info/],
  ])('refuses %s', (issuer, problem) => {
    expect(issuerProblem(issuer)).toMatch(problem);
  });

  it('allows http only when asked', () => {
    expect(issuerProblem('http://127.0.0.1:8080', { allowHttp: true })).toBeUndefined();
  });
});
