import { describe, expect, it } from 'vitest';
import { checkConfigCommand } from '../../src/cli/check-config-command.js';
import { runCommandCapture } from '../support/cli.js';

function run(args: string[], files: Record<string, string | Uint8Array>) {
  return runCommandCapture(checkConfigCommand, args, { files, disk: false, now: 0 });
}

const ALLOWLIST = `apiVersion: spiffe-broker.dev/v1
kind: Allowlist
peers:
  - trustDomain: partner.example
    bundleEndpoint: { urls: [https://partner.example/b], profile: https_web }
    spireServers: [main]
`;
const BROKER = `apiVersion: spiffe-broker.dev/v1
kind: BrokerConfig
trustDomain: example.org
stateDir: /var/lib/b
spire: { servers: [{ name: main, address: "unix:///run/spire.sock" }] }
allowlist: { file: /etc/al.yaml }
`;
const BAD = `apiVersion: spiffe-broker.dev/v1
kind: Allowlist
peers:
  - trustDomain: partner.example
    bundleEndpoint: { urls: [http://partner.example/b], profile: https_web }
  - trustDomain: partner.example
    bundleEndpoint: { urls: [https://partner.example/b], profile: https_web }
    refresh: { minIntervall: 1s }
`;

describe('spiffe-broker check-config', () => {
  it('accepts a valid allowlist (exit 0)', async () => {
    const r = await run(['al.yaml'], { 'al.yaml': ALLOWLIST });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^al\.yaml: valid Allowlist, 1 peer \(version sha256:[0-9a-f]{16}\)\n$/);
  });

  it('accepts a valid broker config, deciding by kind', async () => {
    const r = await run(['b.yaml', '--json'], { 'b.yaml': BROKER, '/etc/al.yaml': ALLOWLIST });
    expect(r.code).toBe(0);
    expect(r.json()).toEqual({
      ok: true,
      file: 'b.yaml',
      kind: 'BrokerConfig',
      trustDomain: 'example.org',
      spireServers: ['main'],
      allowlistFile: '/etc/al.yaml',
    });
  });

  it('prints every issue as file:line:column: message and exits 1', async () => {
    const r = await run(['al.yaml'], { 'al.yaml': BAD });
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(
      /^al\.yaml:5:30: \/peers\/0\/bundleEndpoint\/urls\/0: http:\/\/ is refused.*\(ERR_CONFIG_URL\)$/,
    );
    expect(lines[1]).toMatch(
      /^al\.yaml:6:18: \/peers\/1\/trustDomain: trust domain partner\.example is already listed on line 4/,
    );
    expect(lines[2]).toMatch(/^al\.yaml:8:16: \/peers\/1\/refresh\/minIntervall: unknown key/);
    expect(lines[3]).toBe('al.yaml: 3 problems (ERR_CONFIG_SCHEMA)');
    expect(r.stdout).toBe('');
  });

  it('--json gives ok:false, the code, the message and every issue', async () => {
    const r = await run(['al.yaml', '--json'], { 'al.yaml': BAD });
    expect(r.code).toBe(1);
    const j = r.json();
    expect(j).toMatchObject({ ok: false, code: 'ERR_CONFIG_SCHEMA', file: 'al.yaml' });
    expect(j.message).toContain('3 problems');
    expect((j.issues as unknown[]).length).toBe(3);
    expect((j.issues as Record<string, unknown>[])[0]).toEqual({
      line: 5,
      column: 30,
      path: '/peers/0/bundleEndpoint/urls/0',
      message: expect.stringContaining('http://'),
      code: 'ERR_CONFIG_URL',
    });
  });

  it('--broker-config checks the allowlist against the local trust domain and server names', async () => {
    const al = ALLOWLIST.replace('spireServers: [main]', 'spireServers: [dr]').replace(
      'peers:\n',
      'peers:\n  - trustDomain: example.org\n    bundleEndpoint: { urls: [https://x.example], profile: https_web }\n',
    );
    expect((await run(['al.yaml'], { 'al.yaml': al })).code).toBe(0);
    const r = await run(['al.yaml', '--broker-config', 'b.yaml', '--json'], {
      'al.yaml': al,
      'b.yaml': BROKER,
    });
    expect(r.code).toBe(1);
    expect((r.json().issues as { code: string }[]).map((i) => i.code)).toEqual([
      'ERR_CONFIG_LOCAL_TRUST_DOMAIN',
      'ERR_CONFIG_UNKNOWN_SERVER',
    ]);
  });

  it('reports an invalid --broker-config under its own name', async () => {
    const r = await run(['al.yaml', '--broker-config', 'b.yaml'], {
      'al.yaml': ALLOWLIST,
      'b.yaml': 'kind: BrokerConfig\n',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^b\.yaml:1:1: /);
  });

  it('an unknown kind is invalid (exit 1) with its position', async () => {
    const r = await run(['x.yaml'], {
      'x.yaml': 'apiVersion: spiffe-broker.dev/v1\nkind: Nope\npeers: []\n',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('x.yaml:2:7: /kind: unknown kind "Nope"');
  });

  it('a YAML syntax error is invalid with its position', async () => {
    const r = await run(['x.yaml', '--json'], { 'x.yaml': 'kind: Allowlist\npeers: [a\n' });
    expect(r.code).toBe(1);
    expect(r.json()).toMatchObject({ ok: false, code: 'ERR_CONFIG_YAML' });
  });

  it.each([
    [[], 'exactly one file'],
    [['a.yaml', 'b.yaml'], 'exactly one file'],
    [['--nope', 'a.yaml'], 'Unknown option'],
    [['missing.yaml'], 'cannot read config file'],
  ])('usage errors exit 2: %j', async (args, why) => {
    const r = await run(args, {});
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(why);
    const j = await run([...args, '--json'], {});
    expect(j.code).toBe(2);
    expect(j.json()).toMatchObject({ ok: false, code: expect.stringMatching(/^ERR_/) });
    expect(j.stdout).not.toContain('    at ');
  });
});
