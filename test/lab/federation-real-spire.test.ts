import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab } from '../../src/lab/lab.js';
import { realSpireOrSkip, spireServerBinary } from '../support/spire-harness.js';

/**
 * Issue #5's end-to-end path against REAL spire-server v1.15.3: three trust domains, each with its
 * own spire-server (sqlite datastore, its API on a unix socket) and its own broker; the brokers
 * federate through each other's https_spiffe endpoints and write into SPIRE through its gRPC API.
 * A JWT authority prepared with `spire-server localauthority jwt prepare` in one domain must
 * appear in the other domains' spire-servers; the test prints how long that took.
 */
const real = await realSpireOrSkip('federation lab on real spire-server');
let lab: Lab;

describe.skipIf(!real)('federation lab (real spire-server)', () => {
  beforeAll(async () => {
    lab = await Lab.start({ spire: 'real', spireServerBin: spireServerBinary(), baseDir: '/tmp' });
    expect(lab.spireKind).toBe('real');
  }, 120_000);

  afterAll(async () => {
    await lab?.stop();
  });

  async function holds(self: string, peer: string, kid?: string): Promise<boolean> {
    const b = (await lab.domain(self).spire.federatedBundles()).get(peer);
    return b !== undefined && (kid === undefined || b.jwtAuthorities.has(kid));
  }

  it('each real spire-server holds the other domains bundles as their own servers publish them', async () => {
    for (const d of lab.domains) {
      for (const p of lab.domains) {
        if (p === d) continue;
        await Lab.until(() => holds(d.name, p.name), 30_000, `${d.name} to hold ${p.name}`);
        const held = (await d.spire.federatedBundles()).get(p.name)!;
        const own = await p.spire.bundle();
        expect(held.sequence).toBe(own.sequence);
        expect(held.x509Authorities.map((a) => a.sha256).sort()).toEqual(
          own.x509Authorities.map((a) => a.sha256).sort(),
        );
        expect([...held.jwtAuthorities.keys()].sort()).toEqual([...own.jwtAuthorities.keys()].sort());
      }
    }
    await Lab.until(() => lab.domains.every((d) => d.daemon.readiness().ready), 10_000, 'readiness');
  }, 60_000);

  it('a JWT authority prepared in one real SPIRE reaches the others', async () => {
    const kid = await lab.domain('beta.lab').spire.rotateJwtAuthority();
    const ms = await Lab.until(
      async () => (await holds('alpha.lab', 'beta.lab', kid)) && (await holds('gamma.lab', 'beta.lab', kid)),
      30_000,
      'the rotation to reach alpha.lab and gamma.lab',
    );
    console.log(`rotation propagated to both peers' real spire-servers in ${ms} ms`);
    const held = (await lab.domain('alpha.lab').spire.federatedBundles()).get('beta.lab')!;
    expect(held.sequence).toBe((await lab.domain('beta.lab').spire.bundle()).sequence);
  }, 60_000);

  it('allowlist removal revokes the bundle from the real spire-server (read back), re-adding restores it', async () => {
    await lab.writeAllowlist('gamma.lab', ['alpha.lab']);
    await Lab.until(
      async () => !(await holds('gamma.lab', 'beta.lab')),
      20_000,
      'beta.lab revoked from gamma.lab',
    );
    expect(await holds('gamma.lab', 'alpha.lab')).toBe(true);
    await lab.writeAllowlist('gamma.lab', ['alpha.lab', 'beta.lab']);
    await Lab.until(() => holds('gamma.lab', 'beta.lab'), 20_000, 'beta.lab trusted again');
  }, 60_000);
});
