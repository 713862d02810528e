import { type AdminAppOptions, buildAdminApp, buildHealthApp, runAdmin } from '../adapters/admin/app.js';
import { runApp } from '../adapters/admin/http.js';
import type { RelayedBundlesProvider, RelayRequestResult } from '../adapters/endpoint/app.js';
import type { LocalBundle } from '../adapters/endpoint/local-bundle.js';
import { type RunningBundleEndpoint, startBundleEndpoint } from '../adapters/endpoint/server.js';
import { FileTlsCredentials, type TlsCredentialSource } from '../adapters/endpoint/tls-credentials.js';
import type { BrokerMetrics } from '../adapters/metrics/broker-metrics.js';
import type { PeerOidc } from '../adapters/oidc/app.js';
import { OidcDiscoveryServer } from '../adapters/oidc/server.js';
import { MtlsProbe, type ProbePeer } from '../adapters/probe/mtls-probe.js';
import type { SpireServerClient } from '../adapters/spire/client.js';
import type { SvidSource } from '../adapters/tls/svid.js';
import { buildVerifyApiApp } from '../adapters/verify-api/app.js';
import { defaultJwksUri, discoveryUrl } from '../core/bundle/oidc.js';
import type { BundleSource } from '../core/bundle/source.js';
import type { TrustBundle } from '../core/bundle/trust-bundle.js';
import { SpiffeId } from '../core/spiffeid/spiffe-id.js';
import type { TrustDomain } from '../core/spiffeid/trust-domain.js';
import type { BrokerConfig, PeerConfig } from '../engine/config/types.js';
import type { FederatedBundleStore } from '../engine/federation/bundle-store.js';
import { RuntimeError } from '../errors.js';
import type { Clock } from '../platform/clock.js';
import type { Logger } from '../platform/logger.js';
import type { Task } from '../platform/tasks.js';

/**
 * The daemon's listeners, each a task body (`run(signal)` until the signal aborts): bundle
 * endpoint (with the per-peer relay), admin API, health listener, verify API, mTLS probe and
 * OIDC discovery. Wiring only: each builds its
 * app from the config and the parts it is handed, and listens.
 * @module
 */

/** What every listener may use. */
export interface ListenerContext {
  readonly config: BrokerConfig;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: BrokerMetrics;
  readonly readFile: (path: string) => Promise<Uint8Array>;
  /** The source SPIRE server (mints the broker's own SVIDs). */
  readonly source: SpireServerClient;
}

/** The broker's own SPIFFE ID (endpoint and probe): configured, or `spiffe://<td>/spiffe-broker`. */
function brokerId(ctx: ListenerContext): SpiffeId {
  return ctx.config.endpoint?.spiffeId ?? SpiffeId.fromPath(ctx.config.trustDomain, '/spiffe-broker');
}

/**
 * Minting SVIDs needs a CSR, built with @peculiar/x509 (and its ASN.1 stack): loaded only by a
 * broker that mints (https_spiffe endpoint, mTLS), so an https_web broker does not carry it.
 */
const mintedSvidModule = () => import('../adapters/endpoint/svid-credentials.js');

/**
 * The broker's own X509-SVID (`brokerId`) as a live source: minted from the source SPIRE server,
 * re-minted half-way through its life. Resolves with the first SVID minted (a failure to mint
 * it rejects); `run` then keeps it fresh until `signal` aborts.
 */
async function ownSvid(
  ctx: ListenerContext,
  signal: AbortSignal,
): Promise<{ readonly svid: SvidSource; readonly run: Promise<void> }> {
  const { MintedSvidCredentials } = await mintedSvidModule();
  const credentials = new MintedSvidCredentials({
    minter: ctx.source,
    spiffeId: brokerId(ctx),
    deps: { clock: ctx.clock, logger: ctx.logger, readFile: ctx.readFile },
  });
  const first = await credentials.ready(signal);
  const run = credentials.run(signal);
  const material = (c: { certChainPem: string; keyPem: string }) => ({
    certChainPem: c.certChainPem,
    privateKeyPem: c.keyPem,
  });
  let current = material(first);
  const svid: SvidSource = {
    current: () => current,
    subscribe: (listener) =>
      credentials.subscribe((c) => {
        current = material(c);
        listener(current);
      }),
  };
  return { svid, run };
}

