/**
 * Fuzz targets shared by scripts/fuzz.ts (≥ 100k cases each) and test/fuzz/fuzz.test.ts (a few
 * thousand in CI): the bundle parser, the Bundle Map parser, the allowlist and broker config
 * parsers, and the X509-SVID and JWT-SVID verifiers.
 *
 * The property of every target: the outcome is a value or a coded {@link BrokerError} whose code
 * is documented in docs/errors.md (for the verifiers: a result, `{ ok: false, code }` with a
 * documented code, never an exception) — never another exception. Inputs mix structure-aware
 * generation with byte- and token-level mutations of valid seeds.
 * @module
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { stringify as yamlStringify } from 'yaml';
import { marshalBundleMap, parseBundleMap } from '../../src/core/bundle/bundle-map.js';
import { marshalBundle, parseBundle } from '../../src/core/bundle/codec.js';
import { BundleSet } from '../../src/core/bundle/source.js';
import { TrustDomain } from '../../src/core/spiffeid/trust-domain.js';
import { verifyJwtSvid } from '../../src/core/verify/jwt-svid.js';
import { verifyX509Svid } from '../../src/core/verify/x509-svid.js';
import { parseAllowlist } from '../../src/engine/config/allowlist.js';
import { parseBrokerConfig } from '../../src/engine/config/broker-config.js';
import { BrokerError } from '../../src/errors.js';
import { makePki, signJws, svidClaims, T0 } from '../support/fixtures.js';

const DOCUMENTED = new Set(
  [
    ...readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8').matchAll(
      /^\|\s*`(ERR_[A-Z0-9_]+)`/gm,
    ),
  ].map((m) => m[1]!),
);

/** A property violation: what the target did with the input. */
export class FuzzFailure extends Error {
  override name = 'FuzzFailure';
}

/** Throws {@link FuzzFailure} unless `err` is a BrokerError with a documented code. */
export function expectCodedError(err: unknown): void {
  if (!(err instanceof BrokerError)) {
    throw new FuzzFailure(
      `threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)} instead of a coded BrokerError`,
      { cause: err },
    );
  }
  if (!DOCUMENTED.has(err.code))
    throw new FuzzFailure(`threw ${err.code}, which docs/errors.md does not document`);
}

/** Runs a parser: a value, or a coded BrokerError. */
function parses(fn: () => unknown): 'value' | 'error' {
  try {
    fn();
    return 'value';
  } catch (err) {
    expectCodedError(err);
    return 'error';
  }
}

/** Runs a verifier: a result object, never an exception; a refusal has a documented code. */
function verifies(fn: () => { ok: boolean; code?: string }): 'ok' | 'refused' {
  let r: { ok: boolean; code?: string };
  try {
    r = fn();
  } catch (err) {
    throw new FuzzFailure(
      `verifier threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)} instead of returning a result`,
      { cause: err },
    );
  }
  if (r.ok === true) return 'ok';
  if (r.ok !== false || typeof r.code !== 'string' || !DOCUMENTED.has(r.code))
    throw new FuzzFailure(`verifier returned ${JSON.stringify(r)}: not a coded failure`);
  return 'refused';
}

// ---------------------------------------------------------------- mutations

type Mutation =
  | { op: 'flip'; at: number; value: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; length: number }
  | { op: 'truncate'; at: number }
  | { op: 'duplicate'; at: number; length: number }
  | { op: 'length'; at: number; value: Uint8Array };

/** Long-form DER lengths that claim far more than is there. */
const HUGE_LENGTHS = [
  [0x84, 0xff, 0xff, 0xff, 0xff],
  [0x88, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
  [0x80],
  [0x81, 0x00],
  [0xff],
].map((b) => Uint8Array.from(b));

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({
    op: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    op: fc.constant('duplicate' as const),
    at: fc.nat(),
    length: fc.integer({ min: 1, max: 256 }),
  }),
  fc.record({ op: fc.constant('length' as const), at: fc.nat(), value: fc.constantFrom(...HUGE_LENGTHS) }),
);

