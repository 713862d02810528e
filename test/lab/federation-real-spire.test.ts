import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab } from '../../src/lab/lab.js';
import { runCliCapture } from '../support/cli.js';
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
    await Lab.until(() => lab.domains.every((d) => d.daemon.view.readiness().ready), 10_000, 'readiness');
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

  async function metric(
    domain: string,
    name: string,
    labels: Record<string, string>,
  ): Promise<number | undefined> {
    const res = await fetch(`${lab.domain(domain).daemon.adminUrl}/metrics`);
    const text = await res.text();
    const want = Object.entries(labels)
      .map(([k, v]) => `${k}="${v}"`)
      .sort();
    for (const line of text.split('\n')) {
      const m = /^(\w+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
      if (!m || m[1] !== name) continue;
      const have = (m[2] ?? '').split(',').filter(Boolean).sort();
      if (want.every((w) => have.includes(w))) return Number(m[3]);
    }
    return undefined;
  }

  it('admin surface: /v1/status, the status CLI, and /metrics moving through a rotation, an outage and its recovery', async () => {
    const alpha = lab.domain('alpha.lab');
    const status = (await (await fetch(`${alpha.daemon.adminUrl}/v1/status`)).json()) as {
      trustDomain: string;
      peers: {
        trustDomain: string;
        state: string;
        sequence: string;
        servers: { name: string; synced: boolean }[];
      }[];
    };
    expect(status.trustDomain).toBe('alpha.lab');
    expect(status.peers.map((p) => [p.trustDomain, p.state])).toEqual([
      ['beta.lab', 'ACTIVE'],
      ['gamma.lab', 'ACTIVE'],
    ]);
    expect(status.peers[0]!.servers.every((s) => s.synced)).toBe(true);
    const cli = await runCliCapture(['status', '--admin', alpha.daemon.adminUrl!, '--json']);
    expect(cli.code).toBe(0);
    expect(cli.json()).toMatchObject({ trustDomain: 'alpha.lab' });
    const table = await runCliCapture(['status', '--admin', alpha.daemon.adminUrl!]);
    expect(table.stdout).toMatch(/beta\.lab\s+ACTIVE/);

    // Rotation: the sequence gauge follows and a propagation is observed.
    const before = (await metric('alpha.lab', 'spiffe_broker_propagation_seconds_count', {})) ?? 0;
    const kid = await lab.domain('beta.lab').spire.rotateJwtAuthority();
    const ms = await Lab.until(() => holds('alpha.lab', 'beta.lab', kid), 30_000, 'rotation');
    expect(ms).toBeLessThan(5_000);
    const seq = (await lab.domain('beta.lab').spire.bundle()).sequence;
    await Lab.until(
      async () =>
        (await metric('alpha.lab', 'spiffe_broker_bundle_sequence', { trust_domain: 'beta.lab' })) ===
        Number(seq),
      10_000,
      'the sequence gauge',
    );
    await Lab.until(
      async () => ((await metric('alpha.lab', 'spiffe_broker_propagation_seconds_count', {})) ?? 0) > before,
      10_000,
      'a propagation observation',
    );
    expect(
      await metric('alpha.lab', 'spiffe_broker_peer_state', { trust_domain: 'beta.lab', state: 'ACTIVE' }),
    ).toBe(1);
    expect(
      (await metric('alpha.lab', 'spiffe_broker_spire_sync_total', { server: 'spire', result: 'ok' })) ?? 0,
    ).toBeGreaterThan(0);

    // The cross-domain mTLS probe, judged with the bundles exactly as each real SPIRE holds them.
    await Lab.until(
      async () =>
        (await metric('alpha.lab', 'spiffe_broker_mtls_probe_success', { peer: 'gamma.lab' })) === 1,
      20_000,
      'the mTLS probe alpha → gamma',
    );

    // Outage: beta's broker goes away; alpha counts failed fetches and reports FAILING, and its
    // SPIRE keeps beta's last-known-good bundle.
    await lab.stopEndpoint('beta.lab');
    await Lab.until(
      async () =>
        (await metric('alpha.lab', 'spiffe_broker_peer_state', {
          trust_domain: 'beta.lab',
          state: 'FAILING',
        })) === 1,
      30_000,
      'beta.lab FAILING in metrics',
    );
    expect(
      (await metric('alpha.lab', 'spiffe_broker_bundle_fetch_total', {
        peer: 'beta.lab',
        result: 'failed',
      })) ?? 0,
    ).toBeGreaterThanOrEqual(3);
    expect(await holds('alpha.lab', 'beta.lab', kid)).toBe(true);

    // Recovery: beta's broker restarts from its state directory; alpha goes back to ACTIVE.
    await lab.restartBroker('beta.lab');
    await Lab.until(
      async () =>
        (await metric('alpha.lab', 'spiffe_broker_peer_state', {
          trust_domain: 'beta.lab',
          state: 'ACTIVE',
        })) === 1,
      30_000,
      'beta.lab ACTIVE again',
    );
    expect(alpha.daemon.view.peerStatus().find((p) => p.trustDomain === 'beta.lab')?.state).toBe('ACTIVE');
  }, 90_000);

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
