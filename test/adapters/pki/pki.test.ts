import { X509Certificate as NodeX509 } from 'node:crypto';
import 'reflect-metadata';
import { KeyUsageFlags, KeyUsagesExtension, X509Certificate } from '@peculiar/x509';
import { describe, expect, it } from 'vitest';
import {
  createCa,
  createCsr,
  createX509Svid,
  generateKeyPair,
  type KeyAlgorithm,
  pemCertificateBlocks,
  pemToDerList,
  scanPem,
  signCsr,
  toPem,
} from '../../../src/adapters/pki/index.js';
import { SpiffeId, TrustDomain } from '../../../src/core/spiffeid/index.js';
import { BundleError, VerifyError } from '../../../src/errors.js';

const td = TrustDomain.parse('example.org');
const id = SpiffeId.parse('spiffe://example.org/workload/web');
const notBefore = new Date('2030-01-01T00:00:00Z');
const notAfter = new Date('2030-01-02T00:00:00Z');

/** Key usage bits and critical flag, read back with an independent parser. */
function keyUsageOf(der: Uint8Array): { usages: number; critical: boolean } | undefined {
  const ext = new X509Certificate(der).getExtension(KeyUsagesExtension);
  return ext ? { usages: ext.usages, critical: ext.critical } : undefined;
}

