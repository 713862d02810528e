import * as tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCert } from '../../src/adapters/pki/index.js';
import { fetchCommand } from '../../src/cli/fetch-command.js';
import { marshalBundleMap } from '../../src/core/bundle/bundle-map.js';
import { marshalBundle } from '../../src/core/bundle/codec.js';
import type { TrustBundle } from '../../src/core/bundle/trust-bundle.js';
import { makeBundle, makeCa, makeSvid } from '../engine/federation/helpers.js';
import { FakeBundleEndpoint, serveJson } from '../fakes/fake-bundle-endpoint.js';
import { runCommandCapture } from '../support/cli.js';

const SERVER_ID = 'spiffe://peer.test/spire/server';

function run(args: string[], files: Record<string, string> = {}) {
  // https_web URLs name localhost; dial 127.0.0.1 (the host name check still uses the URL).
  const deps = { connect: (o: tls.ConnectionOptions) => tls.connect({ ...o, host: '127.0.0.1' }) };
  return runCommandCapture((a, io) => fetchCommand(a, io, deps), args, { files });
}

let ca: IssuedCert;
let bundle: TrustBundle;
let svid: IssuedCert;
let web: IssuedCert;
const servers: FakeBundleEndpoint[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

beforeAll(async () => {
  ca = await makeCa('peer.test');
  bundle = await makeBundle('peer.test', { cas: [ca], sequence: 18446744073709551615n, refreshHint: 300 });
  svid = await makeSvid(ca, SERVER_ID, { dnsNames: ['localhost'] });
  web = svid;
});

async function serve(body: string, cert = svid): Promise<FakeBundleEndpoint> {
  const ep = await FakeBundleEndpoint.start({
    certPem: cert.pem,
    keyPem: cert.privateKeyPem!,
    handler: serveJson(body),
  });
  servers.push(ep);
  return ep;
}

const spiffeArgs = (url: string) => [
  '--trust-domain',
  'peer.test',
  '--url',
  url,
  '--profile',
  'https_spiffe',
  '--endpoint-spiffe-id',
  SERVER_ID,
  '--bootstrap-bundle',
  'boot.json',
];

describe('spiffe-broker fetch', () => {
  it('--json prints the accepted bundle (uint64 sequence as a decimal string), exit 0', async () => {
    const ep = await serve(marshalBundle(bundle));
    const r = await run([...spiffeArgs(ep.url()), '--json'], { 'boot.json': marshalBundle(bundle) });
    expect(r.code).toBe(0);
    const out = r.json();
    expect(out).toMatchObject({
      ok: true,
      trustDomain: 'peer.test',
      sequence: '18446744073709551615',
      refreshHint: 300,
      url: ep.url(),
    });
    expect((out.x509Authorities as { sha256: string }[]).map((a) => a.sha256)).toEqual([
      bundle.x509Authorities[0]!.sha256,
    ]);
    expect((out.jwtAuthorities as { kid: string }[]).map((a) => a.kid)).toEqual([
      ...bundle.jwtAuthorities.keys(),
    ]);
  });

  it('accepts a PEM bootstrap bundle and prints text without --json', async () => {
    const ep = await serve(marshalBundle(bundle));
    const r = await run(spiffeArgs(ep.url()), { 'boot.json': ca.pem });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`fetched from  ${ep.url()}`);
    expect(r.stdout).toContain('trust domain   peer.test');
  });

  it('accepts a Bundle Map holding the endpoint trust domain as bootstrap bundle', async () => {
    const ep = await serve(marshalBundle(bundle));
    const r = await run(spiffeArgs(ep.url()), { 'boot.json': marshalBundleMap([bundle]) });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('trust domain   peer.test');
  });

  it('https_web with --ca, against the URL host name', async () => {
    const ep = await serve(marshalBundle(bundle), web);
    const r = await run(
      [
        '--trust-domain',
        'peer.test',
        '--url',
        ep.localhostUrl(),
        '--profile',
        'https_web',
        '--ca',
        'ca.pem',
        '--json',
      ],
      { 'ca.pem': ca.pem },
    );
    expect(r.code).toBe(0);
    expect(r.json().ok).toBe(true);
  });

  it('a private-CA endpoint fetched without --ca fails with a hint at --ca (text and JSON)', async () => {
    const ep = await serve(marshalBundle(bundle), web);
    const args = ['--trust-domain', 'peer.test', '--url', ep.localhostUrl(), '--profile', 'https_web'];
    const text = await run(args);
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(/\(ERR_FETCH_TLS\)\nhint: .*pass that CA with --ca <pem-file>/);
    const json = await run([...args, '--json']);
    expect(json.json()).toMatchObject({
      ok: false,
      code: 'ERR_FETCH_TLS',
      hint: expect.stringContaining('--ca <pem-file>'),
    });
    // With the wrong --ca the hint is about that file.
    const other = await makeCa('other.test');
    const wrong = await run([...args, '--ca', 'other.pem'], { 'other.pem': other.pem });
    expect(wrong.stderr).toContain('hint: check that --ca other.pem holds the CA');
  });

  it('a refused fetch is exit 1 with {"ok":false,"code","message"} and no stack', async () => {
    const ep = await serve('{"keys": 1}');
    const r = await run([...spiffeArgs(ep.url()), '--json'], { 'boot.json': marshalBundle(bundle) });
    expect(r.code).toBe(1);
    const out = r.json();
    expect(out).toMatchObject({ ok: false, code: 'ERR_BUNDLE_KEYS_NOT_ARRAY' });
    expect(String(out.message)).toContain(ep.url());
    expect(r.stdout).not.toMatch(/\n\s+at /);
  });

  it('a wrong endpoint ID is exit 1 ERR_FETCH_ENDPOINT_ID (text on stderr)', async () => {
    const ep = await serve(marshalBundle(bundle));
    const args = spiffeArgs(ep.url());
    args[args.indexOf(SERVER_ID)] = 'spiffe://peer.test/someone-else';
    const r = await run(args, { 'boot.json': marshalBundle(bundle) });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ERR_FETCH_ENDPOINT_ID/);
  });

  it('http:// is refused (exit 1, ERR_FETCH_INSECURE_SCHEME)', async () => {
    const r = await run([
      '--trust-domain',
      'peer.test',
      '--url',
      'http://peer.test/',
      '--profile',
      'https_web',
      '--json',
    ]);
    expect(r.code).toBe(1);
    expect(r.json().code).toBe('ERR_FETCH_INSECURE_SCHEME');
  });

  const usage: [string, string[]][] = [
    ['no trust domain', ['--url', 'https://a.test/', '--profile', 'https_web']],
    [
      'a bad trust domain',
      ['--trust-domain', 'Peer.Test', '--url', 'https://a.test/', '--profile', 'https_web'],
    ],
    ['no URL', ['--trust-domain', 'peer.test', '--profile', 'https_web']],
    ['no profile (never guessed)', ['--trust-domain', 'peer.test', '--url', 'https://a.test/']],
    ['an unknown profile', ['--trust-domain', 'peer.test', '--url', 'https://a.test/', '--profile', 'https']],
    [
      'https_spiffe without an endpoint ID',
      [
        '--trust-domain',
        'peer.test',
        '--url',
        'https://a.test/',
        '--profile',
        'https_spiffe',
        '--bootstrap-bundle',
        'b',
      ],
    ],
    [
      'https_spiffe without a bootstrap bundle',
      [
        '--trust-domain',
        'peer.test',
        '--url',
        'https://a.test/',
        '--profile',
        'https_spiffe',
        '--endpoint-spiffe-id',
        SERVER_ID,
      ],
    ],
    ['--ca with https_spiffe', [...spiffeArgs('https://a.test/'), '--ca', 'x.pem']],
    [
      'an unknown option',
      ['--trust-domain', 'peer.test', '--url', 'https://a.test/', '--profile', 'https_web', '--insecure'],
    ],
    [
      'a missing file',
      [
        '--trust-domain',
        'peer.test',
        '--url',
        'https://a.test/',
        '--profile',
        'https_web',
        '--ca',
        '/nonexistent/ca.pem',
      ],
    ],
  ];
  for (const [what, args] of usage) {
    it(`usage error (exit 2, ERR_USAGE): ${what}`, async () => {
      const r = await run([...args, '--json']);
      expect(r.code).toBe(2);
      expect(r.json()).toMatchObject({ ok: false, code: 'ERR_USAGE' });
    });
  }
});