/**
 * Serves the admin API until `signal` aborts. A TCP listener with `admin.adminIds` serves HTTPS
 * with mTLS: the broker's own X509-SVID as server certificate, clients verified against the local
 * trust domain's bundle and admitted only with one of those IDs (required off loopback: the
 * config refuses an off-host listener without them).
 */
export async function serveAdmin(
  ctx: ListenerContext,
  app: Omit<AdminAppOptions, 'metrics'>,
  local: LocalBundle,
  signal: AbortSignal,
  onListening: (address: string) => void,
): Promise<void> {
  const a = ctx.config.admin;
  const listen = a.socket ? { path: a.socket } : (a.listen ?? { host: '127.0.0.1', port: 8089 });
  let mtls: AdminAppOptions['mtls'];
  let svidRun: Promise<void> | undefined;
  if (!a.socket && a.adminIds.length > 0) {
    const own = await ownSvid(ctx, signal);
    svidRun = own.run;
    mtls = {
      trustDomain: ctx.config.trustDomain,
      localBundle: () => local.current()?.bundle,
      adminIds: a.adminIds,
      svid: own.svid,
    };
  }
  const serving = runAdmin(await buildAdminApp({ ...app, ...(mtls ? { mtls } : {}), metrics: ctx.metrics }), {
    listen,
    signal,
    onListening: (address) => {
      onListening(address);
      ctx.logger.info('admin API listening', { address, mtls: mtls !== undefined });
    },
  });
  await Promise.all([serving, svidRun]);
}

/** Serves the plain-HTTP health listener (`probe.listen`): /healthz, /readyz, /metrics. */
export async function serveHealth(
  ctx: ListenerContext,
  ready: AdminAppOptions['ready'],
  signal: AbortSignal,
): Promise<void> {
  const listen = ctx.config.probe.listen;
  if (!listen) return;
  await runApp(buildHealthApp({ ready, metrics: ctx.metrics }), {
    listen,
    signal,
    onListening: (address) => ctx.logger.info('health listener up', { address }),
  });
}

/** Serves the SVID verification API until `signal` aborts. */
export async function serveVerifyApi(
  ctx: ListenerContext,
  source: BundleSource,
  signal: AbortSignal,
  onListening: (address: string) => void,
): Promise<void> {
  const app = await buildVerifyApiApp({
    source,
    now: () => ctx.clock.now(),
    metrics: ctx.metrics,
    bodyLimit: ctx.config.verify.maxBodyBytes,
  });
  await runApp(app, {
    listen: ctx.config.verify.listen,
    signal,
    onListening: (address) => {
      onListening(address);
      ctx.logger.info('verify API listening', { address });
    },
  });
}

/**
 * The relay of accepted peer bundles (`GET /bundles/<td>` on the bundle endpoint): the store's
 * bundle of a peer whose live allowlist entry says `relay: true`, nothing for any other domain.
 */
export function relayProvider(
  federated: FederatedBundleStore,
  peers: () => readonly PeerConfig[],
): RelayedBundlesProvider {
  return {
    bundle: (td) =>
      peers().some((p) => p.relay && p.trustDomain.name === td) ? federated.get(td) : undefined,
    subscribe: (listener) => federated.subscribe((change) => listener(change.trustDomain)),
  };
}

/**
 * Starts the HTTPS bundle endpoint with the configured profile (https_web: the configured
 * certificate; https_spiffe: an X509-SVID minted from the source SPIRE server); resolves once it
 * listens, undefined when no endpoint is configured.
 */