describe('createCa', () => {
  it('creates a self-signed root with CA extensions and the trust domain ID', async () => {
    const root = await createCa({ trustDomain: td, notBefore, notAfter });
    const cert = new NodeX509(root.der);
    expect(cert.ca).toBe(true);
    expect(cert.subjectAltName).toBe('URI:spiffe://example.org');
    expect(cert.checkIssued(cert)).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(new Date(cert.validFrom).getTime()).toBe(notBefore.getTime());
    expect(new Date(cert.validTo).getTime()).toBe(notAfter.getTime());
    expect(keyUsageOf(root.der)).toEqual({
      usages: KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign | KeyUsageFlags.digitalSignature,
      critical: true,
    });
    expect(root.keys?.privateKey).toBeDefined();
    expect(root.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(root.pem).toBe(toPem(root.der));
  });

  it('chains an intermediate to its root, with path length and AKI', async () => {
    const root = await createCa({ trustDomain: td, notBefore, notAfter, keyAlg: 'ec-p384' });
    const inter = await createCa({ trustDomain: td, notBefore, notAfter, issuer: root, pathLength: 0 });
    expect(inter.certificate.ca).toBe(true);
    expect(inter.certificate.checkIssued(root.certificate)).toBe(true);
    expect(inter.certificate.verify(root.certificate.publicKey)).toBe(true);
    expect(inter.certificate.verify(inter.certificate.publicKey)).toBe(false);
    expect(inter.certificate.toLegacyObject().ext_key_usage).toBeUndefined();
    expect(inter.certificate.subject).not.toBe(root.certificate.subject);
  });

  it('uses random serial numbers', async () => {
    const a = await createCa({ trustDomain: td, notBefore, notAfter });
    const b = await createCa({ trustDomain: td, notBefore, notAfter });
    expect(a.certificate.serialNumber).not.toBe(b.certificate.serialNumber);
    expect(a.certificate.serialNumber).toMatch(/^[0-7][0-9A-F]{31}$/);
  });

  it('refuses an inverted validity period', async () => {
    await expect(createCa({ trustDomain: td, notBefore: notAfter, notAfter: notBefore })).rejects.toThrow(
      TypeError,
    );
  });
});

describe('createX509Svid', () => {
  it.each<KeyAlgorithm>(['ec-p256', 'ec-p384', 'rsa-2048', 'ed25519'])(
    'issues a %s leaf that chains leaf → intermediate → root',
    async (keyAlg) => {
      const root = await createCa({ trustDomain: td, notBefore, notAfter, keyAlg });
      const inter = await createCa({ trustDomain: td, notBefore, notAfter, issuer: root, keyAlg });
      const leaf = await createX509Svid({
        id,
        issuer: inter,
        notBefore,
        notAfter,
        keyAlg,
        dnsNames: ['web'],
      });
      const cert = new NodeX509(leaf.der);
      expect(cert.ca).toBe(false);
      expect(cert.subjectAltName).toBe('URI:spiffe://example.org/workload/web, DNS:web');
      expect(cert.checkIssued(inter.certificate)).toBe(true);
      expect(cert.verify(inter.certificate.publicKey)).toBe(true);
      expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
      const expected =
        keyAlg === 'rsa-2048'
          ? KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment
          : KeyUsageFlags.digitalSignature;
      expect(keyUsageOf(leaf.der)).toEqual({ usages: expected, critical: true });
      expect(cert.publicKey.asymmetricKeyType).toBe(
        { 'ec-p256': 'ec', 'ec-p384': 'ec', 'rsa-2048': 'rsa', ed25519: 'ed25519' }[keyAlg],
      );
    },
    30_000,
  );

  it('builds the negative variants it is asked for', async () => {
    const root = await createCa({ trustDomain: td, notBefore, notAfter });
    const odd = await createX509Svid({
      id,
      issuer: root,
      notBefore,
      notAfter,
      extraUris: ['spiffe://example.org/other'],
      isCa: true,
      keyUsage: 'certSign',
      serverAuth: false,
    });
    expect(odd.certificate.subjectAltName).toBe(
      'URI:spiffe://example.org/workload/web, URI:spiffe://example.org/other',
    );
    expect(odd.certificate.ca).toBe(true);
    expect(odd.certificate.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(keyUsageOf(odd.der)?.usages).toBe(KeyUsageFlags.digitalSignature | KeyUsageFlags.keyCertSign);

    const bare = await createX509Svid({
      id,
      issuer: root,
      notBefore,
      notAfter,
      omitUri: true,
      keyUsage: 'none',
    });
    expect(bare.certificate.subjectAltName).toBeUndefined();
    expect(keyUsageOf(bare.der)).toBeUndefined();
  });

  it('refuses an issuer without a private key (API misuse)', async () => {
    const root = await createCa({ trustDomain: td, notBefore, notAfter });
    const { keys: _k, ...noKeys } = root;
    await expect(createX509Svid({ id, issuer: noKeys, notBefore, notAfter })).rejects.toThrow(TypeError);
  });
});

describe('createCsr / signCsr', () => {
  it('certifies the CSR key for the given ID, ignoring the requested names', async () => {
    const root = await createCa({ trustDomain: td, notBefore, notAfter });
    const keys = await generateKeyPair();
    const csrDer = await createCsr({ keys, id: SpiffeId.parse('spiffe://evil.org/x'), dnsNames: ['a'] });
    const svid = await signCsr({ csrDer, issuer: root, id, notBefore, notAfter, dnsNames: ['b'] });
    expect(svid.certificate.subjectAltName).toBe('URI:spiffe://example.org/workload/web, DNS:b');
    expect(svid.certificate.verify(root.certificate.publicKey)).toBe(true);
    expect(svid.keys).toBeUndefined();
    const spki = (k: typeof svid.certificate.publicKey) => k.export({ type: 'spki', format: 'der' });
    const { subtle } = globalThis.crypto;
    const expected = Buffer.from(await subtle.exportKey('spki', keys.publicKey));
    expect(spki(svid.certificate.publicKey).equals(expected)).toBe(true);
  });

  it.each<KeyAlgorithm>(['ec-p384', 'rsa-2048', 'ed25519'])(
    'signs a %s CSR',
    async (alg) => {
      const root = await createCa({ trustDomain: td, notBefore, notAfter });
      const csrDer = await createCsr({ keys: await generateKeyPair(alg) });
      const svid = await signCsr({ csrDer, issuer: root, id, notBefore, notAfter });
      expect(svid.certificate.verify(root.certificate.publicKey)).toBe(true);
      expect(keyUsageOf(svid.der)?.usages).toBe(
        alg === 'rsa-2048'
          ? KeyUsageFlags.digitalSignature | KeyUsageFlags.keyEncipherment
          : KeyUsageFlags.digitalSignature,
      );
    },
    30_000,
  );

  it('refuses a CSR whose signature does not verify', async () => {
    const root = await createCa({ trustDomain: td, notBefore, notAfter });
    const csrDer = await createCsr({ keys: await generateKeyPair(), id });
    const tampered = Uint8Array.from(csrDer);
    tampered[tampered.length - 5]! ^= 0x01;
    const err = await signCsr({ csrDer: tampered, issuer: root, id, notBefore, notAfter }).catch((e) => e);
    expect(err).toBeInstanceOf(VerifyError);
    expect(err.code).toBe('ERR_VERIFY_CSR_INVALID');
  });

  it('refuses bytes that are not a CSR', async () => {
    const root = await createCa({ trustDomain: td, notBefore, notAfter });
    const err = await signCsr({
      csrDer: new Uint8Array([1, 2, 3]),
      issuer: root,
      id,
      notBefore,
      notAfter,
    }).catch((e) => e);
    expect(err).toBeInstanceOf(VerifyError);
    expect(err.code).toBe('ERR_VERIFY_CSR_INVALID');
  });
});

describe('PEM', () => {
  it('round-trips several blocks and ignores text around them', async () => {
    const root = await createCa({ trustDomain: td, notBefore, notAfter });
    const leaf = await createX509Svid({ id, issuer: root, notBefore, notAfter });
    const pem = `subject=leaf\n${leaf.pem}\nsome text\n${root.pem}`;
    const ders = pemToDerList(pem, 'CERTIFICATE');
    expect(ders.map((d) => Buffer.from(d).toString('hex'))).toEqual(
      [leaf.der, root.der].map((d) => Buffer.from(d).toString('hex')),
    );
    expect(leaf.pem.split('\n').every((l) => l.length <= 64)).toBe(true);
  });

  it.each([
    ['no block', 'hello'],
    ['empty string', ''],
    ['mismatched labels', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n'],
    ['bad base64', '-----BEGIN CERTIFICATE-----\nA*AA\n-----END CERTIFICATE-----\n'],
    ['empty body', '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n'],
    [
      'truncated second block',
      '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nAA',
    ],
  ])('refuses %s with ERR_BUNDLE_PEM_INVALID', (_name, pem) => {
    const err = (() => {
      try {
        pemToDerList(pem);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(BundleError);
    expect((err as BundleError).code).toBe('ERR_BUNDLE_PEM_INVALID');
  });

  it.each([
    [
      'a BEGIN inside a block',
      '-----BEGIN CERTIFICATE-----\nAAAA\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
    ],
    ['a lowercase label', '-----BEGIN certificate-----\nAAAA\n-----END certificate-----\n'],
    ['data after padding', '-----BEGIN CERTIFICATE-----\nAA=A\n-----END CERTIFICATE-----\n'],
  ])('refuses %s with ERR_BUNDLE_PEM_INVALID', (_name, pem) => {
    expect(() => pemToDerList(pem)).toThrow(expect.objectContaining({ code: 'ERR_BUNDLE_PEM_INVALID' }));
  });

  it('accepts CRLF line ends and a block on one line', () => {
    const crlf = '-----BEGIN CERTIFICATE-----\r\nAQID\r\n-----END CERTIFICATE-----\r\n';
    expect(pemToDerList(crlf, 'CERTIFICATE')).toEqual([new Uint8Array([1, 2, 3])]);
    const oneLine = '-----BEGIN CERTIFICATE-----AQID-----END CERTIFICATE-----';
    expect(pemToDerList(oneLine, 'CERTIFICATE')).toEqual([new Uint8Array([1, 2, 3])]);
  });

  describe('linear work (issue 16 item 7: a lazy [\\s\\S]*? pattern rescans the input from every BEGIN)', () => {
    /** Characters the scanner examined while refusing `text` (the injected work counter). */
    function work(text: string): number {
      let chars = 0;
      try {
        pemToDerList(text, 'CERTIFICATE', { onStep: (n) => (chars += n) });
      } catch {
        // refusals are expected; only the work counts
      }
      return chars;
    }
    const garbage = [
      ['unterminated BEGIN lines', '-----BEGIN CERTIFICATE-----\n'],
      ['BEGIN lines then one END', '-----BEGIN CERTIFICATE-----\nAAAA\n'],
      ['malformed BEGIN lines', '-----BEGIN \n'],
      ['dashes only', '-----'],
      ['complete blocks', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'],
    ] as const;
    it.each(garbage)('%s: 2N bytes cost at most twice the work of N (plus a constant)', (_name, unit) => {
      const n = Math.ceil((32 * 1024) / unit.length);
      const tail = unit.includes('END') ? '' : '-----END CERTIFICATE-----\n';
      const small = unit.repeat(n) + tail;
      const large = unit.repeat(2 * n) + tail;
      const a = work(small);
      const b = work(large);
      expect(a).toBeGreaterThan(0);
      // Every character is examined a bounded number of times.
      expect(a).toBeLessThanOrEqual(4 * small.length + 256);
      expect(b).toBeLessThanOrEqual(2 * a + 256);
    });

    it('refuses 512 KiB of unterminated BEGIN lines with a coded error after one pass', () => {
      const text = '-----BEGIN CERTIFICATE-----\n'.repeat(Math.ceil((512 * 1024) / 28));
      let chars = 0;
      expect(() => pemToDerList(text, 'CERTIFICATE', { onStep: (c) => (chars += c) })).toThrow(
        expect.objectContaining({
          code: 'ERR_BUNDLE_PEM_INVALID',
          message: expect.stringMatching(/BEGIN without a matching END/),
        }),
      );
      expect(chars).toBeLessThanOrEqual(text.length + 256);
    });
  });

  it('pemCertificateBlocks: the CERTIFICATE blocks as text, others skipped, linear on garbage', async () => {
    const root = await createCa({ trustDomain: td, notBefore, notAfter });
    const key = toPem(new Uint8Array([1, 2, 3]), 'PRIVATE KEY');
    expect(pemCertificateBlocks(`text\n${key}${root.pem}trailer`)).toEqual([root.pem.trimEnd()]);
    expect(pemCertificateBlocks('-----BEGIN CERTIFICATE-----\n'.repeat(20_000))).toEqual([]);
    let chars = 0;
    scanPem('-----BEGIN CERTIFICATE-----\n'.repeat(20_000), { onStep: (c) => (chars += c) });
    expect(chars).toBeLessThanOrEqual(28 * 20_000 + 256);
  });

  it('refuses a block with another label when a label is required', () => {
    expect(() => pemToDerList(toPem(new Uint8Array([1, 2, 3]), 'PRIVATE KEY'), 'CERTIFICATE')).toThrow(
      /expected label "CERTIFICATE", got "PRIVATE KEY"/,
    );
  });
});