export function mutate(base: Uint8Array, ops: readonly Mutation[]): Uint8Array {
  let b = base;
  for (const m of ops) {
    const at = b.length === 0 ? 0 : m.at % (b.length + 1);
    switch (m.op) {
      case 'flip':
        if (b.length > 0) {
          b = Uint8Array.from(b);
          b[at % b.length] = m.value;
        }
        break;
      case 'insert':
        b = concat(b.subarray(0, at), m.bytes, b.subarray(at));
        break;
      case 'delete':
        b = concat(b.subarray(0, at), b.subarray(at + m.length));
        break;
      case 'truncate':
        b = b.subarray(0, at);
        break;
      case 'duplicate':
        b = concat(b.subarray(0, at + m.length), b.subarray(at));
        break;
      case 'length':
        b = concat(b.subarray(0, at), m.value, b.subarray(Math.min(b.length, at + 1)));
        break;
    }
  }
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const utf8 = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

/** Byte mutations of one of the seeds. */
function mutated(seeds: readonly Uint8Array[], maxOps = 6): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(fc.constantFrom(...seeds), fc.array(mutation, { minLength: 1, maxLength: maxOps }))
    .map(([s, ops]) => mutate(s, ops));
}

// ---------------------------------------------------------------- JSON

/** Values that stress a JSON reader: precision, ranges, escapes, types. */
const nastyScalar: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    0,
    -0,
    1.5,
    -1,
    2 ** 53,
    2 ** 53 + 1,
    Number.MAX_SAFE_INTEGER,
    1e308,
    '',
    'EC',
    'RSA',
    'OKP',
    'x509-svid',
    'jwt-svid',
    'P-256',
    'Ed25519',
    null,
    true,
    false,
    '\u0000',
    '\ud800',
    'A'.repeat(300),
  ),
  fc.string(),
  fc.integer(),
  fc.double({ noNaN: true }),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map((n) => n.toString()),
);

const jwkLike = fc.dictionary(
  fc.constantFrom('kty', 'use', 'kid', 'crv', 'x', 'y', 'n', 'e', 'x5c', 'alg', 'd', 'key_ops'),
  fc.oneof(nastyScalar, fc.array(nastyScalar, { maxLength: 3 })),
  { maxKeys: 8 },
);

const bundleLike = fc.dictionary(
  fc.constantFrom('keys', 'spiffe_sequence', 'spiffe_refresh_hint', 'other'),
  fc.oneof(nastyScalar, fc.array(jwkLike, { maxLength: 4 })),
  { maxKeys: 4 },
);

/** Raw JSON-ish text: numbers written out in full, duplicates, deep nesting, junk. */
const jsonText: fc.Arbitrary<string> = fc.oneof(
  fc.json({ maxDepth: 4 }),
  bundleLike.map((o) => JSON.stringify(o)),
  fc.integer({ min: 1, max: 100_000 }).map((n) => '['.repeat(n)),
  fc.integer({ min: 1, max: 100_000 }).map((n) => `${'{"keys":'.repeat(n)}[]${'}'.repeat(n)}`),
  fc.constantFrom(
    '{"keys":[],"keys":[]}',
    '{"keys":[],"spiffe_sequence":18446744073709551616}',
    '{"keys":[],"spiffe_sequence":18446744073709551615}',
    '{"keys":[],"spiffe_sequence":-1}',
    '{"keys":[],"spiffe_sequence":1e3}',
    '{"keys":[],"spiffe_refresh_hint":1.5}',
    '{"keys":[],"spiffe_refresh_hint":99999999999999999999999}',
    '\ufeff{"keys":[]}',
    '{"keys":[{"kty":"EC","use":"x509-svid","x5c":["AA=="]}]}',
    '{"keys":[{"kty":"EC","use":"jwt-svid","kid":"a","crv":"P-256","x":"","y":""}]}',
    '{"keys":[{"kty":"RSA","use":"jwt-svid","kid":"a","n":"AQAB","e":"AQAB"}]}',
    '{"keys":[]} x',
    '{"keys":[]',
    '"\\u',
    '{"\\ud800":1}',
  ),
);

// ---------------------------------------------------------------- targets

