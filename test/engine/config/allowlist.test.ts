import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify as stringifyYaml } from 'yaml';
import {
  ConfigValidationError,
  endpointUrlProblem,
  parseAllowlist,
} from '../../../src/engine/config/index.js';
import { ConfigError } from '../../../src/errors.js';

const VALID = `apiVersion: spiffe-broker.dev/v1
kind: Allowlist
peers:
  - trustDomain: partner.example
    bundleEndpoint:
      urls:
        - https://bundle-a.partner.example/bundle
        - https://bundle-b.partner.example:8443/bundle
      profile: https_web
      caFile: /etc/spiffe-broker/partner-ca.pem
    refresh: { minInterval: 5s, maxInterval: 10m }
    keyPolicy:
      maxKeys: 16
      allowedKeyTypes: [EC, RSA]
      allowedCurves: [P-256, P-384]
      minRSABits: 3072
    spireServers: [main]
  - trustDomain: other.example
    bundleEndpoint:
      urls: [https://spire.other.example]
      profile: https_spiffe
      endpointSPIFFEID: spiffe://other.example/spire/server
      bootstrapBundleFile: /etc/spiffe-broker/other.bundle.json
    allowEmptyBundle: true
`;

/** Parses and returns the issues of the expected ConfigValidationError. */
function issuesOf(text: string, opts = {}) {
  try {
    parseAllowlist(text, opts);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigValidationError);
    expect(err).toBeInstanceOf(ConfigError);
    return { error: err as ConfigValidationError, issues: (err as ConfigValidationError).issues };
  }
  throw new Error('expected the allowlist to be refused');
}

function peerDoc(peer: string): string {
  return `apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\npeers:\n${peer}`;
}

