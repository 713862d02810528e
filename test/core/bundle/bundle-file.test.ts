import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, type IssuedCert } from '../../../src/adapters/pki/index.js';
import { bundleFromPem, detectBundleFormat, parseBundleFile } from '../../../src/core/bundle/bundle-file.js';
import { marshalBundle, marshalBundleMap, TrustBundle } from '../../../src/core/bundle/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';

const tdA = TrustDomain.parse('a.test');
const tdB = TrustDomain.parse('b.test');
const T0 = new Date('2026-01-01T00:00:00Z');
const T1 = new Date('2027-01-01T00:00:00Z');
let caA: IssuedCert;
let files: Record<string, string>;

beforeAll(async () => {
  caA = await createCa({ trustDomain: tdA, notBefore: T0, notAfter: T1 });
  const caA2 = await createCa({ trustDomain: tdA, notBefore: T0, notAfter: T1 });
  const caB = await createCa({ trustDomain: tdB, notBefore: T0, notAfter: T1 });
  const bundleA = TrustBundle.create({ trustDomain: tdA, x509Authorities: [caA.der], sequence: 7n });
  const bundleB = TrustBundle.create({ trustDomain: tdB, x509Authorities: [caB.der] });
  files = {
    // spire-server bundle show: PEM blocks back to back.
    'show.pem': `${caA.pem}${caA2.pem}`,
    // x509 mint's bundle.pem, here with a leading blank line and CRLF line ends.
    'mint-bundle.pem': `\r\n${caA.pem.replace(/\n/g, '\r\n')}`,
    'map.json': marshalBundleMap([bundleA, bundleB]),
    'a.json': marshalBundle(bundleA),
    'key.pem': '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n',
  };
});

describe('detectBundleFormat / parseBundleFile (src/core/bundle/bundle-file.ts)', () => {
  it('tells PEM, Bundle Map and SPIFFE bundle apart, and garbage goes to the SPIFFE parser for its error', () => {
    expect(detectBundleFormat(files['show.pem']!)).toBe('pem');
    expect(detectBundleFormat(files['mint-bundle.pem']!)).toBe('pem');
    expect(detectBundleFormat(files['map.json']!)).toBe('bundle-map');
    expect(detectBundleFormat(files['a.json']!)).toBe('spiffe-bundle');
    expect(detectBundleFormat('garbage')).toBe('spiffe-bundle');
    expect(() => parseBundleFile(tdA, 'garbage')).toThrow(
      expect.objectContaining({ code: 'ERR_BUNDLE_JSON_SYNTAX' }),
    );
  });

  it('PEM gives X.509 authorities only; a Bundle Map gives the asked trust domain or says which it holds', () => {
    const pem = parseBundleFile(tdA, files['show.pem']!);
    expect(pem.format).toBe('pem');
    expect(pem.bundle.x509Authorities).toHaveLength(2);
    expect(pem.bundle.jwtAuthorities.size).toBe(0);
    expect(pem.bundle.sequence).toBe(0n);
    expect(bundleFromPem(tdA, files['mint-bundle.pem']!).x509Authorities).toHaveLength(1);
    const fromMap = parseBundleFile(tdB, files['map.json']!);
    expect(fromMap.format).toBe('bundle-map');
    expect(fromMap.bundle.trustDomain.name).toBe('b.test');
    expect(() => parseBundleFile(TrustDomain.parse('c.test'), files['map.json']!)).toThrow(
      /no bundle for c\.test \(it holds a\.test, b\.test\)/,
    );
    expect(() => parseBundleFile(tdA, files['key.pem']!)).toThrow(
      expect.objectContaining({ code: 'ERR_BUNDLE_PEM_INVALID' }),
    );
  });
});