export interface FuzzTarget<T = unknown> {
  readonly name: string;
  readonly arbitrary: fc.Arbitrary<T>;
  /** Runs the target once; throws {@link FuzzFailure} when the property is violated. */
  run(input: T): string;
  /** The input, printable, for a report or a regression test. */
  show(input: T): string;
}

function showBytes(b: Uint8Array | string): string {
  const s = typeof b === 'string' ? b : text(b);
  return s.length > 2000 ? `${JSON.stringify(s.slice(0, 2000))}… (${s.length} chars)` : JSON.stringify(s);
}

/** Builds every target (creates the seeds: CAs, SVIDs, keys). */
export async function fuzzTargets(): Promise<FuzzTarget[]> {
  const pki = await makePki('fuzz.test');
  const peer = await makePki('peer.fuzz.test', { keyAlg: 'rsa-2048' });
  const td = pki.td;
  const bundleDocs = [marshalBundle(pki.bundle), marshalBundle(peer.bundle), '{"keys":[]}'].map(utf8);
  const mapDocs = [marshalBundleMap([pki.bundle, peer.bundle]), '{}'].map(utf8);

  const bundleInput = fc.oneof(
    { weight: 5, arbitrary: mutated(bundleDocs) },
    { weight: 3, arbitrary: jsonText.map(utf8) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 256 }) },
  );
  const mapInput = fc.oneof(
    { weight: 5, arbitrary: mutated(mapDocs) },
    {
      weight: 3,
      arbitrary: fc
        .dictionary(
          fc.oneof(fc.constantFrom('fuzz.test', 'a.b', 'spiffe://x', 'UPPER', ''), fc.string()),
          bundleLike,
          {
            maxKeys: 3,
          },
        )
        .map((o) => utf8(JSON.stringify(o))),
    },
    { weight: 1, arbitrary: jsonText.map(utf8) },
  );

  // ---- config
  const allowlistSeed = [
    'apiVersion: spiffe-broker.dev/v1',
    'kind: Allowlist',
    'peers:',
    '  - trustDomain: partner.example',
    '    bundleEndpoint:',
    '      urls: [https://bundle.partner.example/, "https://[::1]:8443/x"]',
    '      profile: https_web',
    '      caFile: /etc/ca.pem',
    '    refresh: { minInterval: 5s, maxInterval: 10m }',
    '    keyPolicy: { maxKeys: 32, allowedKeyTypes: [EC, RSA], allowedCurves: [P-256], minRSABits: 3072 }',
    '    spireServers: [main]',
    '    allowEmptyBundle: false',
    '  - trustDomain: other.example',
    '    bundleEndpoint:',
    '      urls: [https://spire.other.example:8443]',
    '      profile: https_spiffe',
    '      endpointSPIFFEID: spiffe://other.example/spire/server',
    '      bootstrapBundleFile: /etc/other.json',
    '',
  ].join('\n');
  const brokerSeed = [
    'apiVersion: spiffe-broker.dev/v1',
    'kind: BrokerConfig',
    'trustDomain: example.org',
    'stateDir: /var/lib/spiffe-broker',
    'spire:',
    '  servers:',
    '    - name: main',
    '      address: unix:///run/spire/api.sock',
    '      timeout: 10s',
    '    - { name: dr, address: "dns:///spire-dr:8081", adminCertFile: /a, adminKeyFile: /b, serverBundleFile: /c }',
    '  source: main',
    'allowlist: { file: /etc/allowlist.yaml }',
    'endpoint: { listen: "0.0.0.0:8443", profile: https_spiffe, refreshHint: 5m, pollInterval: 250ms, maxHeldRequests: 1000 }',
    'admin: { listen: 127.0.0.1:8089 }',
    'verify: { listen: "[::1]:8090", maxBodyBytes: 64KiB }',
    'fetch: { connectTimeout: 5s, timeout: 30s, maxBodyBytes: 1MiB }',
    'reconcile: { enforce: false, deleteMode: restrict }',
    'audit: { fsync: always }',
    'probe: { interval: 10s }',
    '',
  ].join('\n');
  const YAML_TOKENS = [
    ': ',
    '- ',
    '&a ',
    '*a',
    '!!str ',
    '!tag ',
    '{',
    '}',
    '[',
    ']',
    '"',
    "'",
    '\n',
    '  ',
    '#',
    '|',
    '>',
    ',',
    '? ',
    '---\n',
    '...\n',
    '\t',
    '%YAML 1.2\n',
    '<<: *a\n',
    '~',
    '0x1F',
    '1e400',
    '.inf',
    '"\\u0000"',
    'null',
  ];
  const yamlMutation = fc.array(
    fc.record({ at: fc.nat(), token: fc.constantFrom(...YAML_TOKENS), cut: fc.integer({ min: 0, max: 8 }) }),
    { minLength: 1, maxLength: 6 },
  );
  const mutateYaml = (seed: string) =>
    yamlMutation.map((ms) => {
      let s = seed;
      for (const m of ms) {
        const at = m.at % (s.length + 1);
        s = s.slice(0, at) + m.token + s.slice(at + m.cut);
      }
      return s;
    });
  const configValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      nastyScalar,
      fc.constantFrom(
        'https://a.example/',
        'http://a.example/',
        'https://u@a.example/',
        'spiffe://a.example/x',
        '5s',
        '1MiB',
        'unix:///x',
        'dns:///h:1',
        '127.0.0.1:0',
        '[::1]:1',
        'all',
      ),
      fc.array(tie('value'), { maxLength: 3 }),
      fc.dictionary(
        fc.constantFrom(
          'apiVersion',
          'kind',
          'peers',
          'trustDomain',
          'bundleEndpoint',
          'urls',
          'profile',
          'caFile',
          'endpointSPIFFEID',
          'bootstrapBundleFile',
          'refresh',
          'minInterval',
          'maxInterval',
          'keyPolicy',
          'maxKeys',
          'spireServers',
          'allowEmptyBundle',
          'stateDir',
          'spire',
          'servers',
          'name',
          'address',
          'source',
          'allowlist',
          'file',
          'endpoint',
          'listen',
          'admin',
          'verify',
          'fetch',
          'reconcile',
          'audit',
          'probe',
          'timeout',
          'maxBodyBytes',
        ),
        tie('value'),
        { maxKeys: 5 },
      ),
    ),
  })).value;
  const configText = (seed: string, kind: string) =>
    fc.oneof(
      { weight: 5, arbitrary: mutateYaml(seed) },
      {
        weight: 3,
        arbitrary: configValue.map((v) => {
          const doc = typeof v === 'object' && v !== null && !Array.isArray(v) ? v : { peers: v };
          return yamlStringify({ apiVersion: 'spiffe-broker.dev/v1', kind, ...(doc as object) });
        }),
      },
      {
        weight: 1,
        arbitrary: fc.oneof(
          fc.string(),
          fc.constantFrom(
            'a: &a [1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c]\n',
            `${'- '.repeat(5000)}x\n`,
            `${'['.repeat(10_000)}\n`,
            'apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\npeers: []\n---\nkind: Allowlist\n',
          ),
        ),
      },
    );

  // ---- X509-SVID verification
  const leaf = await pki.svid('/workload');
  const peerLeaf = await peer.svid('/service');
  const derSeeds = [leaf.der, pki.intermediate.der, pki.root.der, peerLeaf.der, peer.intermediate.der];
  const source = new BundleSet([pki.bundle, peer.bundle]);
  const derInput = fc.oneof(
    { weight: 4, arbitrary: mutated(derSeeds, 4) },
    { weight: 2, arbitrary: fc.constantFrom(...derSeeds) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) },
  );
  const chainInput = fc.array(derInput, { minLength: 0, maxLength: 10 });

  // ---- JWT-SVID verification
  const key = pki.jwtKeys['ec-p256'];
  const rsa = pki.jwtKeys.rsa;
  const aud = 'spiffe://fuzz.test/api';
  const claimValue = fc.oneof(
    nastyScalar,
    fc.constantFrom(
      pki.id().toString(),
      'spiffe://peer.fuzz.test/x',
      'spiffe://fuzz.test',
      aud,
      T0 / 1000 + 60,
      T0 / 1000 - 600,
    ),
    fc.array(fc.oneof(fc.constant(aud), nastyScalar), { maxLength: 3 }),
  );
  const header = fc.record(
    {
      alg: fc.oneof(
        fc.constantFrom('ES256', 'ES384', 'RS256', 'PS256', 'HS256', 'none', 'EdDSA'),
        nastyScalar,
      ),
      kid: fc.oneof(fc.constantFrom(key.kid, rsa.kid, 'nope'), nastyScalar),
      typ: fc.oneof(fc.constantFrom('JWT', 'JOSE'), nastyScalar),
      crit: fc.array(fc.string(), { maxLength: 2 }),
    },
    { requiredKeys: [] },
  );
  const payload = fc.record(
    {
      sub: claimValue,
      aud: claimValue,
      exp: claimValue,
      nbf: claimValue,
      iat: claimValue,
      extra: claimValue,
    },
    { requiredKeys: [] },
  );
  const signed = fc
    .tuple(header, payload, fc.constantFrom<'ec' | 'rsa' | 'none'>('ec', 'rsa', 'none'))
    .map(([h, p, how]) =>
      how === 'none'
        ? signJws(h, p, { alg: 'none' })
        : signJws(
            { ...h },
            p,
            how === 'ec' ? { alg: 'ES256', key: key.privateKey } : { alg: 'RS256', key: rsa.privateKey },
          ),
    );
  const valid = signJws({ alg: 'ES256', kid: key.kid, typ: 'JWT' }, svidClaims(pki.id().toString(), aud), {
    alg: 'ES256',
    key: key.privateKey,
  });
  const tokenInput = fc.oneof(
    { weight: 4, arbitrary: signed },
    { weight: 3, arbitrary: mutated([utf8(valid)], 4).map(text) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          fc.array(fc.oneof(fc.base64String(), fc.string(), fc.constant('')), { minLength: 1, maxLength: 5 }),
        )
        .map(([parts]) => parts.join('.')),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom(valid, '', '.', '..', '...', `${valid}.x`, valid.replace(/\./g, '..')),
    },
  );

  const targets: FuzzTarget<never>[] = [
    {
      name: 'bundle parse',
      arbitrary: bundleInput,
      run: (b: Uint8Array) => parses(() => parseBundle(td, b)),
      show: showBytes,
    } as FuzzTarget<Uint8Array> as FuzzTarget<never>,
    {
      name: 'bundle map parse',
      arbitrary: mapInput,
      run: (b: Uint8Array) => parses(() => parseBundleMap(b)),
      show: showBytes,
    } as FuzzTarget<Uint8Array> as FuzzTarget<never>,
    {
      name: 'allowlist parse',
      arbitrary: configText(allowlistSeed, 'Allowlist'),
      run: (s: string) =>
        parses(() =>
          parseAllowlist(s, {
            localTrustDomain: TrustDomain.parse('example.org'),
            serverNames: ['main', 'dr'],
          }),
        ),
      show: showBytes,
    } as FuzzTarget<string> as FuzzTarget<never>,
    {
      name: 'broker config parse',
      arbitrary: configText(brokerSeed, 'BrokerConfig'),
      run: (s: string) => parses(() => parseBrokerConfig(s)),
      show: showBytes,
    } as FuzzTarget<string> as FuzzTarget<never>,
    {
      name: 'X509-SVID verify (DER chains)',
      arbitrary: chainInput,
      run: (chain: Uint8Array[]) => verifies(() => verifyX509Svid(chain, source, { now: T0 })),
      show: (chain: Uint8Array[]) => JSON.stringify(chain.map((d) => Buffer.from(d).toString('base64'))),
    } as FuzzTarget<Uint8Array[]> as FuzzTarget<never>,
    {
      name: 'JWT-SVID verify (tokens)',
      arbitrary: tokenInput,
      run: (t: string) => verifies(() => verifyJwtSvid(t, source, { audience: aud, now: T0 })),
      show: (t: string) => JSON.stringify(t),
    } as FuzzTarget<string> as FuzzTarget<never>,
  ];
  return targets as FuzzTarget[];
}
