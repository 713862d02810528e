import type { KeyObject } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, createX509Svid, type IssuedCert } from '../../../src/adapters/pki/index.js';
import { codedParseFailure } from '../../../src/core/bundle/codec.js';
import {
  bundlesEqual,
  jwtAuthority,
  MAX_KEY_ID_BYTES,
  marshalBundle,
  parseBundle,
  TrustBundle,
} from '../../../src/core/bundle/index.js';
import { parseJson } from '../../../src/core/bundle/json.js';
import { SpiffeId, TrustDomain } from '../../../src/core/spiffeid/index.js';
import { BundleError } from '../../../src/errors.js';
import { keyPairSync } from '../../../src/platform/keygen.js';

const td = TrustDomain.parse('example.org');
const T0 = new Date('2026-01-01T00:00:00Z');
const T1 = new Date('2027-01-01T00:00:00Z');

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BundleError);
    return (err as BundleError).code;
  }
  throw new Error('expected a BundleError');
}

let cas: IssuedCert[] = [];
let leaf: IssuedCert;
let jwtKeys: KeyObject[] = [];

beforeAll(async () => {
  cas = [
    await createCa({ trustDomain: td, notBefore: T0, notAfter: T1, keyAlg: 'ec-p256' }),
    await createCa({ trustDomain: td, notBefore: T0, notAfter: T1, keyAlg: 'ec-p384' }),
    await createCa({ trustDomain: td, notBefore: T0, notAfter: T1, keyAlg: 'rsa-2048' }),
    await createCa({ trustDomain: td, notBefore: T0, notAfter: T1, keyAlg: 'ed25519' }),
  ];
  leaf = await createX509Svid({
    id: SpiffeId.parse('spiffe://example.org/w'),
    issuer: cas[0]!,
    notBefore: T0,
    notAfter: T1,
  });
  jwtKeys = [
    keyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
    keyPairSync('ec', { namedCurve: 'P-384' }).publicKey,
    keyPairSync('rsa', { modulusLength: 2048 }).publicKey,
    keyPairSync('ed25519').publicKey,
  ];
}, 60_000);

function doc(keys: unknown[], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ keys, ...extra });
}

function x509Entry(ca: IssuedCert, over: Record<string, unknown> = {}): Record<string, unknown> {
  const jwk = ca.certificate.publicKey.export({ format: 'jwk' });
  return { use: 'x509-svid', ...jwk, x5c: [Buffer.from(ca.der).toString('base64')], ...over };
}

function jwtEntry(key: KeyObject, kid: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { use: 'jwt-svid', kid, ...key.export({ format: 'jwk' }), ...over };
}

