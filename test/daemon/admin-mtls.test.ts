/**
 * The daemon's admin listener with `admin.adminIds`: HTTPS with mTLS, the broker's own X509-SVID
 * (minted from SPIRE) as server certificate, only the named callers admitted. The daemon used to
 * refuse to start with such a config ("refusing to serve the admin API on non-loopback ... without
 * mTLS"): the config accepted adminIds but nothing handed them to the admin app — found by the
 * dev overlay on a real cluster (admin on 0.0.0.0 with adminIds).
 */
import { request } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmulatorSvid } from '../../src/adapters/spire/emulator/emulator.js';
import { type OnePeerBroker, startOnePeerBroker, until } from '../support/daemon.js';

const ADMIN = 'spiffe://home.test/ops/admin';
let broker: OnePeerBroker;

beforeAll(async () => {
  broker = await startOnePeerBroker('sb-admin-mtls-', () => [
    `admin: { listen: 127.0.0.1:0, adminIds: ["${ADMIN}"] }`,
  ]);
  await until('the admin API listening', () => broker.daemon.adminUrl !== undefined);
}, 30_000);
afterAll(async () => broker?.stop());

/** GET /v1/status over TLS with `client` (or no client certificate); the status code or the error. */
function getStatus(
  client: EmulatorSvid | undefined,
): Promise<{ status?: number; error?: string; serverId?: string }> {
  const url = new URL('/v1/status', broker.daemon.adminUrl!.replace(/^http:/, 'https:'));
  return new Promise((resolve) => {
    const req = request(
      url,
      {
        ca: broker.emulator.trustBundlePem(),
        // The server certificate is an X509-SVID: no DNS name to check, its SPIFFE ID is read below.
        checkServerIdentity: () => undefined,
        ...(client ? { cert: client.certChainPem, key: client.privateKeyPem } : {}),
      },
      (res) => {
        const cert = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, serverId: cert.subjectaltname ?? '' }));
      },
    );
    req.on('error', (err) => resolve({ error: (err as NodeJS.ErrnoException).code ?? err.message }));
    req.end();
  });
}

describe('admin API with adminIds', () => {
  it('serves HTTPS with the broker’s own SVID and admits a named admin', async () => {
    expect(broker.daemon.adminUrl).toMatch(/^https:/);
    const ok = await getStatus(await broker.emulator.mintX509Svid(ADMIN));
    expect(ok.error).toBeUndefined();
    expect(ok.status).toBe(200);
    expect(ok.serverId).toBe('URI:spiffe://home.test/spiffe-broker');
  });

  it('refuses a caller of the same trust domain that is not named, and one with no certificate', async () => {
    const other = await getStatus(await broker.emulator.mintX509Svid('spiffe://home.test/ops/someone-else'));
    expect(other.status).toBeUndefined();
    expect(other.error).toBeDefined();
    const anonymous = await getStatus(undefined);
    expect(anonymous.status).toBeUndefined();
    expect(anonymous.error).toBeDefined();
  });
});
