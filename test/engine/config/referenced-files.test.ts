import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, type IssuedCert } from '../../../src/adapters/pki/index.js';
import { marshalBundle, marshalBundleMap, TrustBundle } from '../../../src/core/bundle/index.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import { parseAllowlist } from '../../../src/engine/config/allowlist.js';
import { parseBrokerConfig } from '../../../src/engine/config/broker-config.js';
import { ConfigValidationError } from '../../../src/engine/config/config-error.js';
import {
  assertReferencedFiles,
  checkReferencedFiles,
  type ReferencedFileFs,
} from '../../../src/engine/config/referenced-files.js';
import { locateField } from '../../../src/engine/config/yaml-reader.js';

const T0 = new Date('2026-01-01T00:00:00Z');
const T1 = new Date('2036-01-01T00:00:00Z');
let ca: IssuedCert;
let other: IssuedCert;
let files: Record<string, string>;

/** An fs serving `files`; anything else is ENOENT, as node:fs says it. */
function fsOf(extra: Record<string, string> = {}): ReferencedFileFs {
  return {
    readFile: async (p) => {
      const f = { ...files, ...extra }[p];
      if (f === undefined) {
        throw Object.assign(new Error(`ENOENT: no such file or directory, open '${p}'`), { code: 'ENOENT' });
      }
      return new TextEncoder().encode(f);
    },
  };
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
spire:
  servers:
    - name: main
      address: unix:///run/spire.sock
    - name: remote
      address: dns:///spire.example.org:8081
      adminCertFile: /etc/sb/admin.pem
      adminKeyFile: /etc/sb/admin.key
      serverBundleFile: /etc/sb/spire-ca.pem
  source: main
allowlist:
  file: /etc/sb/allowlist.yaml
endpoint:
  listen: 0.0.0.0:8443
  profile: https_web
  certFile: /etc/sb/tls.pem
  keyFile: /etc/sb/tls.key
`;

beforeAll(async () => {
  ca = await createCa({ trustDomain: TrustDomain.parse('other.example'), notBefore: T0, notAfter: T1 });
  other = await createCa({ trustDomain: TrustDomain.parse('example.org'), notBefore: T0, notAfter: T1 });
  files = {
    '/etc/sb/web-ca.pem': ca.pem,
    '/etc/sb/other.bundle': marshalBundle(
      TrustBundle.create({ trustDomain: TrustDomain.parse('other.example'), x509Authorities: [ca.der] }),
    ),
    '/etc/sb/admin.pem': other.pem,
    '/etc/sb/admin.key': other.privateKeyPem!,
    '/etc/sb/spire-ca.pem': other.pem,
    '/etc/sb/tls.pem': ca.pem,
    '/etc/sb/tls.key': ca.privateKeyPem!,
    '/etc/sb/allowlist.yaml': ALLOWLIST,
  };
});

const allowlist = () => ({ kind: 'Allowlist' as const, allowlist: parseAllowlist(ALLOWLIST) });
const broker = () => ({ kind: 'BrokerConfig' as const, config: parseBrokerConfig(BROKER) });

describe('locateField', () => {
  it('finds the value of a JSON-pointer path, or undefined', () => {
    expect(locateField(ALLOWLIST, '/peers/1/bundleEndpoint/bootstrapBundleFile')).toEqual({
      line: 14,
      column: 28,
    });
    expect(locateField(ALLOWLIST, '/peers/0/bundleEndpoint/caFile')).toEqual({ line: 8, column: 15 });
    expect(locateField(ALLOWLIST, '/peers/5')).toBeUndefined();
    expect(locateField(ALLOWLIST, '/nope')).toBeUndefined();
  });
});

describe('checkReferencedFiles (ERR_CONFIG_FILE)', () => {
  it('passes when every named file exists and parses, following a broker config to its allowlist', async () => {
    expect(await checkReferencedFiles(allowlist(), fsOf(), { text: ALLOWLIST })).toEqual([]);
    expect(await checkReferencedFiles(broker(), fsOf(), { text: BROKER })).toEqual([]);
  });

  it('a CA file many peers name is read once and its problem reported at each of their keys', async () => {
    const peers = Array.from(
      { length: 3 },
      (_, i) =>
        `  - trustDomain: p${i}.example\n    bundleEndpoint:\n      urls: [https://p${i}.example/]\n      profile: https_web\n      caFile: /etc/sb/shared.pem\n`,
    ).join('');
    const text = `apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\npeers:\n${peers}`;
    let reads = 0;
    const fs: ReferencedFileFs = {
      readFile: async () => {
        reads++;
        return new TextEncoder().encode('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
      },
    };
    const issues = await checkReferencedFiles({ kind: 'Allowlist', allowlist: parseAllowlist(text) }, fs, {
      text,
    });
    expect(reads).toBe(1);
    expect(issues.map((i) => [i.path, i.line])).toEqual([
      ['/peers/0/bundleEndpoint/caFile', 8],
      ['/peers/1/bundleEndpoint/caFile', 13],
      ['/peers/2/bundleEndpoint/caFile', 18],
    ]);
    for (const i of issues)
      expect(i.message).toBe(
        'caFile /etc/sb/shared.pem does not hold PEM CA certificates: PEM block 0 is not a valid X.509 certificate',
      );
    // A good shared file: no problem for anyone.
    const good: ReferencedFileFs = { readFile: async () => new TextEncoder().encode(ca.pem) };
    expect(await checkReferencedFiles({ kind: 'Allowlist', allowlist: parseAllowlist(text) }, good)).toEqual(
      [],
    );
  });

  it('a missing caFile and bootstrapBundleFile are reported at their keys', async () => {
    const fs = fsOf();
    const issues = await checkReferencedFiles(
      allowlist(),
      {
        readFile: (p) =>
          p.startsWith('/etc/sb/') && p !== '/etc/sb/allowlist.yaml'
            ? fs.readFile('/missing')
            : fs.readFile(p),
      },
      { text: ALLOWLIST },
    );
    expect(issues).toEqual([
      {
        line: 8,
        column: 15,
        path: '/peers/0/bundleEndpoint/caFile',
        message: 'caFile /etc/sb/web-ca.pem does not exist',
        code: 'ERR_CONFIG_FILE',
      },
      {
        line: 14,
        column: 28,
        path: '/peers/1/bundleEndpoint/bootstrapBundleFile',
        message: 'bootstrapBundleFile /etc/sb/other.bundle does not exist',
        code: 'ERR_CONFIG_FILE',
      },
    ]);
  });

  it('a bootstrap bundle holding garbage, or the bundle of another trust domain, is refused with the parser’s reason', async () => {
    const garbage = await checkReferencedFiles(allowlist(), fsOf({ '/etc/sb/other.bundle': 'hello' }), {
      text: ALLOWLIST,
    });
    expect(garbage).toHaveLength(1);
    expect(garbage[0]).toMatchObject({ line: 14, code: 'ERR_CONFIG_FILE' });
    expect(garbage[0]!.message).toMatch(
      /^bootstrapBundleFile \/etc\/sb\/other\.bundle is not a bundle of other\.example .*\(ERR_BUNDLE_JSON_SYNTAX\)$/,
    );
    const wrongMap = marshalBundleMap([
      TrustBundle.create({ trustDomain: TrustDomain.parse('x.example'), x509Authorities: [ca.der] }),
    ]);
    const [map] = await checkReferencedFiles(allowlist(), fsOf({ '/etc/sb/other.bundle': wrongMap }));
    expect(map?.message).toContain('the Bundle Map has no bundle for other.example');
    // Without the text, the peer entry's line is used.
    expect(map?.line).toBe(9);
    // PEM and a Bundle Map holding the domain are bootstrap bundles too.
    expect(await checkReferencedFiles(allowlist(), fsOf({ '/etc/sb/other.bundle': ca.pem }))).toEqual([]);
  });

  it('a caFile that is not PEM certificates is refused', async () => {
    const [i] = await checkReferencedFiles(
      allowlist(),
      fsOf({ '/etc/sb/web-ca.pem': other.privateKeyPem! }),
      {
        text: ALLOWLIST,
      },
    );
    expect(i).toMatchObject({ path: '/peers/0/bundleEndpoint/caFile', code: 'ERR_CONFIG_FILE' });
    expect(i!.message).toContain('does not hold PEM CA certificates');
  });

  it('broker config: missing certFile/keyFile, a key of another certificate, a garbage SPIRE bundle, a missing allowlist', async () => {
    const issues = await checkReferencedFiles(
      broker(),
      {
        readFile: (p) =>
          p === '/etc/sb/tls.pem' || p === '/etc/sb/allowlist.yaml'
            ? fsOf().readFile('/missing')
            : fsOf({ '/etc/sb/admin.key': ca.privateKeyPem!, '/etc/sb/spire-ca.pem': 'junk' }).readFile(p),
      },
      { text: BROKER },
    );
    expect(issues.map((i) => [i.line, i.path, i.message])).toEqual([
      [
        12,
        '/spire/servers/1/adminKeyFile',
        'adminKeyFile /etc/sb/admin.key is not the private key of the certificate in adminCertFile /etc/sb/admin.pem',
      ],
      [13, '/spire/servers/1/serverBundleFile', expect.stringContaining('does not hold PEM CA certificates')],
      [20, '/endpoint/certFile', 'certFile /etc/sb/tls.pem does not exist'],
      [16, '/allowlist/file', 'allowlist file /etc/sb/allowlist.yaml does not exist'],
    ]);
    expect(issues.every((i) => i.code === 'ERR_CONFIG_FILE')).toBe(true);
  });

  it('broker config: problems inside its allowlist carry that file’s name and positions', async () => {
    const bad = ALLOWLIST.replace('profile: https_web\n      caFile', 'profile: https_web\n      caFil');
    const invalid = await checkReferencedFiles(broker(), fsOf({ '/etc/sb/allowlist.yaml': bad }), {
      text: BROKER,
    });
    expect(invalid[0]).toMatchObject({ path: '/allowlist/file', line: 16, code: 'ERR_CONFIG_FILE' });
    expect(invalid[1]).toMatchObject({ file: '/etc/sb/allowlist.yaml', line: 8, code: 'ERR_CONFIG_SCHEMA' });
    const missingCa = await checkReferencedFiles(broker(), {
      readFile: (p) => (p === '/etc/sb/web-ca.pem' ? fsOf().readFile('/missing') : fsOf().readFile(p)),
    });
    expect(missingCa).toEqual([
      expect.objectContaining({
        file: '/etc/sb/allowlist.yaml',
        line: 8,
        path: '/peers/0/bundleEndpoint/caFile',
      }),
    ]);
  });

  it('a relative path is read as written (the working directory), and the message says so', async () => {
    const text = ALLOWLIST.replace('/etc/sb/web-ca.pem', 'certs/web-ca.pem');
    const read: string[] = [];
    const issues = await checkReferencedFiles(
      { kind: 'Allowlist', allowlist: parseAllowlist(text) },
      {
        readFile: (p) => {
          read.push(p);
          return fsOf().readFile(p);
        },
      },
      { text },
    );
    expect(read).toContain('certs/web-ca.pem');
    expect(issues[0]?.message).toBe(
      'caFile certs/web-ca.pem (relative to the working directory) does not exist',
    );
  });

  it('assertReferencedFiles throws ConfigValidationError ERR_CONFIG_FILE for the daemon', async () => {
    const err = await assertReferencedFiles(
      broker(),
      fsOf({ '/etc/sb/tls.key': other.privateKeyPem! }),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigValidationError);
    expect(err).toMatchObject({ code: 'ERR_CONFIG_FILE' });
    expect((err as Error).message).toContain('keyFile /etc/sb/tls.key is not the private key');
    await expect(assertReferencedFiles(broker(), fsOf())).resolves.toBeUndefined();
  });
});
