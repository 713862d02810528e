import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseAllowlist, parseBrokerConfig } from '../../../src/engine/config/index.js';

/**
 * The editor schemas in deploy/schema/ and the parsers must agree: every sample below is either
 * accepted by both or refused by both. `semanticOnly` samples are the documented gap: rules a JSON
 * Schema cannot express, refused by the parser only.
 */
const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false });
const allowlistSchema = ajv.compile(JSON.parse(readFileSync('deploy/schema/allowlist.schema.json', 'utf8')));
const brokerSchema = ajv.compile(JSON.parse(readFileSync('deploy/schema/broker-config.schema.json', 'utf8')));

function accepts(parse: (t: string) => unknown, text: string): boolean {
  try {
    parse(text);
    return true;
  } catch {
    return false;
  }
}

const AL_HEAD = 'apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\n';
const web = (extra = '', ep = '') =>
  `${AL_HEAD}peers:\n  - trustDomain: a.example\n    bundleEndpoint:\n      urls: [https://a.example/b]\n      profile: https_web\n${ep}${extra}`;
const spiffe = (extra = '', ep = '') =>
  `${AL_HEAD}peers:\n  - trustDomain: a.example\n    bundleEndpoint:\n      urls: [https://a.example/b]\n      profile: https_spiffe\n      endpointSPIFFEID: spiffe://a.example/spire/server\n      bootstrapBundleFile: /b.json\n${ep}${extra}`;

const allowlistSamples: { name: string; text: string; valid: boolean }[] = [
  { name: 'empty peers', text: `${AL_HEAD}peers: []\n`, valid: true },
  { name: 'https_web', text: web(), valid: true },
  { name: 'https_web with caFile', text: web('', '      caFile: /ca.pem\n'), valid: true },
  { name: 'https_spiffe', text: spiffe(), valid: true },
  {
    name: 'all options',
    text: web(
      '    refresh: { minInterval: 2s, maxInterval: 10m }\n    keyPolicy: { maxKeys: 4, allowedKeyTypes: [EC], allowedCurves: [P-256], minRSABits: 2048 }\n    spireServers: [main]\n    allowEmptyBundle: true\n',
    ),
    valid: true,
  },
  { name: 'spireServers all', text: web('    spireServers: all\n'), valid: true },
  { name: 'numeric durations', text: web('    refresh: { minInterval: 1, maxInterval: 60 }\n'), valid: true },
  { name: 'missing peers', text: AL_HEAD, valid: false },
  {
    name: 'wrong kind',
    text: `apiVersion: spiffe-broker.dev/v1\nkind: BrokerConfig\npeers: []\n`,
    valid: false,
  },
  { name: 'wrong apiVersion', text: `apiVersion: v1\nkind: Allowlist\npeers: []\n`, valid: false },
  { name: 'unknown top key', text: `${AL_HEAD}peers: []\nextra: 1\n`, valid: false },
  { name: 'unknown peer key', text: web('    refreshh: {}\n'), valid: false },
  { name: 'http URL', text: web().replace('https://a.example/b', 'http://a.example/b'), valid: false },
  { name: 'userinfo URL', text: web().replace('https://a.example/b', 'https://u@a.example/b'), valid: false },
  { name: 'no URLs', text: web().replace('[https://a.example/b]', '[]'), valid: false },
  { name: 'missing profile', text: web().replace('      profile: https_web\n', ''), valid: false },
  { name: 'unknown profile', text: web().replace('https_web', 'https'), valid: false },
  { name: 'missing trustDomain', text: web().replace('trustDomain: a.example\n    ', ''), valid: false },
  { name: 'upper-case trust domain', text: web().replace('a.example\n', 'A.example\n'), valid: false },
  {
    name: 'SPIFFE ID as trust domain',
    text: web().replace('a.example\n', 'spiffe://a.example\n'),
    valid: false,
  },
  {
    name: 'https_web with endpoint ID',
    text: web('', '      endpointSPIFFEID: spiffe://a.example/x\n'),
    valid: false,
  },
  { name: 'https_spiffe with caFile', text: spiffe('', '      caFile: /ca.pem\n'), valid: false },
  {
    name: 'https_spiffe without endpoint ID',
    text: spiffe().replace('      endpointSPIFFEID: spiffe://a.example/spire/server\n', ''),
    valid: false,
  },
  { name: 'bad duration', text: web('    refresh: { minInterval: 5 minutes }\n'), valid: false },
  { name: 'unknown key type', text: web('    keyPolicy: { allowedKeyTypes: [DSA] }\n'), valid: false },
  { name: 'empty curve list', text: web('    keyPolicy: { allowedCurves: [] }\n'), valid: false },
  { name: 'tiny RSA minimum', text: web('    keyPolicy: { minRSABits: 512 }\n'), valid: false },
  { name: 'zero maxKeys', text: web('    keyPolicy: { maxKeys: 0 }\n'), valid: false },
  {
    name: 'maxBundleBytes and maxHint',
    text: web('    refresh: { maxHint: 6h }\n    keyPolicy: { maxBundleBytes: 131072 }\n'),
    valid: true,
  },
  { name: 'tiny maxBundleBytes', text: web('    keyPolicy: { maxBundleBytes: 100 }\n'), valid: false },
  { name: 'huge maxBundleBytes', text: web('    keyPolicy: { maxBundleBytes: 33554432 }\n'), valid: false },
  { name: 'empty spireServers', text: web('    spireServers: []\n'), valid: false },
  { name: 'string boolean', text: web('    allowEmptyBundle: "true"\n'), valid: false },
];

