/**
 * A real Kubernetes control plane for integration tests: etcd 3.6 and kube-apiserver 1.36 built
 * from the Go module proxy by scripts/install-kube.sh, run on loopback the way envtest runs them
 * (notes B.2): a throw-away CA, a serving certificate for 127.0.0.1/localhost, an admin client
 * certificate (CN=admin, O=system:masters), a service-account key pair, RBAC authorization.
 *
 * No kubelet, no controller-manager, no scheduler: objects are stored and validated by the real API
 * server (schemas, CRDs, status subresources, resourceVersions, watches, 410 Gone) but nothing
 * runs. Start-up takes a few seconds; {@link KubeHarness.startupMs} reports it.
 *
 * Binaries: `$SPIFFE_BROKER_CACHE/bin` (default `~/.cache/spiffe-broker/bin`), or
 * `$KUBE_APISERVER_BIN` / `$ETCD_BIN`. When they are missing, {@link kubeAvailable} says so and the
 * suites skip loudly — except under `CI=true`, where a missing control plane fails the run.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { freePort } from '../../src/lab/spire-process.js';

const run = promisify(execFile);

/** Where the control-plane binaries are looked up. */
export function kubeBinaries(): { apiserver: string; etcd: string } {
  const cache = process.env.SPIFFE_BROKER_CACHE ?? join(homedir(), '.cache', 'spiffe-broker');
  return {
    apiserver: process.env.KUBE_APISERVER_BIN ?? join(cache, 'bin', 'kube-apiserver'),
    etcd: process.env.ETCD_BIN ?? join(cache, 'bin', 'etcd'),
  };
}

let warned = false;

/**
 * True when both binaries and openssl are present. When not: prints a loud warning and returns
 * false (the suite skips) — or, under `CI=true`, throws so the run fails instead of silently
 * testing nothing.
 */
export function kubeAvailable(): boolean {
  const bins = kubeBinaries();
  const missing = [bins.apiserver, bins.etcd].filter((p) => !existsSync(p));
  if (!['/usr/bin/openssl', '/usr/local/bin/openssl', '/bin/openssl'].some((p) => existsSync(p))) {
    missing.push('openssl');
  }
  if (missing.length === 0) return true;
  const msg = `real kube-apiserver/etcd not available (missing: ${missing.join(', ')}); run scripts/install-kube.sh`;
  if (process.env.CI === 'true') throw new Error(`${msg} — CI must run the Kubernetes suites`);
  if (!warned) {
    warned = true;
    console.warn(`\n*** SKIPPING Kubernetes integration tests: ${msg} ***\n`);
  }
  return false;
}

