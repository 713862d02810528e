import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BROKER_DEFAULTS,
  ConfigValidationError,
  parseBrokerConfig,
  parseByteSize,
  parseDuration,
  parseListenAddress,
  spireAddressProblem,
} from '../../../src/engine/config/index.js';
import { ConfigError } from '../../../src/errors.js';

const MINIMAL = `apiVersion: spiffe-broker.dev/v1
kind: BrokerConfig
trustDomain: example.org
stateDir: /var/lib/spiffe-broker
spire:
  servers:
    - name: main
      address: unix:///run/spire/server/private/api.sock
allowlist:
  file: /etc/spiffe-broker/allowlist.yaml
`;

const FULL = `apiVersion: spiffe-broker.dev/v1
kind: BrokerConfig
trustDomain: example.org
stateDir: /var/lib/spiffe-broker/
spire:
  servers:
    - name: main
      address: unix:///run/spire/server/private/api.sock
      timeout: 5s
    - name: dr
      address: dns:///spire-dr.internal:8081
      adminCertFile: /etc/spiffe-broker/admin.pem
      adminKeyFile: /etc/spiffe-broker/admin.key
      serverBundleFile: /etc/spiffe-broker/spire-ca.pem
  source: main
allowlist: { file: /etc/spiffe-broker/allowlist.yaml }
endpoint:
  listen: 0.0.0.0:8443
  profile: https_spiffe
  workloadApiSocket: /run/spire/agent/public/api.sock
  refreshHint: 2m
  pollInterval: 500ms
  bundleMapPath: /bundle-map
  serveFederatedInMap: true
  maxHeldRequests: 50
  handshakeTimeout: 3s
  maxConnectionsPerAddress: 32
admin:
  listen: "[::]:9443"
  adminIds: [spiffe://example.org/ops/admin]
verify: { listen: 127.0.0.1:9090, maxBodyBytes: 128KiB }
fetch: { connectTimeout: 2s, timeout: 10s, maxBodyBytes: 2MiB, keepAlive: { idleTimeout: 2m, maxIdle: 64 } }
reconcile: { enforce: true, deleteMode: dissociate }
audit: { file: /var/log/spiffe-broker/audit.log, keyFile: /etc/spiffe-broker/audit.key, fsync: never }
probe: { listen: 127.0.0.1:8088, interval: 30s }
kubernetes: { namespace: spire, configMaps: [{ name: bundles }] }
`;

function issuesOf(text: string) {
  try {
    parseBrokerConfig(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigValidationError);
    return { error: err as ConfigValidationError, issues: (err as ConfigValidationError).issues };
  }
  throw new Error('expected the config to be refused');
}

