import { constants, sign } from 'node:crypto';
import { SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { BundleSet } from '../../../src/core/bundle/source.js';
import { jwtAuthority, TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { matchId, matchMemberOf } from '../../../src/core/spiffeid/index.js';
import {
  type JwtSvidVerifyResult,
  MAX_JWT_SVID_LENGTH,
  verifyJwtSvid,
} from '../../../src/core/verify/index.js';
import { keyPairSync } from '../../../src/platform/keygen.js';
import { type JwsSigner, makePki, signJws, svidClaims, T0, type TestPki } from '../../support/fixtures.js';

const AUD = 'spiffe://example.org/api';
let a: TestPki;
let b: TestPki;
let bundles: BundleSet;

beforeAll(async () => {
  a = await makePki('a.test');
  b = await makePki('b.test');
  bundles = new BundleSet([a.bundle, b.bundle]);
});

function expectFail(r: JwtSvidVerifyResult, code: string, message?: RegExp): void {
  if (r.ok) throw new Error(`expected ${code}, got ok (${r.id.toString()})`);
  expect({ code: r.code, message: r.message }).toEqual({
    code,
    message: message ? expect.stringMatching(message) : expect.any(String),
  });
}

const verify = (token: string, extra: Partial<Parameters<typeof verifyJwtSvid>[2]> = {}) =>
  verifyJwtSvid(token, bundles, { now: T0, audience: AUD, ...extra });

/** A well-formed ES256 JWT-SVID of a.test, with header/claim overrides. */
function es256(claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): string {
  const key = a.jwtKeys['ec-p256'];
  return signJws(
    { alg: 'ES256', kid: key.kid, typ: 'JWT', ...header },
    { ...svidClaims('spiffe://a.test/web', AUD), ...claims },
    { alg: 'ES256', key: key.privateKey },
  );
}

describe('verifyJwtSvid: accepted tokens', () => {
  it.each([
    ['RS256', 'rsa'],
    ['ES256', 'ec-p256'],
    ['ES384', 'ec-p384'],
    ['PS256', 'rsa'],
    ['ES512', 'ec-p521'],
    ['RS512', 'rsa'],
    ['PS384', 'rsa'],
  ] as const)('verifies a jose-signed %s token', async (alg, kind) => {
    const key = a.jwtKeys[kind];
    const token = await new SignJWT({ aud: AUD })
      .setProtectedHeader({ alg, kid: key.kid, typ: 'JWT' })
      .setSubject('spiffe://a.test/web')
      .setIssuedAt(T0 / 1000)
      .setExpirationTime(T0 / 1000 + 300)
      .sign(key.privateKey);
    const r = verify(token);
    expect(r).toMatchObject({ ok: true, expiresAt: T0 + 300_000 });
    if (!r.ok) return;
    expect([r.id.toString(), r.trustDomain.name, r.claims.sub]).toEqual([
      'spiffe://a.test/web',
      'a.test',
      'spiffe://a.test/web',
    ]);
  });

  it('accepts any one of several expected audiences, and an aud array', () => {
    expect(verify(es256({ aud: ['x', AUD] }), { audience: ['y', AUD] }).ok).toBe(true);
    expect(verify(es256(), { audience: [AUD] }).ok).toBe(true);
  });

  it('accepts typ JOSE and no typ (JWT-SVID §2.3)', () => {
    expect(verify(es256({}, { typ: 'JOSE' })).ok).toBe(true);
    expect(verify(es256({}, { typ: undefined })).ok).toBe(true);
  });

  it('honours nbf and the leeway', () => {
    const t = es256({ nbf: T0 / 1000 + 10 });
    expectFail(verify(t), 'ERR_VERIFY_JWT_NOT_YET_VALID', /not valid before 2030-01-01T00:00:10\.000Z/);
    expect(verify(t, { leewaySeconds: 10 }).ok).toBe(true);
    expect(verify(es256({ nbf: T0 / 1000 })).ok).toBe(true);
  });

  it('applies the authorize matcher', () => {
    expect(verify(es256(), { authorize: matchId(a.id('/web')) }).ok).toBe(true);
    expectFail(
      verify(es256(), { authorize: matchMemberOf(b.td) }),
      'ERR_VERIFY_ID_NOT_AUTHORIZED',
      /a member of b\.test/,
    );
  });
});

describe('verifyJwtSvid: algorithm (JWT-SVID §2.1)', () => {
  it('refuses alg none', () => {
    const t = signJws(
      { alg: 'none', kid: a.jwtKeys['ec-p256'].kid },
      svidClaims('spiffe://a.test/web', AUD),
      {
        alg: 'none',
      },
    );
    expectFail(verify(`${t}AA`), 'ERR_VERIFY_JWT_ALGORITHM', /"none" is not allowed/);
    expectFail(verify(t), 'ERR_VERIFY_JWT_MALFORMED', /three non-empty parts/);
  });

  it('refuses HS256, even keyed with the public key bytes', () => {
    const kid = a.jwtKeys.rsa.kid;
    const secret = a.jwtKeys.rsa.publicKey.export({ type: 'spki', format: 'der' });
    const t = signJws({ alg: 'HS256', kid }, svidClaims('spiffe://a.test/web', AUD), {
      alg: 'HS256',
      secret,
    });
    expectFail(verify(t), 'ERR_VERIFY_JWT_ALGORITHM', /"HS256" is not allowed/);
  });

  it('refuses a missing or non-string alg, and EdDSA', () => {
    expectFail(verify(es256({}, { alg: undefined })), 'ERR_VERIFY_JWT_ALGORITHM', /null/);
    expectFail(verify(es256({}, { alg: ['ES256'] })), 'ERR_VERIFY_JWT_ALGORITHM');
    expectFail(verify(es256({}, { alg: 'EdDSA' })), 'ERR_VERIFY_JWT_ALGORITHM');
  });

  it('refuses an alg that does not fit the key', () => {
    const ec = a.jwtKeys['ec-p256'];
    const claims = svidClaims('spiffe://a.test/web', AUD);
    // RS256 header naming an EC key.
    const rs = signJws({ alg: 'RS256', kid: ec.kid }, claims, {
      alg: 'RS256',
      key: a.jwtKeys.rsa.privateKey,
    });
    expectFail(verify(rs), 'ERR_VERIFY_JWT_ALGORITHM', /needs an RSA key but key "a\.test\/ec-p256" is ec/);
    // ES384 header naming a P-256 key.
    const es = signJws({ alg: 'ES384', kid: ec.kid }, claims, {
      alg: 'ES384',
      key: a.jwtKeys['ec-p384'].privateKey,
    });
    expectFail(verify(es), 'ERR_VERIFY_JWT_ALGORITHM', /needs curve secp384r1/);
    // ES256 header naming an RSA key.
    const er = signJws({ alg: 'ES256', kid: a.jwtKeys.rsa.kid }, claims, {
      alg: 'ES256',
      key: ec.privateKey,
    });
    expectFail(verify(er), 'ERR_VERIFY_JWT_ALGORITHM', /needs an EC key/);
  });

  it('refuses RSA keys under 2048 bits', () => {
    const small = keyPairSync('rsa', { modulusLength: 1024 });
    const td = TrustBundle.create({
      trustDomain: a.td,
      jwtAuthorities: [jwtAuthority('small', small.publicKey)],
    });
    const t = signJws({ alg: 'RS256', kid: 'small' }, svidClaims('spiffe://a.test/web', AUD), {
      alg: 'RS256',
      key: small.privateKey,
    });
    expectFail(
      verifyJwtSvid(t, new BundleSet([td]), { now: T0, audience: AUD }),
      'ERR_VERIFY_JWT_ALGORITHM',
      /1024 bits/,
    );
  });
});

describe('verifyJwtSvid: header', () => {
  it('refuses a missing or empty kid', () => {
    expectFail(verify(es256({}, { kid: undefined })), 'ERR_VERIFY_JWT_KID_MISSING');
    expectFail(verify(es256({}, { kid: '' })), 'ERR_VERIFY_JWT_KID_MISSING');
    expectFail(verify(es256({}, { kid: 7 })), 'ERR_VERIFY_JWT_KID_MISSING');
  });

  it('refuses an unknown kid', () => {
    expectFail(verify(es256({}, { kid: 'nope' })), 'ERR_VERIFY_JWT_KEY_NOT_FOUND', /"nope".*"a\.test"/);
  });

  it("refuses a kid of another trust domain's bundle, even signed with that key", () => {
    const bKey = b.jwtKeys['ec-p256'];
    const t = signJws({ alg: 'ES256', kid: bKey.kid }, svidClaims('spiffe://a.test/web', AUD), {
      alg: 'ES256',
      key: bKey.privateKey,
    });
    expectFail(
      verify(t),
      'ERR_VERIFY_JWT_KEY_NOT_FOUND',
      /"b\.test\/ec-p256" in the bundle of trust domain "a\.test"/,
    );
  });

  it('refuses typ other than JWT/JOSE and any crit', () => {
    expectFail(verify(es256({}, { typ: 'at+jwt' })), 'ERR_VERIFY_JWT_HEADER', /typ "at\+jwt"/);
    expectFail(verify(es256({}, { crit: ['exp'] })), 'ERR_VERIFY_JWT_HEADER', /crit/);
  });
});

describe('verifyJwtSvid: signature', () => {
  it('refuses a bad signature', () => {
    const t = es256();
    const sig = Buffer.from(t.slice(t.lastIndexOf('.') + 1), 'base64url');
    sig[5]! ^= 0x01;
    const bad = `${t.slice(0, t.lastIndexOf('.'))}.${sig.toString('base64url')}`;
    expectFail(verify(bad), 'ERR_VERIFY_JWT_SIGNATURE', /does not verify with key "a\.test\/ec-p256"/);
  });

  it('refuses a payload changed after signing', () => {
    const t = es256();
    const [h, , s] = t.split('.');
    const forged = Buffer.from(JSON.stringify(svidClaims('spiffe://a.test/admin', AUD))).toString(
      'base64url',
    );
    expectFail(verify(`${h}.${forged}.${s}`), 'ERR_VERIFY_JWT_SIGNATURE');
  });

  it('refuses a signature whose last base64url character has non-zero unused bits (malleability)', () => {
    const t = es256();
    expect(verify(t).ok).toBe(true);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    // 64 bytes of R||S take 86 characters: 516 bits for 512, so the last character's 4 low bits are unused.
    const last = alphabet.indexOf(t.at(-1)!);
    const flipped = `${t.slice(0, -1)}${alphabet[last ^ 0b0001]}`;
    // The lenient decoding is the same signature: without the canonical check this would verify.
    expect(Buffer.from(flipped.slice(flipped.lastIndexOf('.') + 1), 'base64url')).toEqual(
      Buffer.from(t.slice(t.lastIndexOf('.') + 1), 'base64url'),
    );
    expectFail(verify(flipped), 'ERR_VERIFY_JWT_MALFORMED', /signature is not canonical base64url/);
  });

  it('refuses a non-canonical header or payload encoding too', () => {
    const t = es256();
    const [h, p, s] = t.split('.') as [string, string, string];
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const bump = (seg: string): string => {
      // Only a segment whose length is not a multiple of 4 has unused bits.
      expect(seg.length % 4).not.toBe(0);
      return `${seg.slice(0, -1)}${alphabet[alphabet.indexOf(seg.at(-1)!) ^ 1]}`;
    };
    if (p.length % 4 !== 0) {
      expectFail(verify(`${h}.${bump(p)}.${s}`), 'ERR_VERIFY_JWT_MALFORMED', /payload is not canonical/);
    }
    if (h.length % 4 !== 0) {
      expectFail(verify(`${bump(h)}.${p}.${s}`), 'ERR_VERIFY_JWT_MALFORMED', /header is not canonical/);
    }
  });

  it('refuses a DER-encoded ECDSA signature (JWS uses R||S)', () => {
    const key = a.jwtKeys['ec-p256'];
    const t = es256();
    const input = t.slice(0, t.lastIndexOf('.'));
    const der = sign('sha256', Buffer.from(input), key.privateKey);
    expectFail(
      verify(`${input}.${der.toString('base64url')}`),
      'ERR_VERIFY_JWT_SIGNATURE',
      /R\|\|S must be 64/,
    );
  });

  it('refuses a signature of the wrong PSS salt length', () => {
    const key = a.jwtKeys.rsa;
    const claims = svidClaims('spiffe://a.test/web', AUD);
    const signer: JwsSigner = { alg: 'PS256', key: key.privateKey };
    expect(verify(signJws({ alg: 'PS256', kid: key.kid }, claims, signer)).ok).toBe(true);
    const header = Buffer.from(JSON.stringify({ alg: 'PS256', kid: key.kid })).toString('base64url');
    const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
    const sig = sign('sha256', Buffer.from(`${header}.${payload}`), {
      key: key.privateKey,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: 0,
    });
    expectFail(verify(`${header}.${payload}.${sig.toString('base64url')}`), 'ERR_VERIFY_JWT_SIGNATURE');
  });
});

describe('verifyJwtSvid: claims', () => {
  it('refuses a wrong audience, and a missing one', () => {
    expectFail(
      verify(es256({ aud: 'spiffe://example.org/other' })),
      'ERR_VERIFY_JWT_AUDIENCE',
      /none of the expected/,
    );
    expectFail(verify(es256({ aud: undefined })), 'ERR_VERIFY_JWT_AUDIENCE', /no aud/);
    expectFail(verify(es256({ aud: [] })), 'ERR_VERIFY_JWT_AUDIENCE', /no aud/);
    expectFail(verify(es256({ aud: [7] })), 'ERR_VERIFY_JWT_AUDIENCE');
  });

  it('refuses an aud that only starts with (or contains) the expected audience', () => {
    // A prefix or substring match would let a token minted for …/api-evil pass as one for …/api.
    expectFail(verify(es256({ aud: `${AUD}-evil` })), 'ERR_VERIFY_JWT_AUDIENCE', /none of the expected/);
    expectFail(verify(es256({ aud: [`${AUD}/x`, `x${AUD}`] })), 'ERR_VERIFY_JWT_AUDIENCE');
    expectFail(verify(es256({ aud: AUD }), { audience: `${AUD}-evil` }), 'ERR_VERIFY_JWT_AUDIENCE');
    expectFail(verify(es256({ aud: AUD.slice(0, -1) })), 'ERR_VERIFY_JWT_AUDIENCE');
  });

  it('refuses an expired token, at the exact second and beyond the leeway', () => {
    const t = es256({ exp: T0 / 1000 });
    expectFail(verify(t), 'ERR_VERIFY_JWT_EXPIRED', /expired at 2030-01-01T00:00:00\.000Z/);
    expect(verify(es256({ exp: T0 / 1000 + 1 })).ok).toBe(true);
    expect(verify(t, { leewaySeconds: 5 }).ok).toBe(true);
    expectFail(verify(t, { leewaySeconds: 5, now: T0 + 5000 }), 'ERR_VERIFY_JWT_EXPIRED');
  });

  it('refuses a token without exp, and a non-numeric exp or nbf', () => {
    expectFail(verify(es256({ exp: undefined })), 'ERR_VERIFY_JWT_EXPIRY_MISSING');
    expectFail(verify(es256({ exp: '2030' })), 'ERR_VERIFY_JWT_MALFORMED', /exp is not a NumericDate/);
    expectFail(verify(es256({ nbf: 'soon' })), 'ERR_VERIFY_JWT_MALFORMED', /nbf/);
  });

  it('refuses a sub that is not a SPIFFE ID, saying why', () => {
    expectFail(verify(es256({ sub: 'https://a.test/web' })), 'ERR_VERIFY_JWT_SUBJECT', /scheme/);
    expectFail(verify(es256({ sub: undefined })), 'ERR_VERIFY_JWT_SUBJECT', /no sub/);
    expectFail(
      verify(es256({ sub: 'spiffe://A.test/web' })),
      'ERR_VERIFY_JWT_SUBJECT',
      /trust domain characters/,
    );
  });

  it('refuses a sub whose trust domain has no bundle, or a revoked one', () => {
    expectFail(verify(es256({ sub: 'spiffe://c.test/web' })), 'ERR_VERIFY_NO_BUNDLE', /"c\.test"/);
    const revoked = new BundleSet([TrustBundle.create({ trustDomain: a.td })]);
    expectFail(verifyJwtSvid(es256(), revoked, { now: T0, audience: AUD }), 'ERR_VERIFY_BUNDLE_REVOKED');
    const x509Only = new BundleSet([
      TrustBundle.create({ trustDomain: a.td, x509Authorities: [a.root.der] }),
    ]);
    expectFail(
      verifyJwtSvid(es256(), x509Only, { now: T0, audience: AUD }),
      'ERR_VERIFY_JWT_KEY_NOT_FOUND',
      /no JWT authorities/,
    );
  });
});

describe('verifyJwtSvid: malformed input and misuse', () => {
  it.each([
    ['two parts', 'a.b'],
    ['four parts', 'a.b.c.d'],
    ['empty header', '.b.c'],
    ['bad base64url', 'a+b.c.d'],
    ['header not JSON', `${Buffer.from('nope').toString('base64url')}.e30.AA`],
    ['header an array', `${Buffer.from('[1]').toString('base64url')}.e30.AA`],
  ])('refuses %s with ERR_VERIFY_JWT_MALFORMED', (_n, token) => {
    expectFail(verify(token), 'ERR_VERIFY_JWT_MALFORMED');
  });

  it('refuses a payload that is not a JSON object, and oversized tokens', () => {
    const [h] = es256().split('.');
    expectFail(
      verify(`${h}.${Buffer.from('"x"').toString('base64url')}.AA`),
      'ERR_VERIFY_JWT_MALFORMED',
      /payload/,
    );
    expectFail(verify('a'.repeat(MAX_JWT_SVID_LENGTH + 1)), 'ERR_VERIFY_JWT_MALFORMED', /at most/);
  });

  it('never lets payload members pose as a failure result', () => {
    const [h] = es256().split('.');
    const p = Buffer.from(JSON.stringify({ ok: false, code: 'X', message: 'y' })).toString('base64url');
    expectFail(verify(`${h}.${p}.AA`), 'ERR_VERIFY_JWT_SUBJECT');
  });

  it('throws TypeError on API misuse', () => {
    expect(() => verifyJwtSvid(es256(), bundles, { now: T0, audience: [] })).toThrow(TypeError);
    expect(() => verifyJwtSvid(es256(), bundles, { now: T0, audience: '' })).toThrow(TypeError);
    // @ts-expect-error now is required
    expect(() => verifyJwtSvid(es256(), bundles, { audience: AUD })).toThrow(TypeError);
    expect(() => verifyJwtSvid(es256(), bundles, { now: T0, audience: AUD, leewaySeconds: -1 })).toThrow(
      TypeError,
    );
    // @ts-expect-error token must be a string
    expect(() => verifyJwtSvid(42, bundles, { now: T0, audience: AUD })).toThrow(TypeError);
  });
});
