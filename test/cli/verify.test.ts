import { createPrivateKey } from 'node:crypto';
import { SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, createX509Svid, type IssuedCert, toPem } from '../../src/adapters/pki/index.js';
import { jwtAuthority, marshalBundle, marshalBundleMap, TrustBundle } from '../../src/core/bundle/index.js';
import { SpiffeId, TrustDomain } from '../../src/core/spiffeid/index.js';
import { keyPairSync } from '../../src/platform/keygen.js';
import { runCliCapture } from '../support/cli.js';

const tdA = TrustDomain.parse('a.test');
const tdB = TrustDomain.parse('b.test');
const NOW = Date.parse('2026-06-01T00:00:00Z');
const T0 = new Date('2026-01-01T00:00:00Z');
const T1 = new Date('2027-01-01T00:00:00Z');
let caA: IssuedCert;
let caB: IssuedCert;
let leafA: IssuedCert;
const jwtKeys = keyPairSync('ec', { namedCurve: 'P-256' });
let files: Record<string, string>;
let token: string;

beforeAll(async () => {
  caA = await createCa({ trustDomain: tdA, notBefore: T0, notAfter: T1 });
  caB = await createCa({ trustDomain: tdB, notBefore: T0, notAfter: T1 });
  leafA = await createX509Svid({
    id: SpiffeId.parse('spiffe://a.test/web'),
    issuer: caA,
    notBefore: T0,
    notAfter: T1,
  });
  const bundleA = TrustBundle.create({
    trustDomain: tdA,
    x509Authorities: [caA.der],
    jwtAuthorities: [jwtAuthority('k1', jwtKeys.publicKey)],
  });
  const bundleB = TrustBundle.create({ trustDomain: tdB, x509Authorities: [caB.der] });
  files = {
    'chain.pem': leafA.pem,
    'a.json': marshalBundle(bundleA),
    'b.json': marshalBundle(bundleB),
    'map.json': marshalBundleMap([bundleA, bundleB]),
    'garbage.pem': 'not a pem',
    'bad.json': '{"keys":',
  };
  token = await new SignJWT({ sub: 'spiffe://a.test/api', aud: ['spiffe://b.test/svc'] })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' })
    .setExpirationTime(Math.floor(NOW / 1000) + 300)
    .sign(createPrivateKey(jwtKeys.privateKey.export({ format: 'pem', type: 'pkcs8' })));
  files['token.jwt'] = `${token}\n`;
  expect(toPem(caA.der)).toContain('BEGIN CERTIFICATE');
});

