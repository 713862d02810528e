import { createHash, X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseBundleMap } from '../../src/core/bundle/bundle-map.js';
import { marshalBundle, parseBundle } from '../../src/core/bundle/codec.js';
import { BundleSet } from '../../src/core/bundle/source.js';
import { TrustBundle, type X509Authority } from '../../src/core/bundle/trust-bundle.js';
import { verifyX509Svid } from '../../src/core/verify/x509-svid.js';
import { BundleError } from '../../src/errors.js';
import { makePki, T0, type TestPki } from '../support/fixtures.js';

/**
 * Inputs scripts/fuzz.ts found that broke the "a value or a coded error, never another exception"
 * property, reduced to the one change that matters, each with the outcome now required.
 */

/** Replaces the first occurrence of `find` in `der` with `replace` (same length). */
function patch(der: Uint8Array, find: number[], replace: number[]): Uint8Array {
  const b = Buffer.from(der);
  const at = b.indexOf(Buffer.from(find));
  if (at === -1) throw new Error('pattern not found');
  Buffer.from(replace).copy(b, at);
  return new Uint8Array(b);
}

/** id-ecPublicKey (1.2.840.10045.2.1) with its first arc byte changed: the key no longer decodes. */
const EC_KEY_OID = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const BROKEN_OID = [0x06, 0x07, 0xfa, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/** A P-256 SubjectPublicKeyInfo's BIT STRING of an uncompressed point (0x04) made a point of type 0. */
const EC_POINT = [0x03, 0x42, 0x00, 0x04];
const BROKEN_POINT = [0x03, 0x42, 0x00, 0x00];

describe('fuzz regressions: certificates whose public key does not decode (OpenSSL decodes lazily)', () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await makePki('fuzz.test');
  });

  it('bundle parse: an x509-svid entry whose certificate key does not decode is ERR_BUNDLE_X5C_CERTIFICATE, not an OpenSSL error', () => {
    // Found as: {"keys":[{"use":"x509-svid","kty":"EC",…,"x5c":["…MFkwEwYH+oZIzj0CAQ…"]}]} — the
    // base64 "KoZI" of the key algorithm OID mutated to "+oZI".
    const broken = patch(pki.root.der, EC_KEY_OID, BROKEN_OID);
    const doc = JSON.parse(marshalBundle(pki.bundle)) as { keys: { use: string; x5c?: string[] }[] };
    doc.keys.find((k) => k.use === 'x509-svid')!.x5c = [Buffer.from(broken).toString('base64')];
    const text = JSON.stringify(doc);
    const err = (() => {
      try {
        parseBundle(pki.td, text);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(BundleError);
    expect((err as BundleError).code).toBe('ERR_BUNDLE_X5C_CERTIFICATE');
    // The same through a Bundle Map, and building a bundle from the DER directly.
    expect(() => parseBundleMap(`{"trust_domains":{"fuzz.test":${text}}}`)).toThrow(BundleError);
    expect(() => TrustBundle.create({ trustDomain: pki.td, x509Authorities: [broken] })).toThrow(
      /public key cannot be decoded/,
    );
  });

  it('X509-SVID verify: an intermediate whose key does not decode is a coded failure, not a throw', async () => {
    // Found as a two-certificate chain [leaf, intermediate] with the intermediate's EC point type
    // byte (0x04) mutated to 0x00.
    const leaf = await pki.svid('/workload');
    const broken = patch(pki.intermediate.der, EC_POINT, BROKEN_POINT);
    expect(() => new X509Certificate(broken).publicKey).toThrow(); // the premise
    const r = verifyX509Svid([leaf.der, broken], new BundleSet([pki.bundle]), { now: T0 });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.code).toBe('ERR_VERIFY_X509_CERTIFICATE');
      expect(r.message).toMatch(/public key cannot be decoded/);
    }
  });

  it('X509-SVID verify: a bundle authority whose key does not decode is unusable, reported, never thrown', async () => {
    const leaf = await pki.svid('/workload');
    const der = patch(pki.root.der, EC_POINT, BROKEN_POINT);
    // Built as an object, bypassing x509AuthorityFromDer's check (the verifier must not rely on it).
    const authority: X509Authority = {
      der,
      certificate: new X509Certificate(der),
      sha256: createHash('sha256').update(der).digest('hex'),
      notAfter: T0 + 86_400_000,
    };
    const bundle = TrustBundle.create({ trustDomain: pki.td, x509Authorities: [authority] });
    const r = verifyX509Svid([leaf.der, pki.intermediate.der], new BundleSet([bundle]), { now: T0 });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.code).toBe('ERR_VERIFY_X509_UNTRUSTED');
      expect(r.message).toMatch(/unusable.*public key cannot be decoded/);
    }
  });
});
