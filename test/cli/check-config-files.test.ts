import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, type IssuedCert } from '../../src/adapters/pki/index.js';
import { checkConfigCommand } from '../../src/cli/check-config-command.js';
import { TrustDomain } from '../../src/core/spiffeid/index.js';
import { runCliCapture, runCommandCapture } from '../support/cli.js';

function run(args: string[], files: Record<string, string | Uint8Array>) {
  return runCommandCapture(checkConfigCommand, args, { files, disk: false, now: 0 });
}

const ALLOWLIST = `apiVersion: spiffe-broker.dev/v1
kind: Allowlist
peers:
  - trustDomain: web.example
    bundleEndpoint:
      urls: [https://web.example/]
      profile: https_web
      caFile: /etc/sb/web-ca.pem
  - trustDomain: other.example
    bundleEndpoint:
      urls: [https://spire.other.example:8443]
      profile: https_spiffe
      endpointSPIFFEID: spiffe://other.example/spire/server
      bootstrapBundleFile: /etc/sb/other.bundle
`;
const BROKER = `apiVersion: spiffe-broker.dev/v1
kind: BrokerConfig
trustDomain: example.org
stateDir: /var/lib/sb
spire: { servers: [{ name: main, address: "unix:///run/spire.sock" }] }
allowlist:
  file: /etc/sb/allowlist.yaml
endpoint:
  listen: 0.0.0.0:8443
  profile: https_web
  certFile: /etc/sb/tls.pem
  keyFile: /etc/sb/tls.key
`;
// A minimal SPIRE server.conf (HCL), the file an operator may hand over by mistake.
const SERVER_CONF = `server {
    bind_address = "127.0.0.1"
    bind_port = "8081"
    trust_domain = "example.org"
    data_dir = "./.data"
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
        }
    }
}
`;

let ca: IssuedCert;
let good: Record<string, string>;
beforeAll(async () => {
  ca = await createCa({
    trustDomain: TrustDomain.parse('other.example'),
    notBefore: new Date('2026-01-01T00:00:00Z'),
    notAfter: new Date('2036-01-01T00:00:00Z'),
  });
  good = {
    'al.yaml': ALLOWLIST,
    'b.yaml': BROKER,
    '/etc/sb/allowlist.yaml': ALLOWLIST,
    '/etc/sb/web-ca.pem': ca.pem,
    // `spire-server bundle show` output (PEM) is a bootstrap bundle too.
    '/etc/sb/other.bundle': ca.pem,
    '/etc/sb/tls.pem': ca.pem,
    '/etc/sb/tls.key': ca.privateKeyPem!,
  };
});

const without = (files: Record<string, string>, ...names: string[]) =>
  Object.fromEntries(Object.entries(files).filter(([k]) => !names.includes(k)));