export async function startEndpoint(
  ctx: ListenerContext,
  local: LocalBundle,
  federated: FederatedBundleStore,
  signal: AbortSignal,
  /** The live allowlist: peers with `relay: true` are relayed at `/bundles/<td>`. Absent: no relay. */
  peers?: () => readonly PeerConfig[],
): Promise<RunningBundleEndpoint | undefined> {
  const ep = ctx.config.endpoint;
  if (!ep) return undefined;
  const deps = { clock: ctx.clock, logger: ctx.logger, readFile: ctx.readFile };
  let credentials: TlsCredentialSource;
  if (ep.profile === 'https_web' || (ep.certFile && ep.keyFile)) {
    if (!ep.certFile || !ep.keyFile)
      throw new TypeError('endpoint: certFile and keyFile are required for https_web');
    credentials = new FileTlsCredentials({ certFile: ep.certFile, keyFile: ep.keyFile, deps });
  } else {
    const { MintedSvidCredentials } = await mintedSvidModule();
    credentials = new MintedSvidCredentials({ minter: ctx.source, spiffeId: brokerId(ctx), deps });
  }
  // startBundleEndpoint logs 'bundle endpoint listening' (once).
  return startBundleEndpoint(
    {
      host: ep.listen.host,
      port: ep.listen.port,
      local,
      credentials,
      maxHeldRequests: ep.maxHeldRequests,
      handshakeTimeoutMs: ep.handshakeTimeoutMs,
      maxConnectionsPerAddress: ep.maxConnectionsPerAddress,
      ...(ep.bundleMapPath
        ? { bundleMap: { path: ep.bundleMapPath, ...(ep.serveFederatedInMap ? { federated } : {}) } }
        : {}),
      ...(peers
        ? {
            relay: relayProvider(federated, peers),
            onRelayRequest: (result: RelayRequestResult) => ctx.metrics.observeRelayRequest(result),
          }
        : {}),
      deps,
    },
    signal,
  );
}

/** Per-peer OIDC discovery: the accepted bundle of a peer whose live allowlist entry has `oidcIssuer`. */
export function peerOidc(
  federated: FederatedBundleStore,
  peers: () => readonly PeerConfig[],
): (trustDomain: string) => PeerOidc | undefined {
  return (td) => {
    const issuer = peers().find((p) => p.trustDomain.name === td)?.oidcIssuer;
    const bundle = issuer === undefined ? undefined : federated.get(td);
    return issuer !== undefined && bundle ? { issuer, bundle } : undefined;
  };
}

/**
 * Serves OIDC discovery for the local trust domain's JWT-SVIDs (`oidc:`) until `signal` aborts:
 * HTTPS with `certFile`/`keyFile` (reloaded as they change), else plain HTTP on loopback.
 */
export async function serveOidc(
  ctx: ListenerContext,
  local: LocalBundle,
  signal: AbortSignal,
  onListening: (url: string) => void,
  /** Per-peer discovery for allowlist entries with `oidcIssuer`: the live allowlist and the store. */
  peerSource?: { readonly peers: () => readonly PeerConfig[]; readonly federated: FederatedBundleStore },
): Promise<void> {
  const o = ctx.config.oidc;
  if (!o) return;
  const deps = { clock: ctx.clock, logger: ctx.logger, readFile: ctx.readFile };
  const server = new OidcDiscoveryServer({
    host: o.listen.host,
    port: o.listen.port,
    issuer: o.issuer,
    ...(o.jwksUri !== undefined ? { jwksUri: o.jwksUri } : {}),
    maxAgeSeconds: o.maxAgeSeconds,
    local,
    ...(peerSource ? { peers: peerOidc(peerSource.federated, peerSource.peers) } : {}),
    onRequest: (document, result) => ctx.metrics.observeOidcRequest(document, result),
    ...(o.certFile !== undefined && o.keyFile !== undefined
      ? { credentials: new FileTlsCredentials({ certFile: o.certFile, keyFile: o.keyFile, deps }) }
      : {}),
    onListening,
    deps,
  });
  await server.run(signal);
}

