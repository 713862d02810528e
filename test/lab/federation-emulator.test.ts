import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditLog } from '../../src/adapters/audit/index.js';
import { Lab } from '../../src/lab/lab.js';
import { runCliCapture } from '../support/cli.js';

/**
 * The whole path on loopback with the SPIRE emulator: three trust domains, each with its broker
 * publishing over https_spiffe and federating with the other two. The same scenario runs against
 * real spire-server in test/lab/federation-real-spire.test.ts.
 */
let lab: Lab;

beforeAll(async () => {
  lab = await Lab.start({ spire: 'emulator' });
}, 60_000);

afterAll(async () => {
  await lab?.stop();
});

async function holds(self: string, peer: string, kid?: string): Promise<boolean> {
  const b = (await lab.domain(self).spire.federatedBundles()).get(peer);
  return b !== undefined && (kid === undefined || b.jwtAuthorities.has(kid));
}

describe('federation lab (SPIRE emulator)', () => {
  it('every SPIRE server holds every other domain bundle, exactly as published', async () => {
    for (const d of lab.domains) {
      for (const p of lab.domains) {
        if (p === d) continue;
        await Lab.until(() => holds(d.name, p.name), 20_000, `${d.name} to hold ${p.name}`);
        const held = (await d.spire.federatedBundles()).get(p.name)!;
        const own = await p.spire.bundle();
        expect(held.sequence).toBe(own.sequence);
        expect([...held.jwtAuthorities.keys()].sort()).toEqual([...own.jwtAuthorities.keys()].sort());
        expect(held.x509Authorities.map((a) => a.sha256).sort()).toEqual(
          own.x509Authorities.map((a) => a.sha256).sort(),
        );
      }
    }
    expect(lab.domains.every((d) => d.daemon.view.readiness().ready)).toBe(true);
    const status = lab.domain('alpha.lab').daemon.view.peerStatus();
    expect(status.map((s) => [s.trustDomain, s.state])).toEqual([
      ['beta.lab', 'ACTIVE'],
      ['gamma.lab', 'ACTIVE'],
    ]);
  });

  it('a rotation in one domain reaches the others through the long-poll in well under a second', async () => {
    const kid = await lab.domain('beta.lab').spire.rotateJwtAuthority();
    const ms = await Lab.until(
      async () => (await holds('alpha.lab', 'beta.lab', kid)) && (await holds('gamma.lab', 'beta.lab', kid)),
      10_000,
      'the rotation to propagate',
    );
    // Not a timing assertion on the test's pass/fail budget: a loose bound that only a broken
    // change notification (falling back to hint/4 polling = 15 s here) would exceed.
    expect(ms).toBeLessThan(5_000);
  });

  it('removing a peer from the allowlist revokes its bundle from SPIRE; re-adding restores it', async () => {
    await lab.writeAllowlist('alpha.lab', ['beta.lab']);
    await Lab.until(
      async () => !(await holds('alpha.lab', 'gamma.lab')),
      10_000,
      'gamma.lab to be revoked in alpha.lab',
    );
    expect(await holds('alpha.lab', 'beta.lab')).toBe(true);
    expect(
      lab
        .domain('alpha.lab')
        .daemon.view.peerStatus()
        .find((s) => s.trustDomain === 'gamma.lab')?.state,
    ).toBe('REVOKED');
    await lab.writeAllowlist('alpha.lab', ['beta.lab', 'gamma.lab']);
    await Lab.until(() => holds('alpha.lab', 'gamma.lab'), 10_000, 'gamma.lab to be trusted again');
  });

  it('the cross-domain mTLS probe succeeds both ways with the bundles as each SPIRE holds them', async () => {
    const probeOk = async (self: string, peer: string) => {
      const text = await (await fetch(`${lab.domain(self).daemon.adminUrl}/metrics`)).text();
      return text.includes(`spiffe_broker_mtls_probe_success{peer="${peer}"} 1`);
    };
    await Lab.until(
      async () => (await probeOk('alpha.lab', 'beta.lab')) && (await probeOk('beta.lab', 'alpha.lab')),
      20_000,
      'probe success',
    );
  });

  it('refuses a peer rollback (spiffe_sequence going back) until an operator resets the baseline', async () => {
    const alpha = lab.domain('alpha.lab');
    const beta = lab.domain('beta.lab');
    const before = (await alpha.spire.federatedBundles()).get('beta.lab')!;
    // beta's SPIRE sequence goes back (e.g. it was rebuilt) while its keys change.
    const kid = await beta.spire.rotateJwtAuthority();
    await Lab.until(() => holds('alpha.lab', 'beta.lab', kid), 10_000, 'the rotation');
    const emulator = beta.spire.emulator;
    expect(emulator).toBeDefined();
    const own = emulator!.datastore.fetchBundle('beta.lab')!;
    emulator!.datastore.setBundle({ ...own, sequence: 1n });
    const kid2 = await beta.spire.rotateJwtAuthority(); // sequence 2 now: below what alpha holds
    await Lab.until(
      () =>
        alpha.daemon.view.peerStatus().find((p) => p.trustDomain === 'beta.lab')?.reason?.code ===
        'ERR_POLICY_SEQUENCE_ROLLBACK',
      10_000,
      'the rollback to be refused',
    );
    expect(await holds('alpha.lab', 'beta.lab', kid2)).toBe(false);
    expect((await alpha.spire.federatedBundles()).get('beta.lab')!.sequence).toBeGreaterThan(before.sequence);

    const r = await runCliCapture([
      'reset-sequence',
      'beta.lab',
      '--admin',
      alpha.daemon.adminUrl!,
      '--state-dir',
      join(alpha.dir, 'state'),
      '--json',
    ]);
    expect(r.code).toBe(0);
    expect(r.json()).toMatchObject({ ok: true, trustDomain: 'beta.lab' });
    await Lab.until(() => holds('alpha.lab', 'beta.lab', kid2), 10_000, 'the bundle after the reset');
    expect((await alpha.spire.federatedBundles()).get('beta.lab')!.sequence).toBe(2n);
    const unknown = await runCliCapture([
      'reset-sequence',
      'nope.lab',
      '--admin',
      alpha.daemon.adminUrl!,
      '--state-dir',
      join(alpha.dir, 'state'),
      '--json',
    ]);
    expect(unknown.code).toBe(1);
  });

  it('audits every accepted bundle, SPIRE write and revocation in a verifiable chain', async () => {
    const text = await readFile(join(lab.domain('alpha.lab').dir, 'state', 'audit.log'), 'utf8');
    const result = verifyAuditLog(text);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const types = result.records.map((r) => r.type);
    expect(types).toContain('allowlist-change');
    expect(types).toContain('bundle-accepted');
    expect(types).toContain('spire-write');
    expect(types).toContain('revocation');
    expect(types).toContain('bundle-refused');
    expect(types).toContain('sequence-reset');
    const revoked = result.records.find((r) => r.type === 'revocation');
    expect(revoked?.data).toMatchObject({ trustDomain: 'gamma.lab', code: 'ERR_PEER_REMOVED' });
  });
});