describe('parseBrokerConfig', () => {
  it('fills every default from a minimal file', () => {
    const c = parseBrokerConfig(MINIMAL);
    expect(c.trustDomain.name).toBe('example.org');
    expect(c.spire).toEqual({
      servers: [{ name: 'main', address: 'unix:///run/spire/server/private/api.sock', timeoutMs: 10_000 }],
      source: 'main',
    });
    expect(c.endpoint).toBeUndefined();
    expect(c.admin).toEqual({ listen: { host: '127.0.0.1', port: 8089 }, adminIds: [] });
    expect(c.verify).toEqual({ listen: { host: '127.0.0.1', port: 8090 }, maxBodyBytes: 65_536 });
    expect(c.fetch).toEqual({
      connectTimeoutMs: 5000,
      timeoutMs: 30_000,
      maxBodyBytes: 1_048_576,
      keepAlive: { idleTimeoutMs: 600_000, maxIdle: 'auto' },
    });
    expect(c.reconcile).toEqual({ enforce: false, deleteMode: 'restrict' });
    expect(c.audit).toEqual({
      file: '/var/lib/spiffe-broker/audit.log',
      keyFile: '/var/lib/spiffe-broker/audit-key.pem',
      fsync: 'always',
    });
    expect(c.probe).toEqual({ intervalMs: BROKER_DEFAULTS.probeIntervalMs });
    expect(c.kubernetes).toBeUndefined();
  });

  it('reads every field of a full file', () => {
    const c = parseBrokerConfig(FULL);
    expect(c.spire.servers[1]).toEqual({
      name: 'dr',
      address: 'dns:///spire-dr.internal:8081',
      adminCertFile: '/etc/spiffe-broker/admin.pem',
      adminKeyFile: '/etc/spiffe-broker/admin.key',
      serverBundleFile: '/etc/spiffe-broker/spire-ca.pem',
      timeoutMs: 10_000,
    });
    expect(c.spire.servers[0]!.timeoutMs).toBe(5000);
    const e = c.endpoint!;
    expect(e.listen).toEqual({ host: '0.0.0.0', port: 8443 });
    expect(e.spiffeId?.toString()).toBe('spiffe://example.org/spiffe-broker');
    expect(e.refreshHintSeconds).toBe(120);
    expect(e.pollIntervalMs).toBe(500);
    expect(e.bundleMapPath).toBe('/bundle-map');
    expect(e.serveFederatedInMap).toBe(true);
    expect(e.maxHeldRequests).toBe(50);
    expect(e.handshakeTimeoutMs).toBe(3000);
    expect(e.maxConnectionsPerAddress).toBe(32);
    expect(c.admin.listen).toEqual({ host: '::', port: 9443 });
    expect(c.admin.adminIds.map(String)).toEqual(['spiffe://example.org/ops/admin']);
    expect(c.verify.maxBodyBytes).toBe(131_072);
    expect(c.fetch).toEqual({
      connectTimeoutMs: 2000,
      timeoutMs: 10_000,
      maxBodyBytes: 2_097_152,
      keepAlive: { idleTimeoutMs: 120_000, maxIdle: 64 },
    });
    expect(c.reconcile).toEqual({ enforce: true, deleteMode: 'dissociate' });
    expect(c.audit.fsync).toBe('never');
    expect(c.probe).toEqual({ listen: { host: '127.0.0.1', port: 8088 }, intervalMs: 30_000 });
    expect(c.kubernetes).toEqual({ namespace: 'spire', configMaps: [{ name: 'bundles' }] });
  });

  it('endpoint defaults: refresh hint 300 s, poll 250 ms', () => {
    const c = parseBrokerConfig(
      `${MINIMAL}endpoint: { listen: ":8443", profile: https_web, certFile: /c.pem, keyFile: /k.pem }\n`.replace(
        '":8443"',
        'localhost:8443',
      ),
    );
    expect(c.endpoint).toEqual({
      listen: { host: 'localhost', port: 8443 },
      profile: 'https_web',
      certFile: '/c.pem',
      keyFile: '/k.pem',
      refreshHintSeconds: 300,
      pollIntervalMs: 250,
      serveFederatedInMap: false,
      maxHeldRequests: 10_000,
      handshakeTimeoutMs: 10_000,
      maxConnectionsPerAddress: 256,
    });
  });

  it('endpoint: refuses a handshake timeout outside 100ms–2m and a per-address cap below 1 (issue 16 item 6)', () => {
    const ep = (extra: string) =>
      `${MINIMAL}endpoint: { listen: localhost:8443, profile: https_web, certFile: /c.pem, keyFile: /k.pem, ${extra} }\n`;
    for (const bad of ['handshakeTimeout: 0s', 'handshakeTimeout: 10m', 'maxConnectionsPerAddress: 0']) {
      expect(() => parseBrokerConfig(ep(bad)), bad).toThrow(ConfigValidationError);
    }
    expect(parseBrokerConfig(ep('handshakeTimeout: 100ms')).endpoint?.handshakeTimeoutMs).toBe(100);
  });

  it('fetch.keepAlive: 0 turns reuse off; auto sizes to the allowlist; negative or unknown fields are refused', () => {
    const ka = (extra: string) => parseBrokerConfig(`${MINIMAL}fetch: { keepAlive: { ${extra} } }\n`);
    expect(ka('idleTimeout: 0s').fetch.keepAlive).toEqual({ idleTimeoutMs: 0, maxIdle: 'auto' });
    expect(ka('maxIdle: 0').fetch.keepAlive).toEqual({ idleTimeoutMs: 600_000, maxIdle: 0 });
    expect(ka('maxIdle: 1024').fetch.keepAlive).toEqual({ idleTimeoutMs: 600_000, maxIdle: 1024 });
    expect(ka('maxIdle: auto').fetch.keepAlive).toEqual({ idleTimeoutMs: 600_000, maxIdle: 'auto' });
    for (const bad of [
      'maxIdle: -1',
      'idleTimeout: soon',
      'maxIdle: 2000000',
      'maxIdle: automatic',
      "maxIdle: 'AUTO'",
      'lifetime: 1h',
    ]) {
      expect(() => ka(bad), bad).toThrow(ConfigValidationError);
    }
    expect(() => ka('maxIdle: automatic')).toThrow(/maxIdle: must be auto or an integer in 0\.\.1000000/);
  });

  it('collects every problem with its position', () => {
    const { error, issues } = issuesOf(`apiVersion: spiffe-broker.dev/v1
kind: BrokerConfig
trustDomain: Example.org
spire:
  servers:
    - name: main
      address: tcp://spire:8081
    - name: main
      address: dns:///spire:8081
  source: other
allowlist: {}
endpoint: { listen: "8443", profile: https_web, spiffeId: spiffe://example.org/x }
admin: { listen: 0.0.0.0:8089 }
reconcile: { deleteMode: purge, enforce: yes }
fetch: { timeout: forever }
extra: 1
`);
    expect(error.code).toBe('ERR_CONFIG_SCHEMA');
    expect(issues.map((i) => `${i.line}:${i.column} ${i.code} ${i.path}`)).toEqual([
      '1:1 ERR_CONFIG_SCHEMA /stateDir',
      '3:14 ERR_CONFIG_TRUST_DOMAIN /trustDomain',
      '7:16 ERR_CONFIG_ADDRESS /spire/servers/0/address',
      '8:7 ERR_CONFIG_SCHEMA /spire/servers/1',
      '9:16 ERR_CONFIG_ADDRESS /spire/servers/1/address',
      '10:11 ERR_CONFIG_UNKNOWN_SERVER /spire/source',
      '11:12 ERR_CONFIG_SCHEMA /allowlist/file',
      '12:11 ERR_CONFIG_PROFILE /endpoint',
      '12:21 ERR_CONFIG_ADDRESS /endpoint/listen',
      '12:59 ERR_CONFIG_PROFILE /endpoint/spiffeId',
      '13:18 ERR_CONFIG_ADDRESS /admin/listen',
      '14:26 ERR_CONFIG_SCHEMA /reconcile/deleteMode',
      '14:42 ERR_CONFIG_SCHEMA /reconcile/enforce',
      '15:19 ERR_CONFIG_SCHEMA /fetch/timeout',
      '16:1 ERR_CONFIG_SCHEMA /extra',
    ]);
  });

  it('requires spire.source when there are several servers, and it must exist', () => {
    const two = MINIMAL.replace('allowlist:', '    - name: b\n      address: unix:///b.sock\nallowlist:');
    expect(issuesOf(two).issues[0]!.message).toContain('spire.source');
    const src = two.replace('allowlist:', '  source: c\nallowlist:');
    expect(issuesOf(src).error.code).toBe('ERR_CONFIG_UNKNOWN_SERVER');
    expect(parseBrokerConfig(src.replace('source: c', 'source: b')).spire.source).toBe('b');
  });

  it('endpoint spiffeId must be in the local trust domain', () => {
    const { error } = issuesOf(
      `${MINIMAL}endpoint: { listen: 127.0.0.1:0, profile: https_spiffe, workloadApiSocket: /s, spiffeId: spiffe://other.org/b }\n`,
    );
    expect(error.code).toBe('ERR_CONFIG_TRUST_DOMAIN');
  });

  it('admin: loopback by default, socket alternative, mTLS IDs required off-host', () => {
    expect(parseBrokerConfig(`${MINIMAL}admin: { socket: /run/broker/admin.sock }\n`).admin).toEqual({
      socket: '/run/broker/admin.sock',
      adminIds: [],
    });
    expect(issuesOf(`${MINIMAL}admin: { socket: /a, listen: 127.0.0.1:1 }\n`).issues[0]!.message).toContain(
      'not both',
    );
    expect(issuesOf(`${MINIMAL}admin: { listen: 10.0.0.1:8089 }\n`).error.code).toBe('ERR_CONFIG_ADDRESS');
  });

  it('refuses a BrokerConfig given to the wrong parser kind', () => {
    expect(issuesOf(MINIMAL.replace('BrokerConfig', 'Allowlist')).issues[0]!.message).toContain(
      'kind must be BrokerConfig',
    );
  });
});