/** The OIDC discovery listener in `/v1/status` (and the lab's ready line). */
export interface OidcStatus {
  /** The listener's bound base URL once it listens (`https://…` or `http://` on loopback). */
  readonly url?: string;
  readonly issuer: string;
  /** `<issuer>/.well-known/openid-configuration`: what relying parties are configured with. */
  readonly discovery: string;
  readonly jwksUri: string;
  /** The `kid`s served now (the local bundle's JWT authorities). */
  readonly keys: readonly string[];
  /** Version of the local bundle document the JWKS was rendered from. */
  readonly localVersion?: number;
  /** Peers published under `/peers/<td>/` (allowlist `oidcIssuer`), with whether a bundle is held. */
  readonly peers: readonly {
    readonly trustDomain: string;
    readonly issuer: string;
    readonly accepted: boolean;
  }[];
}

/** Status of the OIDC listener, or undefined when `oidc:` is not configured. */
export function oidcStatus(
  config: BrokerConfig,
  local: LocalBundle,
  peers: readonly PeerConfig[],
  federated: FederatedBundleStore,
  url?: string,
): OidcStatus | undefined {
  const o = config.oidc;
  if (!o) return undefined;
  const cur = local.current();
  return {
    ...(url !== undefined ? { url } : {}),
    issuer: o.issuer,
    discovery: discoveryUrl(o.issuer),
    jwksUri: o.jwksUri ?? defaultJwksUri(o.issuer),
    keys: cur ? [...cur.bundle.jwtAuthorities.keys()] : [],
    ...(cur ? { localVersion: cur.version } : {}),
    peers: peers.flatMap((p) =>
      p.oidcIssuer === undefined
        ? []
        : [
            {
              trustDomain: p.trustDomain.name,
              issuer: p.oidcIssuer,
              accepted: federated.get(p.trustDomain.name) !== undefined,
            },
          ],
    ),
  };
}

/** The relay in `/v1/status` (and the lab's ready line). */
export interface RelayStatus {
  /** `<bundle endpoint URL>bundles/` once the endpoint listens: append a trust domain name. */
  readonly base?: string;
  /** Relay-enabled peers, whether an accepted bundle is served for each, and its URL. */
  readonly trustDomains: readonly {
    readonly trustDomain: string;
    readonly accepted: boolean;
    readonly url?: string;
  }[];
}

/** Status of the relay from the live allowlist and the store; `endpointUrl` ends with `/`. */
export function relayStatus(
  peers: readonly PeerConfig[],
  federated: FederatedBundleStore,
  endpointUrl?: string,
): RelayStatus {
  const base = endpointUrl === undefined ? undefined : `${endpointUrl.replace(/\/?$/, '/')}bundles/`;
  return {
    ...(base !== undefined ? { base } : {}),
    trustDomains: peers
      .filter((p) => p.relay)
      .map((p) => ({
        trustDomain: p.trustDomain.name,
        accepted: federated.get(p.trustDomain.name) !== undefined,
        ...(base !== undefined ? { url: `${base}${p.trustDomain.name}` } : {}),
      })),
  };
}

/** What the mTLS probe reads of the broker. */
export interface ProbeInputs {
  readonly peers: () => readonly PeerConfig[];
  /** Bundles the broker holds: inbound probe clients are verified against them before SPIRE is read. */
  readonly held: BundleSource;
  /** Every SPIRE server's client, by name. */
  readonly clients: ReadonlyMap<string, SpireServerClient>;
}

/**
 * Runs the cross-domain mTLS probe (when `mtlsProbe.listen` is configured): the broker's own
 * X509-SVID minted from the source SPIRE server, a probe port, and a handshake with every
 * allowlisted peer that names its probe port, judged with the bundles exactly as the local SPIRE
 * servers hold them.
 */