const semanticOnlyAllowlists: { name: string; text: string }[] = [
  {
    name: 'duplicate trust domain',
    text: `${web()}  - trustDomain: a.example\n    bundleEndpoint: { urls: [https://b.example], profile: https_web }\n`,
  },
  {
    name: 'minInterval above maxInterval',
    text: web('    refresh: { minInterval: 10m, maxInterval: 1m }\n'),
  },
  { name: 'interval below 100ms', text: web('    refresh: { minInterval: 1ms }\n') },
  { name: 'maxHint below one minute', text: web('    refresh: { maxHint: 30s }\n') },
  {
    name: 'self-serving https_spiffe without bootstrap bundle',
    text: spiffe().replace('      bootstrapBundleFile: /b.json\n', ''),
  },
  { name: 'dot segment in endpoint ID', text: spiffe().replace('/spire/server', '/spire/..') },
];

const BC_HEAD = 'apiVersion: spiffe-broker.dev/v1\nkind: BrokerConfig\n';
const BC_MIN = `${BC_HEAD}trustDomain: example.org\nstateDir: /var/lib/b\nspire:\n  servers:\n    - name: main\n      address: unix:///run/spire.sock\nallowlist: { file: /etc/al.yaml }\n`;

const brokerSamples: { name: string; text: string; valid: boolean }[] = [
  { name: 'minimal', text: BC_MIN, valid: true },
  {
    name: 'full',
    text: `${BC_MIN}endpoint: { listen: 0.0.0.0:8443, profile: https_web, certFile: /c, keyFile: /k, refreshHint: 5m, pollInterval: 250ms, bundleMapPath: /map, serveFederatedInMap: true, maxHeldRequests: 10, handshakeTimeout: 5s, maxConnectionsPerAddress: 64 }
admin: { socket: /run/admin.sock }
verify: { listen: 127.0.0.1:9, maxBodyBytes: 64KiB }
fetch: { connectTimeout: 1s, timeout: 5s, maxBodyBytes: 1048576 }
reconcile: { enforce: true, deleteMode: delete }
audit: { file: /a.log, keyFile: /a.key, fsync: always }
probe: { listen: "[::1]:8088", interval: 5s }
kubernetes: { anything: [1, 2] }
`,
    valid: true,
  },
  {
    name: 'https_spiffe endpoint via workload API',
    text: `${BC_MIN}endpoint: { listen: 127.0.0.1:8443, profile: https_spiffe, workloadApiSocket: /run/agent.sock }\n`,
    valid: true,
  },
  {
    name: 'TCP SPIRE with mTLS files',
    text: BC_MIN.replace(
      'unix:///run/spire.sock',
      'dns:///spire:8081\n      adminCertFile: /c\n      adminKeyFile: /k\n      serverBundleFile: /b',
    ),
    valid: true,
  },
  { name: 'missing stateDir', text: BC_MIN.replace('stateDir: /var/lib/b\n', ''), valid: false },
  {
    name: 'missing allowlist',
    text: BC_MIN.replace('allowlist: { file: /etc/al.yaml }\n', ''),
    valid: false,
  },
  { name: 'unknown key', text: `${BC_MIN}fetchh: {}\n`, valid: false },
  {
    name: 'bad SPIRE address',
    text: BC_MIN.replace('unix:///run/spire.sock', 'tcp://spire:1'),
    valid: false,
  },
  {
    name: 'TCP SPIRE without mTLS',
    text: BC_MIN.replace('unix:///run/spire.sock', 'dns:///spire:8081'),
    valid: false,
  },
  { name: 'no servers', text: BC_MIN.replace(/servers:[\s\S]*sock\n/, 'servers: []\n'), valid: false },
  { name: 'bad listen', text: `${BC_MIN}verify: { listen: "9090" }\n`, valid: false },
  {
    name: 'https_web endpoint without cert',
    text: `${BC_MIN}endpoint: { listen: 127.0.0.1:8443, profile: https_web }\n`,
    valid: false,
  },
  {
    // The broker then mints its own X509-SVID through the source SPIRE server.
    name: 'https_spiffe endpoint minting its SVID from SPIRE',
    text: `${BC_MIN}endpoint: { listen: 127.0.0.1:8443, profile: https_spiffe }\n`,
    valid: true,
  },
  {
    name: 'admin listen and socket',
    text: `${BC_MIN}admin: { listen: 127.0.0.1:1, socket: /s }\n`,
    valid: false,
  },
  { name: 'bad deleteMode', text: `${BC_MIN}reconcile: { deleteMode: purge }\n`, valid: false },
  { name: 'bad fsync', text: `${BC_MIN}audit: { fsync: sometimes }\n`, valid: false },
  { name: 'bad size', text: `${BC_MIN}fetch: { maxBodyBytes: 1MB }\n`, valid: false },
  { name: 'maxIdle auto', text: `${BC_MIN}fetch: { keepAlive: { maxIdle: auto } }\n`, valid: true },
  { name: 'maxIdle number', text: `${BC_MIN}fetch: { keepAlive: { maxIdle: 64 } }\n`, valid: true },
  { name: 'maxIdle other word', text: `${BC_MIN}fetch: { keepAlive: { maxIdle: all } }\n`, valid: false },
  { name: 'maxIdle too large', text: `${BC_MIN}fetch: { keepAlive: { maxIdle: 2000000 } }\n`, valid: false },
  {
    name: 'file outputs',
    text: `${BC_MIN}outputs:\n  files: { dir: /run/b, formats: [grpc-bundle-map, envoy-bundle-map, pem, jwks], includeLocal: true }\n`,
    valid: true,
  },
  { name: 'outputs without files', text: `${BC_MIN}outputs: {}\n`, valid: true },
  {
    name: 'unknown output format',
    text: `${BC_MIN}outputs: { files: { dir: /run/b, formats: [yaml] } }\n`,
    valid: false,
  },
  {
    name: 'no output format',
    text: `${BC_MIN}outputs: { files: { dir: /run/b, formats: [] } }\n`,
    valid: false,
  },
  {
    name: 'output format twice',
    text: `${BC_MIN}outputs: { files: { dir: /run/b, formats: [pem, pem] } }\n`,
    valid: false,
  },
  {
    name: 'file outputs without dir',
    text: `${BC_MIN}outputs: { files: { formats: [pem] } }\n`,
    valid: false,
  },
];