describe('parseAllowlist', () => {
  it('parses every field of a valid allowlist', () => {
    const a = parseAllowlist(VALID, { localTrustDomain: 'example.org', serverNames: ['main', 'dr'] });
    expect(a.version).toMatch(/^[0-9a-f]{64}$/);
    expect(a.peers).toHaveLength(2);
    const [p, q] = a.peers;
    expect(p!.trustDomain.name).toBe('partner.example');
    expect(p!.urls.map((u) => u.href)).toEqual([
      'https://bundle-a.partner.example/bundle',
      'https://bundle-b.partner.example:8443/bundle',
    ]);
    expect(p!.profile).toEqual({ kind: 'https_web', caFile: '/etc/spiffe-broker/partner-ca.pem' });
    expect(p!.refresh).toEqual({ minIntervalSeconds: 5, maxIntervalSeconds: 600 });
    expect(p!.keyPolicy).toEqual({
      maxKeys: 16,
      allowedKeyTypes: ['EC', 'RSA'],
      allowedCurves: ['P-256', 'P-384'],
      minRsaBits: 3072,
    });
    expect(p!.targetServers).toEqual(['main']);
    expect(p!.allowEmptyBundle).toBe(false);
    expect(p!.line).toBe(4);
    expect(q!.profile.kind).toBe('https_spiffe');
    if (q!.profile.kind !== 'https_spiffe') throw new Error('unreachable');
    expect(q!.profile.endpointSpiffeId.toString()).toBe('spiffe://other.example/spire/server');
    expect(q!.profile.bootstrapBundleFile).toBe('/etc/spiffe-broker/other.bundle.json');
    expect(q!.refresh).toEqual({ minIntervalSeconds: 1, maxIntervalSeconds: 300 });
    expect(q!.keyPolicy).toEqual({});
    expect(q!.targetServers).toBe('all');
    expect(q!.allowEmptyBundle).toBe(true);
    expect(q!.line).toBe(18);
  });

  it('reads refresh.maxHint and keyPolicy.maxBundleBytes, within bounds', () => {
    const entry = (extra: string) =>
      `apiVersion: spiffe-broker.dev/v1
kind: Allowlist
peers:
  - trustDomain: partner.example
    bundleEndpoint: { urls: [https://p.example], profile: https_web }
${extra}`;
    const [p] = parseAllowlist(
      entry('    refresh: { maxHint: 6h }\n    keyPolicy: { maxBundleBytes: 131072 }\n'),
    ).peers;
    expect(p!.refresh).toEqual({ minIntervalSeconds: 1, maxIntervalSeconds: 300, maxHintSeconds: 21_600 });
    expect(p!.keyPolicy).toEqual({ maxBundleBytes: 131_072 });
    for (const bad of [
      '    refresh: { maxHint: 59s }\n',
      '    refresh: { maxHint: 90500ms }\n',
      '    refresh: { maxHint: 800h }\n',
      '    keyPolicy: { maxBundleBytes: 1023 }\n',
      '    keyPolicy: { maxBundleBytes: 16777217 }\n',
    ]) {
      expect(() => parseAllowlist(entry(bad)), bad).toThrow(
        expect.objectContaining({ code: 'ERR_CONFIG_SCHEMA' }),
      );
    }
  });

  it('accepts an empty peer list', () => {
    expect(parseAllowlist(peerDoc('  []\n').replace('peers:\n  []', 'peers: []')).peers).toEqual([]);
  });

  it('versions by content: the same text gives the same version, any edit another', () => {
    expect(parseAllowlist(VALID).version).toBe(parseAllowlist(VALID).version);
    expect(parseAllowlist(`${VALID}# comment\n`).version).not.toBe(parseAllowlist(VALID).version);
  });

  it('refuses the local trust domain (never federate with yourself)', () => {
    const { error, issues } = issuesOf(VALID, { localTrustDomain: 'partner.example' });
    expect(error.code).toBe('ERR_CONFIG_LOCAL_TRUST_DOMAIN');
    expect(issues).toEqual([
      expect.objectContaining({
        line: 4,
        column: 18,
        path: '/peers/0/trustDomain',
        code: 'ERR_CONFIG_LOCAL_TRUST_DOMAIN',
      }),
    ]);
  });

  it('refuses a duplicate trust domain and names the first occurrence', () => {
    const text = peerDoc(`  - trustDomain: a.example
    bundleEndpoint: { urls: [https://a.example], profile: https_web }
  - trustDomain: a.example
    bundleEndpoint: { urls: [https://a2.example], profile: https_web }
`);
    const { error, issues } = issuesOf(text);
    expect(error.code).toBe('ERR_CONFIG_DUPLICATE_PEER');
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ line: 6, column: 18, path: '/peers/1/trustDomain' });
    expect(issues[0]!.message).toContain('line 4');
  });

  it('requires an explicit trust domain: never inferred from the URL (Federation §7.2)', () => {
    const { issues } = issuesOf(
      peerDoc(`  - bundleEndpoint: { urls: [https://a.example], profile: https_web }\n`),
    );
    expect(issues).toEqual([
      expect.objectContaining({ line: 4, path: '/peers/0/trustDomain', code: 'ERR_CONFIG_SCHEMA' }),
    ]);
    expect(issues[0]!.message).toContain('missing required key "trustDomain"');
  });

  it('requires an explicit profile', () => {
    const { issues } = issuesOf(
      peerDoc(`  - trustDomain: a.example\n    bundleEndpoint: { urls: [https://a.example] }\n`),
    );
    expect(issues.map((i) => i.path)).toEqual(['/peers/0/bundleEndpoint/profile']);
  });

  it.each([
    ['http://a.example/bundle', 'http:// is refused'],
    ['https://user@a.example/', 'userinfo'],
    ['https://user:pw@a.example/', 'userinfo'],
    ['https://@a.example/', 'userinfo'],
    ['ftp://a.example/', 'https:// URL'],
    ['https:///path', 'https:// URL with a host'],
    ['a.example', 'https:// URL'],
    ['https://a exa mple/', 'not a valid URL'],
  ])('refuses the URL %s (W1/S1)', (url, why) => {
    const { error, issues } = issuesOf(
      peerDoc(
        `  - trustDomain: a.example\n    bundleEndpoint:\n      urls: ["${url}"]\n      profile: https_web\n`,
      ),
    );
    expect(error.code).toBe('ERR_CONFIG_URL');
    expect(issues).toEqual([
      expect.objectContaining({ line: 6, column: 14, path: '/peers/0/bundleEndpoint/urls/0' }),
    ]);
    expect(issues[0]!.message).toContain(why);
  });

  it('endpointUrlProblem accepts https URLs with ports, paths and queries', () => {
    for (const u of [
      'https://a.example',
      'https://a.example:8443/x/y?z=1',
      'https://127.0.0.1:1/',
      'https://[::1]:443/b',
    ]) {
      expect(endpointUrlProblem(u)).toBeUndefined();
    }
  });

  it('refuses an empty URL list and a URL listed twice', () => {
    const { issues } = issuesOf(
      peerDoc(`  - trustDomain: a.example
    bundleEndpoint: { urls: [], profile: https_web }
  - trustDomain: b.example
    bundleEndpoint: { urls: [https://b.example/, "https://b.example"], profile: https_web }
`),
    );
    expect(issues.map((i) => [i.line, i.path])).toEqual([
      [5, '/peers/0/bundleEndpoint/urls'],
      [7, '/peers/1/bundleEndpoint/urls/1'],
    ]);
  });

  it('refuses unknown keys at every level, suggesting the close one', () => {
    const { issues } = issuesOf(`apiVersion: spiffe-broker.dev/v1
kind: Allowlist
peerz: []
peers:
  - trustDomain: a.example
    bundleEndpoint: { urls: [https://a.example], profile: https_web, caFlie: /x }
    refresh: { minIntrval: 2s }
    keyPolicy: { minRsaBits: 4096 }
    allowEmptyBundles: true
`);
    expect(issues.map((i) => [i.line, i.column, i.path])).toEqual([
      [3, 1, '/peerz'],
      [6, 70, '/peers/0/bundleEndpoint/caFlie'],
      [7, 16, '/peers/0/refresh/minIntrval'],
      [8, 18, '/peers/0/keyPolicy/minRsaBits'],
      [9, 5, '/peers/0/allowEmptyBundles'],
    ]);
    expect(issues[1]!.message).toContain('did you mean "caFile"?');
    expect(issues[3]!.message).toContain('did you mean "minRSABits"?');
    expect(issues[4]!.message).toContain('did you mean "allowEmptyBundle"?');
  });

  it('collects every issue at once, each with its position, and picks ERR_CONFIG_SCHEMA when mixed', () => {
    const { error, issues } = issuesOf(
      peerDoc(`  - trustDomain: Bad_Domain
    bundleEndpoint: { urls: [http://x.example], profile: https_web }
  - trustDomain: ok.example
    bundleEndpoint: { urls: [https://ok.example], profile: https_spiffe }
    refresh: { minInterval: 10m, maxInterval: 1m }
    keyPolicy: { maxKeys: 0, allowedKeyTypes: [EC, DSA], allowedCurves: [], minRSABits: 512 }
    spireServers: [main, main]
    allowEmptyBundle: "yes"
`),
    );
    expect(error.code).toBe('ERR_CONFIG_SCHEMA');
    expect(issues.map((i) => `${i.line}:${i.column} ${i.code} ${i.path}`)).toEqual([
      '4:18 ERR_CONFIG_TRUST_DOMAIN /peers/0/trustDomain',
      '5:30 ERR_CONFIG_URL /peers/0/bundleEndpoint/urls/0',
      '7:21 ERR_CONFIG_PROFILE /peers/1/bundleEndpoint',
      '8:47 ERR_CONFIG_SCHEMA /peers/1/refresh/maxInterval',
      '9:27 ERR_CONFIG_SCHEMA /peers/1/keyPolicy/maxKeys',
      '9:52 ERR_CONFIG_SCHEMA /peers/1/keyPolicy/allowedKeyTypes/1',
      '9:73 ERR_CONFIG_SCHEMA /peers/1/keyPolicy/allowedCurves',
      '9:89 ERR_CONFIG_SCHEMA /peers/1/keyPolicy/minRSABits',
      '10:26 ERR_CONFIG_SCHEMA /peers/1/spireServers/1',
      '11:23 ERR_CONFIG_SCHEMA /peers/1/allowEmptyBundle',
    ]);
    expect(error.message).toContain('has 10 problems');
  });

  it('refuses SPIFFE IDs in place of trust domain names', () => {
    const { issues } = issuesOf(
      peerDoc(
        `  - trustDomain: spiffe://a.example\n    bundleEndpoint: { urls: [https://a.example], profile: https_web }\n`,
      ),
    );
    expect(issues[0]).toMatchObject({ code: 'ERR_CONFIG_TRUST_DOMAIN' });
    expect(issues[0]!.message).toContain('bare trust domain name (a.example)');
  });

  describe('profiles (never mixed, Federation §7.2)', () => {
    const ep = (body: string, td = 'a.example') =>
      peerDoc(`  - trustDomain: ${td}\n    bundleEndpoint:\n      urls: [https://a.example]\n${body}`);

    it('refuses https_spiffe parameters on https_web', () => {
      const { error, issues } = issuesOf(
        ep(
          '      profile: https_web\n      endpointSPIFFEID: spiffe://a.example/x\n      bootstrapBundleFile: /b\n',
        ),
      );
      expect(error.code).toBe('ERR_CONFIG_PROFILE');
      expect(issues.map((i) => i.path)).toEqual([
        '/peers/0/bundleEndpoint/endpointSPIFFEID',
        '/peers/0/bundleEndpoint/bootstrapBundleFile',
      ]);
    });

    it('refuses caFile on https_spiffe and requires endpointSPIFFEID', () => {
      const { issues } = issuesOf(ep('      profile: https_spiffe\n      caFile: /ca.pem\n'));
      expect(issues.map((i) => [i.code, i.path])).toEqual([
        ['ERR_CONFIG_PROFILE', '/peers/0/bundleEndpoint'],
        ['ERR_CONFIG_PROFILE', '/peers/0/bundleEndpoint/caFile'],
      ]);
    });

    it('parses the endpoint SPIFFE ID with the core parser', () => {
      const { issues } = issuesOf(
        ep(
          '      profile: https_spiffe\n      endpointSPIFFEID: spiffe://a.example/x/../y\n      bootstrapBundleFile: /b\n',
        ),
      );
      expect(issues[0]).toMatchObject({
        code: 'ERR_CONFIG_PROFILE',
        path: '/peers/0/bundleEndpoint/endpointSPIFFEID',
      });
      expect(issues[0]!.message).toContain('invalid endpoint SPIFFE ID');
    });

    it('requires a bootstrap bundle for a self-serving endpoint', () => {
      const { issues } = issuesOf(
        ep('      profile: https_spiffe\n      endpointSPIFFEID: spiffe://a.example/spire/server\n'),
      );
      expect(issues[0]!.message).toContain('self-serving');
    });

    it('accepts a non-self-serving endpoint whose domain is another peer', () => {
      const text = peerDoc(`  - trustDomain: a.example
    bundleEndpoint:
      urls: [https://a.example]
      profile: https_spiffe
      endpointSPIFFEID: spiffe://hub.example/broker
`);
      const withHub = `${text}  - trustDomain: hub.example
    bundleEndpoint: { urls: [https://hub.example], profile: https_web }
`;
      expect(parseAllowlist(withHub, { localTrustDomain: 'example.org' }).peers).toHaveLength(2);
      const { issues } = issuesOf(text, { localTrustDomain: 'example.org' });
      expect(issues).toEqual([expect.objectContaining({ line: 8, code: 'ERR_CONFIG_PROFILE' })]);
      expect(issues[0]!.message).toContain('hub.example');
    });

    it('refuses an endpoint ID in the local trust domain without bootstrapBundleFile (the daemon could never authenticate it)', () => {
      const local = (extra: string) =>
        peerDoc(`  - trustDomain: b.example
    bundleEndpoint:
      urls: [https://b.example]
      profile: https_spiffe
      endpointSPIFFEID: spiffe://example.org/broker
${extra}`);
      const { error, issues } = issuesOf(local(''), { localTrustDomain: 'example.org' });
      expect(error.code).toBe('ERR_CONFIG_PROFILE');
      expect(issues).toEqual([
        expect.objectContaining({
          line: 8,
          path: '/peers/0/bundleEndpoint/endpointSPIFFEID',
          code: 'ERR_CONFIG_PROFILE',
        }),
      ]);
      expect(issues[0]!.message).toContain('local trust domain example.org');
      expect(issues[0]!.message).toContain('bootstrapBundleFile');
      // With the local bundle as bootstrap it is accepted.
      const ok = parseAllowlist(local('      bootstrapBundleFile: /etc/local.bundle.json\n'), {
        localTrustDomain: 'example.org',
      });
      expect(ok.peers).toHaveLength(1);
    });
  });

  it('checks spireServers against the broker config when given, and accepts "all"', () => {
    const text = peerDoc(`  - trustDomain: a.example
    bundleEndpoint: { urls: [https://a.example], profile: https_web }
    spireServers: [main, nope]
  - trustDomain: b.example
    bundleEndpoint: { urls: [https://b.example], profile: https_web }
    spireServers: all
`);
    const { error, issues } = issuesOf(text, { serverNames: ['main'] });
    expect(error.code).toBe('ERR_CONFIG_UNKNOWN_SERVER');
    expect(issues).toEqual([expect.objectContaining({ line: 6, column: 26 })]);
    // Without the broker config the names cannot be checked.
    expect(parseAllowlist(text).peers[1]!.targetServers).toBe('all');
  });

  it('reports YAML syntax errors and duplicate keys with positions (ERR_CONFIG_YAML)', () => {
    const { error, issues } = issuesOf(
      'apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\nkind: Allowlist\npeers: []\n',
    );
    expect(error.code).toBe('ERR_CONFIG_YAML');
    expect(issues[0]).toMatchObject({ line: 3, column: 1, message: 'duplicate key' });
    const bad = issuesOf('peers: [\n  - a\n');
    expect(bad.error.code).toBe('ERR_CONFIG_YAML');
    expect(bad.issues[0]!.line).toBeGreaterThanOrEqual(1);
  });

  it('refuses aliases, wrong header, and non-mapping documents', () => {
    expect(issuesOf('').issues[0]!.message).toContain('empty');
    expect(issuesOf('- a\n').issues[0]!.message).toBe(
      'this is not an Allowlist: expected a YAML mapping with apiVersion: spiffe-broker.dev/v1 and kind: Allowlist',
    );
    const h = issuesOf('apiVersion: v2\nkind: Thing\npeers: []\n');
    expect(h.issues.map((i) => [i.line, i.path])).toEqual([
      [1, '/apiVersion'],
      [2, '/kind'],
    ]);
    expect(h.issues[1]!.message).toContain('unknown kind');
    const alias = issuesOf(
      peerDoc(`  - trustDomain: a.example
    bundleEndpoint: &ep { urls: [https://a.example], profile: https_web }
  - trustDomain: b.example
    bundleEndpoint: *ep
`),
    );
    expect(alias.issues[0]!.message).toContain('aliases');
  });

  it('never throws anything but a ConfigError on arbitrary text (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => {
        try {
          parseAllowlist(s);
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigValidationError);
          for (const i of (err as ConfigValidationError).issues) {
            expect(i.line).toBeGreaterThanOrEqual(1);
            expect(i.column).toBeGreaterThanOrEqual(1);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a valid document with one random key renamed is always refused at that key (property)', () => {
    const keys = [
      'trustDomain',
      'bundleEndpoint',
      'urls',
      'profile',
      'caFile',
      'minInterval',
      'maxKeys',
      'spireServers',
    ];
    fc.assert(
      fc.property(fc.constantFrom(...keys), fc.stringMatching(/^[a-z]{1,3}$/), (key, suffix) => {
        const text = VALID.replace(`${key}:`, `${key}${suffix}:`);
        const { issues } = issuesOf(text);
        expect(issues.some((i) => i.path.endsWith(`/${key}${suffix}`))).toBe(true);
      }),
      { numRuns: 100 },
    );
  });
});

