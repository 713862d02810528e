import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  status as grpcStatus,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServiceDefinition,
  type sendUnaryData,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { JwtAuthority, TrustBundle } from '../../../core/bundle/trust-bundle.js';
import { SpiffeId } from '../../../core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../../../core/spiffeid/trust-domain.js';
import { SpireError } from '../../../errors.js';
import { type KeyAlgorithm, toPem } from '../../pki/index.js';
import { bundleFromWire, bundleToWire, type FederationRelationship } from '../convert.js';
import { loadSpireApi, type SpireApiDefinition } from '../proto.js';
import { GRPC_STATUS } from '../status.js';
import type { WireServingStatus } from '../wire.js';
import { type AuthorityInfo, EmulatorAuthorities } from './authority.js';
import { EmulatorDatastore, type StoredBundle } from './datastore.js';
import { EmulatorFaults } from './faults.js';
import { type Outcome, SpireSemantics } from './services.js';

/** Options of {@link SpireEmulator}. */
export interface SpireEmulatorOptions {
  /** The emulated server's trust domain. */
  readonly trustDomain: string | TrustDomain;
  /**
   * Unix socket of the server API. Default: `api.sock` in a fresh short temp dir (removed by
   * {@link SpireEmulator.stop}). Keep it under ~100 bytes (Linux limit 108).
   */
  readonly socketPath?: string;
  /**
   * Also serve the API over TCP with mTLS, as SPIRE does on `bind_port`: the emulator presents an
   * X509-SVID for `spiffe://<td>/spire/server` and requires a client X509-SVID signed by its own
   * CA; callers whose ID is in `adminIds` get admin access, others only GetBundle.
   */
  readonly tcp?: { readonly host?: string; readonly port?: number; readonly adminIds?: readonly string[] };
  /** Loaded API definitions to share; loaded on first start when absent. */
  readonly api?: SpireApiDefinition;
  /** Clock, ms since the epoch (certificate validity, JWT key expiry). Default `Date.now`. */
  readonly now?: () => number;
  /** CA / JWT key lifetime, seconds. Default 86400 (SPIRE's `ca_ttl` default). */
  readonly caTtlSeconds?: number;
  /** MintX509SVID's default TTL, seconds. Default 3600 (SPIRE's `default_x509_svid_ttl`). */
  readonly defaultX509SvidTtlSeconds?: number;
  /** CA key type. Default `'ec-p256'` (SPIRE's `ca_key_type` default). */
  readonly keyAlg?: KeyAlgorithm;
  /** What TrustDomain.RefreshBundle does for an existing relationship; default nothing. */
  readonly refreshBundle?: (trustDomain: string) => Promise<void>;
  /** Waits for injected delays; default a real timer. */
  readonly sleep?: (ms: number) => Promise<void>;
}

/** Where a started emulator listens. */
export interface EmulatorEndpoints {
  readonly socketPath: string;
  /** `unix://<socketPath>`, for {@link SpireServerClient}. */
  readonly address: string;
  /** `dns:///<host>:<port>` when TCP is enabled. */
  readonly tcpAddress?: string;
  readonly tcpPort?: number;
}

/** One call the emulator received (for assertions). */
export interface EmulatorCall {
  /** Full method path, `/spire.api.server.bundle.v1.Bundle/GetBundle`. */
  readonly path: string;
  /** Method name, `GetBundle`. */
  readonly method: string;
  readonly transport: 'uds' | 'tcp';
  /** The caller's SPIFFE ID on TCP, when it presented one. */
  readonly callerId?: string;
}

/** An X509-SVID with key and trust bundle, as PEM (what `spire-server x509 mint -write` gives). */
export interface EmulatorSvid {
  readonly id: SpiffeId;
  readonly certChainPem: string;
  readonly privateKeyPem: string;
  /** The emulator's X.509 authorities. */
  readonly bundlePem: string;
}

type Policy = 'any' | 'local_admin' | 'local_admin_agent' | 'agent' | 'downstream';

/**
 * Authorization per method, SPIRE's default policy (`pkg/server/authpolicy/policy_data.json`).
 * The emulator has no agents or downstream servers, so those methods are always denied.
 */