describe('parseBundle', () => {
  it('parses X.509 and JWT authorities of every supported key type', () => {
    const { bundle, ignored } = parseBundle(
      td,
      doc([...cas.map((c) => x509Entry(c)), ...jwtKeys.map((k, i) => jwtEntry(k, `k${i}`))], {
        spiffe_sequence: 7,
        spiffe_refresh_hint: 120,
      }),
    );
    expect(ignored).toEqual([]);
    expect(bundle.x509Authorities.map((a) => a.sha256)).toHaveLength(4);
    expect([...bundle.jwtAuthorities.keys()]).toEqual(['k0', 'k1', 'k2', 'k3']);
    expect(bundle.sequence).toBe(7n);
    expect(bundle.refreshHint).toBe(120);
  });

  it('takes an empty keys array as "all keys revoked"', () => {
    const { bundle } = parseBundle(td, '{"keys":[]}');
    expect(bundle.isEmpty()).toBe(true);
  });

  it('keeps uint64 sequences exact and refuses 2^64', () => {
    expect(parseBundle(td, '{"keys":[],"spiffe_sequence":18446744073709551615}').bundle.sequence).toBe(
      18446744073709551615n,
    );
    expect(parseBundle(td, '{"keys":[],"spiffe_sequence":9007199254740993}').bundle.sequence).toBe(
      9007199254740993n,
    );
    expect(code(() => parseBundle(td, '{"keys":[],"spiffe_sequence":18446744073709551616}'))).toBe(
      'ERR_BUNDLE_SEQUENCE_INVALID',
    );
  });

  it.each([
    ['{"keys":[],"spiffe_sequence":1.5}', 'ERR_BUNDLE_SEQUENCE_INVALID'],
    ['{"keys":[],"spiffe_sequence":1e3}', 'ERR_BUNDLE_SEQUENCE_INVALID'],
    ['{"keys":[],"spiffe_sequence":-1}', 'ERR_BUNDLE_SEQUENCE_INVALID'],
    ['{"keys":[],"spiffe_sequence":null}', 'ERR_BUNDLE_SEQUENCE_INVALID'],
    ['{"keys":[],"spiffe_sequence":"1"}', 'ERR_BUNDLE_SEQUENCE_INVALID'],
    ['{"keys":[],"spiffe_refresh_hint":-5}', 'ERR_BUNDLE_REFRESH_HINT_INVALID'],
    ['{"keys":[],"spiffe_refresh_hint":60.5}', 'ERR_BUNDLE_REFRESH_HINT_INVALID'],
    ['{"keys":[],"spiffe_refresh_hint":9007199254740992}', 'ERR_BUNDLE_REFRESH_HINT_INVALID'],
    ['{"keys":null}', 'ERR_BUNDLE_KEYS_MISSING'],
    ['{}', 'ERR_BUNDLE_KEYS_MISSING'],
    ['{"keys":{}}', 'ERR_BUNDLE_KEYS_NOT_ARRAY'],
    ['{"keys":"x"}', 'ERR_BUNDLE_KEYS_NOT_ARRAY'],
    ['[]', 'ERR_BUNDLE_NOT_OBJECT'],
    ['"keys"', 'ERR_BUNDLE_NOT_OBJECT'],
    ['{"keys":[1]}', 'ERR_BUNDLE_KEY_NOT_OBJECT'],
    ['{"keys":[{"use":5}]}', 'ERR_BUNDLE_KEY_MEMBER_TYPE'],
    ['{"keys":[{"use":"jwt-svid","kid":"a"}]}', 'ERR_BUNDLE_JWK_INVALID'],
    [
      '{"keys":[{"use":"jwt-svid","kty":"EC","kid":"a","crv":"P-256","x":"AA","y":"AA"}]}',
      'ERR_BUNDLE_JWK_INVALID',
    ],
    ['{"keys":[],"keys":[]}', 'ERR_BUNDLE_JSON_DUPLICATE_MEMBER'],
    ['{"keys":[]', 'ERR_BUNDLE_JSON_SYNTAX'],
    ['{"keys":[]} x', 'ERR_BUNDLE_JSON_SYNTAX'],
    ['\uFEFF{"keys":[]}', 'ERR_BUNDLE_JSON_SYNTAX'],
    ['', 'ERR_BUNDLE_JSON_SYNTAX'],
  ])('refuses %j with %s', (input, want) => {
    expect(code(() => parseBundle(td, input))).toBe(want);
  });

  it('refuses invalid UTF-8', () => {
    expect(code(() => parseBundle(td, new Uint8Array([0x7b, 0xff, 0x7d])))).toBe('ERR_BUNDLE_ENCODING');
  });

  it('enforces the size and key-count caps', () => {
    const big = `{"keys":[],"pad":"${'x'.repeat(2000)}"}`;
    expect(code(() => parseBundle(td, big, { maxBytes: 1000 }))).toBe('ERR_BUNDLE_TOO_LARGE');
    expect(parseBundle(td, big, { maxBytes: 4000 }).bundle.isEmpty()).toBe(true);
    const many = doc(Array.from({ length: 11 }, () => ({ use: 'unknown' })));
    expect(code(() => parseBundle(td, many, { maxKeys: 10 }))).toBe('ERR_BUNDLE_TOO_MANY_KEYS');
    expect(parseBundle(td, many, { maxKeys: 11 }).ignored).toHaveLength(11);
    expect(code(() => parseBundle(td, new Uint8Array(1024 * 1024 + 1)))).toBe('ERR_BUNDLE_TOO_LARGE');
  });

  it('refuses a duplicate member inside a key entry (JSON.parse would keep the last)', () => {
    const e = JSON.stringify(jwtEntry(jwtKeys[0]!, 'a'));
    const dup = `{"keys":[${e.replace('"kid":"a"', '"kid":"a","kid":"b"')}]}`;
    expect(code(() => parseBundle(td, dup))).toBe('ERR_BUNDLE_JSON_DUPLICATE_MEMBER');
  });

  it('x509-svid entries: exactly one CA certificate in standard base64 whose key matches the JWK', () => {
    expect(code(() => parseBundle(td, doc([x509Entry(cas[0]!, { x5c: [] })])))).toBe('ERR_BUNDLE_X5C_COUNT');
    expect(code(() => parseBundle(td, doc([x509Entry(cas[0]!, { x5c: 'abc' })])))).toBe(
      'ERR_BUNDLE_KEY_MEMBER_TYPE',
    );
    const b64 = Buffer.from(cas[0]!.der).toString('base64');
    const urlsafe = b64.replace(/\+/g, '-').replace(/\//g, '_');
    if (urlsafe !== b64) {
      expect(code(() => parseBundle(td, doc([x509Entry(cas[0]!, { x5c: [urlsafe] })])))).toBe(
        'ERR_BUNDLE_X5C_ENCODING',
      );
    }
    expect(code(() => parseBundle(td, doc([x509Entry(cas[0]!, { x5c: ['AAAA'] })])))).toBe(
      'ERR_BUNDLE_X5C_CERTIFICATE',
    );
    expect(code(() => parseBundle(td, doc([x509Entry(cas[0]!, { x5c: [7] })])))).toBe(
      'ERR_BUNDLE_KEY_MEMBER_TYPE',
    );
    // A leaf (non-CA) certificate is not an authority.
    expect(code(() => parseBundle(td, doc([x509Entry(leaf)])))).toBe('ERR_BUNDLE_X5C_NOT_CA');
    // The JWK parameters of one CA with the x5c of another.
    const mixed = { ...x509Entry(cas[0]!), x5c: [Buffer.from(cas[1]!.der).toString('base64')] };
    expect(code(() => parseBundle(td, doc([mixed])))).toBe('ERR_BUNDLE_X5C_KEY_MISMATCH');
    expect(code(() => parseBundle(td, doc([x509Entry(cas[0]!), x509Entry(cas[0]!)])))).toBe(
      'ERR_BUNDLE_X509_DUPLICATE',
    );
  });

  it('jwt-svid entries: kid required and unique, public keys only', () => {
    expect(code(() => parseBundle(td, doc([jwtEntry(jwtKeys[0]!, '')])))).toBe('ERR_BUNDLE_JWT_KID_MISSING');
    expect(code(() => parseBundle(td, doc([jwtEntry(jwtKeys[0]!, 'a'), jwtEntry(jwtKeys[1]!, 'a')])))).toBe(
      'ERR_BUNDLE_JWT_KID_DUPLICATE',
    );
    const priv = keyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
    expect(code(() => parseBundle(td, doc([{ use: 'jwt-svid', kid: 'p', ...priv }])))).toBe(
      'ERR_BUNDLE_JWK_INVALID',
    );
  });

  it('x509-svid entries: refuses none, two, or a missing x5c (X509-SVID §6.1, Trust Domain and Bundle §4.2.2)', () => {
    const one = Buffer.from(cas[0]!.der).toString('base64');
    const other = Buffer.from(cas[1]!.der).toString('base64');
    const failure = (entry: Record<string, unknown>): BundleError => {
      try {
        parseBundle(td, doc([jwtEntry(jwtKeys[0]!, 'k'), entry]));
      } catch (err) {
        expect(err).toBeInstanceOf(BundleError);
        return err as BundleError;
      }
      throw new Error('expected a BundleError');
    };
    expect(parseBundle(td, doc([x509Entry(cas[0]!, { x5c: [one] })])).bundle.x509Authorities).toHaveLength(1);
    for (const [x5c, count] of [
      [[], 0],
      [[one, one], 2],
      [[one, other], 2],
      [[one, other, one], 3],
    ] as const) {
      const err = failure(x509Entry(cas[0]!, { x5c }));
      expect([err.code, err.message]).toEqual([
        'ERR_BUNDLE_X5C_COUNT',
        `expected a single certificate in x509-svid entry 1; got ${count}`,
      ]);
    }
    const { x5c: _dropped, ...noX5c } = x509Entry(cas[0]!);
    expect(failure(noX5c).code).toBe('ERR_BUNDLE_X5C_COUNT');
  });

  it('every parse failure of a huge x5c is a coded BundleError, never a RangeError', () => {
    // 5 MiB of base64 under a raised maxBytes: a backtracking regular expression overflowed the
    // stack here (RangeError), which the fetcher then reported as a connection failure.
    const big = 'A'.repeat(5 * 1024 * 1024);
    const opts = { maxBytes: 64 * 1024 * 1024 };
    expect(code(() => parseBundle(td, doc([x509Entry(cas[0]!, { x5c: [big] })]), opts))).toBe(
      'ERR_BUNDLE_X5C_CERTIFICATE',
    );
    expect(code(() => parseBundle(td, doc([x509Entry(cas[0]!, { x5c: [`${big}-`] })]), opts))).toBe(
      'ERR_BUNDLE_X5C_ENCODING',
    );
    expect(code(() => parseBundle(td, doc([x509Entry(cas[0]!, { x5c: [`${big.slice(1)}=`] })]), opts))).toBe(
      'ERR_BUNDLE_X5C_CERTIFICATE',
    );
  });

  it('the x5c base64 check still wants standard, padded base64', () => {
    const b64 = Buffer.from(cas[0]!.der).toString('base64');
    for (const bad of ['', 'A', 'AA', 'AAA', 'AA=A', 'A===', '=AAA', 'AAAA AAAA', 'AA==AAAA']) {
      expect(code(() => parseBundle(td, doc([x509Entry(cas[0]!, { x5c: [bad] })])))).toBe(
        'ERR_BUNDLE_X5C_ENCODING',
      );
    }
    expect(parseBundle(td, doc([x509Entry(cas[0]!, { x5c: [b64] })])).bundle.x509Authorities).toHaveLength(1);
  });

  it('turns an uncoded failure into ERR_BUNDLE_UNPARSABLE and passes coded ones through', () => {
    const coded = new BundleError('ERR_BUNDLE_JSON_SYNTAX', 'x');
    expect(codedParseFailure(coded, 'bundle')).toBe(coded);
    const e = codedParseFailure(new RangeError('Maximum call stack size exceeded'), 'bundle document');
    expect([e.code, e.message, e.cause instanceof RangeError]).toEqual([
      'ERR_BUNDLE_UNPARSABLE',
      'bundle document could not be parsed (RangeError: Maximum call stack size exceeded)',
      true,
    ]);
  });

  it('caps key IDs at 256 bytes at parse time, without quoting them', () => {
    const ok = 'k'.repeat(MAX_KEY_ID_BYTES);
    expect(parseBundle(td, doc([jwtEntry(jwtKeys[0]!, ok)])).bundle.jwtAuthorities.has(ok)).toBe(true);
    // Counted in UTF-8 bytes: 128 two-byte characters fit, 129 do not.
    expect(parseBundle(td, doc([jwtEntry(jwtKeys[0]!, 'é'.repeat(128))])).bundle.jwtAuthorities.size).toBe(1);
    const long = 'k'.repeat(64 * 1024);
    for (const kid of [`${ok}k`, 'é'.repeat(129), long]) {
      try {
        parseBundle(td, doc([jwtEntry(jwtKeys[0]!, kid)]));
        throw new Error('expected a BundleError');
      } catch (err) {
        expect(err).toBeInstanceOf(BundleError);
        expect((err as BundleError).code).toBe('ERR_BUNDLE_JWT_KID_TOO_LONG');
        expect((err as BundleError).message.length).toBeLessThan(200);
      }
    }
  });

  it('reports ignored entries with bounded, escaped peer strings', () => {
    const { ignored } = parseBundle(
      td,
      doc([{ use: `x\u001b[2J${'u'.repeat(5000)}`, kty: 'EC', kid: `\u0007${'k'.repeat(5000)}` }]),
    );
    const [entry] = ignored;
    expect(entry!.reason.length).toBeLessThan(120);
    expect(entry!.reason.startsWith('unsupported use "x\\u001b[2J')).toBe(true);
    expect(entry!.kid!.startsWith('\\u0007kkk')).toBe(true);
    expect(entry!.kid!.length).toBeLessThan(300);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting their absence
    expect(JSON.stringify(ignored)).not.toMatch(/[\u0000-\u001f]/);
  });

  it('lists ignored entries with their reasons', () => {
    const { bundle, ignored } = parseBundle(
      td,
      doc([
        { kty: 'EC', kid: 'no-use' },
        { use: 'wit-svid', kty: 'EC', kid: 'w' },
        { use: 'jwt-svid', kty: 'oct', kid: 'sym' },
        jwtEntry(jwtKeys[0]!, 'good'),
      ]),
    );
    expect(bundle.jwtAuthorities.size).toBe(1);
    expect(ignored).toEqual([
      { index: 0, kty: 'EC', kid: 'no-use', reason: 'missing "use"' },
      { index: 1, use: 'wit-svid', kty: 'EC', kid: 'w', reason: 'unsupported use "wit-svid"' },
      { index: 2, use: 'jwt-svid', kty: 'oct', kid: 'sym', reason: 'unknown kty "oct"' },
    ]);
  });

  it('ignores unknown top-level members (SPIFFE Trust Domain and Bundle §4.1)', () => {
    expect(parseBundle(td, '{"keys":[],"x-vendor":{"a":[1,2]}}').bundle.isEmpty()).toBe(true);
  });
});

describe('marshalBundle', () => {
  it('always writes keys and omits zero hint and sequence', () => {
    const b = TrustBundle.create({ trustDomain: td });
    expect(marshalBundle(b)).toBe('{"keys":[]}');
    expect(marshalBundle(b, { refreshHint: 300, sequence: 42n })).toBe(
      '{"keys":[],"spiffe_refresh_hint":300,"spiffe_sequence":42}',
    );
  });

  it('writes x5c in standard base64 without kid, and jwt entries with kid', () => {
    const b = TrustBundle.create({
      trustDomain: td,
      x509Authorities: [cas[2]!.der],
      jwtAuthorities: [jwtAuthority('kid-1', jwtKeys[0]!)],
    });
    const out = JSON.parse(marshalBundle(b)) as { keys: Record<string, unknown>[] };
    expect(out.keys[0]).toMatchObject({
      use: 'x509-svid',
      kty: 'RSA',
      x5c: [Buffer.from(cas[2]!.der).toString('base64')],
    });
    expect(out.keys[0]).not.toHaveProperty('kid');
    expect(out.keys[1]).toMatchObject({ use: 'jwt-svid', kid: 'kid-1', kty: 'EC', crv: 'P-256' });
  });

  it('pretty output keeps exact uint64 digits', () => {
    const b = TrustBundle.create({ trustDomain: td, sequence: 18446744073709551615n });
    const pretty = marshalBundle(b, { indent: 4 });
    expect(pretty).toContain('"spiffe_sequence": 18446744073709551615');
    expect(parseBundle(td, pretty).bundle.sequence).toBe(18446744073709551615n);
  });

  it('property: parse ∘ marshal is the identity on generated bundles', () => {
    fc.assert(
      fc.property(
        fc.subarray([0, 1, 2, 3]),
        fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.string({ minLength: 1, maxLength: 12 })), {
          selector: (t) => t[1],
          maxLength: 6,
        }),
        fc.integer({ min: 0, max: 2 ** 31 }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        (xs, js, hint, seq) => {
          const b = TrustBundle.create({
            trustDomain: td,
            x509Authorities: xs.map((i) => cas[i]!.der),
            jwtAuthorities: js.map(([i, kid]) => jwtAuthority(kid, jwtKeys[i]!)),
            refreshHint: hint,
            sequence: seq,
          });
          const again = parseBundle(td, marshalBundle(b)).bundle;
          expect(bundlesEqual(b, again)).toBe(true);
          expect(marshalBundle(again)).toBe(marshalBundle(b));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('property: arbitrary input only ever yields a bundle or a coded BundleError', () => {
  const check = (input: Uint8Array | string): void => {
    try {
      parseBundle(td, input);
    } catch (err) {
      expect(err).toBeInstanceOf(BundleError);
      expect((err as BundleError).code).toMatch(/^ERR_BUNDLE_/);
    }
  };
  it('random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), check), { numRuns: 4000 });
  });
  it('random JSON documents', () => {
    fc.assert(fc.property(fc.json({ maxDepth: 4 }), check), { numRuns: 3000 });
  });
  it('bundle-shaped documents with random entries', () => {
    const member = fc.oneof(
      fc.string(),
      fc.integer(),
      fc.constant(null),
      fc.boolean(),
      fc.array(fc.string(), { maxLength: 3 }),
    );
    const entry = fc.record(
      {
        use: fc.oneof(fc.constantFrom('x509-svid', 'jwt-svid', 'wit-svid', 'x'), member),
        kty: fc.oneof(fc.constantFrom('EC', 'RSA', 'OKP', 'oct'), member),
        kid: member,
        crv: fc.oneof(fc.constantFrom('P-256', 'P-384', 'Ed25519'), member),
        x: member,
        y: member,
        n: member,
        e: member,
        x5c: fc.oneof(fc.array(fc.base64String(), { maxLength: 2 }), member),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(
        fc.array(entry, { maxLength: 4 }),
        fc.oneof(fc.integer(), fc.string(), fc.constant(undefined)),
        (keys, seq) => check(JSON.stringify({ keys, spiffe_sequence: seq })),
      ),
      { numRuns: 3000 },
    );
  });
});

describe('strict JSON reader', () => {
  it('reports line and column', () => {
    expect(() => parseJson('{\n  "a": 1,\n  "a": 2\n}')).toThrow(/line 3, column 3/);
    expect(() => parseJson('{\n "a": tru }')).toThrow(/line 2/);
  });
  it('bounds nesting depth', () => {
    expect(code(() => parseJson('['.repeat(40) + ']'.repeat(40)))).toBe('ERR_BUNDLE_JSON_DEPTH');
    expect(() => parseJson('['.repeat(30) + ']'.repeat(30))).not.toThrow();
  });
  it('decodes escapes and matches JSON.parse on strings', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        expect(parseJson(JSON.stringify(s))).toBe(s);
      }),
      { numRuns: 1000 },
    );
  });
  it.each([
    '01',
    '-',
    '1.',
    '.5',
    '1e',
    '+1',
    '0x10',
    'NaN',
    '"\t"',
    '"\\x"',
    '"\\u12G4"',
    '[1,]',
    '{"a":1,}',
    "{'a':1}",
  ])('refuses %j', (s) => {
    expect(code(() => parseJson(s))).toBe('ERR_BUNDLE_JSON_SYNTAX');
  });
});
