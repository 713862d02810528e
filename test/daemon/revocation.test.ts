import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BundleFleet } from '../../bench/support/fleet.js';
import type { SpireEmulator } from '../../src/adapters/spire/emulator/emulator.js';
import type { BrokerDaemon } from '../../src/daemon/daemon.js';
import { runCliCapture } from '../support/cli.js';
import { type OnePeerBroker, startOnePeerBroker, until } from '../support/daemon.js';

/**
 * Issue 15 item 1: a revocation SPIRE refuses (restrict mode, a registration entry federates with
 * the peer) is never reported as done. Status says REVOKING with the server, the entry count and
 * the fix; readiness, metrics and the audit trail say it too; once the entry is gone, a reconcile
 * (`spiffe-broker reconcile`) completes it and only then is the peer REVOKED.
 */
let b: OnePeerBroker;
let dir: string;
let fleet: BundleFleet;
let emulator: SpireEmulator;
let daemon: BrokerDaemon;
const writeAllowlist = (withPeer: boolean) => b.writeAllowlist(withPeer);

beforeAll(async () => {
  b = await startOnePeerBroker('sb-revoke-');
  ({ dir, fleet, emulator, daemon } = b);
  await until('SPIRE to hold the peer', () => emulator.federatedBundle(fleet.trustDomain(0)) !== undefined);
}, 30_000);

afterAll(() => b?.stop());

describe('a revocation SPIRE refuses', () => {
  it('is reported as blocked everywhere, never as revoked, until it is really done', async () => {
    const td = fleet.trustDomain(0);
    emulator.setFederatingEntries(td, 1); // an entry with -federatesWith the peer
    await writeAllowlist(false);
    await until('the revocation attempt to be refused', () =>
      daemon.view
        .status()
        .peers.some((p) => p.trustDomain === td && p.reason?.code === 'ERR_SPIRE_REVOCATION_BLOCKED'),
    );
    const peer = daemon.view.status().peers.find((p) => p.trustDomain === td)!;
    expect(peer.state).toBe('REVOKING');
    expect(peer.reason?.message).toMatch(/SPIRE server main refused.*1 registration entry federates with it/);
    expect(peer.reason?.message).toMatch(/federatesWith.*dissociate or delete/);
    expect(peer.servers).toEqual([
      expect.objectContaining({
        name: 'main',
        error: expect.objectContaining({ code: 'ERR_SPIRE_REVOCATION_BLOCKED' }),
      }),
    ]);
    expect(emulator.federatedBundle(td)).toBeDefined();
    // Readiness and metrics say it too.
    const ready = daemon.view.readiness();
    expect(ready.ready).toBe(false);
    expect(ready.reasons.join()).toContain(`revocation of ${td} blocked on SPIRE server main`);
    const metrics = await daemon.metrics.registry.metrics();
    expect(metrics).toContain(`spiffe_broker_revocation_blocked{server="main",trust_domain="${td}"} 1`);
    // …and the audit trail records the refused deletion with its code.
    const audit = await readFile(join(dir, 'audit.log'), 'utf8');
    expect(audit).toMatch(
      /"operation":"delete".*"result":"error".*"code":"ERR_SPIRE_REVOCATION_BLOCKED"|"code":"ERR_SPIRE_REVOCATION_BLOCKED".*"operation":"delete"/,
    );
    // The CLI's reconcile says what is still wrong and exits 1.
    const blocked = await runCliCapture([
      'reconcile',
      '--admin',
      daemon.adminUrl!,
      '--state-dir',
      join(dir, 'state'),
    ]);
    expect(blocked.code).toBe(1);
    expect(blocked.stdout).toContain(`${td} on main (REVOKING): ERR_SPIRE_REVOCATION_BLOCKED`);

    // The operator removes the entry; `spiffe-broker reconcile` completes the revocation now.
    emulator.setFederatingEntries(td, 0);
    const done = await runCliCapture([
      'reconcile',
      '--admin',
      daemon.adminUrl!,
      '--state-dir',
      join(dir, 'state'),
      '--json',
    ]);
    expect(done.code, done.stdout + done.stderr).toBe(0);
    expect(done.json()).toMatchObject({ ok: true, problems: [] });
    expect(emulator.federatedBundle(td)).toBeUndefined();
    const after = daemon.view.status().peers.find((p) => p.trustDomain === td)!;
    expect(after.state).toBe('REVOKED');
    expect(after.reason?.message).toContain('read back');
    expect(daemon.view.readiness().ready).toBe(true);
    expect(await daemon.metrics.registry.metrics()).not.toContain('spiffe_broker_revocation_blocked{');
  });
});