const POLICY: Record<string, Policy> = {
  GetBundle: 'any',
  GetFederatedBundle: 'local_admin_agent',
  PublishJWTAuthority: 'downstream',
  PublishWITAuthority: 'downstream',
  BatchNewX509SVID: 'agent',
  NewJWTSVID: 'agent',
  BatchNewWITSVID: 'agent',
  NewDownstreamX509CA: 'downstream',
};

const SERVER_SVID_TTL_SECONDS = 24 * 3600;

/**
 * Server credentials whose trust bundle and certificate can change while listening (SPIRE trusts
 * its current bundle for client SVIDs and rotates its own SVID): grpc-js applies each update to
 * new connections through `setSecureContext`.
 */
class RotatingServerCredentials extends ServerCredentials {
  constructor(context: { ca: Buffer; cert: Buffer; key: Buffer }) {
    // Client certificates are requested and must chain to the bundle (see docs/spire-emulator.md).
    super({ requestCert: true, rejectUnauthorized: true }, context);
  }

  update(context: { ca: Buffer; cert: Buffer; key: Buffer }): void {
    this.updateSecureContextOptions(context);
  }

  override _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}

/** Lock-free shortcut to the TrustDomain of an option. */
function toTrustDomain(v: string | TrustDomain): TrustDomain {
  return typeof v === 'string' ? TrustDomain.parse(v) : v;
}

function callerIdOf(call: ServerUnaryCall<unknown, unknown>): string | undefined {
  const san = call.getAuthContext?.()?.sslPeerCertificate?.subjectaltname;
  if (!san) return undefined;
  const uris = san
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
  return uris.length === 1 ? uris[0] : undefined;
}

/**
 * An in-process SPIRE server API for tests, the lab, and users' own tests: the Bundle,
 * TrustDomain, SVID and Health services over a real unix socket (and optionally mTLS TCP), with
 * SPIRE v1.15's semantics — see docs/spire-emulator.md for what differs from the real server.
 *
 * Nothing listens until {@link SpireEmulator.start} (or {@link SpireEmulator.run}).
 *
 * @example
 * const emu = new SpireEmulator({ trustDomain: 'example.org' });
 * const { address } = await emu.start();
 * const client = new SpireServerClient({ address });
 * await emu.prepareX509Authority();  // own bundle sequence +1
 * await emu.stop();
 */
export class SpireEmulator {
  readonly trustDomain: TrustDomain;
  /** Fault injection (fail or delay the next calls). */
  readonly faults = new EmulatorFaults();
  /** The in-memory datastore (direct access for test setup). */
  readonly datastore = new EmulatorDatastore();
  readonly #opts: SpireEmulatorOptions;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #calls: EmulatorCall[] = [];
  #api: SpireApiDefinition | undefined;
  #authorities: EmulatorAuthorities | undefined;
  #semantics: SpireSemantics | undefined;
  #servers: Server[] = [];
  #endpoints: EmulatorEndpoints | undefined;
  #tempDir: string | undefined;
  #socketPath: string | undefined;
  #tcpPort: number | undefined;
  #serving: WireServingStatus | undefined;
  #tcpCredentials: RotatingServerCredentials | undefined;

  constructor(options: SpireEmulatorOptions) {
    this.trustDomain = toTrustDomain(options.trustDomain);
    this.#opts = options;
    this.#now = options.now ?? Date.now;
    this.#sleep = options.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** Calls received so far, oldest first. */
  get calls(): readonly EmulatorCall[] {
    return this.#calls;
  }

  /** Forgets the recorded calls. */
  clearCalls(): void {
    this.#calls.length = 0;
  }

  /** Where it listens; undefined while down. */
  get endpoints(): EmulatorEndpoints | undefined {
    return this.#endpoints;
  }

  get #auth(): EmulatorAuthorities {
    if (!this.#authorities) throw new TypeError('SpireEmulator: call start() first');
    return this.#authorities;
  }

  async #init(): Promise<void> {
    if (this.#authorities) return;
    this.#api = this.#opts.api ?? loadSpireApi();
    this.#authorities = await EmulatorAuthorities.create({
      trustDomain: this.trustDomain,
      now: this.#now,
      caTtlSeconds: this.#opts.caTtlSeconds ?? 86_400,
      defaultX509SvidTtlSeconds: this.#opts.defaultX509SvidTtlSeconds ?? 3600,
      keyAlg: this.#opts.keyAlg ?? 'ec-p256',
    });
    // SPIRE creates its own bundle at startup; v1.15 reports sequence_number 1 for it.
    this.datastore.createBundle({
      trustDomain: this.trustDomain.name,
      x509: this.#authorities.bundleX509(),
      jwt: this.#authorities.bundleJwt(),
      refreshHint: 0n,
      sequence: 1n,
    });
    this.#remember();
    const ctx = {
      trustDomain: this.trustDomain.name,
      datastore: this.datastore,
      authorities: () => this.#auth,
      servingOverride: () => this.#serving,
      ...(this.#opts.refreshBundle ? { refreshBundle: this.#opts.refreshBundle } : {}),
    };
    this.#semantics = new SpireSemantics(ctx);
  }