const semanticOnlyBroker: { name: string; text: string }[] = [
  {
    name: 'file outputs inside the state directory',
    text: `${BC_MIN}outputs: { files: { dir: /var/lib/b/out, formats: [pem] } }\n`,
  },
  { name: 'source names no server', text: BC_MIN.replace('allowlist:', '  source: other\nallowlist:') },
  {
    name: 'endpoint ID outside the local trust domain',
    text: `${BC_MIN}endpoint: { listen: 127.0.0.1:8443, profile: https_spiffe, workloadApiSocket: /s, spiffeId: spiffe://other.org/b }\n`,
  },
  { name: 'admin off loopback without adminIds', text: `${BC_MIN}admin: { listen: 10.1.2.3:8089 }\n` },
  { name: 'timeout above the bound', text: `${BC_MIN}fetch: { timeout: 2h }\n` },
];

describe('deploy/schema/allowlist.schema.json agrees with parseAllowlist', () => {
  it.each(allowlistSamples)('$name', ({ text, valid }) => {
    expect(allowlistSchema(parseYaml(text))).toBe(valid);
    expect(accepts(parseAllowlist, text)).toBe(valid);
  });
  it.each(semanticOnlyAllowlists)('semantic rule beyond the schema: $name', ({ text }) => {
    expect(allowlistSchema(parseYaml(text))).toBe(true);
    expect(accepts(parseAllowlist, text)).toBe(false);
  });
});

describe('deploy/schema/broker-config.schema.json agrees with parseBrokerConfig', () => {
  it.each(brokerSamples)('$name', ({ text, valid }) => {
    expect(brokerSchema(parseYaml(text))).toBe(valid);
    expect(accepts(parseBrokerConfig, text)).toBe(valid);
  });
  it.each(semanticOnlyBroker)('semantic rule beyond the schema: $name', ({ text }) => {
    expect(brokerSchema(parseYaml(text))).toBe(true);
    expect(accepts(parseBrokerConfig, text)).toBe(false);
  });
});
