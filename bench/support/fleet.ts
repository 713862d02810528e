/**
 * A synthetic fleet of peer trust domains behind ONE https_web bundle endpoint server on
 * 127.0.0.1: peer `i` is `p<i>.fleet.test`, served at `/p<i>` with its own X.509 authority and JWT
 * key, a strong ETag, and — when `longPoll` is on — the broker's change notification (a request
 * with the current ETag and `Prefer: wait=N` is held until that peer rotates, then answered 200
 * with `Preference-Applied`). Used by the scale benchmark.
 * @module
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { evaluateIfNoneMatch, preferredWaitSeconds } from '../../src/adapters/endpoint/conditional.js';
import { createCa } from '../../src/adapters/pki/index.js';
import { marshalBundle } from '../../src/core/bundle/codec.js';
import { jwtAuthority, TrustBundle } from '../../src/core/bundle/trust-bundle.js';
import { TrustDomain } from '../../src/core/spiffeid/trust-domain.js';
import { keyPairSync } from '../../src/platform/keygen.js';
import { createWebServerCert } from './web-cert.js';

/** Options of {@link BundleFleet.start}. */
export interface FleetOptions {
  /** Number of peer trust domains. */
  readonly count: number;
  /** `spiffe_refresh_hint` of every served bundle, seconds. */
  readonly hintSeconds: number;
  /** Hold conditional requests that carry `Prefer: wait` (change notification). Default false. */
  readonly longPoll?: boolean;
  /**
   * Give every peer its own host name (`pNNNNN.fleet.test`, one wildcard certificate), as a real
   * fleet has one endpoint per peer: a client's per-host state (TLS sessions, kept-alive
   * connections) then costs what it would. The names do not resolve: clients map
   * {@link FLEET_DOMAIN} to 127.0.0.1 themselves. Default false: every URL on 127.0.0.1.
   */
  readonly hostPerPeer?: boolean;
}

/** The parent domain of per-peer host names; clients dial 127.0.0.1 for any name under it. */
export const FLEET_DOMAIN = 'fleet.test';

interface Peer {
  readonly td: TrustDomain;
  bundle: TrustBundle;
  body: Buffer;
  etag: string;
  readonly held: Set<(changed: boolean) => void>;
}

/** Request counters of the fleet server. */
export interface FleetStats {
  requests: number;
  full: number;
  notModified: number;
  held: number;
  connections: number;
  /** TLS connections that resumed a session. */
  resumed: number;
}

function peerName(i: number): string {
  return `p${String(i).padStart(5, '0')}.fleet.test`;
}

/** One HTTPS server serving the bundles of `count` peer trust domains. */
export class BundleFleet {
  readonly caPem: string;
  readonly stats: FleetStats = { requests: 0, full: 0, notModified: 0, held: 0, connections: 0, resumed: 0 };
  longPoll: boolean;
  readonly #peers: Peer[];
  readonly #byPath = new Map<string, Peer>();
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #port = 0;

  readonly #hostPerPeer: boolean;

  private constructor(caPem: string, server: Server, peers: Peer[], longPoll: boolean, hostPerPeer: boolean) {
    this.caPem = caPem;
    this.#hostPerPeer = hostPerPeer;
    this.#server = server;
    this.#peers = peers;
    this.longPoll = longPoll;
    for (const p of peers) this.#byPath.set(`/${p.td.name.split('.')[0]}`, p);
  }

