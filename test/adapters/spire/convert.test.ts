import { createPublicKey } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createX509Svid, type IssuedCert } from '../../../src/adapters/pki/index.js';
import {
  bundleFromWire,
  bundleMaskToWire,
  bundleToWire,
  parseInt64,
  parseUint64,
  relationshipFromWire,
  relationshipToWire,
  splitDerSequence,
  x509SvidFromWire,
} from '../../../src/adapters/spire/convert.js';
import { loadSpireApi } from '../../../src/adapters/spire/proto.js';
import type { WireBundle } from '../../../src/adapters/spire/wire.js';
import { bundlesEqual } from '../../../src/core/bundle/diff.js';
import { MAX_SEQUENCE, type TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { SpiffeId } from '../../../src/core/spiffeid/spiffe-id.js';
import { SpireError } from '../../../src/errors.js';
import { makeBundle, makeCa, makeJwtKey, NOT_AFTER, NOT_BEFORE, td } from './helpers.js';

const api = loadSpireApi();
/** Pushes a wire bundle through the real protobuf encoder/decoder. */
function viaProtobuf(b: WireBundle): WireBundle {
  const m = api.bundle.GetBundle!;
  return m.responseDeserialize(m.responseSerialize(b)) as WireBundle;
}

function expectConversionError(fn: () => unknown, message: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SpireError);
    expect((err as SpireError).code).toBe('ERR_SPIRE_CONVERSION');
    expect((err as SpireError).message).toMatch(message);
    return;
  }
  throw new Error('expected a conversion error');
}

let bundle: TrustBundle;
let ca: IssuedCert;
let leaf: IssuedCert;

beforeAll(async () => {
  bundle = await makeBundle('example.org', { x509: 2, jwt: 2, refreshHint: 300, sequence: MAX_SEQUENCE });
  ca = await makeCa('example.org');
  leaf = await createX509Svid({
    id: SpiffeId.parse('spiffe://example.org/w'),
    issuer: ca,
    notBefore: NOT_BEFORE,
    notAfter: NOT_AFTER,
  });
});

