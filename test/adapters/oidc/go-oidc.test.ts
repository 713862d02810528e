/**
 * The OIDC discovery listener read by a real relying party: coreos/go-oidc v3
 * (scripts/go/oidc-consumer, built by scripts/install-oidc-consumer.sh) discovers the issuer over
 * HTTPS, fetches the JWKS and verifies JWT-SVIDs minted by a real spire-server 1.15.3 whose
 * `jwt_issuer` is the broker's `oidc.issuer`. The broker reads the local bundle from that server
 * exactly as the daemon does (GetBundle through SpireServerClient, polled by LocalBundle), and the
 * JWKS follows a JWT authority rotation within a second. A second spire-server plays a partner
 * trust domain with its own jwt_issuer: go-oidc verifies the partner's JWT-SVIDs through the
 * broker's per-peer discovery (`/peers/<td>/`, allowlist `oidcIssuer`).
 *
 * Skips loudly without the program or spire-server; fails instead with CI=true.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { get as httpsGet } from 'node:https';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalBundle } from '../../../src/adapters/endpoint/local-bundle.js';
import { FileTlsCredentials } from '../../../src/adapters/endpoint/tls-credentials.js';
import { OidcDiscoveryServer } from '../../../src/adapters/oidc/server.js';
import { createCa, createX509Svid } from '../../../src/adapters/pki/index.js';
import { SpireServerClient } from '../../../src/adapters/spire/client.js';
import type { TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { SpiffeId } from '../../../src/core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';
import { realSpireOrSkip, type SpireServerInstance, startSpireServer } from '../../support/spire-harness.js';

const ISSUER = 'https://oidc.example.test';
const TD = TrustDomain.parse('oidc.test');
const PARTNER = TrustDomain.parse('partner.test');
const PARTNER_ISSUER = 'https://oidc.partner.test';

function consumerBinary(): string {
  const cache = process.env.SPIFFE_BROKER_CACHE ?? join(homedir(), '.cache', 'spiffe-broker');
  return join(cache, 'bin', 'oidc-consumer');
}

function consumerOrSkip(suite: string): boolean {
  const path = consumerBinary();
  if (existsSync(path)) return true;
  const message = `go-oidc consumer missing for "${suite}": ${path} (run scripts/install-oidc-consumer.sh)`;
  if (process.env.CI === 'true') throw new Error(`${message} (CI=true: failing instead of skipping)`);
  console.warn(`\n${'!'.repeat(100)}\n!! SKIPPING ${message}\n${'!'.repeat(100)}\n`);
  return false;
}

const haveConsumer = consumerOrSkip('OIDC discovery read by go-oidc');
const haveSpire = await realSpireOrSkip('OIDC discovery read by go-oidc (real spire-server)');

interface Verified {
  readonly issuer: string;
  readonly jwks_uri: string;
  readonly algs: string[];
  readonly subject: string;
  readonly audience: string[];
}

describe.skipIf(!haveConsumer || !haveSpire)(
  'OIDC discovery: go-oidc verifies JWT-SVIDs from real SPIRE',
  () => {
    let spire: SpireServerInstance;
    let partner: SpireServerInstance;
    let partnerBundle: TrustBundle;
    let client: SpireServerClient;
    let dir: string;
    let caFile: string;
    let caPem: string;
    let port: number;
    const ac = new AbortController();
    let running: Promise<void>;
    let local: LocalBundle;

    const verify = (
      token: string,
      audience: string,
      issuer = ISSUER,
      at = port,
      discovery?: string,
    ): Promise<Verified> =>
      new Promise((resolve, reject) => {
        execFile(
          consumerBinary(),
          [
            '-issuer',
            issuer,
            '-audience',
            audience,
            '-token',
            token,
            '-caFile',
            caFile,
            '-connect',
            `127.0.0.1:${at}`,
            ...(discovery ? ['-discovery', discovery] : []),
          ],
          { timeout: 30_000 },
          (err, stdout, stderr) => {
            if (err) reject(new Error(stderr.trim() || err.message));
            else resolve(JSON.parse(stdout) as Verified);
          },
        );
      });
    const mint = async (path: string, audience: string): Promise<string> =>
      (
        await spire.cliOk(['jwt', 'mint', '-spiffeID', `spiffe://${TD.name}${path}`, '-audience', audience])
      ).trim();
    /** The kids the listener serves right now, read over HTTPS as a consumer would. */
    const servedKids = async (): Promise<string[]> => {
      const body = await new Promise<string>((resolve, reject) => {
        const req = httpsGet(
          { host: '127.0.0.1', port, path: '/keys', servername: 'oidc.example.test', ca: caPem },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => {
              text += c;
            });
            res.on('end', () => resolve(text));
          },
        );
        req.on('error', reject);
      });
      return (JSON.parse(body) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
    };

    beforeAll(async () => {
      spire = await startSpireServer({ trustDomain: TD.name, jwtIssuer: ISSUER });
      // A partner trust domain whose JWT-SVIDs carry its own issuer; the broker holds its bundle as
      // accepted (read from the partner's SPIRE, standing in for a federation fetch).
      partner = await startSpireServer({ trustDomain: PARTNER.name, jwtIssuer: PARTNER_ISSUER });
      const partnerClient = new SpireServerClient({ address: partner.address });
      try {
        partnerBundle = await partnerClient.getBundle();
      } finally {
        partnerClient.close();
      }
      client = new SpireServerClient({ address: spire.address });
      local = new LocalBundle({ source: client, trustDomain: TD, pollIntervalMs: 100 });
      void local.run(ac.signal);
      await local.ready(ac.signal);

      // The listener's WebPKI certificate for the issuer's host name, from a test CA.
      dir = await mkdtemp('/tmp/oidc-');
      const notBefore = new Date(Date.now() - 3_600_000);
      const notAfter = new Date(Date.now() + 86_400_000);
      const ca = await createCa({ trustDomain: TrustDomain.parse('web.test'), notBefore, notAfter });
      const leaf = await createX509Svid({
        id: SpiffeId.parse('spiffe://web.test/oidc'),
        issuer: ca,
        notBefore,
        notAfter,
        dnsNames: ['oidc.example.test'],
      });
      caFile = join(dir, 'ca.pem');
      caPem = ca.pem;
      await writeFile(caFile, ca.pem);
      await writeFile(join(dir, 'tls.crt'), leaf.pem);
      await writeFile(join(dir, 'tls.key'), leaf.privateKeyPem!);
      const credentials = new FileTlsCredentials({
        certFile: join(dir, 'tls.crt'),
        keyFile: join(dir, 'tls.key'),
      });
      let url: string | undefined;
      const server = new OidcDiscoveryServer({
        host: '127.0.0.1',
        port: 0,
        issuer: ISSUER,
        local,
        credentials,
        peers: (td) => (td === PARTNER.name ? { issuer: PARTNER_ISSUER, bundle: partnerBundle } : undefined),
        onListening: (u) => {
          url = u;
        },
      });
      running = server.run(ac.signal);
      for (let i = 0; i < 400 && !url; i++) await new Promise((r) => setTimeout(r, 5));
      port = Number(new URL(url!).port);
    }, 90_000);

    afterAll(async () => {
      ac.abort();
      await running;
      client?.close();
      await spire?.stop();
      await partner?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('discovers the issuer and verifies a JWT-SVID minted by spire-server', async () => {
      const token = await mint('/workload', 'partner-cloud');
      const got = await verify(token, 'partner-cloud');
      expect(got).toEqual({
        issuer: ISSUER,
        jwks_uri: `${ISSUER}/keys`,
        algs: ['ES256'],
        subject: `spiffe://${TD.name}/workload`,
        audience: ['partner-cloud'],
      });
    });

    it('refuses a JWT-SVID for another audience', async () => {
      const token = await mint('/workload', 'someone-else');
      await expect(verify(token, 'partner-cloud')).rejects.toThrow(/audience/);
    });

    it('refuses a JWT-SVID whose iss is not the discovered issuer (oidc.issuer and jwt_issuer must match)', async () => {
      // A second listener whose issuer differs from SPIRE's jwt_issuer: discovery succeeds, the
      // token's iss does not match it, and go-oidc refuses.
      const other = 'https://oidc.example.test/misaligned';
      const stop = new AbortController();
      let otherUrl: string | undefined;
      const server = new OidcDiscoveryServer({
        host: '127.0.0.1',
        port: 0,
        issuer: other,
        local,
        credentials: new FileTlsCredentials({
          certFile: join(dir, 'tls.crt'),
          keyFile: join(dir, 'tls.key'),
        }),
        onListening: (u) => {
          otherUrl = u;
        },
      });
      const run = server.run(stop.signal);
      try {
        for (let i = 0; i < 400 && !otherUrl; i++) await new Promise((r) => setTimeout(r, 5));
        const token = await mint('/workload', 'partner-cloud');
        await expect(verify(token, 'partner-cloud', other, Number(new URL(otherUrl!).port))).rejects.toThrow(
          /issued by a different provider/,
        );
      } finally {
        stop.abort();
        await run;
      }
    });

    it('publishes a prepared JWT authority within a second, and verifies tokens signed with it once active', async () => {
      const kidsBefore = new Set(await servedKids());
      expect(kidsBefore.size).toBeGreaterThan(0);
      const prepared = await spire.prepareAuthority('jwt');
      const started = Date.now();
      let newKid: string | undefined;
      while (Date.now() - started < 5_000 && newKid === undefined) {
        newKid = (await servedKids()).find((k) => !kidsBefore.has(k));
        if (newKid === undefined) await new Promise((r) => setTimeout(r, 20));
      }
      const elapsed = Date.now() - started;
      expect(newKid).toBeDefined();
      expect(elapsed).toBeLessThan(1_000);
      await spire.activateAuthority('jwt', prepared);
      const token = await mint('/rotated', 'partner-cloud');
      const header = JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()) as { kid: string };
      expect(header.kid).toBe(newKid);
      const got = await verify(token, 'partner-cloud');
      expect(got.subject).toBe(`spiffe://${TD.name}/rotated`);
    }, 30_000);

    it("verifies a partner's JWT-SVID through the per-peer discovery under the broker, and not through the local one", async () => {
      const token = (
        await partner.cliOk([
          'jwt',
          'mint',
          '-spiffeID',
          `spiffe://${PARTNER.name}/api`,
          '-audience',
          'partner-cloud',
        ])
      ).trim();
      const got = await verify(
        token,
        'partner-cloud',
        PARTNER_ISSUER,
        port,
        `${ISSUER}/peers/${PARTNER.name}`,
      );
      expect(got).toMatchObject({
        issuer: PARTNER_ISSUER,
        jwks_uri: `${ISSUER}/peers/${PARTNER.name}/keys`,
        subject: `spiffe://${PARTNER.name}/api`,
      });
      // The local trust domain's discovery does not vouch for the partner's tokens.
      await expect(verify(token, 'partner-cloud')).rejects.toThrow(
        /failed to verify id token signature|different provider/,
      );
      // Nor does a peer the broker does not publish.
      await expect(
        verify(token, 'partner-cloud', PARTNER_ISSUER, port, `${ISSUER}/peers/other.test`),
      ).rejects.toThrow(/404/);
    });
  },
);