  /** Generates the peers' authorities (about 5 ms each) and starts listening on 127.0.0.1. */
  static async start(opts: FleetOptions): Promise<BundleFleet> {
    const web = await createWebServerCert(opts.hostPerPeer ? { dnsNames: [`*.${FLEET_DOMAIN}`] } : {});
    const notBefore = new Date(Date.now() - 3600_000);
    const notAfter = new Date(Date.now() + 7 * 86_400_000);
    const peers: Peer[] = [];
    for (let start = 0; start < opts.count; start += 50) {
      const chunk = await Promise.all(
        Array.from({ length: Math.min(50, opts.count - start) }, async (_, k) => {
          const td = TrustDomain.parse(peerName(start + k));
          const ca = await createCa({ trustDomain: td, notBefore, notAfter });
          const bundle = TrustBundle.create({
            trustDomain: td,
            x509Authorities: [ca.der],
            jwtAuthorities: [newJwtKey(td, 1)],
            refreshHint: opts.hintSeconds,
            sequence: 1n,
          });
          const p: Peer = { td, bundle, body: Buffer.alloc(0), etag: '', held: new Set() };
          setDocument(p, bundle);
          return p;
        }),
      );
      peers.push(...chunk);
    }
    const server = createServer({ cert: web.certPem, key: web.keyPem, minVersion: 'TLSv1.2' });
    // Idle connections stay open, as on SPIRE's bundle endpoint: v1.15.3 still served a
    // connection left idle for 90 s (measured with the harness, docs/benchmarks.md), which a
    // client polling at hint/4 (75 s) can reuse. Node's own defaults close idle connections
    // within 60 s (headersTimeout) or 5 s (keepAliveTimeout).
    server.keepAliveTimeout = 0;
    server.requestTimeout = 0;
    server.headersTimeout = 0;
    const fleet = new BundleFleet(
      web.caPem,
      server,
      peers,
      opts.longPoll ?? false,
      opts.hostPerPeer ?? false,
    );
    server.on('connection', (s: Socket) => {
      fleet.stats.connections++;
      fleet.#sockets.add(s);
      s.on('close', () => fleet.#sockets.delete(s));
    });
    server.on('tlsClientError', () => undefined);
    server.on('secureConnection', (s: TLSSocket) => {
      if (s.isSessionReused()) fleet.stats.resumed++;
    });
    server.on('request', (req, res) => fleet.#handle(req, res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    fleet.#port = (server.address() as AddressInfo).port;
    return fleet;
  }

  get count(): number {
    return this.#peers.length;
  }

  trustDomain(i: number): string {
    return this.#peers[i]!.td.name;
  }

  url(i: number): string {
    const name = this.#peers[i]!.td.name.split('.')[0];
    const host = this.#hostPerPeer ? `${name}.${FLEET_DOMAIN}` : '127.0.0.1';
    return `https://${host}:${this.#port}/${name}`;
  }

  /** The current ETag of peer `i`. */
  etagOf(i: number): string {
    return this.#peers[i]!.etag;
  }

  bundle(i: number): TrustBundle {
    return this.#peers[i]!.bundle;
  }

  /** Requests held right now. */
  heldNow(): number {
    let n = 0;
    for (const p of this.#peers) n += p.held.size;
    return n;
  }

  /**
   * Rotates the peers at `indices` all at once: each gets a new JWT key (the oldest of three is
   * dropped) and sequence + 1; their held requests are answered with the new document.
   */
  rotate(indices: readonly number[]): void {
    for (const i of indices) {
      const p = this.#peers[i]!;
      const seq = p.bundle.sequence + 1n;
      const jwt = [...p.bundle.jwtAuthorities.values(), newJwtKey(p.td, Number(seq))].slice(-3);
      setDocument(
        p,
        TrustBundle.create({
          trustDomain: p.td,
          x509Authorities: p.bundle.x509Authorities,
          jwtAuthorities: jwt,
          refreshHint: p.bundle.refreshHint,
          sequence: seq,
        }),
      );
    }
    for (const i of indices) {
      const p = this.#peers[i]!;
      for (const wake of [...p.held]) wake(true);
    }
  }

  /** A rolled-back copy of `bundle`: sequence `to`, one fresh JWT key (an attacker's), same CAs. */
  static rolledBack(bundle: TrustBundle, to: bigint): TrustBundle {
    return TrustBundle.create({
      trustDomain: bundle.trustDomain,
      x509Authorities: bundle.x509Authorities,
      jwtAuthorities: [newJwtKey(bundle.trustDomain, -1)],
      refreshHint: bundle.refreshHint,
      sequence: to,
    });
  }

  /** Serves `bundle` as peer `i`'s document from now on (e.g. a rolled-back one), waking held requests. */
  serve(i: number, bundle: TrustBundle): void {
    const p = this.#peers[i]!;
    setDocument(p, bundle);
    for (const wake of [...p.held]) wake(true);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    this.stats.requests++;
    const p = this.#byPath.get(req.url ?? '');
    if (!p || req.method !== 'GET') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('404 page not found\n');
      return;
    }
    const inm = evaluateIfNoneMatch(req.headers['if-none-match'], p.etag);
    if (inm !== 'match') {
      this.stats.full++;
      res.writeHead(200, {
        'content-type': 'application/json',
        etag: p.etag,
        'cache-control': `max-age=${p.bundle.refreshHint}`,
        'content-length': String(p.body.length),
      });
      res.end(p.body);
      return;
    }
    const wait = this.longPoll ? preferredWaitSeconds(req.headers.prefer, 60) : undefined;
    if (wait === undefined || wait <= 0) {
      this.stats.notModified++;
      res.writeHead(304, { etag: p.etag }).end();
      return;
    }
    this.stats.held++;
    const answer = (changed: boolean): void => {
      clearTimeout(timer);
      p.held.delete(answer);
      res.off('close', gone);
      if (changed) {
        res.writeHead(200, {
          'content-type': 'application/json',
          etag: p.etag,
          'preference-applied': `wait=${wait}`,
          'content-length': String(p.body.length),
        });
        res.end(p.body);
      } else {
        res.writeHead(304, { etag: p.etag, 'preference-applied': `wait=${wait}` }).end();
      }
    };
    const gone = (): void => {
      clearTimeout(timer);
      p.held.delete(answer);
    };
    const timer = setTimeout(() => answer(false), wait * 1000);
    p.held.add(answer);
    res.once('close', gone);
  }

  async stop(): Promise<void> {
    for (const p of this.#peers) p.held.clear();
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}

function newJwtKey(td: TrustDomain, n: number) {
  const { publicKey } = keyPairSync('ec', { namedCurve: 'P-256' });
  return jwtAuthority(`${td.name.split('.')[0]}-k${n}`, publicKey);
}

function setDocument(p: Peer, bundle: TrustBundle): void {
  p.bundle = bundle;
  p.body = Buffer.from(marshalBundle(bundle), 'utf8');
  p.etag = `"${p.td.name.split('.')[0]}-${bundle.sequence}"`;
}
