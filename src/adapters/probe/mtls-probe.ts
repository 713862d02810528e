import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { createServer, type Server, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { BundleSet, type BundleSource } from '../../core/bundle/source.js';
import type { TrustBundle } from '../../core/bundle/trust-bundle.js';
import { matchId, matchMemberOf, type SpiffeIdMatcher } from '../../core/spiffeid/matcher.js';
import type { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import type { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { verifyX509Svid } from '../../core/verify/x509-svid.js';
import { BrokerError, MtlsError } from '../../errors.js';
import { type Clock, isAbort } from '../../platform/clock.js';
import { claimedSpiffeId, connectError, peerChain } from '../tls/spiffe-tls.js';
import { type SvidSource, toSvidSource, type X509SvidMaterial } from '../tls/svid.js';
import { type BucketRate, KeyedRateLimiter } from './rate-limit.js';

/** Default {@link MtlsProbeOptions.intervalMs}. */
export const DEFAULT_PROBE_INTERVAL_MS = 30_000;
/** Default {@link MtlsProbeOptions.timeoutMs}: connect, handshake and verdict. */
export const DEFAULT_PROBE_TIMEOUT_MS = 5_000;
/** Largest verdict line accepted, bytes. */
export const MAX_VERDICT_BYTES = 4096;

/** A peer broker's probe port. */
export interface ProbePeer {
  readonly trustDomain: TrustDomain;
  readonly host: string;
  readonly port: number;
  /** The peer broker's SPIFFE ID; any member of its trust domain when absent. */
  readonly expectedId?: SpiffeId;
  /** SNI name, when the peer's port sits behind a TLS router. */
  readonly servername?: string;
}

/** One local SPIRE server's copy of a trust domain's bundle (undefined: it holds none). */
export interface SpireHeldBundle {
  readonly server: string;
  readonly bundle: TrustBundle | undefined;
}

/**
 * Reads back, from every local SPIRE server, the bundle it holds for `trustDomain` — the federated
 * bundle for a peer, the server's own bundle for the local trust domain. The daemon implements it
 * with GetFederatedBundle / GetBundle, so the probe judges with exactly what SPIRE trusts.
 */
export type BundlesAsSpireHolds = (
  trustDomain: TrustDomain,
  signal?: AbortSignal,
) => Promise<readonly SpireHeldBundle[]>;

/** One side's judgement in a probe. */
export type ProbeVerdict =
  | { readonly ok: true; readonly id: string }
  | { readonly ok: false; readonly code: string; readonly message: string };

/** The outcome of probing one peer. */
export interface ProbeResult {
  readonly peer: string;
  /** Both directions verified. */
  readonly ok: boolean;
  /** We verified the peer's SVID with the bundles our SPIRE servers hold for its trust domain. */
  readonly outbound: ProbeVerdict | undefined;
  /** The peer verified ours with the bundles its SPIRE servers hold for ours (its verdict). */
  readonly inbound: ProbeVerdict | undefined;
  /** The first failure, when not ok. */
  readonly reason?: { readonly code: string; readonly message: string };
  /** When the probe started, ms since the epoch. */
  readonly at: number;
  readonly durationMs: number;
}

/** Options of {@link MtlsProbe}. */
export interface MtlsProbeOptions {
  /** The local trust domain. */
  readonly trustDomain: TrustDomain;
  /** The broker's own X509-SVID (from its SPIRE), presented in both roles. */
  readonly svid: SvidSource | X509SvidMaterial;
  readonly bundlesAsSpireHolds: BundlesAsSpireHolds;
  /** The allowlisted peers' probe ports, read at every round. */
  readonly peers: () => readonly ProbePeer[];
  readonly clock: Clock;
  /** Monotonic ms for durations. Default `performance.now`. */
  readonly timer?: () => number;
  readonly metrics?: {
    setProbe(o: { peer: string; success: boolean; durationSeconds: number; reason?: string }): void;
  };
  /** Where the probe port listens; no server without it. */
  readonly listen?: { readonly host: string; readonly port: number };
  /** Period between rounds, ms. Default 30 000. */
  readonly intervalMs?: number;
  /** Deadline of one probe (and of one inbound verdict), ms. Default 5 000. */
  readonly timeoutMs?: number;
  /** Which clients the probe port answers. Default: members of the allowlisted peers' trust domains. */
  readonly authorizeClient?: SpiffeIdMatcher;
  /** Hears every result (logs, status). */
  readonly onResult?: (result: ProbeResult) => void;
  /**
   * The bundles the broker itself holds (federated and local). An inbound client's chain must
   * verify against its trust domain's bundle here BEFORE the SPIRE servers are read: a client that
   * merely claims an allowlisted trust domain (a self-signed certificate) triggers no SPIRE read.
   * The daemon passes its bundle source; without it, only the rate limit bounds SPIRE reads.
   */
  readonly heldBundles?: BundleSource;
  /**
   * SPIRE reads on behalf of inbound clients, as token buckets per source address and overall.
   * Default {@link DEFAULT_INBOUND_SPIRE_READS}. A client past it gets `ERR_MTLS_PROBE_RATE_LIMITED`.
   */
  readonly inboundSpireReads?: { readonly perAddress: BucketRate; readonly overall: BucketRate };
}

/**
 * Default {@link MtlsProbeOptions.inboundSpireReads}: per source address a burst of 6, then one
 * every 5 s (a peer broker probes once per interval, 10–30 s); overall a burst of 60, then 2 a second.
 */
export const DEFAULT_INBOUND_SPIRE_READS = Object.freeze({
  perAddress: Object.freeze({ burst: 6, perSecond: 0.2 }),
  overall: Object.freeze({ burst: 60, perSecond: 2 }),
});

function refusal(code: string, message: string): ProbeVerdict {
  return { ok: false, code, message };
}

function codeOf(err: unknown): { code: string; message: string } {
  if (err instanceof BrokerError) return { code: err.code, message: err.message };
  return { code: 'ERR_MTLS_HANDSHAKE', message: err instanceof Error ? err.message : String(err) };
}

/**
 * The cross-domain mTLS probe: proves, end to end, that this trust domain and each allowlisted
 * peer trust each other's CURRENT SVIDs with the bundles their SPIRE servers actually hold — which
 * catches a rotation that was published but has not reached (or was not accepted by) a SPIRE
 * server yet, before workloads fail.
 *
 * Each broker serves a probe TLS port with its own X509-SVID. Every `intervalMs` (injected clock)
 * it connects to every peer's probe port presenting its SVID and:
 * 1. verifies the peer's SVID against the bundle that EACH local SPIRE server holds for the peer's
 *    trust domain (read back through `bundlesAsSpireHolds`), and its ID against `expectedId`;
 * 2. reads the peer's verdict on our SVID — the peer ran the same check with its SPIRE servers'
 *    copies of our bundle — a single JSON line `{"ok":true,"id":…}` or `{"ok":false,"code","message"}`.
 *
 * Success requires both. Results go to `spiffe_broker_mtls_probe_success{peer}` and the duration
 * gauge, with the failure's code (`ERR_VERIFY_*` for a refused SVID, `ERR_MTLS_*` otherwise).
 */
export class MtlsProbe {
  readonly #o: MtlsProbeOptions;
  readonly #svid: SvidSource;
  readonly #timer: () => number;
  readonly #timeoutMs: number;
  readonly #results = new Map<string, ProbeResult>();
  readonly #limiter: KeyedRateLimiter;
  #server: Server | undefined;
  #unsubscribe: (() => void) | undefined;

  constructor(opts: MtlsProbeOptions) {
    if (typeof opts?.bundlesAsSpireHolds !== 'function')
      throw new TypeError('MtlsProbe: bundlesAsSpireHolds is required');
    if (typeof opts.peers !== 'function') throw new TypeError('MtlsProbe: peers must be a function');
    this.#o = opts;
    this.#svid = toSvidSource(opts.svid);
    this.#timer = opts.timer ?? (() => performance.now());
    this.#timeoutMs = opts.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    const reads = opts.inboundSpireReads ?? DEFAULT_INBOUND_SPIRE_READS;
    this.#limiter = new KeyedRateLimiter({
      perKey: reads.perAddress,
      overall: reads.overall,
      now: () => opts.clock.now(),
    });
  }

  /** The last result per peer trust domain. */
  results(): ProbeResult[] {
    return [...this.#results.values()].sort((a, b) => (a.peer < b.peer ? -1 : 1));
  }

  /** The probe port's bound address while serving (port 0 resolved), else undefined. */
  address(): { host: string; port: number } | undefined {
    const a = this.#server?.address() as AddressInfo | null | undefined;
    return a ? { host: a.address, port: a.port } : undefined;
  }

  /**
   * Judges a presented chain with the bundles every local SPIRE server holds for its trust domain:
   * ok only when each server's copy verifies it and `authorize` accepts the ID.
   */
  async judge(
    chain: readonly Uint8Array[],
    authorize: SpiffeIdMatcher,
    signal?: AbortSignal,
  ): Promise<ProbeVerdict> {
    const claimed = claimedSpiffeId(chain);
    if (chain.length === 0) return refusal('ERR_VERIFY_INPUT', 'no certificate was presented');
    if (!claimed)
      return refusal('ERR_VERIFY_X509_NO_SPIFFE_ID', 'the leaf certificate carries no single SPIFFE ID');
    // The claim is unverified; it only decides whether reading SPIRE is worth it.
    if (!authorize(claimed)) {
      return refusal('ERR_VERIFY_ID_NOT_AUTHORIZED', `${claimed.toString()} is not ${authorize.description}`);
    }
    let held: readonly SpireHeldBundle[];
    try {
      held = await this.#o.bundlesAsSpireHolds(claimed.trustDomain, signal);
    } catch (err) {
      const { message } = codeOf(err);
      return refusal(
        'ERR_MTLS_PROBE_BUNDLES',
        `reading the bundles SPIRE holds for ${claimed.trustDomain.name}: ${message}`,
      );
    }
    if (held.length === 0) {
      return refusal(
        'ERR_MTLS_PROBE_BUNDLES',
        `no SPIRE server reported a bundle for ${claimed.trustDomain.name}`,
      );
    }
    const now = this.#o.clock.now();
    let id = claimed;
    for (const { server, bundle } of held) {
      const r = verifyX509Svid(chain, new BundleSet(bundle ? [bundle] : []), { now, authorize });
      if (!r.ok) return refusal(r.code, `SPIRE server "${server}": ${r.message}`);
      id = r.id;
    }
    return { ok: true, id: id.toString() };
  }

  #authorizeClient(): SpiffeIdMatcher {
    if (this.#o.authorizeClient) return this.#o.authorizeClient;
    const peers = this.#o.peers;
    return Object.assign((id: SpiffeId) => peers().some((p) => id.memberOf(p.trustDomain)), {
      description: 'a member of an allowlisted peer trust domain',
    });
  }

  /** Answers one inbound probe: judges the client, writes the verdict line, closes. */
  async #answer(socket: TLSSocket): Promise<void> {
    socket.setTimeout(this.#timeoutMs, () => socket.destroy());
    socket.on('error', () => undefined);
    const source = socket.remoteAddress ?? 'unknown';
    const verdict = await this.#judgeSafely(() =>
      this.judgeInbound(peerChain(socket), this.#authorizeClient(), source),
    );
    socket.end(`${JSON.stringify(verdict)}\n`);
  }

  async #judgeSafely(judge: () => Promise<ProbeVerdict>): Promise<ProbeVerdict> {
    try {
      return await judge();
    } catch (err) {
      const { code, message } = codeOf(err);
      return refusal(code, message);
    }
  }

  /**
   * Judges an inbound client (issue 16 item 10): first its claimed ID against `authorize` and its
   * chain against the bundle the broker holds for the claimed trust domain (`heldBundles`), then
   * the per-address and overall rate limit — and only then the SPIRE servers ({@link judge}). A
   * client that does not verify costs no SPIRE read.
   */
  async judgeInbound(
    chain: readonly Uint8Array[],
    authorize: SpiffeIdMatcher,
    source: string,
  ): Promise<ProbeVerdict> {
    const claimed = claimedSpiffeId(chain);
    if (chain.length === 0) return refusal('ERR_VERIFY_INPUT', 'no certificate was presented');
    if (!claimed)
      return refusal('ERR_VERIFY_X509_NO_SPIFFE_ID', 'the leaf certificate carries no single SPIFFE ID');
    if (!authorize(claimed)) {
      return refusal('ERR_VERIFY_ID_NOT_AUTHORIZED', `${claimed.toString()} is not ${authorize.description}`);
    }
    const held = this.#o.heldBundles;
    if (held) {
      const r = verifyX509Svid(chain, held, { now: this.#o.clock.now(), authorize });
      if (!r.ok) {
        return refusal(r.code, `not verified with the bundle this broker holds: ${r.message}`);
      }
    }
    if (!this.#limiter.take(source)) {
      return refusal(
        'ERR_MTLS_PROBE_RATE_LIMITED',
        `too many probes from ${source}: the SPIRE servers are read at a bounded rate; try again later`,
      );
    }
    return this.judge(chain, authorize);
  }

  /** Starts the probe port (no-op without `listen`); resolves once it listens. */
  async listen(): Promise<void> {
    if (!this.#o.listen || this.#server) return;
    const material = (): { key: string; cert: string } => {
      const m = this.#svid.current();
      return { key: m.privateKeyPem, cert: m.certChainPem };
    };
    const server = createServer({
      ...material(),
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
      // A connection that does not finish its handshake is not held for Node's default 120 s.
      handshakeTimeout: this.#timeoutMs,
    });
    server.on('secureConnection', (socket: TLSSocket) => void this.#answer(socket));
    server.on('tlsClientError', () => undefined);
    // Certificate rotation: requestCert and rejectUnauthorized are server settings and stay as set.
    this.#unsubscribe = this.#svid.subscribe(() =>
      server.setSecureContext({ ...material(), minVersion: 'TLSv1.2' }),
    );
    server.listen(this.#o.listen.port, this.#o.listen.host);
    await once(server, 'listening');
    this.#server = server;
  }

  /** Stops the probe port. */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Probes one peer: both directions, with the bundles the SPIRE servers hold. Never throws. */
  async probe(peer: ProbePeer, signal?: AbortSignal): Promise<ProbeResult> {
    const at = this.#o.clock.now();
    const started = this.#timer();
    const authorize = peer.expectedId ? matchId(peer.expectedId) : matchMemberOf(peer.trustDomain);
    let outbound: ProbeVerdict | undefined;
    let inbound: ProbeVerdict | undefined;
    let failure: { code: string; message: string } | undefined;
    try {
      const { socket, chain } = await this.#connect(peer, signal);
      try {
        outbound = await this.judge(chain, authorize, signal);
        inbound = await this.#readVerdict(socket, peer);
      } finally {
        socket.destroy();
      }
    } catch (err) {
      if (signal?.aborted) throw err;
      failure = codeOf(err);
    }
    const firstRefusal = [outbound, inbound].find(
      (v): v is Extract<ProbeVerdict, { ok: false }> => v?.ok === false,
    );
    const reason =
      failure ??
      (firstRefusal
        ? {
            code: firstRefusal.code,
            message: `${firstRefusal === outbound ? 'we refused the peer' : 'the peer refused us'}: ${firstRefusal.message}`,
          }
        : undefined);
    const ok = reason === undefined && outbound?.ok === true && inbound?.ok === true;
    const durationMs = Math.max(0, this.#timer() - started);
    const result: ProbeResult = {
      peer: peer.trustDomain.name,
      ok,
      outbound,
      inbound,
      ...(reason ? { reason } : {}),
      at,
      durationMs,
    };
    this.#results.set(result.peer, result);
    this.#o.metrics?.setProbe({
      peer: result.peer,
      success: ok,
      durationSeconds: durationMs / 1000,
      ...(reason ? { reason: reason.code } : {}),
    });
    this.#o.onResult?.(result);
    return result;
  }

  /** Connects with our SVID; resolves with the socket and the chain the peer presented. */
  #connect(peer: ProbePeer, signal?: AbortSignal): Promise<{ socket: TLSSocket; chain: Uint8Array[] }> {
    const where = `probe of ${peer.trustDomain.name} at ${peer.host}:${peer.port}`;
    const svid = this.#svid.current();
    return new Promise((resolve, reject) => {
      // OpenSSL's verification is off: the peer is judged with SPIRE's copies of the bundles instead.
      const socket = tlsConnect({
        key: svid.privateKeyPem,
        cert: svid.certChainPem,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
        host: peer.host,
        port: peer.port,
        ...(peer.servername ? { servername: peer.servername } : {}),
      });
      const fail = (err: BrokerError): void => {
        socket.destroy();
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      };
      const onAbort = (): void => {
        socket.destroy();
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      socket.setTimeout(this.#timeoutMs, () =>
        fail(new MtlsError('ERR_MTLS_TIMEOUT', `${where}: no handshake within ${this.#timeoutMs} ms`)),
      );
      const onError = (err: Error): void => fail(connectError(err, where));
      socket.once('error', onError);
      socket.once('secureConnect', () => {
        signal?.removeEventListener('abort', onAbort);
        socket.off('error', onError);
        // Errors from here on surface as a missing verdict.
        socket.on('error', () => undefined);
        socket.setTimeout(0);
        resolve({ socket, chain: peerChain(socket) });
      });
    });
  }

  /** Reads the peer's one-line JSON verdict on our SVID. */
  #readVerdict(socket: TLSSocket, peer: ProbePeer): Promise<ProbeVerdict> {
    const where = `probe of ${peer.trustDomain.name}`;
    return new Promise((resolve, reject) => {
      let text = '';
      const done = (err: BrokerError | undefined, v?: ProbeVerdict): void => {
        socket.removeAllListeners('data');
        socket.removeAllListeners('end');
        socket.removeAllListeners('close');
        socket.setTimeout(0);
        if (v) resolve(v);
        else reject(err);
      };
      socket.setEncoding('utf8');
      socket.setTimeout(this.#timeoutMs, () =>
        done(new MtlsError('ERR_MTLS_TIMEOUT', `${where}: no verdict within ${this.#timeoutMs} ms`)),
      );
      socket.on('error', () => undefined);
      const finish = (): void => {
        const line = text.split('\n')[0] ?? '';
        if (line === '') {
          done(
            new MtlsError(
              'ERR_MTLS_HANDSHAKE',
              `${where}: the peer closed the connection without a verdict (it may refuse our SVID)`,
            ),
          );
          return;
        }
        const v = parseVerdict(line);
        if (v) done(undefined, v);
        else
          done(
            new MtlsError('ERR_MTLS_PROBE_PROTOCOL', `${where}: the peer's verdict is not a probe verdict`),
          );
      };
      socket.on('data', (chunk: string) => {
        text += chunk;
        if (text.includes('\n')) finish();
        else if (text.length > MAX_VERDICT_BYTES) {
          done(
            new MtlsError(
              'ERR_MTLS_PROBE_PROTOCOL',
              `${where}: verdict longer than ${MAX_VERDICT_BYTES} bytes`,
            ),
          );
        }
      });
      socket.on('end', finish);
      socket.on('close', finish);
    });
  }

  /** Probes every peer once, concurrently. */
  async probeAll(signal?: AbortSignal): Promise<ProbeResult[]> {
    const peers = this.#o.peers();
    const live = new Set(peers.map((p) => p.trustDomain.name));
    for (const td of this.#results.keys()) if (!live.has(td)) this.#results.delete(td);
    return Promise.all(peers.map((p) => this.probe(p, signal)));
  }

  /** Serves the probe port and probes every peer every `intervalMs` until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    await this.listen();
    try {
      while (!signal.aborted) {
        await this.probeAll(signal).catch((err: unknown) => {
          if (!signal.aborted && !isAbort(err, signal)) throw err;
        });
        await this.#o.clock
          .sleep(this.#o.intervalMs ?? DEFAULT_PROBE_INTERVAL_MS, signal)
          .catch(() => undefined);
      }
    } finally {
      await this.close();
    }
  }
}

/** Parses a verdict line; undefined when it is not one. */
export function parseVerdict(line: string): ProbeVerdict | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  const o = v as Record<string, unknown>;
  if (typeof o !== 'object' || o === null) return undefined;
  if (o.ok === true && typeof o.id === 'string') return { ok: true, id: o.id };
  if (o.ok === false && typeof o.code === 'string' && typeof o.message === 'string') {
    return refusal(o.code, o.message);
  }
  return undefined;
}