/** A running etcd + kube-apiserver pair. */
export interface KubeHarness {
  /** `https://127.0.0.1:<port>`. */
  readonly server: string;
  /** A kubeconfig (YAML) for the admin user, also written to {@link KubeHarness.kubeconfigPath}. */
  readonly kubeconfig: string;
  readonly kubeconfigPath: string;
  /** `http://127.0.0.1:<port>` of etcd's client API. */
  readonly etcdUrl: string;
  /** Wall time from spawning etcd to the API server being ready with the CRDs established, ms. */
  readonly startupMs: number;
  /** A JSON request as the admin user; resolves with status and parsed body (never throws on 4xx). */
  request(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<KubeResponse>;
  /** Creates every object of a multi-document YAML file or text (CRDs are waited for until Established). */
  apply(yamlText: string): Promise<void>;
  /** Compacts etcd's history up to its current revision, so older resourceVersions are gone. */
  compactEtcd(): Promise<number>;
  /** Stops kube-apiserver, then etcd (SIGTERM, SIGKILL after 10 s) and removes the temp dir. */
  stop(): Promise<void>;
}

/** A response from {@link KubeHarness.request}. */
export interface KubeResponse {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

/** Options of {@link startKube}. */
export interface StartKubeOptions {
  /** YAML files (multi-document) applied once the API server is ready, e.g. the CRDs. */
  readonly manifests?: readonly string[];
  /** Extra kube-apiserver flags. */
  readonly apiserverArgs?: readonly string[];
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  await run('openssl', args, { cwd });
}

/** Writes a tiny PKI into `dir` (ECDSA P-256, valid two days). */
async function makePki(dir: string): Promise<void> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await openssl(dir, [
    'req',
    '-x509',
    ...ec,
    '-days',
    '2',
    '-subj',
    '/CN=kube-harness-ca',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
  ]);
  await writeFile(
    join(dir, 'server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n',
  );
  await writeFile(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n');
  await openssl(dir, [
    'req',
    ...ec,
    '-subj',
    '/CN=kube-apiserver',
    '-keyout',
    'apiserver.key',
    '-out',
    'apiserver.csr',
  ]);
  await openssl(dir, [
    'x509',
    '-req',
    '-in',
    'apiserver.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    'server.ext',
    '-out',
    'apiserver.crt',
  ]);
  await openssl(dir, [
    'req',
    ...ec,
    '-subj',
    '/CN=admin/O=system:masters',
    '-keyout',
    'admin.key',
    '-out',
    'admin.csr',
  ]);
  await openssl(dir, [
    'x509',
    '-req',
    '-in',
    'admin.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    'client.ext',
    '-out',
    'admin.crt',
  ]);
  await openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'sa.key']);
  await openssl(dir, ['ec', '-in', 'sa.key', '-pubout', '-out', 'sa.pub']);
}

function spawnLogged(bin: string, args: string[], logFile: string): ChildProcess {
  const fd = openSync(logFile, 'a');
  const child = spawn(bin, args, { stdio: ['ignore', fd, fd], detached: false });
  closeSync(fd);
  return child;
}

function tail(file: string, lines = 25): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  child: ChildProcess,
  log: string,
  timeoutMs: number,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `${what} exited (${child.exitCode ?? child.signalCode}) before becoming ready:\n${tail(log)}`,
      );
    }
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms:\n${tail(log)}`);
    await sleep(100);
  }
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const killTimer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(killTimer);
}

/** Children still running, killed if the test process exits without calling stop(). */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

/**
 * Starts etcd and kube-apiserver on free loopback ports, waits for `/readyz`, writes a kubeconfig
 * and applies `manifests`. Always pair with `stop()` in `afterAll`.
 *
 * @example
 * const kube = await startKube({ manifests: ['deploy/base/crd-federationpeer.yaml'] });
 * afterAll(() => kube.stop());
 */
export async function startKube(opts: StartKubeOptions = {}): Promise<KubeHarness> {
  const t0 = performance.now();
  const bins = kubeBinaries();
  const dir = await mkdtemp(join(tmpdir(), 'kube-harness-'));
  const children: ChildProcess[] = [];
  const stopAll = async (): Promise<void> => {
    for (const c of children.reverse()) await stopProcess(c);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await makePki(dir);
    const [etcdClient, etcdPeer, kasPort] = [await freePort(), await freePort(), await freePort()];
    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const etcdLog = join(dir, 'etcd.log');
    const etcd = spawnLogged(
      bins.etcd,
      [
        `--name=harness`,
        `--data-dir=${join(dir, 'etcd-data')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeer}`,
        `--initial-cluster=harness=http://127.0.0.1:${etcdPeer}`,
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ],
      etcdLog,
    );
    children.push(etcd);
    track(etcd);
    await waitFor('etcd', async () => (await fetch(`${etcdUrl}/health`)).ok, etcd, etcdLog, 30_000);

    const server = `https://127.0.0.1:${kasPort}`;
    const kasLog = join(dir, 'kube-apiserver.log');
    const kas = spawnLogged(
      bins.apiserver,
      [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${kasPort}`,
        `--cert-dir=${dir}`,
        `--tls-cert-file=${join(dir, 'apiserver.crt')}`,
        `--tls-private-key-file=${join(dir, 'apiserver.key')}`,
        `--client-ca-file=${join(dir, 'ca.crt')}`,
        '--authorization-mode=RBAC',
        '--service-cluster-ip-range=10.0.0.0/24',
        `--service-account-issuer=${server}`,
        `--service-account-key-file=${join(dir, 'sa.pub')}`,
        `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
        '--disable-admission-plugins=ServiceAccount',
        '--allow-privileged=true',
        '--v=0',
        ...(opts.apiserverArgs ?? []),
      ],
      kasLog,
    );
    children.push(kas);
    track(kas);

    const ca = await readFile(join(dir, 'ca.crt'), 'utf8');
    const cert = await readFile(join(dir, 'admin.crt'), 'utf8');
    const key = await readFile(join(dir, 'admin.key'), 'utf8');
    const request = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
      new Promise<KubeResponse>((resolve, reject) => {
        const payload =
          body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
        const req = httpsRequest(
          `${server}${path}`,
          {
            method,
            ca,
            cert,
            key,
            headers: {
              accept: 'application/json',
              ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
              ...headers,
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              let parsed: Record<string, unknown>;
              try {
                parsed = JSON.parse(text) as Record<string, unknown>;
              } catch {
                parsed = { text };
              }
              resolve({ status: res.statusCode ?? 0, body: parsed });
            });
          },
        );
        req.on('error', reject);
        req.end(payload);
      });
    await waitFor(
      'kube-apiserver',
      async () => (await request('GET', '/readyz')).status === 200,
      kas,
      kasLog,
      90_000,
    );

    const kubeconfig = [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: harness',
      '  cluster:',
      `    server: ${server}`,
      `    certificate-authority-data: ${Buffer.from(ca).toString('base64')}`,
      'users:',
      '- name: admin',
      '  user:',
      `    client-certificate-data: ${Buffer.from(cert).toString('base64')}`,
      `    client-key-data: ${Buffer.from(key).toString('base64')}`,
      'contexts:',
      '- name: harness',
      '  context: {cluster: harness, user: admin}',
      'current-context: harness',
      '',
    ].join('\n');
    const kubeconfigPath = join(dir, 'kubeconfig');
    await writeFile(kubeconfigPath, kubeconfig, { mode: 0o600 });

    const apply = async (yamlText: string): Promise<void> => {
      for (const doc of parseAllDocuments(yamlText)) {
        const obj = doc.toJSON() as Record<string, unknown> | null;
        if (!obj) continue;
        const path = collectionPath(obj);
        const res = await request('POST', path, obj);
        if (res.status !== 201 && res.status !== 200) {
          throw new Error(`apply ${String(obj.kind)} failed: ${res.status} ${JSON.stringify(res.body)}`);
        }
        if (obj.kind === 'CustomResourceDefinition') {
          const name = (obj.metadata as { name: string }).name;
          await waitFor(
            `CRD ${name}`,
            async () => {
              const r = await request(
                'GET',
                `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`,
              );
              const conds =
                (r.body.status as { conditions?: { type: string; status: string }[] })?.conditions ?? [];
              return conds.some((c) => c.type === 'Established' && c.status === 'True');
            },
            kas,
            kasLog,
            30_000,
          );
          // Established can precede discovery by a moment: wait until the resource lists.
          const spec = obj.spec as { group: string; versions: { name: string }[]; names: { plural: string } };
          const plural = `/apis/${spec.group}/${spec.versions[0]!.name}/${spec.names.plural}`;
          await waitFor(
            `${plural} served`,
            async () => (await request('GET', plural)).status === 200,
            kas,
            kasLog,
            30_000,
          );
        }
      }
    };
    for (const file of opts.manifests ?? []) await apply(await readFile(file, 'utf8'));

    const compactEtcd = async (): Promise<number> => {
      const status = (await (
        await fetch(`${etcdUrl}/v3/kv/range`, {
          method: 'POST',
          body: JSON.stringify({ key: Buffer.from('/').toString('base64') }),
        })
      ).json()) as { header: { revision: string } };
      const revision = Number(status.header.revision);
      const res = await fetch(`${etcdUrl}/v3/kv/compaction`, {
        method: 'POST',
        body: JSON.stringify({ revision: String(revision), physical: true }),
      });
      if (!res.ok) throw new Error(`etcd compaction failed: ${res.status} ${await res.text()}`);
      return revision;
    };

    return {
      server,
      kubeconfig,
      kubeconfigPath,
      etcdUrl,
      startupMs: Math.round(performance.now() - t0),
      request,
      apply,
      compactEtcd,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** The REST collection path an object is created at (core, named groups, cluster or namespaced). */
export function collectionPath(obj: Record<string, unknown>): string {
  const apiVersion = String(obj.apiVersion);
  const kind = String(obj.kind);
  const ns = (obj.metadata as { namespace?: string } | undefined)?.namespace;
  const plural = KNOWN_PLURALS[kind] ?? `${kind.toLowerCase()}s`;
  const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  return ns ? `${base}/namespaces/${ns}/${plural}` : `${base}/${plural}`;
}

const KNOWN_PLURALS: Record<string, string> = {
  NetworkPolicy: 'networkpolicies',
  PodDisruptionBudget: 'poddisruptionbudgets',
  FederationPeer: 'federationpeers',
  ClusterFederatedTrustDomain: 'clusterfederatedtrustdomains',
  ValidatingAdmissionPolicy: 'validatingadmissionpolicies',
};