describe('parseAllowlist round trip (property)', () => {
  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/);
  // A DNS label with "--" in positions 3-4 is an (IDNA) A-label: "xn--0" is not a valid host.
  const hostLabel = label.filter((l) => l.slice(2, 4) !== '--');
  const peerArb = fc.record({
    td: fc.tuple(label, label).map(([a, b]) => `${a}.${b}`),
    urls: fc.uniqueArray(
      fc
        .tuple(hostLabel, fc.option(fc.integer({ min: 1, max: 65_535 }), { nil: undefined }), label)
        .map(([h, port, p]) => `https://${h}.example${port ? `:${port}` : ''}/${p}`),
      { minLength: 1, maxLength: 3 },
    ),
    web: fc.boolean(),
    minS: fc.integer({ min: 1, max: 60 }),
    extraS: fc.integer({ min: 0, max: 3600 }),
    maxKeys: fc.option(fc.integer({ min: 1, max: 10_000 }), { nil: undefined }),
    types: fc.option(fc.subarray(['EC', 'RSA', 'OKP'] as const, { minLength: 1 }), { nil: undefined }),
    allowEmpty: fc.boolean(),
  });

  it('every generated valid allowlist parses back to the same settings', () => {
    fc.assert(
      fc.property(fc.uniqueArray(peerArb, { selector: (p) => p.td, maxLength: 5 }), (peers) => {
        const doc = {
          apiVersion: 'spiffe-broker.dev/v1',
          kind: 'Allowlist',
          peers: peers.map((p) => ({
            trustDomain: p.td,
            bundleEndpoint: p.web
              ? { urls: p.urls, profile: 'https_web' }
              : {
                  urls: p.urls,
                  profile: 'https_spiffe',
                  endpointSPIFFEID: `spiffe://${p.td}/spire/server`,
                  bootstrapBundleFile: `/b/${p.td}.json`,
                },
            refresh: { minInterval: `${p.minS}s`, maxInterval: p.minS + p.extraS },
            ...(p.maxKeys !== undefined || p.types !== undefined
              ? {
                  keyPolicy: {
                    ...(p.maxKeys !== undefined ? { maxKeys: p.maxKeys } : {}),
                    ...(p.types !== undefined ? { allowedKeyTypes: p.types } : {}),
                  },
                }
              : {}),
            allowEmptyBundle: p.allowEmpty,
          })),
        };
        const a = parseAllowlist(stringifyYaml(doc), { localTrustDomain: 'local.test' });
        expect(a.peers.map((p) => p.trustDomain.name)).toEqual(peers.map((p) => p.td));
        for (const [i, p] of peers.entries()) {
          const got = a.peers[i]!;
          expect(got.urls.map((u) => u.href)).toEqual(p.urls.map((u) => new URL(u).href));
          expect(got.profile.kind).toBe(p.web ? 'https_web' : 'https_spiffe');
          expect(got.refresh).toEqual({ minIntervalSeconds: p.minS, maxIntervalSeconds: p.minS + p.extraS });
          expect(got.keyPolicy.maxKeys).toBe(p.maxKeys);
          expect(got.keyPolicy.allowedKeyTypes).toEqual(p.types);
          expect(got.allowEmptyBundle).toBe(p.allowEmpty);
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('allowlist probe entries', () => {
  const entry = (probe: string) => `apiVersion: spiffe-broker.dev/v1
kind: Allowlist
peers:
  - trustDomain: peer.test
    bundleEndpoint: { urls: [https://peer.test/], profile: https_web }
    probe: ${probe}
`;
  it('reads the probe address and expected ID', () => {
    const a = parseAllowlist(
      entry('{ address: "127.0.0.1:9443", spiffeId: spiffe://peer.test/spiffe-broker }'),
    );
    expect(a.peers[0]!.probe).toMatchObject({ host: '127.0.0.1', port: 9443 });
    expect(a.peers[0]!.probe?.expectedId?.toString()).toBe('spiffe://peer.test/spiffe-broker');
    expect(parseAllowlist(entry('{ address: "[::1]:9443" }')).peers[0]!.probe).toEqual({
      host: '::1',
      port: 9443,
    });
  });
  it('refuses a bad address or ID with a position', () => {
    expect(() => parseAllowlist(entry('{ address: nope }'))).toThrow(/6:23: \/peers\/0\/probe\/address/);
    expect(() => parseAllowlist(entry('{ address: "h:1", spiffeId: x }'))).toThrow(/not a SPIFFE ID/);
    expect(() => parseAllowlist(entry('{ addr: "h:1" }'))).toThrow(/unknown key/);
  });
});