describe('bundleToWire / bundleFromWire', () => {
  it('round-trips every field through protobuf, uint64 max sequence included', () => {
    const wire = viaProtobuf(bundleToWire(bundle));
    expect(wire.trust_domain).toBe('example.org');
    expect(wire.sequence_number).toBe('18446744073709551615');
    expect(wire.refresh_hint).toBe('300');
    expect(wire.x509_authorities.map((a) => Buffer.from(a.asn1))).toEqual(
      bundle.x509Authorities.map((a) => Buffer.from(a.der)),
    );
    const jwt = [...bundle.jwtAuthorities.values()];
    expect(wire.jwt_authorities.map((k) => [k.key_id, Buffer.from(k.public_key), k.expires_at])).toEqual(
      jwt.map((j) => [j.kid, Buffer.from(j.spki), String(j.expiresAt)]),
    );
    const back = bundleFromWire(wire);
    expect(bundlesEqual(back, bundle, { jwtExpiry: true })).toBe(true);
    expect(back.sequence).toBe(MAX_SEQUENCE);
  });

  it('writes PKIX DER public keys that node parses back to the same key', () => {
    const wire = bundleToWire(bundle);
    const k = wire.jwt_authorities[0]!;
    const key = createPublicKey({ key: Buffer.from(k.public_key), format: 'der', type: 'spki' });
    expect(key.asymmetricKeyType).toBe('ec');
  });

  it('round-trips an empty bundle (all keys revoked)', async () => {
    const empty = (await makeBundle('a.test', { x509: 0, jwt: 0 })).withSequence(7n);
    const back = bundleFromWire(viaProtobuf(bundleToWire(empty)));
    expect(back.isEmpty()).toBe(true);
    expect(back.sequence).toBe(7n);
  });

  it('splits an asn1 holding concatenated certificates, as Go x509.ParseCertificates accepts', async () => {
    const ca2 = await makeCa('example.org');
    const wire = bundleToWire(bundle);
    wire.x509_authorities = [{ asn1: Buffer.concat([ca.der, ca2.der]), tainted: false }];
    const back = bundleFromWire(wire);
    expect(back.x509Authorities.map((a) => Buffer.from(a.der))).toEqual([
      Buffer.from(ca.der),
      Buffer.from(ca2.der),
    ]);
  });

  it('keeps exact duplicates once and drops tainted flags and WIT keys', () => {
    const wire = bundleToWire(bundle);
    wire.x509_authorities.push({ ...wire.x509_authorities[0]!, tainted: true });
    wire.jwt_authorities.push({ ...wire.jwt_authorities[0]! });
    wire.wit_authorities.push({ ...wire.jwt_authorities[0]! });
    const back = bundleFromWire(wire);
    expect(back.x509Authorities).toHaveLength(2);
    expect(back.jwtAuthorities.size).toBe(2);
  });

  it('refuses a kid repeated with a different key', () => {
    const wire = bundleToWire(bundle);
    const other = bundleToWire(bundle).jwt_authorities[1]!;
    wire.jwt_authorities.push({ ...other, key_id: wire.jwt_authorities[0]!.key_id });
    expectConversionError(
      () => bundleFromWire(wire),
      /bundle "example.org": JWT authority key ID .* is not unique/,
    );
  });

  const cases: [string, (w: WireBundle) => void, RegExp][] = [
    [
      'an invalid trust domain',
      (w) => (w.trust_domain = 'Bad Name'),
      /bundle "Bad Name": trust_domain is not a valid/,
    ],
    ['an empty trust domain', (w) => (w.trust_domain = ''), /trust_domain is not a valid/],
    ['a negative refresh hint', (w) => (w.refresh_hint = '-1'), /refresh_hint: -1 is negative/],
    [
      'a non-integer refresh hint',
      (w) => (w.refresh_hint = '1.5'),
      /refresh_hint: expected a decimal integer/,
    ],
    ['a refresh hint above int64', (w) => (w.refresh_hint = '9223372036854775808'), /outside int64/],
    ['a sequence above uint64', (w) => (w.sequence_number = '18446744073709551616'), /outside uint64/],
    ['a negative sequence', (w) => (w.sequence_number = '-1'), /outside uint64/],
    [
      'an empty asn1',
      (w) => (w.x509_authorities[1]!.asn1 = Buffer.alloc(0)),
      /x509_authorities\[1\]\.asn1: is empty/,
    ],
    [
      'asn1 that is not DER',
      (w) => (w.x509_authorities[0]!.asn1 = Buffer.from('hello')),
      /x509_authorities\[0\]\.asn1: byte 0/,
    ],
    [
      'truncated DER',
      (w) => (w.x509_authorities[0]!.asn1 = Buffer.from(w.x509_authorities[0]!.asn1).subarray(0, 50)),
      /claims \d+ bytes/,
    ],
    [
      'an empty key ID',
      (w) => (w.jwt_authorities[1]!.key_id = ''),
      /jwt_authorities\[1\]: JWT authority: key ID cannot be empty/,
    ],
    [
      'a public key that is not PKIX DER',
      (w) => (w.jwt_authorities[0]!.public_key = Buffer.from([0x30, 0x00])),
      /jwt_authorities\[0\]: .*not a valid public key/,
    ],
    [
      'a negative JWT expiry',
      (w) => (w.jwt_authorities[0]!.expires_at = '-5'),
      /jwt_authorities\[0\]\.expires_at: -5 is negative/,
    ],
  ];
  for (const [what, mutate, message] of cases) {
    it(`refuses ${what} with ERR_SPIRE_CONVERSION`, () => {
      const wire = bundleToWire(bundle);
      mutate(wire);
      expectConversionError(() => bundleFromWire(wire), message);
    });
  }

  it('refuses a certificate that is not a CA (cause: the BundleError)', () => {
    const wire = bundleToWire(bundle);
    wire.x509_authorities[0] = { asn1: Buffer.from(leaf.der), tainted: false };
    try {
      bundleFromWire(wire);
      expect.unreachable();
    } catch (err) {
      expect((err as SpireError).code).toBe('ERR_SPIRE_CONVERSION');
      expect(((err as SpireError).cause as { code: string }).code).toBe('ERR_BUNDLE_X5C_NOT_CA');
    }
  });

  it('checks the expected trust domain', () => {
    expectConversionError(
      () => bundleFromWire(bundleToWire(bundle), { expectedTrustDomain: td('other.org') }),
      /expected the bundle of "other.org", got "example.org"/,
    );
  });
});