  /** Creates the CA (first time), binds the unix socket (and TCP), and returns the endpoints. */
  async start(): Promise<EmulatorEndpoints> {
    await this.#init();
    if (this.#endpoints) return this.#endpoints;
    if (this.#socketPath === undefined) {
      if (this.#opts.socketPath !== undefined) {
        this.#socketPath = this.#opts.socketPath;
      } else {
        this.#tempDir = await mkdtemp(join(tmpdir(), 'spemu-'));
        this.#socketPath = join(this.#tempDir, 'api.sock');
      }
    }
    return this.up();
  }

  /**
   * (Re)binds the listeners on the same socket path and TCP port after {@link SpireEmulator.down};
   * state (bundles, authorities, relationships) is kept.
   */
  async up(): Promise<EmulatorEndpoints> {
    if (this.#endpoints) return this.#endpoints;
    if (this.#socketPath === undefined) return this.start();
    const socketPath = this.#socketPath;
    // As SPIRE: parent dir 0750, stale socket removed, socket 0770.
    await mkdir(dirname(socketPath), { recursive: true, mode: 0o750 });
    await rm(socketPath, { force: true });
    const uds = new Server();
    this.#addServices(uds, 'uds');
    await bind(uds, `unix:${socketPath}`, ServerCredentials.createInsecure());
    await chmod(socketPath, 0o770);
    this.#servers.push(uds);
    let endpoints: EmulatorEndpoints = { socketPath, address: `unix://${socketPath}` };
    if (this.#opts.tcp) {
      const host = this.#opts.tcp.host ?? '127.0.0.1';
      const creds = new RotatingServerCredentials(await this.#tlsContext());
      this.#tcpCredentials = creds;
      const tcp = new Server();
      this.#addServices(tcp, 'tcp');
      const port = await bind(tcp, `${host}:${this.#tcpPort ?? this.#opts.tcp.port ?? 0}`, creds);
      this.#tcpPort = port;
      this.#servers.push(tcp);
      endpoints = { ...endpoints, tcpAddress: `dns:///${host}:${port}`, tcpPort: port };
    }
    this.#endpoints = endpoints;
    return endpoints;
  }

  /** The TCP listener's TLS material: a fresh server SVID from the active CA, the current bundle. */
  async #tlsContext(): Promise<{ ca: Buffer; cert: Buffer; key: Buffer }> {
    const svid = await this.#auth.issueSvid(
      SpiffeId.fromPath(this.trustDomain, '/spire/server'),
      SERVER_SVID_TTL_SECONDS,
    );
    return {
      ca: Buffer.from(this.trustBundlePem()),
      cert: Buffer.from(svid.pem),
      key: Buffer.from(svid.privateKeyPem!),
    };
  }

  /** Pushes the current bundle (and a new server SVID) to the TCP listener, if any. */
  async #refreshTls(): Promise<void> {
    if (this.#tcpCredentials && this.#endpoints?.tcpAddress)
      this.#tcpCredentials.update(await this.#tlsContext());
  }

  /** Drops the listeners at once, failing in-flight calls (a crash, for outage tests). */
  async down(): Promise<void> {
    const servers = this.#servers;
    this.#servers = [];
    this.#endpoints = undefined;
    this.#tcpCredentials = undefined;
    for (const s of servers) s.forceShutdown();
    if (this.#socketPath) await rm(this.#socketPath, { force: true });
  }

  /** Stops listening (gracefully, 2 s at most) and removes the temp dir it created. */
  async stop(): Promise<void> {
    const servers = this.#servers;
    this.#servers = [];
    this.#endpoints = undefined;
    this.#tcpCredentials = undefined;
    await Promise.all(servers.map((s) => shutdown(s, 2000)));
    if (this.#socketPath) await rm(this.#socketPath, { force: true });
    if (this.#tempDir) {
      await rm(this.#tempDir, { recursive: true, force: true });
      this.#tempDir = undefined;
      this.#socketPath = undefined;
    }
  }

  /** Starts, serves until `signal` aborts, then stops. */
  async run(signal: AbortSignal): Promise<void> {
    await this.start();
    try {
      if (!signal.aborted) {
        await new Promise<void>((resolve) =>
          signal.addEventListener('abort', () => resolve(), { once: true }),
        );
      }
    } finally {
      await this.stop();
    }
  }

  // ---- own bundle and authorities ----

  /** The server's own bundle (what GetBundle returns), as a {@link TrustBundle}. */
  bundle(): TrustBundle {
    const b = this.datastore.fetchBundle(this.trustDomain.name);
    if (!b) throw new TypeError('SpireEmulator: the own bundle is not stored (start() first)');
    return bundleFromWire(storedToWire(b));
  }

  /** The own bundle's X.509 authorities as PEM (the trust bundle a TCP client needs). */
  trustBundlePem(): string {
    const b = this.datastore.fetchBundle(this.trustDomain.name);
    return (b?.x509 ?? []).map((x) => toPem(x.der)).join('');
  }

  x509Authorities(): AuthorityInfo[] {
    return this.#auth.x509Authorities();
  }

  jwtAuthorities(): AuthorityInfo[] {
    return this.#auth.jwtAuthorities();
  }

  /** `localauthority x509 prepare`: a new CA joins the bundle (sequence + 1). */
  async prepareX509Authority(): Promise<AuthorityInfo> {
    const { info, der } = await this.#auth.prepareX509();
    this.#remember();
    this.datastore.appendBundle({ ...this.#emptyOwn(), x509: [{ der, tainted: false }] });
    await this.#refreshTls();
    return info;
  }

  /**
   * `localauthority x509 activate`: the prepared CA signs from now on (bundle unchanged); the TCP
   * listener gets a server SVID from it.
   */
  async activateX509Authority(): Promise<AuthorityInfo> {
    const info = this.#auth.activateX509();
    await this.#refreshTls();
    return info;
  }

  /** `localauthority jwt prepare`: a new JWT key joins the bundle (sequence + 1). */
  prepareJwtAuthority(): AuthorityInfo {
    const { info, key } = this.#auth.prepareJwt();
    this.#remember();
    this.datastore.appendBundle({ ...this.#emptyOwn(), jwt: [key] });
    return info;
  }

  /** `localauthority jwt activate`. */
  activateJwtAuthority(): AuthorityInfo {
    return this.#auth.activateJwt();
  }

  /** `localauthority {x509,jwt} taint`: flags an old authority tainted in the bundle (sequence + 1). */
  async taintAuthority(kind: 'x509' | 'jwt', authorityId: string): Promise<void> {
    this.#auth.taint(kind, authorityId);
    this.#syncOwnBundle();
    await this.#refreshTls();
  }

  /** `localauthority {x509,jwt} revoke`: removes an old authority from the bundle (sequence + 1). */
  async revokeAuthority(kind: 'x509' | 'jwt', authorityId: string): Promise<void> {
    this.#auth.revoke(kind, authorityId);
    this.#syncOwnBundle();
    await this.#refreshTls();
  }

  /** AppendBundle on the own bundle: extra authorities (sequence + 1 when something is new). */
  async appendAuthorities(add: {
    x509?: readonly Uint8Array[];
    jwt?: readonly JwtAuthority[];
  }): Promise<void> {
    this.datastore.appendBundle({
      ...this.#emptyOwn(),
      x509: (add.x509 ?? []).map((der) => ({ der, tainted: false })),
      jwt: (add.jwt ?? []).map((k) => ({
        spki: k.spki,
        kid: k.kid,
        notAfter: BigInt(k.expiresAt),
        tainted: false,
      })),
    });
    await this.#refreshTls();
  }

  #emptyOwn(): StoredBundle {
    return { trustDomain: this.trustDomain.name, x509: [], jwt: [], refreshHint: 0n, sequence: 0n };
  }

  /**
   * Re-derives the own bundle's authority entries from the authorities' state (taint flags,
   * revocations), keeping storage order and any authorities appended from elsewhere.
   */
  #syncOwnBundle(): void {
    const x509 = new Map(this.#auth.bundleX509().map((a) => [b64(a.der), a]));
    const jwt = new Map(this.#auth.bundleJwt().map((k) => [k.kid, k]));
    this.datastore.editBundle(this.trustDomain.name, (b) => ({
      ...b,
      x509: b.x509.flatMap((e) => {
        const key = b64(e.der);
        if (!this.#ownDers.has(key)) return [e];
        const a = x509.get(key);
        return a ? [a] : [];
      }),
      jwt: b.jwt.flatMap((e) => {
        if (!this.#ownKids.has(e.kid)) return [e];
        const a = jwt.get(e.kid);
        return a ? [a] : [];
      }),
    }));
  }

  /** Every authority the emulator's own CA ever produced (DER base64 / kid). */
  readonly #ownDers = new Set<string>();
  readonly #ownKids = new Set<string>();

  #remember(): void {
    for (const a of this.#auth.bundleX509()) this.#ownDers.add(b64(a.der));
    for (const k of this.#auth.bundleJwt()) this.#ownKids.add(k.kid);
  }

  /**
   * Issues an X509-SVID signed by the active CA (`spire-server x509 mint`), e.g. an admin
   * identity for TCP tests: put its ID in `tcp.adminIds`.
   */
  async mintX509Svid(id: string | SpiffeId, ttlSeconds = 3600): Promise<EmulatorSvid> {
    const spiffeId = typeof id === 'string' ? SpiffeId.parse(id) : id;
    const svid = await this.#auth.issueSvid(spiffeId, ttlSeconds);
    return {
      id: spiffeId,
      certChainPem: svid.pem,
      privateKeyPem: svid.privateKeyPem!,
      bundlePem: this.trustBundlePem(),
    };
  }

  // ---- federated state ----

  /** Stores a federated bundle directly (like `bundle set`). */
  setFederatedBundle(bundle: TrustBundle): void {
    if (bundle.trustDomain.equals(this.trustDomain)) {
      throw new TypeError('setFederatedBundle: that is the emulator’s own trust domain');
    }
    const w = bundleToWire(bundle);
    this.datastore.setBundle({
      trustDomain: w.trust_domain,
      x509: w.x509_authorities.map((x) => ({ der: x.asn1, tainted: false })),
      jwt: w.jwt_authorities.map((k) => ({
        spki: k.public_key,
        kid: k.key_id,
        notAfter: BigInt(k.expires_at),
        tainted: false,
      })),
      refreshHint: BigInt(w.refresh_hint),
      sequence: BigInt(w.sequence_number),
    });
  }

  /** The stored bundle of another trust domain, if any. */
  federatedBundle(trustDomain: string | TrustDomain): TrustBundle | undefined {
    const b = this.datastore.fetchBundle(toTrustDomain(trustDomain).name);
    return b ? bundleFromWire(storedToWire(b)) : undefined;
  }

  /** Stores a federation relationship directly (its bundle too, when given). */
  addFederationRelationship(rel: FederationRelationship): void {
    if (!rel.profile) throw new TypeError('addFederationRelationship: a profile is required');
    if (rel.trustDomainBundle) this.setFederatedBundle(rel.trustDomainBundle);
    const r = this.datastore.createRelationship({
      trustDomain: rel.trustDomain.name,
      bundleEndpointUrl: rel.bundleEndpointUrl,
      profile:
        rel.profile.type === 'https_web'
          ? { type: 'https_web' }
          : { type: 'https_spiffe', endpointSpiffeId: rel.profile.endpointSpiffeId.toString() },
    });
    if (r === 'already-exists')
      throw new TypeError(`relationship with ${rel.trustDomain.name} already exists`);
  }

  /** Simulates `n` registration entries federating with `trustDomain` (RESTRICT deletes fail). */
  setFederatingEntries(trustDomain: string, n: number): void {
    this.datastore.setFederatingEntries(toTrustDomain(trustDomain).name, n);
  }

  /** Forces the health answer (`undefined` = SPIRE's rule: SERVING once the own bundle exists). */
  setServing(status: WireServingStatus | undefined): void {
    this.#serving = status;
  }

  // ---- gRPC glue ----

  #addServices(server: Server, transport: 'uds' | 'tcp'): void {
    const api = this.#api!;
    const defs: [ServiceDefinition, boolean][] = [
      [api.bundle, true],
      [api.trustDomain, true],
      [api.svid, true],
      // SPIRE registers Health on the unix socket only.
      [api.health, transport === 'uds'],
    ];
    for (const [def, include] of defs) {
      if (!include) continue;
      const impl: UntypedServiceImplementation = {};
      for (const [name, method] of Object.entries(def)) {
        if (method.requestStream || method.responseStream) continue;
        impl[name] = (call: ServerUnaryCall<unknown, unknown>, cb: sendUnaryData<unknown>) => {
          this.#handle(name, method.path, transport, call).then(
            (r) => (r.ok ? cb(null, r.value) : cb({ code: GRPC_STATUS[r.code], details: r.message })),
            (err: unknown) =>
              cb({
                code: grpcStatus.INTERNAL,
                details: `emulator failure: ${err instanceof Error ? err.message : String(err)}`,
              }),
          );
        };
      }
      server.addService(def, impl);
    }
  }

  async #handle(
    name: string,
    path: string,
    transport: 'uds' | 'tcp',
    call: ServerUnaryCall<unknown, unknown>,
  ): Promise<Outcome<unknown>> {
    const callerId = transport === 'tcp' ? callerIdOf(call) : undefined;
    this.#calls.push({ path, method: name, transport, ...(callerId ? { callerId } : {}) });
    const fault = this.faults.take(path);
    if (fault.delayMs > 0) await this.#sleep(fault.delayMs);
    if (fault.fail) return { ok: false, code: fault.fail.code, message: fault.fail.message };
    if (fault.response !== undefined) return { ok: true, value: fault.response };
    if (!this.#authorized(name, transport, callerId)) {
      return { ok: false, code: 'PERMISSION_DENIED', message: `authorization denied for method ${path}` };
    }
    const sem = this.#semantics!;
    const fn = (
      sem as unknown as Record<
        string,
        ((req: unknown) => Outcome<unknown> | Promise<Outcome<unknown>>) | undefined
      >
    )[name];
    if (typeof fn !== 'function') {
      return {
        ok: false,
        code: 'UNIMPLEMENTED',
        message: `${name} is not implemented by the SPIRE emulator`,
      };
    }
    const out = await fn.call(sem, call.request);
    if (name === 'AppendBundle' && out.ok) await this.#refreshTls();
    return out;
  }

  #authorized(method: string, transport: 'uds' | 'tcp', callerId: string | undefined): boolean {
    const policy = POLICY[method] ?? 'local_admin';
    if (policy === 'any') return true;
    if (policy === 'agent' || policy === 'downstream') return false;
    if (transport === 'uds') return true;
    return callerId !== undefined && (this.#opts.tcp?.adminIds ?? []).includes(callerId);
  }
}

function b64(der: Uint8Array): string {
  return Buffer.from(der).toString('base64');
}

function storedToWire(b: StoredBundle) {
  return {
    trust_domain: b.trustDomain,
    x509_authorities: b.x509.map((x) => ({ asn1: x.der, tainted: x.tainted })),
    jwt_authorities: b.jwt.map((k) => ({
      public_key: k.spki,
      key_id: k.kid,
      expires_at: k.notAfter.toString(),
      tainted: k.tainted,
    })),
    refresh_hint: b.refreshHint.toString(),
    sequence_number: b.sequence.toString(),
    wit_authorities: [],
  };
}

function bind(server: Server, address: string, creds: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, creds, (err, port) => {
      if (err) {
        reject(
          new SpireError('ERR_SPIRE_ADDRESS', `SPIRE emulator cannot listen on ${address}: ${err.message}`, {
            cause: err,
          }),
        );
      } else resolve(port);
    });
  });
}

function shutdown(server: Server, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, timeoutMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
