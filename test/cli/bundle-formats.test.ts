import { createPrivateKey } from 'node:crypto';
import { SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, createX509Svid, type IssuedCert } from '../../src/adapters/pki/index.js';
import { parseBundleFile } from '../../src/core/bundle/bundle-file.js';
import { jwtAuthority, marshalBundle, marshalBundleMap, TrustBundle } from '../../src/core/bundle/index.js';
import { SpiffeId, TrustDomain } from '../../src/core/spiffeid/index.js';
import { keyPairSync } from '../../src/platform/keygen.js';
import { runCliCapture } from '../support/cli.js';

// What SPIRE prints: `spire-server bundle show` (PEM by default, one block per X.509 authority),
// the bundle.pem of `spire-server x509 mint`, and a Bundle Map as the broker's /v1/bundles serves.
const tdA = TrustDomain.parse('a.test');
const tdB = TrustDomain.parse('b.test');
const NOW = Date.parse('2026-06-01T00:00:00Z');
const T0 = new Date('2026-01-01T00:00:00Z');
const T1 = new Date('2027-01-01T00:00:00Z');
let caA: IssuedCert;
let caA2: IssuedCert;
let caB: IssuedCert;
let files: Record<string, string>;
const jwtKeys = keyPairSync('ec', { namedCurve: 'P-256' });

beforeAll(async () => {
  caA = await createCa({ trustDomain: tdA, notBefore: T0, notAfter: T1 });
  caA2 = await createCa({ trustDomain: tdA, notBefore: T0, notAfter: T1 });
  caB = await createCa({ trustDomain: tdB, notBefore: T0, notAfter: T1 });
  const leafA = await createX509Svid({
    id: SpiffeId.parse('spiffe://a.test/web'),
    issuer: caA,
    notBefore: T0,
    notAfter: T1,
  });
  const bundleA = TrustBundle.create({
    trustDomain: tdA,
    x509Authorities: [caA.der],
    jwtAuthorities: [jwtAuthority('k1', jwtKeys.publicKey)],
    sequence: 7n,
  });
  const bundleB = TrustBundle.create({ trustDomain: tdB, x509Authorities: [caB.der] });
  const token = await new SignJWT({ sub: 'spiffe://a.test/api', aud: ['x'] })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' })
    .setExpirationTime(Math.floor(NOW / 1000) + 300)
    .sign(createPrivateKey(jwtKeys.privateKey.export({ format: 'pem', type: 'pkcs8' })));
  files = {
    // spire-server bundle show: blocks back to back, a trailing newline.
    'show.pem': `${caA.pem}${caA2.pem}`,
    // x509 mint's bundle.pem, with a leading blank line and CRLF line ends as some tools write.
    'mint-bundle.pem': `\r\n${caA.pem.replace(/\n/g, '\r\n')}`,
    'map.json': marshalBundleMap([bundleA, bundleB]),
    'a.json': marshalBundle(bundleA),
    'chain.pem': leafA.pem,
    'token.jwt': token,
    'key.pem': '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n',
  };
});

describe('the CLI reads the bundle formats SPIRE prints', () => {
  it('bundle parse reads `spire-server bundle show` PEM and says it holds X.509 authorities only', async () => {
    const r = await runCliCapture(['bundle', 'parse', 'show.pem', '--trust-domain', 'a.test'], { files });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^format +PEM: X\.509 authorities only/);
    expect(r.stdout).toContain('X.509 authorities (2)');
    expect(r.stdout).toContain(
      `sha256:${parseBundleFile(tdA, files['show.pem']!).bundle.x509Authorities[0]!.sha256}`,
    );
    const j = await runCliCapture(
      ['bundle', 'parse', 'mint-bundle.pem', '--trust-domain', 'a.test', '--json'],
      {
        files,
      },
    );
    expect(j.code).toBe(0);
    expect(j.json()).toMatchObject({ ok: true, format: 'pem', trustDomain: 'a.test', jwtAuthorities: [] });
    // PEM still needs --trust-domain, and says why.
    const noTd = await runCliCapture(['bundle', 'parse', 'show.pem'], { files });
    expect(noTd.code).toBe(2);
    expect(noTd.stderr).toContain('PEM certificates do not name their trust domain');
  });

  it('bundle parse reads a Bundle Map: every bundle, or only --trust-domain', async () => {
    const all = await runCliCapture(['bundle', 'parse', 'map.json', '--json'], { files });
    expect(all.code).toBe(0);
    const j = all.json() as {
      ok: boolean;
      format: string;
      bundles: { trustDomain: string; sequence: string }[];
    };
    expect(j.ok).toBe(true);
    expect(j.format).toBe('bundle-map');
    expect(j.bundles.map((b) => [b.trustDomain, b.sequence])).toEqual([
      ['a.test', '7'],
      ['b.test', '0'],
    ]);
    const text = await runCliCapture(['bundle', 'parse', 'map.json'], { files });
    expect(text.stdout).toMatch(/^Bundle Map: 2 trust domains\n\ntrust domain {3}a\.test\n/);
    expect(text.stdout).toContain('\ntrust domain   b.test\n');
    const one = await runCliCapture(['bundle', 'parse', 'map.json', '--trust-domain', 'b.test', '--json'], {
      files,
    });
    expect(one.json()).toMatchObject({ ok: true, format: 'bundle-map', trustDomain: 'b.test' });
    const none = await runCliCapture(['bundle', 'parse', 'map.json', '--trust-domain', 'c.test', '--json'], {
      files,
    });
    expect(none.code).toBe(1);
    expect(none.json()).toMatchObject({ ok: false, code: 'ERR_BUNDLE_MAP_INVALID' });
  });

  it('verify x509 --bundle takes PEM from spire-server', async () => {
    for (const bundle of ['show.pem', 'mint-bundle.pem']) {
      const r = await runCliCapture(
        ['verify', 'x509', '--chain', 'chain.pem', '--bundle', bundle, '--json'],
        {
          files,
          now: NOW,
        },
      );
      expect(r.code).toBe(0);
      expect(r.json()).toMatchObject({ ok: true, id: 'spiffe://a.test/web', bundleFormat: 'pem' });
    }
  });

  it('verify jwt against a PEM bundle is refused and the note says PEM has no JWT authorities', async () => {
    const r = await runCliCapture(
      ['verify', 'jwt', '--token', '@token.jwt', '--audience', 'x', '--bundle', 'show.pem'],
      { files, now: NOW },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('note: the bundle file is PEM: X.509 authorities only');
  });
});
