import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCa, createX509Svid, type IssuedCert } from '../adapters/pki/certificates.js';
import { SpireEmulator } from '../adapters/spire/emulator/emulator.js';
import { marshalBundle } from '../core/bundle/codec.js';
import { discoveryUrl } from '../core/bundle/oidc.js';
import { OUTPUT_FORMATS, type OutputFormat, PER_TRUST_DOMAIN_FORMATS } from '../core/bundle/outputs.js';
import type { TrustBundle } from '../core/bundle/trust-bundle.js';
import { SpiffeId } from '../core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../core/spiffeid/trust-domain.js';
import { BrokerDaemon, type DaemonDeps } from '../daemon/daemon.js';
import { parseBrokerConfig } from '../engine/config/broker-config.js';
import { outputFileName } from '../engine/publish/file-output.js';
import type { Logger } from '../platform/logger.js';
import { nullLogger } from '../platform/logger.js';
import { freePort, RealSpireServer, type SpireServerRunner } from './spire-process.js';

/** One trust domain of the lab: its SPIRE server, its broker and its files. */
export interface LabDomain {
  readonly name: string;
  readonly spire: LabSpire;
  /** The domain's broker (replaced by {@link Lab.restartBroker}). */
  daemon: BrokerDaemon;
  readonly dir: string;
  readonly allowlistFile: string;
  readonly configFile: string;
  /** `https://127.0.0.1:<port>/`, once listening. */
  endpointUrl: string;
  readonly endpointSpiffeId: string;
  /** The broker's cross-domain mTLS probe port. */
  readonly probePort: number;
  /** The broker's hub outputs (every one the lab can run: files, relay, OIDC discovery). */
  readonly outputs: LabOutputs;
}

/** Where a lab broker's hub outputs are (docs/configuration.md#outputs). */
export interface LabOutputs {
  /** `outputs.files.dir`: every format, the local trust domain left out (`includeLocal: false`). */
  readonly dir: string;
  /**
   * Each format's file, by format; per-trust-domain formats as a pattern with `<trust domain>` in
   * place of the name (as `/v1/status` lists them).
   */
  readonly files: Readonly<Record<OutputFormat, string>>;
  /** `oidc.issuer`: `https://localhost:<port>` (SPIRE's `jwt_issuer` when the lab runs real SPIRE). */
  readonly oidcIssuer: string;
  /** `<oidcIssuer>/.well-known/openid-configuration`. */
  readonly oidcDiscovery: string;
  /** PEM of the lab's CA that issued the OIDC listener's certificate (DNS name `localhost`). */
  readonly oidcCa: string;
}

/** The SPIRE server of a lab trust domain: the in-process emulator or a real spire-server. */
export interface LabSpire {
  readonly kind: 'real' | 'emulator';
  /** The in-process emulator, when `kind` is `emulator` (fault injection, direct state access). */
  readonly emulator?: SpireEmulator;
  /** `unix:///…/api.sock` */
  readonly address: string;
  readonly socketPath: string;
  /** The server's own bundle right now (GetBundle through its API). */
  bundle(): Promise<TrustBundle>;
  /** Federated bundles it holds, by trust domain. */
  federatedBundles(): Promise<Map<string, TrustBundle>>;
  /** Adds a new JWT authority to its own bundle (a rotation peers must see); returns its key ID. */
  rotateJwtAuthority(): Promise<string>;
  stop(): Promise<void>;
}

export interface LabOptions {
  /** Default three: alpha.lab, beta.lab, gamma.lab. */
  readonly trustDomains?: readonly string[];
  /** `auto` (default): real spire-server when `spireServerBin` runs, else the emulator. */
  readonly spire?: 'auto' | 'real' | 'emulator';
  readonly spireServerBin?: string;
  /** Parent directory for the lab's temp dir. Default the OS temp dir. */
  readonly baseDir?: string;
  readonly logger?: Logger;
  /** Per-domain logger factory (the daemon's log lines). */
  readonly domainLogger?: (trustDomain: string) => Logger;
  /** Extra daemon dependencies (tests). */
  readonly daemonDeps?: Partial<DaemonDeps>;
  /** `spiffe_refresh_hint` the lab's brokers publish (a duration). Default "60s". */
  readonly publishedRefreshHint?: string;
}