export async function runMtlsProbe(
  ctx: ListenerContext,
  inputs: ProbeInputs,
  signal: AbortSignal,
): Promise<void> {
  const listen = ctx.config.mtlsProbe.listen;
  if (!listen) return;
  const { svid, run: svidRun } = await ownSvid(ctx, signal);
  const local = ctx.config.trustDomain;
  const asSpireHolds = async (td: TrustDomain, sig?: AbortSignal) =>
    Promise.all(
      [...inputs.clients].map(
        async ([server, client]): Promise<{ server: string; bundle: TrustBundle | undefined }> => ({
          server,
          bundle: td.equals(local)
            ? await client.getBundle(sig ? { signal: sig } : {})
            : await client.findFederatedBundle(td, sig ? { signal: sig } : {}),
        }),
      ),
    );
  const probe = new MtlsProbe({
    trustDomain: local,
    svid,
    clock: ctx.clock,
    metrics: ctx.metrics,
    listen,
    intervalMs: ctx.config.mtlsProbe.intervalMs,
    heldBundles: inputs.held,
    peers: () =>
      inputs.peers().flatMap((p): ProbePeer[] => {
        if (!p.probe) return [];
        const expectedId =
          p.probe.expectedId ?? (p.profile.kind === 'https_spiffe' ? p.profile.endpointSpiffeId : undefined);
        return [
          {
            trustDomain: p.trustDomain,
            host: p.probe.host,
            port: p.probe.port,
            ...(expectedId ? { expectedId } : {}),
          },
        ];
      }),
    bundlesAsSpireHolds: asSpireHolds,
    onResult: (r) => ctx.logger.debug('mTLS probe', { result: r }),
  });
  await Promise.all([svidRun, probe.run(signal)]);
}

/** Socket errors that mean a listener could not bind its address. */
const BIND_ERRORS = new Set(['EADDRINUSE', 'EACCES', 'EADDRNOTAVAIL', 'EPERM', 'ENOENT', 'EINVAL']);

/** A listener task whose bind failure becomes a coded `ERR_LISTEN` naming the listener. */
export function listener(name: string, run: (signal: AbortSignal) => Promise<void>): Task {
  return {
    name,
    run: (signal) =>
      run(signal).catch((err: unknown) => {
        const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
        if (
          typeof code === 'string' &&
          BIND_ERRORS.has(code) &&
          (err as { syscall?: string }).syscall !== 'open'
        )
          throw new RuntimeError('ERR_LISTEN', `${name} cannot listen: ${(err as Error).message}`, {
            cause: err,
          });
        throw err;
      }),
  };
}

/** What the listener tasks read of the broker, and where they report their addresses. */
export interface ListenerHost extends ProbeInputs {
  readonly local: LocalBundle;
  readonly federated: FederatedBundleStore;
  /** The admin API's providers (metrics come from the context). */
  readonly admin: Omit<AdminAppOptions, 'metrics'>;
  /** A listener is up: its address (the endpoint also hands over its running server). */
  readonly listening: (
    what: 'admin' | 'verify' | 'endpoint' | 'oidc',
    address: string,
    endpoint?: RunningBundleEndpoint,
  ) => void;
}

/** Every listener of the broker as a task (a bind failure is `ERR_LISTEN` naming it). */
export function listenerTasks(ctx: ListenerContext, host: ListenerHost): Task[] {
  return [
    listener('bundle endpoint', async (signal) => {
      const running = await startEndpoint(ctx, host.local, host.federated, signal, host.peers);
      if (!running) return;
      host.listening('endpoint', running.url, running);
      await running.closed;
    }),
    listener('admin API', (signal) =>
      serveAdmin(ctx, host.admin, host.local, signal, (address) => host.listening('admin', address)),
    ),
    listener('verify API', (signal) =>
      serveVerifyApi(ctx, host.held, signal, (address) => host.listening('verify', address)),
    ),
    listener('mTLS probe', (signal) => runMtlsProbe(ctx, host, signal)),
    listener('health listener', (signal) => serveHealth(ctx, host.admin.ready, signal)),
    listener('OIDC discovery', (signal) =>
      serveOidc(ctx, host.local, signal, (url) => host.listening('oidc', url), {
        peers: host.peers,
        federated: host.federated,
      }),
    ),
  ];
}