describe('addresses', () => {
  it.each([
    ['127.0.0.1:8089', { host: '127.0.0.1', port: 8089 }],
    ['[::1]:0', { host: '::1', port: 0 }],
    ['broker.internal:443', { host: 'broker.internal', port: 443 }],
  ])('parses listen %s', (s, want) => expect(parseListenAddress(s)).toEqual(want));
  it.each(['8443', ':8443', 'host:99999', '::1:80', 'a b:1'])('refuses listen %s', (s) =>
    expect(typeof parseListenAddress(s)).toBe('string'),
  );
  it('checks SPIRE addresses', () => {
    expect(spireAddressProblem('unix:///tmp/api.sock')).toBeUndefined();
    expect(spireAddressProblem('dns:///spire:8081')).toBeUndefined();
    expect(spireAddressProblem('unix://relative.sock')).toContain('absolute');
    expect(spireAddressProblem('dns:///spire')).toContain('dns address');
    expect(spireAddressProblem('spire:8081')).toBeDefined();
  });
});

describe('parseDuration / parseByteSize', () => {
  it.each([
    ['250ms', 250],
    ['1s', 1000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1500],
    ['0.1s', 100],
    ['30', 30_000],
    [2, 2000],
    [0.25, 250],
  ] as const)('%s → %d ms', (v, ms) => expect(parseDuration(v)).toBe(ms));

  it.each(['', '5', '-1s', '5 m', '1d', 'ms', '1.0001ms', 'fives'].filter((s) => s !== '5'))(
    'refuses %j',
    (v) => expect(() => parseDuration(v)).toThrow(ConfigError),
  );
  it('refuses negative and non-finite numbers', () => {
    expect(() => parseDuration(-1)).toThrow(ConfigError);
    expect(() => parseDuration(Number.POSITIVE_INFINITY)).toThrow(ConfigError);
  });

  it('round-trips any whole number of seconds, minutes and ms (property)', () => {
    fc.assert(
      fc.property(fc.nat(1000), fc.nat(59), fc.nat(999), (m, s, ms) => {
        expect(parseDuration(`${m}m${s}s${ms}ms`)).toBe(m * 60_000 + s * 1000 + ms);
      }),
    );
  });

  it('parses byte sizes', () => {
    expect(parseByteSize(10)).toBe(10);
    expect(parseByteSize('64KiB')).toBe(65_536);
    expect(parseByteSize('1MiB')).toBe(1_048_576);
    expect(parseByteSize('3B')).toBe(3);
    expect(() => parseByteSize('1MB')).toThrow(ConfigError);
    expect(() => parseByteSize(1.5)).toThrow(ConfigError);
  });
});