describe('check-config opens every file the configuration names (ERR_CONFIG_FILE)', () => {
  it('accepts an allowlist and a broker config whose files exist and parse', async () => {
    expect((await run(['al.yaml'], good)).code).toBe(0);
    const b = await run(['b.yaml'], good);
    expect(b.stderr).toBe('');
    expect(b.code).toBe(0);
  });

  it('a missing caFile and bootstrapBundleFile: exit 1, file:line:column at the key', async () => {
    const r = await run(['al.yaml'], without(good, '/etc/sb/web-ca.pem', '/etc/sb/other.bundle'));
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'al.yaml:8:15: /peers/0/bundleEndpoint/caFile: caFile /etc/sb/web-ca.pem does not exist (ERR_CONFIG_FILE)\n' +
        'al.yaml:14:28: /peers/1/bundleEndpoint/bootstrapBundleFile: bootstrapBundleFile /etc/sb/other.bundle does not exist (ERR_CONFIG_FILE)\n' +
        'al.yaml: 2 problems (ERR_CONFIG_FILE)\n',
    );
    const j = await run(['al.yaml', '--json'], without(good, '/etc/sb/web-ca.pem'));
    expect(j.json()).toMatchObject({
      ok: false,
      code: 'ERR_CONFIG_FILE',
      issues: [{ line: 8, column: 15, path: '/peers/0/bundleEndpoint/caFile', code: 'ERR_CONFIG_FILE' }],
    });
  });

  it('a bootstrap bundle file holding garbage is refused with the reason', async () => {
    const r = await run(['al.yaml'], { ...good, '/etc/sb/other.bundle': 'garbage\n' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^al\.yaml:14:28: \/peers\/1\/bundleEndpoint\/bootstrapBundleFile: bootstrapBundleFile \/etc\/sb\/other\.bundle is not a bundle of other\.example .*\(ERR_BUNDLE_JSON_SYNTAX\) \(ERR_CONFIG_FILE\)$/m,
    );
  });

  it('a broker config: missing certFile/keyFile and a missing allowlist file', async () => {
    const r = await run(
      ['b.yaml'],
      without(good, '/etc/sb/tls.pem', '/etc/sb/tls.key', '/etc/sb/allowlist.yaml'),
    );
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n').filter(Boolean)).toEqual([
      'b.yaml:7:9: /allowlist/file: allowlist file /etc/sb/allowlist.yaml does not exist (ERR_CONFIG_FILE)',
      'b.yaml:11:13: /endpoint/certFile: certFile /etc/sb/tls.pem does not exist (ERR_CONFIG_FILE)',
      'b.yaml:12:12: /endpoint/keyFile: keyFile /etc/sb/tls.key does not exist (ERR_CONFIG_FILE)',
      'b.yaml: 3 problems (ERR_CONFIG_FILE)',
    ]);
  });

  it('a broker config: a missing file named by its allowlist is reported under the allowlist’s name', async () => {
    const r = await run(['b.yaml'], without(good, '/etc/sb/web-ca.pem'));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      '/etc/sb/allowlist.yaml:8:15: /peers/0/bundleEndpoint/caFile: caFile /etc/sb/web-ca.pem does not exist (ERR_CONFIG_FILE)\n',
    );
  });
});

describe('spiffe-broker run makes the same checks before starting anything', () => {
  it('a missing certFile is ERR_CONFIG_FILE with its line, exit 1, nothing started', async () => {
    const r = await runCliCapture(['run', '--config', 'b.yaml'], {
      files: without(good, '/etc/sb/tls.pem'),
      disk: false,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'error: broker config is invalid: 11:13: /endpoint/certFile: certFile /etc/sb/tls.pem does not exist (ERR_CONFIG_FILE)\n',
    );
  });
});

describe('check-config on a file of the wrong kind says what it is not', () => {
  it('a SPIRE server.conf (HCL): one issue, in good grammar, naming what it looks like', async () => {
    const r = await run(['server.conf'], { 'server.conf': SERVER_CONF });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'server.conf:1:1: this is neither an Allowlist nor a BrokerConfig: expected a YAML mapping with apiVersion: spiffe-broker.dev/v1 and kind: Allowlist or BrokerConfig; it looks like a SPIRE server or agent configuration (HCL) (ERR_CONFIG_SCHEMA)\n' +
        'server.conf: 1 problem (ERR_CONFIG_SCHEMA)\n',
    );
  });

  it('a JSON allowlist given where a broker config is expected', async () => {
    const json = JSON.stringify({ apiVersion: 'spiffe-broker.dev/v1', kind: 'Allowlist', peers: [] });
    const r = await run(['al.yaml', '--broker-config', 'al.json'], { ...good, 'al.json': json });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'al.json:1:45: /kind: kind must be BrokerConfig here: this file is an Allowlist, not a BrokerConfig (ERR_CONFIG_SCHEMA)\n' +
        'al.json: 1 problem (ERR_CONFIG_SCHEMA)\n',
    );
  });

  it('a SPIFFE bundle given as a config', async () => {
    const r = await run(['bundle.json'], { 'bundle.json': '{"keys": []}' });
    expect(r.stderr).toContain(
      'this is neither an Allowlist nor a BrokerConfig: it has neither apiVersion nor kind (expected apiVersion: spiffe-broker.dev/v1 and kind: Allowlist or BrokerConfig); it looks like a SPIFFE bundle (a JWK set)',
    );
    expect(r.stderr).toContain('1 problem');
  });
});
