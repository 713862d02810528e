/** The Workload API client against a server built from go-spiffe v2's generated gRPC code. */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, createX509Svid, type IssuedCert } from '../../../../src/adapters/pki/index.js';
import { WorkloadApiClient, type WorkloadX509Update } from '../../../../src/adapters/spire/workload/index.js';
import { SpiffeId } from '../../../../src/core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../../../../src/core/spiffeid/trust-domain.js';
import {
  startWorkloadApiServer,
  type WorkloadApiServer,
  workloadApiOrSkip,
} from '../../endpoint/workload-server.js';

const have = workloadApiOrSkip('Workload API client');
const ID = 'spiffe://wl.test/spiffe-broker';
const notBefore = new Date(Date.now() - 60_000);
const notAfter = new Date(Date.now() + 3600_000);

describe.skipIf(!have)('WorkloadApiClient (FetchX509SVID) against go-spiffe’s generated server', () => {
  let ca: IssuedCert;
  let server: WorkloadApiServer;
  let client: WorkloadApiClient;
  const svid = () => createX509Svid({ id: SpiffeId.parse(ID), issuer: ca, notBefore, notAfter });

  beforeAll(async () => {
    ca = await createCa({ trustDomain: TrustDomain.parse('wl.test'), notBefore, notAfter });
    server = await startWorkloadApiServer(ID, await svid(), ca);
    client = new WorkloadApiClient({ address: `unix://${server.socketPath}`, minBackoffMs: 50 });
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  it('fetches the SVID, its PKCS#8 key and the bundle, sending the security header', async () => {
    const update = await client.fetchX509Svids();
    expect(update.svids).toHaveLength(1);
    const s = update.svids[0]!;
    expect(s.spiffeId.toString()).toBe(ID);
    expect(s.certChain).toHaveLength(1);
    const leaf = new X509Certificate(s.certChain[0]!);
    const key = createPrivateKey({ key: Buffer.from(s.privateKeyPkcs8), format: 'der', type: 'pkcs8' });
    expect(leaf.checkPrivateKey(key)).toBe(true);
    expect(s.bundle.map((d) => Buffer.from(d).toString('hex'))).toEqual([
      Buffer.from(ca.der).toString('hex'),
    ]);
  });

  it('streams a rotated SVID', async () => {
    const updates: WorkloadX509Update[] = [];
    const stop = new AbortController();
    const watching = client.watchX509Svids(stop.signal, { onUpdate: (u) => updates.push(u) });
    for (let i = 0; i < 200 && updates.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    const next = await svid();
    await server.serve(next, ca);
    for (
      let i = 0;
      i < 300 &&
      !updates.some(
        (u) =>
          u.svids[0]?.certChain[0]?.length === next.der.length &&
          Buffer.from(u.svids[0].certChain[0]).equals(Buffer.from(next.der)),
      );
      i++
    ) {
      await new Promise((r) => setTimeout(r, 10));
    }
    stop.abort();
    await watching;
    expect(updates.some((u) => Buffer.from(u.svids[0]!.certChain[0]!).equals(Buffer.from(next.der)))).toBe(
      true,
    );
  });

  it('refuses a relative socket path (coded)', () => {
    expect(() => new WorkloadApiClient({ address: 'agent.sock' })).toThrow(
      expect.objectContaining({ code: 'ERR_SPIRE_ADDRESS' }),
    );
  });

  it('reports an unreachable socket as a coded error and keeps retrying until aborted', async () => {
    const c = new WorkloadApiClient({
      address: '/tmp/does-not-exist-sb.sock',
      minBackoffMs: 10,
      maxBackoffMs: 20,
    });
    const errors: { code: string }[] = [];
    const stop = new AbortController();
    const watching = c.watchX509Svids(stop.signal, { onUpdate: () => {}, onError: (e) => errors.push(e) });
    for (let i = 0; i < 300 && errors.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    stop.abort();
    await watching;
    c.close();
    expect(errors.length).toBeGreaterThanOrEqual(2);
    expect(errors[0]?.code).toBe('ERR_SPIRE_UNAVAILABLE');
  });
});
