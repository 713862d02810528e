import { describe, expect, it } from 'vitest';
import { jwtAuthority, marshalBundle, TrustBundle } from '../../src/core/bundle/index.js';
import { TrustDomain } from '../../src/core/spiffeid/index.js';
import { keyPairSync } from '../../src/platform/keygen.js';
import { runCliCapture } from '../support/cli.js';

const td = TrustDomain.parse('example.org');
const key = keyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
const good = marshalBundle(
  TrustBundle.create({
    trustDomain: td,
    jwtAuthorities: [jwtAuthority('kid-1', key)],
    sequence: 18446744073709551615n,
    refreshHint: 60,
  }),
);

describe('spiffe-broker bundle parse', () => {
  it('prints a readable summary and exits 0', async () => {
    const r = await runCliCapture(['bundle', 'parse', 'b.json', '--trust-domain', 'example.org'], {
      files: { 'b.json': good },
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('trust domain   example.org');
    expect(r.stdout).toContain('sequence       18446744073709551615');
    expect(r.stdout).toContain('kid kid-1  EC prime256v1');
  });

  it('--json prints the documented object with the sequence as a decimal string', async () => {
    const r = await runCliCapture(['bundle', 'parse', 'b.json', '--trust-domain', 'example.org', '--json'], {
      files: { 'b.json': good },
    });
    expect(r.code).toBe(0);
    expect(r.json()).toMatchObject({
      ok: true,
      trustDomain: 'example.org',
      sequence: '18446744073709551615',
      refreshHint: 60,
      x509Authorities: [],
      jwtAuthorities: [{ kid: 'kid-1' }],
      ignored: [],
    });
  });

  it('refuses a bad bundle with a code and exit 1, never a stack', async () => {
    const r = await runCliCapture(['bundle', 'parse', 'b.json', '--trust-domain', 'example.org', '--json'], {
      files: { 'b.json': '{"keys":null}' },
    });
    expect(r.code).toBe(1);
    expect(r.json()).toEqual({
      ok: false,
      code: 'ERR_BUNDLE_KEYS_MISSING',
      message: 'bundle: "keys" is null',
    });
    const text = await runCliCapture(['bundle', 'parse', 'b.json', '--trust-domain', 'example.org'], {
      files: { 'b.json': '{"keys":[' },
    });
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(/^error: invalid JSON at line 1, column 10.*\(ERR_BUNDLE_JSON_SYNTAX\)\n$/);
    expect(text.stderr).not.toContain('    at ');
  });

  it.each([
    [['bundle', 'parse', 'b.json']],
    [['bundle', 'parse', '--trust-domain', 'example.org']],
    [['bundle', 'explode', 'b.json', '--trust-domain', 'example.org']],
    [['bundle', 'parse', 'b.json', '--trust-domain', 'Not Valid']],
    [['bundle', 'parse', 'missing.json', '--trust-domain', 'example.org']],
    [['bundle', 'parse', 'b.json', '--trust-domain', 'example.org', '--bogus']],
  ])('usage errors exit 2: %j', async (argv) => {
    const r = await runCliCapture(argv, { files: { 'b.json': good } });
    expect(r.code).toBe(2);
  });

  it('top-level help and unknown commands', async () => {
    expect((await runCliCapture([])).code).toBe(2);
    const help = await runCliCapture(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('usage: spiffe-broker <command>');
    expect((await runCliCapture(['nope'])).code).toBe(2);
    const sub = await runCliCapture(['bundle', '--help']);
    expect(sub.stdout).toContain('bundle parse');
  });
});
