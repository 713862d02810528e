/**
 * Emulator features beyond the contract: lifecycle (start/stop/run/down/up), socket
 * permissions, authority taint/revoke, RESTRICT deletes, RefreshBundle hook, faults, call log.
 */
import { existsSync, rmSync, statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SpireServerClient } from '../../../src/adapters/spire/client.js';
import { SpireEmulator } from '../../../src/adapters/spire/emulator/index.js';
import { loadSpireApi } from '../../../src/adapters/spire/proto.js';
import { SpiffeId } from '../../../src/core/spiffeid/spiffe-id.js';
import type { SpireError } from '../../../src/errors.js';
import { makeBundle, makeCa, makeJwtKey, td } from './helpers.js';
import { rawCall } from './raw.js';

const api = loadSpireApi();

describe('SpireEmulator lifecycle', () => {
  it('creates the socket 0770, and stop() removes its temp dir', async () => {
    const emu = new SpireEmulator({ trustDomain: 'life.test', api });
    expect(emu.endpoints).toBeUndefined();
    const ep = await emu.start();
    expect(ep.address).toBe(`unix://${ep.socketPath}`);
    expect(statSync(ep.socketPath).mode & 0o777).toBe(0o770);
    const dir = ep.socketPath.slice(0, ep.socketPath.lastIndexOf('/'));
    expect(await emu.start()).toBe(ep);
    await emu.stop();
    expect(existsSync(ep.socketPath)).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });

  it('run(signal) serves until aborted', async () => {
    const emu = new SpireEmulator({ trustDomain: 'run.test', api });
    const ac = new AbortController();
    const done = emu.run(ac.signal);
    while (!emu.endpoints) await new Promise((r) => setImmediate(r));
    const c = new SpireServerClient({ address: emu.endpoints.address, api });
    expect(await c.healthCheck()).toBe('SERVING');
    c.close();
    ac.abort();
    await done;
    expect(emu.endpoints).toBeUndefined();
  });

  it('keeps its state across down()/up() on the same socket path', async () => {
    const emu = new SpireEmulator({ trustDomain: 'updown.test', api });
    const { socketPath } = await emu.start();
    emu.setFederatedBundle(await makeBundle('peer.test', { sequence: 9n }));
    const before = emu.bundle();
    await emu.down();
    expect(existsSync(socketPath)).toBe(false);
    const again = await emu.up();
    expect(again.socketPath).toBe(socketPath);
    const c = new SpireServerClient({
      address: again.address,
      api,
      retry: { maxAttempts: 20, initialDelayMs: 20 },
    });
    expect((await c.getFederatedBundle('peer.test')).sequence).toBe(9n);
    expect((await c.getBundle()).sequence).toBe(before.sequence);
    c.close();
    await emu.stop();
  });

  it('uses a given socket path', async () => {
    const dir = `/tmp/spemu-given-${process.pid}`;
    const emu = new SpireEmulator({ trustDomain: 'given.test', api, socketPath: `${dir}/private/api.sock` });
    const ep = await emu.start();
    expect(ep.socketPath).toBe(`${dir}/private/api.sock`);
    expect(statSync(`${dir}/private`).mode & 0o777).toBe(0o750);
    await emu.stop();
    expect(existsSync(ep.socketPath)).toBe(false);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('SpireEmulator authorities', () => {
  const emu = new SpireEmulator({
    trustDomain: 'ca.test',
    api,
    now: () => Date.parse('2030-01-01T00:00:00Z'),
  });
  let c: SpireServerClient;
  beforeAll(async () => {
    c = new SpireServerClient({ address: (await emu.start()).address, api });
  });
  afterAll(async () => {
    c.close();
    await emu.stop();
  });

  it('derives validity from the injected clock', () => {
    const [x] = emu.x509Authorities();
    expect(x!.expiresAt).toBe(Date.parse('2030-01-02T00:00:00Z') / 1000);
    expect(emu.jwtAuthorities()[0]!.expiresAt).toBe(Date.parse('2030-01-02T00:00:00Z') / 1000);
  });

  it('taints and revokes old authorities, bumping the sequence each time', async () => {
    const first = emu.x509Authorities()[0]!.authorityId;
    await emu.prepareX509Authority();
    await emu.activateX509Authority();
    expect(emu.x509Authorities().map((a) => a.state)).toEqual(['old', 'active']);
    const s0 = (await c.getBundle()).sequence;
    await emu.taintAuthority('x509', first);
    expect((await c.getBundle()).sequence).toBe(s0 + 1n);
    const raw = await rawCall<{ x509_authorities: { tainted: boolean }[] }>(
      emu.endpoints!.address,
      'bundle',
      'GetBundle',
      {},
    );
    expect(raw.ok && raw.value.x509_authorities.map((a) => a.tainted)).toEqual([true, false]);
    await emu.revokeAuthority('x509', first);
    const b = await c.getBundle();
    expect(b.sequence).toBe(s0 + 2n);
    expect(b.x509Authorities).toHaveLength(1);
    await expect(emu.revokeAuthority('x509', emu.x509Authorities()[0]!.authorityId)).rejects.toThrow(
      TypeError,
    );
  });

  it('rotates JWT keys the same way', async () => {
    const oldKid = emu.jwtAuthorities()[0]!.authorityId;
    const prepared = emu.prepareJwtAuthority();
    emu.activateJwtAuthority();
    await emu.revokeAuthority('jwt', oldKid);
    const b = await c.getBundle();
    expect([...b.jwtAuthorities.keys()]).toEqual([prepared.authorityId]);
    expect(() => emu.activateJwtAuthority()).toThrow(TypeError);
  });

  it('appends foreign authorities and keeps them across its own rotations', async () => {
    const ca = await makeCa('ca.test');
    const key = makeJwtKey('extra');
    const s0 = (await c.getBundle()).sequence;
    await emu.appendAuthorities({ x509: [ca.der], jwt: [key] });
    await emu.appendAuthorities({ x509: [ca.der] }); // nothing new: no bump
    const b = await c.getBundle();
    expect(b.sequence).toBe(s0 + 1n);
    expect(b.jwtAuthorities.has('extra')).toBe(true);
    await emu.prepareX509Authority();
    await emu.activateX509Authority();
    await emu.revokeAuthority('x509', emu.x509Authorities()[0]!.authorityId);
    expect(
      (await c.getBundle()).x509Authorities.some((a) => a.sha256 === b.x509Authorities.at(-1)!.sha256),
    ).toBe(true);
  });
});

describe('SpireEmulator federated state and hooks', () => {
  const refreshed: string[] = [];
  const emu = new SpireEmulator({
    trustDomain: 'fed.test',
    api,
    refreshBundle: async (name) => {
      if (name === 'broken.test') throw new Error('endpoint unreachable');
      refreshed.push(name);
    },
  });
  let c: SpireServerClient;
  let address: string;
  beforeAll(async () => {
    ({ address } = await emu.start());
    c = new SpireServerClient({ address, api, retry: { maxAttempts: 1 } });
  });
  afterAll(async () => {
    c.close();
    await emu.stop();
  });

  it('refuses RESTRICT deletes of bundles that entries federate with; DELETE clears them', async () => {
    emu.setFederatedBundle(await makeBundle('used.test'));
    emu.setFederatingEntries('used.test', 2);
    const [r] = await c.batchDeleteFederatedBundle(['used.test']);
    expect(r).toMatchObject({
      ok: false,
      status: {
        name: 'FAILED_PRECONDITION',
        message:
          'failed to delete federated bundle: datastore-sql: cannot delete bundle; federated with 2 registration entries',
      },
    });
    expect(r!.error?.code).toBe('ERR_SPIRE_FAILED_PRECONDITION');
    const [d] = await c.batchDeleteFederatedBundle(['used.test'], { mode: 'DELETE' });
    expect(d!.ok).toBe(true);
    expect(emu.federatedBundle('used.test')).toBeUndefined();
  });

  it('RefreshBundle calls the hook for known relationships only', async () => {
    emu.addFederationRelationship({
      trustDomain: td('peer.test'),
      bundleEndpointUrl: 'https://127.0.0.1:1',
      profile: { type: 'https_spiffe', endpointSpiffeId: SpiffeId.parse('spiffe://peer.test/spire/server') },
    });
    emu.addFederationRelationship({
      trustDomain: td('broken.test'),
      bundleEndpointUrl: 'https://x',
      profile: { type: 'https_web' },
    });
    expect(await rawCall(address, 'trustDomain', 'RefreshBundle', { trust_domain: 'peer.test' })).toEqual({
      ok: true,
      value: {},
    });
    expect(refreshed).toEqual(['peer.test']);
    expect(await rawCall(address, 'trustDomain', 'RefreshBundle', { trust_domain: 'nope.test' })).toEqual({
      ok: false,
      code: 'NOT_FOUND',
      message: 'no relationship with trust domain "nope.test"',
    });
    expect(await rawCall(address, 'trustDomain', 'RefreshBundle', { trust_domain: 'broken.test' })).toEqual({
      ok: false,
      code: 'INTERNAL',
      message: 'failed to refresh bundle: endpoint unreachable',
    });
    expect(() =>
      emu.addFederationRelationship({
        trustDomain: td('peer.test'),
        bundleEndpointUrl: 'https://x',
        profile: { type: 'https_web' },
      }),
    ).toThrow(TypeError);
  });

  it('refuses to store a federated bundle for its own trust domain', async () => {
    expect(() => emu.setFederatedBundle(emu.bundle())).toThrow(TypeError);
  });

  it('records calls and matches faults by method name, full path or pattern', async () => {
    emu.clearCalls();
    emu.faults.failNext(1, { method: '/spire.api.server.bundle.v1.Bundle/CountBundles', code: 'INTERNAL' });
    emu.faults.failNext(1, { method: /Federated/, code: 'ABORTED' });
    emu.faults.failNext(1, { method: (m) => m.endsWith('/Check'), code: 'UNAUTHENTICATED' });
    expect(emu.faults.pending).toBe(3);
    expect(((await c.countBundles().catch((e) => e)) as SpireError).code).toBe('ERR_SPIRE_INTERNAL');
    expect(((await c.listFederatedBundles().catch((e) => e)) as SpireError).code).toBe('ERR_SPIRE_RPC');
    expect(((await c.healthCheck().catch((e) => e)) as SpireError).code).toBe('ERR_SPIRE_UNAUTHENTICATED');
    expect(emu.faults.pending).toBe(0);
    expect(emu.calls.map((x) => [x.method, x.transport])).toEqual([
      ['CountBundles', 'uds'],
      ['ListFederatedBundles', 'uds'],
      ['Check', 'uds'],
    ]);
    expect(() => emu.faults.failNext(0)).toThrow(TypeError);
  });

  it('answers RPCs it does not emulate with UNIMPLEMENTED after authorization', async () => {
    expect(await rawCall(address, 'svid', 'MintJWTSVID', {})).toMatchObject({
      ok: false,
      code: 'UNIMPLEMENTED',
    });
    expect(await rawCall(address, 'svid', 'BatchNewX509SVID', {})).toMatchObject({
      ok: false,
      code: 'PERMISSION_DENIED',
    });
  });
});