describe('spiffe-broker verify x509', () => {
  it('accepts an SVID against its own trust domain in a Bundle Map and reports the id', async () => {
    const r = await runCliCapture(
      ['verify', 'x509', '--chain', 'chain.pem', '--bundle', 'map.json', '--json'],
      { files, now: NOW },
    );
    expect(r.code).toBe(0);
    expect(r.json()).toEqual({
      ok: true,
      kind: 'x509',
      id: 'spiffe://a.test/web',
      trustDomain: 'a.test',
      bundleBinding: 'map',
      bundleFormat: 'bundle-map',
    });
  });

  it('refuses an SVID when the bundle bound to its trust domain does not sign it', async () => {
    const r = await runCliCapture(
      ['verify', 'x509', '--chain', 'chain.pem', '--bundle', 'b.json', '--trust-domain', 'a.test', '--json'],
      {
        files,
        now: NOW,
      },
    );
    expect(r.code).toBe(1);
    expect(r.json()).toMatchObject({ ok: false, code: 'ERR_VERIFY_X509_UNTRUSTED' });
  });

  it('refuses an SVID from a trust domain the explicit binding does not cover', async () => {
    const r = await runCliCapture(
      ['verify', 'x509', '--chain', 'chain.pem', '--bundle', 'a.json', '--trust-domain', 'b.test', '--json'],
      {
        files,
        now: NOW,
      },
    );
    expect(r.code).toBe(1);
    expect(r.json()).toMatchObject({ ok: false, code: 'ERR_VERIFY_NO_BUNDLE' });
  });

  it('binds a lone bundle to the SVID trust domain when none is given, and says so', async () => {
    const r = await runCliCapture(['verify', 'x509', '--chain', 'chain.pem', '--bundle', 'a.json'], {
      files,
      now: NOW,
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('accepted X509-SVID spiffe://a.test/web');
    expect(r.stdout).toContain('bound to a.test');
  });

  it('refuses an expired SVID at the injected time', async () => {
    const r = await runCliCapture(
      ['verify', 'x509', '--chain', 'chain.pem', '--bundle', 'map.json', '--json'],
      {
        files,
        now: Date.parse('2028-01-01T00:00:00Z'),
      },
    );
    expect(r.code).toBe(1);
    expect(r.json()).toMatchObject({ ok: false, code: 'ERR_VERIFY_X509_EXPIRED' });
  });

  it.each([
    [['verify', 'x509', '--bundle', 'map.json']],
    [['verify', 'x509', '--chain', 'chain.pem']],
    [['verify', 'nope', '--chain', 'chain.pem', '--bundle', 'map.json']],
  ])('usage errors exit 2: %j', async (argv) => {
    expect((await runCliCapture(argv, { files, now: NOW })).code).toBe(2);
  });

  it('a chain file with no certificate is a coded refusal', async () => {
    const r = await runCliCapture(
      ['verify', 'x509', '--chain', 'garbage.pem', '--bundle', 'map.json', '--json'],
      { files, now: NOW },
    );
    expect(r.code).toBe(1);
    expect(r.json()).toMatchObject({ ok: false, code: 'ERR_BUNDLE_PEM_INVALID' });
  });

  it('a broken bundle file is a coded refusal', async () => {
    const r = await runCliCapture(
      ['verify', 'x509', '--chain', 'chain.pem', '--bundle', 'bad.json', '--json'],
      { files, now: NOW },
    );
    expect(r.code).toBe(1);
    expect(r.json()).toMatchObject({ ok: false, code: 'ERR_BUNDLE_JSON_SYNTAX' });
  });
});

describe('spiffe-broker verify jwt', () => {
  it('accepts a JWT-SVID for the expected audience (token inline or @file)', async () => {
    for (const t of [token, '@token.jwt']) {
      const r = await runCliCapture(
        [
          'verify',
          'jwt',
          '--token',
          t,
          '--audience',
          'spiffe://b.test/svc',
          '--bundle',
          'map.json',
          '--json',
        ],
        {
          files,
          now: NOW,
        },
      );
      expect(r.code).toBe(0);
      expect(r.json()).toMatchObject({
        ok: true,
        kind: 'jwt',
        id: 'spiffe://a.test/api',
        trustDomain: 'a.test',
      });
    }
  });

  it('refuses the wrong audience and an expired token', async () => {
    const wrong = await runCliCapture(
      ['verify', 'jwt', '--token', token, '--audience', 'other', '--bundle', 'map.json', '--json'],
      {
        files,
        now: NOW,
      },
    );
    expect(wrong.code).toBe(1);
    expect(wrong.json()).toMatchObject({ ok: false, code: 'ERR_VERIFY_JWT_AUDIENCE' });
    const late = await runCliCapture(
      [
        'verify',
        'jwt',
        '--token',
        token,
        '--audience',
        'spiffe://b.test/svc',
        '--bundle',
        'map.json',
        '--json',
      ],
      {
        files,
        now: NOW + 3_600_000,
      },
    );
    expect(late.json()).toMatchObject({ ok: false, code: 'ERR_VERIFY_JWT_EXPIRED' });
  });

  it('requires --audience', async () => {
    expect(
      (await runCliCapture(['verify', 'jwt', '--token', token, '--bundle', 'map.json'], { files, now: NOW }))
        .code,
    ).toBe(2);
  });
});
