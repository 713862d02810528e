import 'reflect-metadata';
import { createPrivateKey, sign, webcrypto, X509Certificate } from 'node:crypto';
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  Extension,
  KeyUsageFlags,
  KeyUsagesExtension,
  X509Certificate as PeculiarCertificate,
  SubjectAlternativeNameExtension,
  X509CertificateGenerator,
} from '@peculiar/x509';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  createCa,
  createX509Svid,
  generateKeyPair,
  type IssuedCert,
} from '../../../src/adapters/pki/index.js';
import { BundleSet } from '../../../src/core/bundle/source.js';
import { TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { matchId, matchMemberOf, SpiffeId } from '../../../src/core/spiffeid/index.js';
import { parseCertificateDer } from '../../../src/core/verify/der.js';
import {
  DEFAULT_MAX_X509_CHAIN_LENGTH,
  verifyFailureToError,
  verifyX509Svid,
  type X509SvidVerifyResult,
  X509VerifyCache,
} from '../../../src/core/verify/index.js';
import { DAY, HOUR, makePki, T0, type TestPki } from '../../support/fixtures.js';

let a: TestPki;
let b: TestPki;
let bundles: BundleSet;
let leaf: IssuedCert;

beforeAll(async () => {
  a = await makePki('a.test');
  b = await makePki('b.test');
  bundles = new BundleSet([a.bundle, b.bundle]);
  leaf = await a.svid('/web');
});

function expectFail(r: X509SvidVerifyResult, code: string, message?: RegExp): void {
  if (r.ok) throw new Error(`expected ${code}, got ok (${r.id.toString()})`);
  expect({ code: r.code, message: r.message }).toEqual({
    code,
    message: message ? expect.stringMatching(message) : expect.any(String),
  });
}

/** A leaf built directly with @peculiar/x509, for shapes src/adapters/pki deliberately cannot make. */
async function customLeaf(issuer: IssuedCert, extensions: Extension[]): Promise<Uint8Array> {
  const keys = await generateKeyPair();
  const cert = await X509CertificateGenerator.create({
    serialNumber: '01',
    subject: 'O=custom',
    issuer: new PeculiarCertificate(Uint8Array.from(issuer.der)).subjectName,
    notBefore: new Date(T0 - HOUR),
    notAfter: new Date(T0 + HOUR),
    publicKey: keys.publicKey as webcrypto.CryptoKey,
    signingKey: issuer.keys!.privateKey as webcrypto.CryptoKey,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.Algorithm,
    extensions: [
      ...extensions,
      await AuthorityKeyIdentifierExtension.create(issuer.keys!.publicKey as webcrypto.CryptoKey),
    ],
  });
  return new Uint8Array(cert.rawData);
}

const SAN = (uri: string) => new SubjectAlternativeNameExtension([{ type: 'url', value: uri }]);

describe('verifyX509Svid: valid chains', () => {
  it('verifies leaf → intermediate → root and returns the ID and the earliest expiry', () => {
    const r = verifyX509Svid([leaf.der, a.intermediate.der], bundles, { now: T0 });
    expect(r).toEqual({ ok: true, id: a.id('/web'), trustDomain: a.td, expiresAt: T0 + HOUR });
  });

  it('verifies a leaf issued directly by the root', async () => {
    const direct = await createX509Svid({
      id: a.id('/direct'),
      issuer: a.root,
      notBefore: new Date(T0 - HOUR),
      notAfter: new Date(T0 + HOUR),
    });
    const r = verifyX509Svid([direct.der], bundles, { now: new Date(T0) });
    expect(r.ok && r.id.toString()).toBe('spiffe://a.test/direct');
  });

  it('accepts node:crypto X509Certificate objects', () => {
    const r = verifyX509Svid([leaf.certificate, new X509Certificate(a.intermediate.der)], bundles, {
      now: T0,
    });
    expect(r.ok).toBe(true);
  });

  it('ignores presented certificates after the one an authority issued (e.g. the root itself)', () => {
    const r = verifyX509Svid([leaf.der, a.intermediate.der, a.root.der], bundles, { now: T0 });
    expect(r.ok).toBe(true);
  });

  it.each(['ec-p384', 'rsa-2048', 'ed25519'] as const)(
    'verifies a %s PKI',
    async (keyAlg) => {
      const pki = await makePki('k.test', { keyAlg });
      const svid = await pki.svid();
      const r = verifyX509Svid([svid.der, pki.intermediate.der], new BundleSet([pki.bundle]), { now: T0 });
      expect(r.ok).toBe(true);
    },
    30_000,
  );

  it('accepts the validity bounds themselves (RFC 5280: inclusive)', () => {
    expect(verifyX509Svid([leaf.der, a.intermediate.der], bundles, { now: T0 - HOUR }).ok).toBe(true);
    expect(verifyX509Svid([leaf.der, a.intermediate.der], bundles, { now: T0 + HOUR }).ok).toBe(true);
  });
});

describe('verifyX509Svid: trust domain isolation', () => {
  it("refuses a leaf whose own domain's bundle is missing, even if another bundle holds its root", () => {
    const td = a.bundle.trustDomain;
    const other = TrustBundle.create({ trustDomain: b.td, x509Authorities: [a.root.der] });
    const r = verifyX509Svid([leaf.der, a.intermediate.der], new BundleSet([other]), { now: T0 });
    expectFail(r, 'ERR_VERIFY_NO_BUNDLE', new RegExp(`"${td.name}"`));
  });

  it("refuses a chain to another domain's root even when that domain's bundle would validate it", async () => {
    // b.test's bundle holds b's root only; a leaf claiming b.test but issued under a.test's CA fails,
    // although a.test's bundle (also in the source) would validate the signatures.
    const impostor = await createX509Svid({
      id: b.id('/web'),
      issuer: a.intermediate,
      notBefore: new Date(T0 - HOUR),
      notAfter: new Date(T0 + HOUR),
    });
    const r = verifyX509Svid([impostor.der, a.intermediate.der], bundles, { now: T0 });
    expectFail(r, 'ERR_VERIFY_X509_UNTRUSTED', /trust domain "b\.test"/);
  });

  it('refuses a leaf when its domain bundle lists only the wrong root', () => {
    const wrong = TrustBundle.create({ trustDomain: a.td, x509Authorities: [b.root.der] });
    const r = verifyX509Svid([leaf.der, a.intermediate.der], new BundleSet([wrong, b.bundle]), { now: T0 });
    expectFail(r, 'ERR_VERIFY_X509_UNTRUSTED', /intermediate certificate 1 does not chain/);
  });

  it('refuses an empty bundle as revocation', () => {
    const revoked = TrustBundle.create({ trustDomain: a.td });
    const r = verifyX509Svid([leaf.der, a.intermediate.der], new BundleSet([revoked]), { now: T0 });
    expectFail(r, 'ERR_VERIFY_BUNDLE_REVOKED', /revoked/);
  });

  it('refuses when the bundle has JWT authorities but no X.509 authority', () => {
    const jwtOnly = TrustBundle.create({
      trustDomain: a.td,
      jwtAuthorities: [...a.bundle.jwtAuthorities.values()],
    });
    const r = verifyX509Svid([leaf.der, a.intermediate.der], new BundleSet([jwtOnly]), { now: T0 });
    expectFail(r, 'ERR_VERIFY_X509_UNTRUSTED', /no X\.509 authorities/);
  });
});

describe('verifyX509Svid: validity at the injected time', () => {
  it('refuses an expired leaf', () => {
    const r = verifyX509Svid([leaf.der, a.intermediate.der], bundles, { now: T0 + HOUR + 1000 });
    expectFail(r, 'ERR_VERIFY_X509_EXPIRED', /leaf certificate expired at 2030-01-01T01:00:00\.000Z/);
  });

  it('refuses a not-yet-valid leaf', () => {
    const r = verifyX509Svid([leaf.der, a.intermediate.der], bundles, { now: T0 - HOUR - 1000 });
    expectFail(r, 'ERR_VERIFY_X509_NOT_YET_VALID', /leaf certificate is not valid before/);
  });

  it('refuses an expired intermediate', async () => {
    const inter = await createCa({
      trustDomain: a.td,
      issuer: a.root,
      notBefore: new Date(T0 - DAY),
      notAfter: new Date(T0 - 1000),
    });
    const l = await createX509Svid({
      id: a.id('/x'),
      issuer: inter,
      notBefore: new Date(T0 - HOUR),
      notAfter: new Date(T0 + HOUR),
    });
    expectFail(
      verifyX509Svid([l.der, inter.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_EXPIRED',
      /intermediate certificate 1/,
    );
  });

  it('refuses an expired bundle authority', async () => {
    const old = await makePki('old.test', { caNotBefore: T0 - 2 * DAY, caNotAfter: T0 + 30 * 60_000 });
    const l = await old.svid();
    const r = verifyX509Svid([l.der, old.intermediate.der], new BundleSet([old.bundle]), {
      now: T0 + 45 * 60_000,
    });
    expectFail(r, 'ERR_VERIFY_X509_EXPIRED', /intermediate certificate 1 expired/);
    // The root itself: a leaf straight under an expired root.
    const direct = await createX509Svid({
      id: old.id('/d'),
      issuer: old.root,
      notBefore: new Date(T0 - HOUR),
      notAfter: new Date(T0 + HOUR),
    });
    expectFail(
      verifyX509Svid([direct.der], new BundleSet([old.bundle]), { now: T0 + 45 * 60_000 }),
      'ERR_VERIFY_X509_EXPIRED',
      /X\.509 authority 0 of trust domain "old\.test" expired/,
    );
  });
});

describe('verifyX509Svid: leaf rules (X509-SVID §2, §4, §5.2)', () => {
  const opts = () => ({ issuer: a.intermediate });

  it('refuses a leaf without a URI SAN', async () => {
    const l = await a.svid('/w', { ...opts(), omitUri: true, dnsNames: ['web'] });
    expectFail(
      verifyX509Svid([l.der, a.intermediate.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_NO_SPIFFE_ID',
    );
  });

  it('refuses a leaf with two URI SANs', async () => {
    const l = await a.svid('/w', { ...opts(), extraUris: ['spiffe://a.test/other'] });
    expectFail(
      verifyX509Svid([l.der, a.intermediate.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_URI_SAN_COUNT',
      /2 URI SANs/,
    );
  });

  it('refuses a URI SAN that is not a SPIFFE ID, saying why', async () => {
    const l = await a.svid('/w', { ...opts(), omitUri: true, extraUris: ['https://a.test/w'] });
    expectFail(
      verifyX509Svid([l.der, a.intermediate.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_NO_SPIFFE_ID',
      /"https:\/\/a\.test\/w" is not a valid SPIFFE ID: scheme/,
    );
  });

  it('refuses a URI containing ", " that node would split ambiguously', async () => {
    const l = await a.svid('/w', {
      ...opts(),
      omitUri: true,
      extraUris: ['spiffe://a.test/w, URI:spiffe://a.test/x'],
    });
    expectFail(
      verifyX509Svid([l.der, a.intermediate.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_NO_SPIFFE_ID',
    );
  });

  it('refuses a leaf whose SPIFFE ID has no path', async () => {
    const l = await createX509Svid({
      id: SpiffeId.parse('spiffe://a.test'),
      issuer: a.intermediate,
      notBefore: new Date(T0 - HOUR),
      notAfter: new Date(T0 + HOUR),
    });
    expectFail(
      verifyX509Svid([l.der, a.intermediate.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_LEAF_ID_ROOT',
    );
  });

  it('refuses a CA leaf', async () => {
    const l = await a.svid('/w', { isCa: true });
    expectFail(
      verifyX509Svid([l.der, a.intermediate.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_LEAF_IS_CA',
    );
  });

  it('refuses a leaf without keyUsage', async () => {
    const l = await a.svid('/w', { keyUsage: 'none' });
    expectFail(
      verifyX509Svid([l.der, a.intermediate.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_LEAF_KEY_USAGE',
      /no keyUsage/,
    );
  });

  it('refuses a leaf with keyCertSign', async () => {
    const l = await a.svid('/w', { keyUsage: 'certSign' });
    expectFail(
      verifyX509Svid([l.der, a.intermediate.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_LEAF_KEY_USAGE',
      /keyCertSign/,
    );
  });

  it('refuses a leaf with cRLSign, and one without digitalSignature', async () => {
    const crl = await customLeaf(a.intermediate, [
      new BasicConstraintsExtension(false, undefined, true),
      new KeyUsagesExtension(KeyUsageFlags.digitalSignature | KeyUsageFlags.cRLSign, true),
      SAN('spiffe://a.test/w'),
    ]);
    expectFail(
      verifyX509Svid([crl, a.intermediate.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_LEAF_KEY_USAGE',
      /cRLSign/,
    );
    const noSig = await customLeaf(a.intermediate, [
      new KeyUsagesExtension(KeyUsageFlags.keyAgreement, true),
      SAN('spiffe://a.test/w'),
    ]);
    expectFail(
      verifyX509Svid([noSig, a.intermediate.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_LEAF_KEY_USAGE',
      /lacks digitalSignature/,
    );
  });

  it('accepts a hand-built leaf with the required extensions (control for the custom builder)', async () => {
    const ok = await customLeaf(a.intermediate, [
      new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true),
      SAN('spiffe://a.test/w'),
    ]);
    expect(verifyX509Svid([ok, a.intermediate.der], bundles, { now: T0 }).ok).toBe(true);
  });

  it('refuses an unsupported critical extension (RFC 5280 §4.2)', async () => {
    const l = await customLeaf(a.intermediate, [
      new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true),
      SAN('spiffe://a.test/w'),
      new Extension('1.2.3.4.5', true, new Uint8Array([0x05, 0x00])),
    ]);
    expectFail(
      verifyX509Svid([l, a.intermediate.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_CERTIFICATE',
      /1\.2\.3\.4\.5/,
    );
  });
});

describe('verifyX509Svid: path rules', () => {
  it('refuses an intermediate that is not a CA', async () => {
    // A non-CA certificate used as an issuer: src/adapters/pki refuses that, so present its key through a CA wrapper.
    const notCa = await a.svid('/not-ca');
    const fakeIssuer: IssuedCert = { ...notCa, certificate: a.intermediate.certificate };
    const l = await createX509Svid({
      id: a.id('/w'),
      issuer: fakeIssuer,
      notBefore: new Date(T0 - HOUR),
      notAfter: new Date(T0 + HOUR),
    });
    expectFail(
      verifyX509Svid([l.der, notCa.der, a.intermediate.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_INTERMEDIATE_NOT_CA',
      /intermediate certificate 1 is not a CA/,
    );
  });

  it('refuses a chain whose intermediate was not presented', () => {
    expectFail(
      verifyX509Svid([leaf.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_UNTRUSTED',
      /leaf certificate does not chain/,
    );
  });

  it('refuses a chain presented in the wrong order', () => {
    // The intermediate's URI SAN is the trust domain's own ID, which a leaf may not carry.
    expectFail(
      verifyX509Svid([a.intermediate.der, leaf.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_LEAF_ID_ROOT',
    );
  });

  it('refuses a leaf whose signature was tampered with', () => {
    const bad = Uint8Array.from(leaf.der);
    bad[bad.length - 1]! ^= 0x01;
    expectFail(
      verifyX509Svid([bad, a.intermediate.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_UNTRUSTED',
      /signature does not verify/,
    );
  });

  it('refuses an intermediate whose signature does not verify with the root', async () => {
    // Same subject name as a.test's root, different key: names chain, signatures do not.
    const forgedRoot = await createCa({
      trustDomain: a.td,
      notBefore: new Date(T0 - DAY),
      notAfter: new Date(T0 + DAY),
      subject: a.root.certificate.subject.split('\n').join(', '),
    });
    const inter = await createCa({
      trustDomain: a.td,
      issuer: forgedRoot,
      notBefore: new Date(T0 - DAY),
      notAfter: new Date(T0 + DAY),
    });
    const l = await createX509Svid({
      id: a.id('/w'),
      issuer: inter,
      notBefore: new Date(T0 - HOUR),
      notAfter: new Date(T0 + HOUR),
    });
    expectFail(
      verifyX509Svid([l.der, inter.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_UNTRUSTED',
      /names authority 0 as issuer but its signature does not verify/,
    );
  });

  it('enforces pathLenConstraint on the authority and on intermediates', async () => {
    const pl = await makePki('pl.test');
    const strictRoot = await createCa({
      trustDomain: pl.td,
      notBefore: new Date(T0 - DAY),
      notAfter: new Date(T0 + DAY),
      pathLength: 0,
    });
    const inter = await createCa({
      trustDomain: pl.td,
      issuer: strictRoot,
      notBefore: new Date(T0 - DAY),
      notAfter: new Date(T0 + DAY),
    });
    const l = await createX509Svid({
      id: pl.id('/w'),
      issuer: inter,
      notBefore: new Date(T0 - HOUR),
      notAfter: new Date(T0 + HOUR),
    });
    const source = new BundleSet([
      TrustBundle.create({ trustDomain: pl.td, x509Authorities: [strictRoot.der] }),
    ]);
    expectFail(
      verifyX509Svid([l.der, inter.der], source, { now: T0 }),
      'ERR_VERIFY_X509_PATH_LENGTH',
      /allows 0/,
    );
    // pathLength 0 on the root still lets it issue leaves directly.
    const direct = await createX509Svid({
      id: pl.id('/d'),
      issuer: strictRoot,
      notBefore: new Date(T0 - HOUR),
      notAfter: new Date(T0 + HOUR),
    });
    expect(verifyX509Svid([direct.der], source, { now: T0 }).ok).toBe(true);

    const inter0 = await createCa({
      trustDomain: pl.td,
      issuer: pl.root,
      pathLength: 0,
      notBefore: new Date(T0 - DAY),
      notAfter: new Date(T0 + DAY),
    });
    const inter1 = await createCa({
      trustDomain: pl.td,
      issuer: inter0,
      notBefore: new Date(T0 - DAY),
      notAfter: new Date(T0 + DAY),
    });
    const deep = await createX509Svid({
      id: pl.id('/deep'),
      issuer: inter1,
      notBefore: new Date(T0 - HOUR),
      notAfter: new Date(T0 + HOUR),
    });
    const plSource = new BundleSet([pl.bundle]);
    expectFail(
      verifyX509Svid([deep.der, inter1.der, inter0.der], plSource, { now: T0 }),
      'ERR_VERIFY_X509_PATH_LENGTH',
      /intermediate certificate 2 allows 0/,
    );
    const shallow = await createX509Svid({
      id: pl.id('/s'),
      issuer: inter0,
      notBefore: new Date(T0 - HOUR),
      notAfter: new Date(T0 + HOUR),
    });
    expect(verifyX509Svid([shallow.der, inter0.der], plSource, { now: T0 }).ok).toBe(true);
  }, 20_000);

  it('refuses chains longer than maxChainLength', () => {
    expectFail(
      verifyX509Svid([leaf.der, a.intermediate.der, a.root.der], bundles, { now: T0, maxChainLength: 2 }),
      'ERR_VERIFY_X509_CHAIN_TOO_LONG',
      /3 certificates; at most 2/,
    );
    const long = Array.from({ length: DEFAULT_MAX_X509_CHAIN_LENGTH + 1 }, () => leaf.der);
    expectFail(verifyX509Svid(long, bundles, { now: T0 }), 'ERR_VERIFY_X509_CHAIN_TOO_LONG');
  });

  it('refuses an empty chain and garbage bytes with codes', () => {
    expectFail(verifyX509Svid([], bundles, { now: T0 }), 'ERR_VERIFY_INPUT');
    expectFail(
      verifyX509Svid([new Uint8Array([0x30, 0x03, 1, 2])], bundles, { now: T0 }),
      'ERR_VERIFY_X509_CERTIFICATE',
      /leaf certificate: malformed/,
    );
    expectFail(
      verifyX509Svid([leaf.der, new Uint8Array([0x30, 0x00])], bundles, { now: T0 }),
      'ERR_VERIFY_X509_CERTIFICATE',
      /intermediate certificate 1: malformed/,
    );
  });
});

describe('verifyX509Svid: authorization and API misuse', () => {
  it('applies the authorize matcher', () => {
    const chain = [leaf.der, a.intermediate.der];
    expect(verifyX509Svid(chain, bundles, { now: T0, authorize: matchId(a.id('/web')) }).ok).toBe(true);
    expectFail(
      verifyX509Svid(chain, bundles, { now: T0, authorize: matchMemberOf(b.td) }),
      'ERR_VERIFY_ID_NOT_AUTHORIZED',
      /spiffe:\/\/a\.test\/web is not authorized: expected a member of b\.test/,
    );
  });

  it('throws TypeError on misuse, never for bad SVIDs', () => {
    // @ts-expect-error now is required
    expect(() => verifyX509Svid([leaf.der], bundles, {})).toThrow(TypeError);
    expect(() => verifyX509Svid([leaf.der], bundles, { now: Number.NaN })).toThrow(TypeError);
    // @ts-expect-error wrong element type
    expect(() => verifyX509Svid(['pem'], bundles, { now: T0 })).toThrow(TypeError);
    expect(() => verifyX509Svid([leaf.der], bundles, { now: T0, maxChainLength: 0 })).toThrow(TypeError);
  });

  it('converts a failure into a VerifyError', () => {
    const r = verifyX509Svid([], bundles, { now: T0 });
    if (r.ok) throw new Error('unreachable');
    const err = verifyFailureToError(r);
    expect([err.name, err.code, err.message]).toEqual(['VerifyError', 'ERR_VERIFY_INPUT', r.message]);
  });
});

describe('X509VerifyCache', () => {
  it('serves a repeated chain from the cache and still authorizes each call', () => {
    const cache = new X509VerifyCache();
    const chain = [leaf.der, a.intermediate.der];
    const first = verifyX509Svid(chain, bundles, { now: T0, cache });
    const second = verifyX509Svid(chain, bundles, { now: T0 + 1000, cache });
    expect(second).toEqual(first);
    expect(cache.stats()).toEqual({ size: 1, hits: 1, misses: 1 });
    expectFail(
      verifyX509Svid(chain, bundles, { now: T0, cache, authorize: matchMemberOf(b.td) }),
      'ERR_VERIFY_ID_NOT_AUTHORIZED',
    );
    expect(cache.stats().hits).toBe(2);
  });

  it('is invalidated by a rotated bundle (different object) and re-verifies against it', async () => {
    const cache = new X509VerifyCache();
    const source = new BundleSet([a.bundle]);
    const chain = [leaf.der, a.intermediate.der];
    expect(verifyX509Svid(chain, source, { now: T0, cache }).ok).toBe(true);
    // Same content, new object and sequence: a miss, verified again, still fine.
    source.set(a.bundle.withSequence(2n));
    expect(verifyX509Svid(chain, source, { now: T0, cache }).ok).toBe(true);
    expect(cache.stats()).toMatchObject({ hits: 0, misses: 2 });
    // Rotated to a new root: the cached success must not survive.
    const rotated = await createCa({
      trustDomain: a.td,
      notBefore: new Date(T0 - DAY),
      notAfter: new Date(T0 + DAY),
    });
    source.set(TrustBundle.create({ trustDomain: a.td, x509Authorities: [rotated.der], sequence: 3n }));
    expectFail(verifyX509Svid(chain, source, { now: T0, cache }), 'ERR_VERIFY_X509_UNTRUSTED');
  });

  it('is invalidated by revocation and by removal of the bundle', () => {
    const cache = new X509VerifyCache();
    const source = new BundleSet([a.bundle]);
    const chain = [leaf.der, a.intermediate.der];
    expect(verifyX509Svid(chain, source, { now: T0, cache }).ok).toBe(true);
    source.set(TrustBundle.create({ trustDomain: a.td, sequence: 9n }));
    expectFail(verifyX509Svid(chain, source, { now: T0, cache }), 'ERR_VERIFY_BUNDLE_REVOKED');
    source.set(a.bundle);
    expect(verifyX509Svid(chain, source, { now: T0, cache }).ok).toBe(true);
    source.delete(a.td);
    expectFail(verifyX509Svid(chain, source, { now: T0, cache }), 'ERR_VERIFY_NO_BUNDLE');
  });

  it('does not serve an entry outside its validity window', () => {
    const cache = new X509VerifyCache();
    const chain = [leaf.der, a.intermediate.der];
    expect(verifyX509Svid(chain, bundles, { now: T0, cache }).ok).toBe(true);
    expectFail(verifyX509Svid(chain, bundles, { now: T0 + HOUR + 1, cache }), 'ERR_VERIFY_X509_EXPIRED');
    expect(cache.size).toBe(0);
    expect(verifyX509Svid(chain, bundles, { now: T0, cache }).ok).toBe(true);
    expectFail(
      verifyX509Svid(chain, bundles, { now: T0 - HOUR - 1, cache }),
      'ERR_VERIFY_X509_NOT_YET_VALID',
    );
  });

  it('never caches failures', () => {
    const cache = new X509VerifyCache();
    verifyX509Svid([leaf.der], bundles, { now: T0, cache });
    expect(cache.size).toBe(0);
  });

  it('keeps at most maxEntries, dropping the least recently used', async () => {
    const cache = new X509VerifyCache({ maxEntries: 2 });
    const chains = await Promise.all(
      ['/1', '/2', '/3'].map(async (p) => [(await a.svid(p)).der, a.intermediate.der]),
    );
    const [c1, c2, c3] = chains as [Uint8Array[], Uint8Array[], Uint8Array[]];
    for (const c of [c1, c2]) verifyX509Svid(c, bundles, { now: T0, cache });
    verifyX509Svid(c1, bundles, { now: T0, cache }); // c1 is now the most recent
    verifyX509Svid(c3, bundles, { now: T0, cache }); // evicts c2
    expect(cache.size).toBe(2);
    const before = cache.stats();
    verifyX509Svid(c1, bundles, { now: T0, cache });
    verifyX509Svid(c2, bundles, { now: T0, cache });
    expect(cache.stats().hits - before.hits).toBe(1);
    expect(cache.stats().misses - before.misses).toBe(1);
    expect(() => new X509VerifyCache({ maxEntries: 0 })).toThrow(TypeError);
  });
});

/** Minimal DER surgery for algorithms src/adapters/pki and WebCrypto cannot sign with (MD5, SHA-1). */
function derTlv(b: Uint8Array, pos: number): { start: number; end: number } {
  let len = b[pos + 1]!;
  let start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i]!;
    start += n;
  }
  return { start, end: start + len };
}

function derWrap(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const body = Buffer.concat(parts);
  const n = body.length;
  const len =
    n < 0x80
      ? [n]
      : n < 0x100
        ? [0x81, n]
        : n < 0x10000
          ? [0x82, n >> 8, n & 0xff]
          : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return Buffer.concat([Uint8Array.from([tag, ...len]), body]);
}

/** AlgorithmIdentifiers for re-signing (RFC 3279). */
const ALG = {
  md5WithRsa: Buffer.from('300d06092a864886f70d0101040500', 'hex'),
  sha1WithRsa: Buffer.from('300d06092a864886f70d0101050500', 'hex'),
  ecdsaWithSha1: Buffer.from('300906072a8648ce3d0401', 'hex'),
} as const;

/**
 * Re-signs `der` with `algId`/`hash` under `issuerKeyPem`, rewriting both signature
 * AlgorithmIdentifiers (RFC 5280 §4.1.1.2): a certificate that is valid in every respect but its
 * signature algorithm.
 */
function resign(der: Uint8Array, algId: Uint8Array, hash: string, issuerKeyPem: string): Uint8Array {
  const cert = derTlv(der, 0);
  const tbs = derTlv(der, cert.start);
  let p = tbs.start;
  if (der[p] === 0xa0) p = derTlv(der, p).end; // version
  p = derTlv(der, p).end; // serialNumber
  const alg = derTlv(der, p);
  const newTbs = derWrap(0x30, der.subarray(tbs.start, p), algId, der.subarray(alg.end, tbs.end));
  const signature = sign(hash, newTbs, createPrivateKey(issuerKeyPem));
  return new Uint8Array(derWrap(0x30, newTbs, algId, derWrap(0x03, Uint8Array.of(0), signature)));
}

/** A certificate built with @peculiar/x509 for keys src/adapters/pki will not make (RSA-512, RSA-1024). */
async function customCert(opts: {
  issuer: { subject: string; key: webcrypto.CryptoKey; signing: webcrypto.Algorithm };
  publicKey: webcrypto.CryptoKey;
  ca: boolean;
  uri: string;
  subject: string;
}): Promise<Uint8Array> {
  const cert = await X509CertificateGenerator.create({
    serialNumber: '0a',
    subject: opts.subject,
    issuer: opts.issuer.subject,
    notBefore: new Date(T0 - HOUR),
    notAfter: new Date(T0 + HOUR),
    publicKey: opts.publicKey,
    signingKey: opts.issuer.key,
    signingAlgorithm: opts.issuer.signing,
    extensions: [
      new BasicConstraintsExtension(opts.ca, undefined, true),
      new KeyUsagesExtension(
        opts.ca ? KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign : KeyUsageFlags.digitalSignature,
        true,
      ),
      SAN(opts.uri),
    ],
  });
  return new Uint8Array(cert.rawData);
}

async function rsaKeys(bits: number): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(
    {
      name: 'RSASSA-PKCS1-v1_5',
      modulusLength: bits,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: 'SHA-256',
    },
    true,
    ['sign', 'verify'],
  )) as webcrypto.CryptoKeyPair;
}

describe('verifyX509Svid: signature algorithm and key policy on every certificate (as go-spiffe)', () => {
  let r: TestPki;
  let rsaLeaf: IssuedCert;
  let rsaBundles: BundleSet;

  beforeAll(async () => {
    r = await makePki('rsa.test', { keyAlg: 'rsa-2048' });
    rsaLeaf = await r.svid('/w');
    rsaBundles = new BundleSet([r.bundle, a.bundle]);
  }, 30_000);

  it('accepts RSA PKCS#1 v1.5 with SHA-256 throughout (control)', () => {
    expect(verifyX509Svid([rsaLeaf.der, r.intermediate.der], rsaBundles, { now: T0 }).ok).toBe(true);
  });

  it.each([
    ['md5WithRSAEncryption', ALG.md5WithRsa, 'md5'],
    ['sha1WithRSAEncryption', ALG.sha1WithRsa, 'sha1'],
  ] as const)('refuses a leaf signed with %s', (name, algId, hash) => {
    const weak = resign(rsaLeaf.der, algId, hash, r.intermediate.privateKeyPem!);
    // Valid but for the algorithm: OpenSSL verifies the signature, so only the policy refuses it.
    expect(new X509Certificate(weak).verify(r.intermediate.certificate.publicKey)).toBe(true);
    expectFail(
      verifyX509Svid([weak, r.intermediate.der], rsaBundles, { now: T0 }),
      'ERR_VERIFY_X509_SIGNATURE_ALGORITHM',
      new RegExp(`^leaf certificate is signed with ${name}, which is not accepted`),
    );
  });

  it('refuses an intermediate signed with SHA-1 by the authority', () => {
    const weak = resign(r.intermediate.der, ALG.sha1WithRsa, 'sha1', r.root.privateKeyPem!);
    expect(new X509Certificate(weak).verify(r.root.certificate.publicKey)).toBe(true);
    expectFail(
      verifyX509Svid([rsaLeaf.der, weak], rsaBundles, { now: T0 }),
      'ERR_VERIFY_X509_SIGNATURE_ALGORITHM',
      /^intermediate certificate 1 is signed with sha1WithRSAEncryption/,
    );
  });

  it('refuses an ECDSA leaf signed with ecdsa-with-SHA1', () => {
    const weak = resign(leaf.der, ALG.ecdsaWithSha1, 'sha1', a.intermediate.privateKeyPem!);
    expect(new X509Certificate(weak).verify(a.intermediate.certificate.publicKey)).toBe(true);
    expectFail(
      verifyX509Svid([weak, a.intermediate.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_SIGNATURE_ALGORITHM',
      /ecdsa-with-SHA1/,
    );
  });

  it('accepts RSASSA-PSS with SHA-256 (hash read from the parameters)', async () => {
    const pssCa = (await webcrypto.subtle.generateKey(
      { name: 'RSA-PSS', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
      true,
      ['sign', 'verify'],
    )) as webcrypto.CryptoKeyPair;
    const inter = await customCert({
      issuer: {
        subject: new PeculiarCertificate(Uint8Array.from(a.root.der)).subject,
        key: a.root.keys!.privateKey as webcrypto.CryptoKey,
        signing: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.Algorithm,
      },
      publicKey: pssCa.publicKey,
      ca: true,
      uri: 'spiffe://a.test',
      subject: 'O=pss intermediate',
    });
    const l = await customCert({
      issuer: {
        subject: 'O=pss intermediate',
        key: pssCa.privateKey,
        signing: { name: 'RSA-PSS', saltLength: 32 } as webcrypto.Algorithm,
      },
      publicKey: (await generateKeyPair()).publicKey as webcrypto.CryptoKey,
      ca: false,
      uri: 'spiffe://a.test/pss',
      subject: 'O=pss leaf',
    });
    expect(parseCertificateDer(l).signatureAlgorithm).toBe('RSASSA-PSS(sha256)');
    const r = verifyX509Svid([l, inter], bundles, { now: T0 });
    expect(r.ok ? r.id.toString() : `${r.code}: ${r.message}`).toBe('spiffe://a.test/pss');
  });

  it('refuses an RSA-512 intermediate, and an RSA-1024 leaf', async () => {
    const weakCa = await rsaKeys(512);
    const rootSubject = new PeculiarCertificate(Uint8Array.from(a.root.der)).subject;
    const inter = await customCert({
      issuer: {
        subject: rootSubject,
        key: a.root.keys!.privateKey as webcrypto.CryptoKey,
        signing: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.Algorithm,
      },
      publicKey: weakCa.publicKey,
      ca: true,
      uri: 'spiffe://a.test',
      subject: 'O=weak intermediate',
    });
    const l = await customCert({
      issuer: {
        subject: 'O=weak intermediate',
        key: weakCa.privateKey,
        signing: { name: 'RSASSA-PKCS1-v1_5' },
      },
      publicKey: (await generateKeyPair()).publicKey as webcrypto.CryptoKey,
      ca: false,
      uri: 'spiffe://a.test/w',
      subject: 'O=leaf',
    });
    // The chain is otherwise sound: names and signatures link up to a.test's root.
    expect(new X509Certificate(l).verify(new X509Certificate(inter).publicKey)).toBe(true);
    expect(new X509Certificate(inter).verify(a.root.certificate.publicKey)).toBe(true);
    expectFail(
      verifyX509Svid([l, inter], bundles, { now: T0 }),
      'ERR_VERIFY_X509_KEY',
      /^intermediate certificate 1 has a 512-bit RSA key; at least 2048 bits are required/,
    );

    const weakLeafKey = await rsaKeys(1024);
    const weakLeaf = await customCert({
      issuer: {
        subject: new PeculiarCertificate(Uint8Array.from(a.intermediate.der)).subject,
        key: a.intermediate.keys!.privateKey as webcrypto.CryptoKey,
        signing: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.Algorithm,
      },
      publicKey: weakLeafKey.publicKey,
      ca: false,
      uri: 'spiffe://a.test/w',
      subject: 'O=weak leaf',
    });
    expectFail(
      verifyX509Svid([weakLeaf, a.intermediate.der], bundles, { now: T0 }),
      'ERR_VERIFY_X509_KEY',
      /^leaf certificate has a 1024-bit RSA key/,
    );
  }, 30_000);
});
