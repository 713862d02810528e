/**
 * Two services in different trust domains talking mTLS with no sidecar.
 *
 * - `orders` lives in `spiffe://shop.example`, `billing` in `spiffe://bank.example`; each trust
 *   domain has its own SPIRE server (here the in-process SPIRE emulator, over its real gRPC API)
 *   and its own broker.
 * - Each service gets its X509-SVID from its own SPIRE server with MintX509SVID (a CSR for a key
 *   it generated; the key never leaves the service), through `SpireServerClient`.
 * - Each service gets the bundles it needs — its peer's, its own — from its broker's admin API
 *   (`GET /v1/bundles`, a SPIFFE Bundle Map), polled by `PolledBundleMapSource`.
 * - `tlsOptions` from `spiffe-broker/tls` verifies every peer with the bundle of the peer's own
 *   trust domain and a SPIFFE ID matcher: `billing` admits only `orders`, `orders` expects only
 *   `billing`. An identity the matcher refuses (`spiffe://shop.example/intruder`) is dropped at the
 *   handshake.
 *
 * The brokers here are reduced to their admin app holding the two bundles; a real broker fetches
 * the peer bundle from the peer's bundle endpoint, validates it and writes it into SPIRE.
 *
 * Run it: `node --import tsx examples/cross-domain-mtls/example.ts`.
 * @module
 */
import { once } from 'node:events';
import { createServer, get, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { pathToFileURL } from 'node:url';
import { buildAdminApp } from '../../src/admin/index.js';
import type { TrustBundle } from '../../src/bundle/trust-bundle.js';
import { createCsr, generateKeyPair, toPem } from '../../src/pki/index.js';
import { subtle } from '../../src/pki/keys.js';
import { matchId, SpiffeId } from '../../src/spiffeid/index.js';
import { SpireServerClient } from '../../src/spire/client.js';
import { SpireEmulator } from '../../src/spire/emulator/index.js';
import {
  PolledBundleMapSource,
  type SpiffeTls,
  SvidHolder,
  tlsOptions,
  type X509SvidMaterial,
} from '../../src/tls/index.js';

/** What the example observed. */
export interface ExampleResult {
  /** billing's answer to orders' request: the caller ID billing verified. */
  readonly ordersToBilling: string;
  /** orders' answer to billing's request. */
  readonly billingToOrders: string;
  /** What happened to a shop.example workload the matcher does not admit. */
  readonly intruder: string;
}

const ORDERS = SpiffeId.parse('spiffe://shop.example/orders');
const BILLING = SpiffeId.parse('spiffe://bank.example/billing');
const INTRUDER = SpiffeId.parse('spiffe://shop.example/intruder');

/** An X509-SVID for `id` from its SPIRE server: a fresh key, a CSR, MintX509SVID. */
async function mintSvid(spire: SpireServerClient, id: SpiffeId): Promise<X509SvidMaterial> {
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

/** A broker's admin API serving the bundles it holds; returns its /v1/bundles URL. */
async function startBroker(bundles: () => TrustBundle[], stop: AbortSignal): Promise<string> {
  const app = buildAdminApp({
    status: () => ({ trustDomain: bundles()[0]?.trustDomain.name ?? '', peers: [], drift: [] }),
    ready: () => ({ ready: true, reasons: [] }),
    metrics: { expose: async () => ({ contentType: 'text/plain', body: '' }) },
    bundles,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  stop.addEventListener('abort', () => void app.close(), { once: true });
  const { port } = app.server.address() as AddressInfo;
  return `http://127.0.0.1:${port}/v1/bundles`;
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

/** GET https://127.0.0.1:<port>/ through the verifying agent; the body, or the error's message. */
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

/** Runs the whole example and tears it down. */
export async function runExample(log: (line: string) => void = () => undefined): Promise<ExampleResult> {
  const stop = new AbortController();
  const shop = new SpireEmulator({ trustDomain: 'shop.example' });
  const bank = new SpireEmulator({ trustDomain: 'bank.example' });
  const servers: Server[] = [];
  const clients: SpireServerClient[] = [];
  try {
    const [shopApi, bankApi] = await Promise.all([shop.start(), bank.start()]);
    const shopSpire = new SpireServerClient({ address: shopApi.address });
    const bankSpire = new SpireServerClient({ address: bankApi.address });
    clients.push(shopSpire, bankSpire);

    // Each broker holds its own bundle and the peer's (here handed over directly; see the module doc).
    const shopBrokerUrl = await startBroker(() => [shop.bundle(), bank.bundle()], stop.signal);
    const bankBrokerUrl = await startBroker(() => [bank.bundle(), shop.bundle()], stop.signal);
    log(`brokers: ${shopBrokerUrl}, ${bankBrokerUrl}`);

    const shopBundles = new PolledBundleMapSource({ url: shopBrokerUrl, intervalMs: 1000 });
    const bankBundles = new PolledBundleMapSource({ url: bankBrokerUrl, intervalMs: 1000 });
    void shopBundles.run(stop.signal);
    void bankBundles.run(stop.signal);
    await Promise.all([shopBundles.ready(), bankBundles.ready()]);

    const ordersSvid = new SvidHolder(await mintSvid(shopSpire, ORDERS));
    const billingSvid = new SvidHolder(await mintSvid(bankSpire, BILLING));
    log(`SVIDs minted by each SPIRE server: ${ordersSvid.id.toString()}, ${billingSvid.id.toString()}`);

    const billing = tlsOptions({ source: bankBundles, authorize: matchId(ORDERS), svid: billingSvid });
    const orders = tlsOptions({ source: shopBundles, authorize: matchId(BILLING), svid: ordersSvid });
    const billingService = await startService('billing', billing);
    const ordersService = await startService('orders', orders);
    servers.push(billingService.server, ordersService.server);

    const ordersToBilling = await call(orders, billingService.port);
    log(`orders -> billing: ${ordersToBilling}`);
    // billing calls back; it expects orders there, so its matcher for this call is orders' ID.
    const billingToOrders = await call(
      tlsOptions({ source: bankBundles, authorize: matchId(ORDERS), svid: billingSvid }),
      ordersService.port,
    );
    log(`billing -> orders: ${billingToOrders}`);

    const intruderTls = tlsOptions({
      source: shopBundles,
      authorize: matchId(BILLING),
      svid: await mintSvid(shopSpire, INTRUDER),
    });
    const intruder = await call(intruderTls, billingService.port);
    log(`intruder -> billing: ${intruder}`);
    return { ordersToBilling, billingToOrders, intruder };
  } finally {
    stop.abort();
    for (const s of servers) s.close();
    for (const c of clients) c.close();
    await Promise.all([shop.stop(), bank.stop()]);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runExample((line) => process.stdout.write(`${line}\n`));
}