function allowlistYaml(
  self: string,
  peers: readonly {
    name: string;
    url: string;
    id: string;
    bootstrap: string;
    probePort?: number;
    oidcIssuer?: string;
  }[],
): string {
  const lines = ['apiVersion: spiffe-broker.dev/v1', 'kind: Allowlist', 'peers:'];
  if (peers.length === 0) return 'apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\npeers: []\n';
  for (const p of peers) {
    if (p.name === self) continue;
    lines.push(
      `  - trustDomain: ${p.name}`,
      '    bundleEndpoint:',
      `      urls: ["${p.url}"]`,
      '      profile: https_spiffe',
      `      endpointSPIFFEID: ${p.id}`,
      `      bootstrapBundleFile: ${p.bootstrap}`,
      '    refresh: { minInterval: 1s, maxInterval: 30s }',
      '    relay: true',
      ...(p.oidcIssuer ? [`    oidcIssuer: ${p.oidcIssuer}`] : []),
      ...(p.probePort ? [`    probe: { address: "127.0.0.1:${p.probePort}" }`] : []),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** A day of validity either side of now: the lab's OIDC certificates outlive any lab run. */
const LAB_CERT_VALIDITY_MS = 86_400_000;

/**
 * The lab's WebPKI-style CA for the OIDC listeners (written to `<dir>/oidc-ca.pem`) and, per
 * domain, a server certificate for `localhost` (OIDC consumers fetch over https and check the
 * host name; pki issues DNS names, so the issuer is `https://localhost:<port>`).
 */
async function labOidcCa(dir: string): Promise<{ ca: IssuedCert; file: string }> {
  const notBefore = new Date(Date.now() - LAB_CERT_VALIDITY_MS);
  const notAfter = new Date(Date.now() + LAB_CERT_VALIDITY_MS);
  const ca = await createCa({
    trustDomain: TrustDomain.parse('oidc.lab'),
    notBefore,
    notAfter,
    subject: 'O=spiffe-broker lab, CN=lab OIDC CA',
  });
  const file = join(dir, 'oidc-ca.pem');
  await writeFile(file, ca.pem);
  return { ca, file };
}

async function writeOidcServerCert(ca: IssuedCert, ddir: string): Promise<{ cert: string; key: string }> {
  const leaf = await createX509Svid({
    id: SpiffeId.parse('spiffe://oidc.lab/localhost'),
    issuer: ca,
    notBefore: new Date(Date.now() - LAB_CERT_VALIDITY_MS),
    notAfter: new Date(Date.now() + LAB_CERT_VALIDITY_MS),
    dnsNames: ['localhost'],
  });
  const cert = join(ddir, 'oidc-tls.crt');
  const key = join(ddir, 'oidc-tls.key');
  await writeFile(cert, leaf.pem);
  await writeFile(key, leaf.privateKeyPem!, { mode: 0o600 });
  return { cert, key };
}

/** Each output format's file in `dir` (per-trust-domain formats as a `<trust domain>` pattern). */
function outputFiles(dir: string): Record<OutputFormat, string> {
  const out = {} as Record<OutputFormat, string>;
  for (const f of OUTPUT_FORMATS) {
    out[f] = join(
      dir,
      PER_TRUST_DOMAIN_FORMATS.has(f) ? outputFileName(f, '<trust domain>') : outputFileName(f),
    );
  }
  return out;
}

/**
 * A federation lab on loopback: N trust domains, each with its SPIRE server (real or emulated), a
 * broker publishing its bundle (https_spiffe) and an allowlist federating with every other domain.
 * Every hub output is on: file outputs in every format, the relay of every peer on the bundle
 * endpoint (`/bundles/<td>`), and OIDC discovery over HTTPS (the local JWT-SVIDs, and each peer's
 * under `/peers/<td>/`).
 * Used by `spiffe-broker lab` and the end-to-end tests.
 */
export class Lab {
  readonly dir: string;
  readonly domains: LabDomain[];
  readonly spireKind: 'real' | 'emulator';
  readonly spireServerBin: string | undefined;
  readonly #stop: AbortController;
  readonly #runs: Promise<void>[];
  readonly #domainStops: Map<string, AbortController>;
  #daemonDeps: (name: string) => Partial<DaemonDeps> = () => ({});

  private constructor(
    dir: string,
    domains: LabDomain[],
    kind: 'real' | 'emulator',
    bin: string | undefined,
    stop: AbortController,
    runs: Promise<void>[],
    domainStops: Map<string, AbortController>,
  ) {
    this.#domainStops = domainStops;
    this.dir = dir;
    this.domains = domains;
    this.spireKind = kind;
    this.spireServerBin = bin;
    this.#stop = stop;
    this.#runs = runs;
  }

  domain(name: string): LabDomain {
    const d = this.domains.find((x) => x.name === name);
    if (!d) throw new TypeError(`no lab trust domain ${name}`);
    return d;
  }

  static async start(opts: LabOptions = {}): Promise<Lab> {
    const names = opts.trustDomains ?? ['alpha.lab', 'beta.lab', 'gamma.lab'];
    const log = opts.logger ?? nullLogger;
    const dir = await mkdtemp(join(opts.baseDir ?? tmpdir(), 'sbl-'));
    const stop = new AbortController();
    let kind: 'real' | 'emulator' = 'emulator';
    let runner: SpireServerRunner | undefined;
    if (opts.spire !== 'emulator' && opts.spireServerBin) {
      const r = new RealSpireServer(opts.spireServerBin);
      if (await r.available()) {
        kind = 'real';
        runner = r;
      } else if (opts.spire === 'real') {
        throw new Error(`spire-server at ${opts.spireServerBin} does not run`);
      }
    } else if (opts.spire === 'real') {
      throw new Error('spire: real needs spireServerBin');
    }
    log.info(
      `starting ${names.length} trust domains with ${kind === 'real' ? 'real spire-server' : 'the SPIRE emulator'}`,
    );

    // 1. SPIRE servers, whose JWT-SVIDs name their broker's OIDC issuer.
    const spires: LabSpire[] = [];
    try {
      const oidcCa = await labOidcCa(dir);
      const oidcPorts = new Map<string, number>();
      for (const name of names) oidcPorts.set(name, await freePort());
      const issuerOf = (name: string) => `https://localhost:${oidcPorts.get(name)}`;
      for (const name of names) {
        const ddir = join(dir, name.split('.')[0]!);
        await mkdir(ddir, { recursive: true });
        spires.push(
          runner
            ? await runner.start(name, ddir, { jwtIssuer: issuerOf(name) })
            : await startEmulator(name, ddir),
        );
      }
      // 2. Brokers: endpoint on a free port, allowlist written once every endpoint is known.
      const probePorts = new Map<string, number>();
      for (const name of names) probePorts.set(name, await freePort());
      const domains: LabDomain[] = [];
      for (const [i, name] of names.entries()) {
        const spire = spires[i]!;
        const ddir = join(dir, name.split('.')[0]!);
        const allowlistFile = join(ddir, 'allowlist.yaml');
        await writeFile(allowlistFile, allowlistYaml(name, []));
        const configFile = join(ddir, 'broker.yaml');
        const outputsDir = join(ddir, 'outputs');
        const tls = await writeOidcServerCert(oidcCa.ca, ddir);
        const yaml = [
          'apiVersion: spiffe-broker.dev/v1',
          'kind: BrokerConfig',
          `trustDomain: ${name}`,
          `stateDir: ${join(ddir, 'state')}`,
          'spire:',
          '  servers:',
          `    - name: ${kind === 'real' ? 'spire' : 'spire'}`,
          `      address: ${spire.address}`,
          'allowlist:',
          `  file: ${allowlistFile}`,
          'endpoint:',
          `  listen: 127.0.0.1:${await freePort()}`,
          '  profile: https_spiffe',
          `  refreshHint: ${opts.publishedRefreshHint ?? '60s'}`,
          '  pollInterval: 250ms',
          'admin: { listen: 127.0.0.1:0 }',
          `mtlsProbe: { listen: 127.0.0.1:${probePorts.get(name)}, interval: 2s }`,
          'verify: { listen: 127.0.0.1:0 }',
          'outputs:',
          '  files:',
          `    dir: ${outputsDir}`,
          `    formats: [${OUTPUT_FORMATS.join(', ')}]`,
          'oidc:',
          `  listen: 127.0.0.1:${oidcPorts.get(name)}`,
          `  issuer: ${issuerOf(name)}`,
          `  certFile: ${tls.cert}`,
          `  keyFile: ${tls.key}`,
        ].join('\n');
        await writeFile(configFile, `${yaml}\n`);
        const config = parseBrokerConfig(yaml);
        const daemon = await BrokerDaemon.create(config, {
          ...(opts.domainLogger ? { logger: opts.domainLogger(name) } : {}),
          ...opts.daemonDeps,
        });
        domains.push({
          name,
          spire,
          daemon,
          dir: ddir,
          allowlistFile,
          configFile,
          endpointUrl: '',
          endpointSpiffeId: `spiffe://${name}/spiffe-broker`,
          probePort: probePorts.get(name)!,
          outputs: {
            dir: outputsDir,
            files: outputFiles(outputsDir),
            oidcIssuer: issuerOf(name),
            oidcDiscovery: discoveryUrl(issuerOf(name)),
            oidcCa: oidcCa.file,
          },
        });
      }
      const domainStops = new Map(domains.map((d) => [d.name, new AbortController()]));
      const runs = domains.map((d) =>
        d.daemon.run(AbortSignal.any([stop.signal, domainStops.get(d.name)!.signal])),
      );
      for (const d of domains) {
        const ep = await Promise.race([
          d.daemon.endpoint(),
          runs[domains.indexOf(d)]!.then(() => {
            throw new Error(`broker of ${d.name} stopped before listening`);
          }),
        ]);
        d.endpointUrl = ep.url;
      }
      const lab = new Lab(
        dir,
        domains,
        kind,
        runner ? opts.spireServerBin : undefined,
        stop,
        runs,
        domainStops,
      );
      // 3. Federate: every domain allowlists every other, bootstrapped with its current bundle.
      for (const d of domains) {
        const bootstrap = join(d.dir, 'bundle.json');
        await writeFile(bootstrap, marshalBundle(await d.spire.bundle()));
      }
      for (const d of domains)
        await lab.writeAllowlist(
          d.name,
          names.filter((n) => n !== d.name),
        );
      return lab;
    } catch (err) {
      stop.abort();
      await Promise.allSettled(spires.map((s) => s.stop()));
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Rewrites `self`'s allowlist to federate with exactly `peers` (the daemon hot-reloads it). */
  async writeAllowlist(self: string, peers: readonly string[]): Promise<void> {
    const d = this.domain(self);
    const entries = peers.map((p) => {
      const peer = this.domain(p);
      return {
        name: p,
        url: peer.endpointUrl,
        id: peer.endpointSpiffeId,
        bootstrap: join(peer.dir, 'bundle.json'),
        probePort: peer.probePort,
        oidcIssuer: peer.outputs.oidcIssuer,
      };
    });
    await writeFile(d.allowlistFile, allowlistYaml(self, entries));
    // Apply at once rather than waiting for the watcher's next poll.
    const { parseAllowlist } = await import('../engine/config/allowlist.js');
    const text = allowlistYaml(self, entries);
    await d.daemon.manager.apply(
      parseAllowlist(text, { localTrustDomain: self, serverNames: [...d.daemon.clients.keys()] }),
    );
  }

  /**
   * Stops one domain's broker (its bundle endpoint goes away: the outage peers see). Its SPIRE
   * server keeps running.
   */
  async stopEndpoint(name: string): Promise<void> {
    const i = this.domains.indexOf(this.domain(name));
    this.#domainStops.get(name)?.abort();
    await this.#runs[i]?.catch(() => undefined);
  }

  /**
   * Starts a stopped domain's broker again from the same configuration and state directory (same
   * endpoint port): its last-known-good bundles are pushed to SPIRE before its first fetch.
   */
  async restartBroker(name: string): Promise<BrokerDaemon> {
    const d = this.domain(name);
    const i = this.domains.indexOf(d);
    await this.stopEndpoint(name);
    const { readFile } = await import('node:fs/promises');
    const config = parseBrokerConfig(await readFile(d.configFile, 'utf8'));
    d.daemon = await BrokerDaemon.create(config, this.#daemonDeps(name));
    const stop = new AbortController();
    this.#domainStops.set(name, stop);
    this.#runs[i] = d.daemon.run(AbortSignal.any([this.#stop.signal, stop.signal]));
    await d.daemon.endpoint();
    return d.daemon;
  }

  /** Resolves when `check` returns true (polled every 50 ms), or rejects after `timeoutMs`. */
  static async until(
    check: () => Promise<boolean> | boolean,
    timeoutMs = 30_000,
    what = 'condition',
  ): Promise<number> {
    const started = Date.now();
    for (;;) {
      if (await check()) return Date.now() - started;
      if (Date.now() - started > timeoutMs)
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops every broker and SPIRE server and removes the lab's files. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await Promise.allSettled(this.#runs);
    await Promise.allSettled(this.domains.map((d) => d.spire.stop()));
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function startEmulator(name: string, dir: string): Promise<LabSpire> {
  const emulator = new SpireEmulator({ trustDomain: name, socketPath: join(dir, 'api.sock') });
  const ep = await emulator.start();
  return {
    kind: 'emulator',
    emulator,
    address: ep.address,
    socketPath: ep.socketPath,
    bundle: async () => emulator.bundle(),
    async federatedBundles() {
      const out = new Map<string, TrustBundle>();
      const { SpireServerClient } = await import('../adapters/spire/client.js');
      const c = new SpireServerClient({ address: ep.address });
      try {
        for (const b of await c.listFederatedBundles()) out.set(b.trustDomain.name, b);
      } finally {
        c.close();
      }
      return out;
    },
    async rotateJwtAuthority() {
      return emulator.prepareJwtAuthority().authorityId;
    },
    stop: () => emulator.stop(),
  };
}