describe('integer helpers', () => {
  it('parse int64/uint64 exactly at the limits', () => {
    expect(parseInt64('-9223372036854775808', 'f')).toBe(-(1n << 63n));
    expect(parseInt64('9223372036854775807', 'f')).toBe((1n << 63n) - 1n);
    expect(parseUint64('18446744073709551615', 'f')).toBe(MAX_SEQUENCE);
    expect(parseUint64(12, 'f')).toBe(12n);
    expectConversionError(() => parseUint64(2 ** 60, 'f'), /f: .* is not a safe integer/);
    expectConversionError(() => parseInt64(' 1', 'f'), /expected a decimal integer/);
  });

  it('splitDerSequence handles long-form lengths and refuses indefinite ones', () => {
    expect(splitDerSequence(Buffer.from([0x30, 0x81, 0x01, 0x05, 0x30, 0x00]), 'f')).toHaveLength(2);
    expectConversionError(
      () => splitDerSequence(Buffer.from([0x30, 0x80, 0x00, 0x00]), 'f'),
      /unsupported DER length/,
    );
    expectConversionError(() => splitDerSequence(Buffer.from([0x30]), 'f'), /length missing/);
  });
});

describe('bundleMaskToWire', () => {
  it('sets unspecified fields to false and never asks for WIT', () => {
    expect(bundleMaskToWire({ x509Authorities: true })).toEqual({
      x509_authorities: true,
      jwt_authorities: false,
      refresh_hint: false,
      sequence_number: false,
      wit_authorities: false,
    });
  });
});

describe('federation relationships', () => {
  const m = () => api.trustDomain.GetFederationRelationship!;

  it('round-trips https_spiffe with a bundle', () => {
    const rel = {
      trustDomain: td('example.org'),
      bundleEndpointUrl: 'https://127.0.0.1:8443',
      profile: {
        type: 'https_spiffe' as const,
        endpointSpiffeId: SpiffeId.parse('spiffe://example.org/spire/server'),
      },
      trustDomainBundle: bundle,
    };
    const wire = m().responseDeserialize(m().responseSerialize(relationshipToWire(rel)));
    const back = relationshipFromWire(wire as never);
    expect(back.trustDomain.name).toBe('example.org');
    expect(back.bundleEndpointUrl).toBe('https://127.0.0.1:8443');
    expect(back.profile).toEqual(rel.profile);
    expect(bundlesEqual(back.trustDomainBundle!, bundle)).toBe(true);
  });

  it('reads https_web from the zero-length field SPIRE sends', () => {
    const wire = m().responseDeserialize(Buffer.from([0x0a, 0x02, 0x74, 0x64, 0x1a, 0x00]));
    expect(relationshipFromWire(wire as never)).toEqual({
      trustDomain: td('td'),
      bundleEndpointUrl: '',
      profile: { type: 'https_web' },
    });
  });

  it('leaves the profile out when the mask omitted it', () => {
    const back = relationshipFromWire({
      trust_domain: 'td',
      bundle_endpoint_url: '',
      trust_domain_bundle: null,
    });
    expect(back.profile).toBeUndefined();
  });

  it('refuses a bad endpoint SPIFFE ID and a bundle of another trust domain', () => {
    expectConversionError(
      () =>
        relationshipFromWire({
          trust_domain: 'td',
          bundle_endpoint_url: 'https://x',
          https_spiffe: { endpoint_spiffe_id: 'https://nope' },
          trust_domain_bundle: null,
        }),
      /endpoint_spiffe_id "https:\/\/nope" is not a SPIFFE ID/,
    );
    expectConversionError(
      () =>
        relationshipFromWire({
          trust_domain: 'other.org',
          bundle_endpoint_url: 'https://x',
          trust_domain_bundle: bundleToWire(bundle),
        }),
      /expected the bundle of "other.org"/,
    );
  });
});

describe('x509SvidFromWire', () => {
  it('converts a minted SVID', () => {
    const svid = x509SvidFromWire({
      cert_chain: [Buffer.from(leaf.der)],
      id: { trust_domain: 'example.org', path: '/w' },
      expires_at: '2000000000',
      hint: '',
    });
    expect(svid.id.toString()).toBe('spiffe://example.org/w');
    expect(svid.expiresAt).toBe(2_000_000_000);
    expect(svid.certChain).toHaveLength(1);
  });

  it('refuses a missing ID, a bad ID and an empty chain', () => {
    const base = { cert_chain: [Buffer.from(leaf.der)], expires_at: '1', hint: '' };
    expectConversionError(() => x509SvidFromWire({ ...base, id: null }), /id is missing/);
    expectConversionError(
      () => x509SvidFromWire({ ...base, id: { trust_domain: 'A', path: '' } }),
      /id "spiffe:\/\/A" is not a SPIFFE ID/,
    );
    expectConversionError(
      () => x509SvidFromWire({ ...base, cert_chain: [], id: { trust_domain: 'a', path: '/x' } }),
      /cert_chain is empty/,
    );
  });
});

it('makeJwtKey fixture yields distinct kids', () => {
  expect(makeJwtKey().kid).not.toBe(makeJwtKey().kid);
});
