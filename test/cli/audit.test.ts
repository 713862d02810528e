import { beforeAll, describe, expect, it } from 'vitest';
import { AuditWriter } from '../../src/adapters/audit/index.js';
import { auditCommand } from '../../src/cli/audit-command.js';
import { keyPairSync } from '../../src/platform/keygen.js';
import { MemoryAuditFs } from '../adapters/audit/fake-fs.js';
import { runCommandCapture } from '../support/cli.js';

function run(args: string[], files: Record<string, string | Uint8Array>) {
  return runCommandCapture(auditCommand, args, { files, disk: false, now: 0 });
}

let log: string;
let pubPem: string;
let privPem: string;

beforeAll(async () => {
  const fs = new MemoryAuditFs();
  const w = await AuditWriter.open({ file: '/a.log', keyFile: '/k.pem' }, { fs, now: () => 0 });
  await w.append('drift', { n: 1 });
  await w.append('drift', { n: 2 });
  await w.close();
  log = fs.text('/a.log');
  pubPem = w.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  privPem = fs.text('/k.pem');
});

describe('spiffe-broker audit verify', () => {
  it('exit 0 for an intact log with the trusted key', async () => {
    const r = await run(['verify', 'a.log', '--public-key', 'pub.pem'], { 'a.log': log, 'pub.pem': pubPem });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^a\.log: intact, 3 records \(seq 1\.\.3\), key sha256:[0-9a-f]{16}\n$/);
    expect(r.stderr).toBe('');
    // The private key file works too (its public half is used).
    expect(
      (await run(['verify', 'a.log', '--public-key', 'k.pem'], { 'a.log': log, 'k.pem': privPem })).code,
    ).toBe(0);
  });

  it('without --public-key uses the declared key and warns', async () => {
    const r = await run(['verify', 'a.log'], { 'a.log': log });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('warning: no --public-key given');
    const j = await run(['verify', 'a.log', '--json'], { 'a.log': log });
    expect(j.json()).toMatchObject({
      ok: true,
      records: 3,
      lastSeq: 3,
      keySource: 'declared',
      warning: expect.any(String),
    });
  });

  it('exit 1 naming the broken line', async () => {
    const lines = log.split('\n');
    lines[1] = lines[1]!.replace('"n":1', '"n":7');
    const r = await run(['verify', 'a.log', '--public-key', 'pub.pem'], {
      'a.log': lines.join('\n'),
      'pub.pem': pubPem,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('a.log:2: BROKEN:');
    expect(r.stderr).toContain('(ERR_AUDIT_SIGNATURE)');
    const j = await run(['verify', 'a.log', '--public-key', 'pub.pem', '--json'], {
      'a.log': lines.join('\n'),
      'pub.pem': pubPem,
    });
    expect(j.json()).toEqual({
      ok: false,
      code: 'ERR_AUDIT_SIGNATURE',
      message: expect.any(String),
      brokenAt: 2,
      verifiedRecords: 1,
    });
  });

  it('exit 1 when the log was signed by another key than the trusted one', async () => {
    const other = keyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const r = await run(['verify', 'a.log', '--public-key', 'o.pem', '--json'], {
      'a.log': log,
      'o.pem': other,
    });
    expect(r.code).toBe(1);
    expect(r.json()).toMatchObject({ ok: false, brokenAt: 1, code: 'ERR_AUDIT_SIGNATURE' });
  });

  it.each([
    [['verify'], 'exactly one file'],
    [['check', 'a.log'], 'unknown audit subcommand'],
    [[], 'unknown audit subcommand'],
    [['verify', 'a.log', '--public-key', 'junk.pem'], 'not a PEM'],
    [['verify', 'a.log', '--public-key', 'missing.pem'], 'cannot read public key'],
    [['verify', 'missing.log'], 'cannot read audit log'],
  ])('usage errors exit 2: %j', async (args, why) => {
    const files = { 'a.log': log, 'junk.pem': 'hello' };
    const r = await run(args, files);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(why);
    const j = await run([...args, '--json'], files);
    expect(j.code).toBe(2);
    expect(j.json()).toMatchObject({ ok: false, code: 'ERR_USAGE' });
  });
});
