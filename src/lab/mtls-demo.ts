import { once } from 'node:events';
import { createServer, get, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { createCsr, generateKeyPair, toPem } from '../adapters/pki/index.js';
import { subtle } from '../adapters/pki/keys.js';
import { SpireServerClient } from '../adapters/spire/client.js';
import {
  PolledBundleMapSource,
  type SpiffeTls,
  SvidHolder,
  tlsOptions,
  type X509SvidMaterial,
} from '../adapters/tls/index.js';
import { matchId, SpiffeId } from '../core/spiffeid/index.js';
import type { Lab } from './lab.js';

/** What the cross-domain mTLS demo observed. */
export interface MtlsDemoResult {
  /** The server's answer to the allowed client: the caller ID it verified. */
  readonly allowed: string;
  /** The server calling back the client (both directions verified). */
  readonly reverse: string;
  /** What happened to a workload of the client's domain that the server's matcher refuses. */
  readonly refused: string;
}

/** An X509-SVID for `id` from its SPIRE server: a fresh key, a CSR, MintX509SVID. */
export async function mintSvid(spire: SpireServerClient, id: SpiffeId): Promise<X509SvidMaterial> {
  const keys = await generateKeyPair('ec-p256');
  const csr = await createCsr({ keys, id });
  const minted = await spire.mintX509Svid(csr, 3600);
  if (!minted.id.equals(id)) throw new Error(`SPIRE minted ${minted.id.toString()}, not ${id.toString()}`);
  const pkcs8 = new Uint8Array(await subtle.exportKey('pkcs8', keys.privateKey));
  return {
    certChainPem: minted.certChain.map((der) => toPem(der)).join(''),
    privateKeyPem: toPem(pkcs8, 'PRIVATE KEY'),
  };
}

/** An HTTPS service that answers every verified caller with "<name> served <caller ID>". */
async function startService(name: string, mtls: SpiffeTls): Promise<{ server: Server; port: number }> {
  const server = createServer(mtls.serverOptions(), (req, res) => {
    res.end(`${name} served ${mtls.peerId(req.socket as TLSSocket)?.toString()}`);
  });
  mtls.secure(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

/** GET https://127.0.0.1:<port>/ through the verifying agent; the body, or `refused: <why>`. */
function call(mtls: SpiffeTls, port: number): Promise<string> {
  const agent = mtls.agent();
  return new Promise<string>((resolve) => {
    get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve(body));
    }).on('error', (err) => resolve(`refused: ${err.message}`));
  }).finally(() => agent.destroy());
}

/**
 * Two services in different trust domains of a running {@link Lab} talk mTLS with no sidecar: each
 * gets its X509-SVID from its own SPIRE server (MintX509SVID) and the bundles it trusts from its own
 * broker's admin API (`/v1/bundles`, a Bundle Map the broker keeps current). The server admits
 * only `spiffe://<clientDomain>/frontend`; `spiffe://<clientDomain>/intruder` is refused at the
 * handshake although its SVID is valid.
 */
export async function runMtlsDemo(
  lab: Lab,
  clientDomain: string,
  serverDomain: string,
): Promise<MtlsDemoResult> {
  const stop = new AbortController();
  const c = lab.domain(clientDomain);
  const s = lab.domain(serverDomain);
  const frontend = SpiffeId.parse(`spiffe://${clientDomain}/frontend`);
  const backend = SpiffeId.parse(`spiffe://${serverDomain}/backend`);
  const intruder = SpiffeId.parse(`spiffe://${clientDomain}/intruder`);
  const clientSpire = new SpireServerClient({ address: c.spire.address });
  const serverSpire = new SpireServerClient({ address: s.spire.address });
  const servers: Server[] = [];
  try {
    const clientBundles = new PolledBundleMapSource({
      url: `${c.daemon.adminUrl}/v1/bundles`,
      intervalMs: 1000,
    });
    const serverBundles = new PolledBundleMapSource({
      url: `${s.daemon.adminUrl}/v1/bundles`,
      intervalMs: 1000,
    });
    void clientBundles.run(stop.signal);
    void serverBundles.run(stop.signal);
    await Promise.all([clientBundles.ready(), serverBundles.ready()]);
    const frontendSvid = new SvidHolder(await mintSvid(clientSpire, frontend));
    const backendSvid = new SvidHolder(await mintSvid(serverSpire, backend));
    const backendTls = tlsOptions({ source: serverBundles, authorize: matchId(frontend), svid: backendSvid });
    const frontendTls = tlsOptions({
      source: clientBundles,
      authorize: matchId(backend),
      svid: frontendSvid,
    });
    const backendService = await startService('backend', backendTls);
    const frontendService = await startService('frontend', frontendTls);
    servers.push(backendService.server, frontendService.server);
    const allowed = await call(frontendTls, backendService.port);
    const reverse = await call(
      tlsOptions({ source: serverBundles, authorize: matchId(frontend), svid: backendSvid }),
      frontendService.port,
    );
    const refused = await call(
      tlsOptions({
        source: clientBundles,
        authorize: matchId(backend),
        svid: await mintSvid(clientSpire, intruder),
      }),
      backendService.port,
    );
    return { allowed, reverse, refused };
  } finally {
    stop.abort();
    for (const srv of servers) srv.close();
    clientSpire.close();
    serverSpire.close();
  }
}
