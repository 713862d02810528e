import { X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCert } from '../../../src/adapters/pki/index.js';
import { BundleSet } from '../../../src/core/bundle/source.js';
import { KeyUsage, MAX_CERTIFICATE_BYTES, parseCertificateDer } from '../../../src/core/verify/der.js';
import { verifyX509Svid } from '../../../src/core/verify/index.js';
import { VerifyError } from '../../../src/errors.js';
import { makePki, T0, type TestPki } from '../../support/fixtures.js';

let pki: TestPki;
let leaf: IssuedCert;
let rsaLeaf: IssuedCert;

beforeAll(async () => {
  pki = await makePki('der.test');
  leaf = await pki.svid('/web', { dnsNames: ['web.local'], extraUris: ['https://example.org/x, y'] });
  rsaLeaf = await pki.svid('/rsa', { keyAlg: 'rsa-2048' });
}, 30_000);

/** Runs `fn`; returns nothing, or the thrown error when it is a coded VerifyError. Anything else fails. */
function onlyCodedErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(VerifyError);
    expect((err as VerifyError).code).toBe('ERR_VERIFY_X509_CERTIFICATE');
  }
}

describe('parseCertificateDer', () => {
  it('reads what node:crypto reads, plus the fields node does not expose', () => {
    const f = parseCertificateDer(leaf.der);
    const node = new X509Certificate(leaf.der);
    expect(f.notBefore).toBe(Date.parse(node.validFrom));
    expect(f.notAfter).toBe(Date.parse(node.validTo));
    expect(f.ca).toBe(false);
    expect(f.pathLength).toBeUndefined();
    expect(f.keyUsage).toBe(KeyUsage.digitalSignature);
    // node joins SAN entries with ", ", so a URI containing ", " is ambiguous there; not here.
    expect(f.uris).toEqual(['spiffe://der.test/web', 'https://example.org/x, y']);
    expect(f.unhandledCritical).toEqual([]);
    expect(Buffer.from(f.issuer).equals(Buffer.from(parseCertificateDer(pki.intermediate.der).subject))).toBe(
      true,
    );
  });

  it('reads CA fields and RSA leaf key usage', async () => {
    const ca = parseCertificateDer(pki.root.der);
    expect([ca.ca, ca.keyUsage]).toEqual([
      true,
      KeyUsage.keyCertSign | KeyUsage.cRLSign | KeyUsage.digitalSignature,
    ]);
    expect(Buffer.from(ca.issuer).equals(Buffer.from(ca.subject))).toBe(true);
    expect(parseCertificateDer(rsaLeaf.der).keyUsage).toBe(
      KeyUsage.digitalSignature | KeyUsage.keyEncipherment,
    );
  });

  it.each([
    ['empty input', new Uint8Array(0)],
    ['indefinite length', Uint8Array.of(0x30, 0x80, 0, 0)],
    ['non-minimal length', Uint8Array.of(0x30, 0x81, 0x01, 0x00)],
    ['length past the end', Uint8Array.of(0x30, 0x05, 0x00)],
    ['high tag number', Uint8Array.of(0x1f, 0x01, 0x00)],
    ['trailing data', Uint8Array.of(0x30, 0x00, 0x00)],
    ['5-octet length', Uint8Array.of(0x30, 0x85, 1, 0, 0, 0, 0)],
  ])('refuses %s with ERR_VERIFY_X509_CERTIFICATE', (_n, bytes) => {
    expect(() => parseCertificateDer(bytes)).toThrow(VerifyError);
    expect(() => parseCertificateDer(bytes)).toThrow(/malformed certificate DER/);
  });

  it('refuses oversized input before parsing', () => {
    expect(() => parseCertificateDer(new Uint8Array(MAX_CERTIFICATE_BYTES + 1))).toThrow(/maximum is 65536/);
  });

  it('refuses a certificate whose outer and inner signature algorithms differ', () => {
    // Flip one byte inside the outer signatureAlgorithm OID (just after the TBS).
    const der = Uint8Array.from(leaf.der);
    const tbsLen = (der[6]! << 8) | der[7]!; // leaf is < 64 KiB: 30 82 xx xx 30 82 yy yy
    const algOid = 4 + 4 + tbsLen + 4; // outer SEQ header, TBS, alg SEQ + OID headers
    der[algOid]! ^= 0x01;
    expect(() => parseCertificateDer(der)).toThrow(/signatureAlgorithm differs/);
  });
});

describe('parseCertificateDer: fuzzing (only coded errors, never anything else)', () => {
  it('arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) =>
        onlyCodedErrors(() => parseCertificateDer(bytes)),
      ),
      { numRuns: 2000 },
    );
  });

  it('arbitrary bytes behind a plausible SEQUENCE header', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (body) => {
        const der = Uint8Array.of(0x30, 0x82, body.length >> 8, body.length & 0xff, ...body);
        onlyCodedErrors(() => parseCertificateDer(der));
      }),
      { numRuns: 2000 },
    );
  });

  it('mutated real certificates (byte flips, truncation, insertion)', () => {
    const base = leaf.der;
    const mutation = fc.oneof(
      fc.record({
        kind: fc.constant('flip' as const),
        at: fc.nat(base.length - 1),
        xor: fc.integer({ min: 1, max: 255 }),
      }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat(base.length - 1) }),
      fc.record({ kind: fc.constant('insert' as const), at: fc.nat(base.length - 1), byte: fc.nat(255) }),
    );
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (ms) => {
        let der = Uint8Array.from(base);
        for (const m of ms) {
          const at = Math.min(m.at, der.length - 1);
          if (m.kind === 'flip') der[at]! ^= m.xor;
          else if (m.kind === 'cut') der = der.subarray(0, at);
          else der = Uint8Array.of(...der.subarray(0, at), m.byte, ...der.subarray(at));
          if (der.length === 0) break;
        }
        onlyCodedErrors(() => parseCertificateDer(der));
      }),
      { numRuns: 1500 },
    );
  });

  it('verifyX509Svid on mutated chains returns a coded failure and never throws', () => {
    const source = new BundleSet([pki.bundle]);
    fc.assert(
      fc.property(
        fc.nat(leaf.der.length - 1),
        fc.integer({ min: 1, max: 255 }),
        fc.boolean(),
        (at, xor, inter) => {
          const l = Uint8Array.from(leaf.der);
          const i = Uint8Array.from(pki.intermediate.der);
          if (inter) i[at % i.length]! ^= xor;
          else l[at]! ^= xor;
          const r = verifyX509Svid([l, i], source, { now: T0 });
          // Every byte is covered by a signature or by a structural check: no flip may verify.
          expect(r.ok).toBe(false);
          if (!r.ok) expect(r.code).toMatch(/^ERR_VERIFY_/);
        },
      ),
      { numRuns: 400 },
    );
  });
});
