/**
 * The CPU side of bench/outputs.bench.ts, in a process of its own so nothing else (the fleet's
 * TLS server, the SPIRE emulator, the watchers) is on its CPU clock:
 *
 * 1. fetches every peer of the fleet once with the broker's own fetcher (warm-up; these are the
 *    bundles the outputs are rendered from) and writes all six file formats of them (cold pass);
 * 2. then, `count` times, alternately:
 *    - **fetch**: what accepting a rotation starts with — `ConfiguredPeerFetcher.fetch` of one peer
 *      (fresh TCP + TLS connection as the broker always opens, GET, 200 with the bundle, body
 *      read and parsed into a TrustBundle, X.509 authorities included) and the policy decision
 *      `evaluatePeerBundle` against the held bundle;
 *    - **render**: what the outputs do for that accepted change — one `FileOutputSink.apply` pass
 *      of the whole 1,000-bundle set with that peer's bundle rotated (every format rendered, each
 *      file compared, the changed files written atomically with fsync, the directory listed and
 *      fsynced), plus the relay document (marshal + ETag) and the per-peer OIDC discovery and JWKS
 *      documents (render + ETag) of the rotated bundle;
 *    - **render, no I/O**: the same pass by a second sink on an in-memory file system, to tell the
 *      rendering from the file writes;
 *    - **map write floor**: only encoding and writing the three whole-set map documents as they
 *      are after that pass (temp file, fsync, rename), no rendering: what any single-file map
 *      output costs per change;
 *
 *    each measured with `process.cpuUsage()` (user + system, every thread of the process, so the
 *    libuv threads doing the file writes count too).
 *
 * Usage: `node outputs-cost-child.js <input.json>`; input `{ peers: [{ trustDomain, url }], caFile,
 * outDir, count }`. Prints one JSON line: `{ fetchCpuMs: number[], renderCpuMs: number[],
 * renderWallMs: number[], renderMemCpuMs: number[],
 * mapWriteCpuMs: number[], files: number }`.
 * @module
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { createCa } from '../../src/adapters/pki/index.js';
import { marshalBundle } from '../../src/core/bundle/codec.js';
import { renderJwks, renderOidcDiscovery } from '../../src/core/bundle/oidc.js';
import { OUTPUT_FORMATS } from '../../src/core/bundle/outputs.js';
import { TrustBundle } from '../../src/core/bundle/trust-bundle.js';
import { evaluatePeerBundle } from '../../src/core/policy/evaluate.js';
import { TrustDomain } from '../../src/core/spiffeid/trust-domain.js';
import { parseAllowlist } from '../../src/engine/config/allowlist.js';
import type { PeerConfig } from '../../src/engine/config/types.js';
import { FederatedBundleStore } from '../../src/engine/federation/bundle-store.js';
import { ConfiguredPeerFetcher } from '../../src/engine/federation/peer-fetcher.js';
import type { StateFs } from '../../src/engine/federation/state-store.js';
import { FileOutputSink } from '../../src/engine/publish/file-output.js';
import { systemClock } from '../../src/platform/clock.js';
import { rotateFully } from './rotate.js';

interface Input {
  readonly peers: readonly { readonly trustDomain: string; readonly url: string }[];
  readonly caFile: string;
  readonly outDir: string;
  readonly count: number;
  /** Issuer of the OIDC listener (the per-peer JWKS URI is under it). */
  readonly oidcIssuer: string;
}

/** A flat in-memory directory: the {@link StateFs} calls a FileOutputSink makes, without I/O. */
function memoryFs(): StateFs {
  const files = new Map<string, Uint8Array>();
  const base = (p: string) => p.slice(p.lastIndexOf('/') + 1);
  const enoent = (p: string) => Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
  return {
    mkdir: async () => undefined,
    readdir: async () => [...files.keys()],
    readFile: async (p) => {
      const f = files.get(base(p));
      if (!f) throw enoent(p);
      return f;
    },
    open: async (p) => ({
      writeFile: async (data) => void files.set(base(p), data),
      sync: async () => undefined,
      close: async () => undefined,
    }),
    rename: async (a, b) => {
      const f = files.get(base(a));
      if (!f) throw enoent(a);
      files.delete(base(a));
      files.set(base(b), f);
    },
    unlink: async (p) => {
      if (!files.delete(base(p))) throw enoent(p);
    },
  };
}

const input = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Input;
const allowlist = parseAllowlist(
  [
    'apiVersion: spiffe-broker.dev/v1',
    'kind: Allowlist',
    'peers:',
    ...input.peers.flatMap((p) => [
      `  - trustDomain: ${p.trustDomain}`,
      `    bundleEndpoint: { urls: ["${p.url}"], profile: https_web, caFile: ${input.caFile} }`,
      '    relay: true',
      `    oidcIssuer: https://${p.trustDomain}`,
    ]),
    '',
  ].join('\n'),
);
const store = new FederatedBundleStore();
const fetcher = new ConfiguredPeerFetcher({
  clock: systemClock,
  readFile: async (p) => new Uint8Array(await readFile(p)),
  bundles: store,
  limits: {
    connectTimeoutMs: 5_000,
    timeoutMs: 30_000,
    maxBodyBytes: 1 << 20,
    keepAlive: { idleTimeoutMs: 0, maxIdle: 0 },
  },
});
const signal = new AbortController().signal;

async function fetchOne(peer: PeerConfig): Promise<TrustBundle> {
  const r = await fetcher.fetch(peer, { signal });
  if (r.kind !== 'bundle') throw new Error(`${peer.trustDomain.name}: expected a bundle, got ${r.kind}`);
  return r.bundle;
}

// 1. Every bundle, fetched by the broker's fetcher (20 at a time), then the cold pass.
const held = new Map<string, TrustBundle>();
for (let i = 0; i < allowlist.peers.length; i += 20) {
  const chunk = allowlist.peers.slice(i, i + 20);
  const got = await Promise.all(chunk.map(fetchOne));
  for (const b of got) held.set(b.trustDomain.name, b);
}
// The local trust domain's bundle, as with `includeLocal: true`.
const localTd = TrustDomain.parse('broker.outputs.test');
const localCa = await createCa({
  trustDomain: localTd,
  notBefore: new Date(Date.now() - 3600_000),
  notAfter: new Date(Date.now() + 86_400_000),
});
const localBundle = {
  bundle: TrustBundle.create({ trustDomain: localTd, x509Authorities: [localCa.der], sequence: 1n }),
};
const sink = new FileOutputSink({
  dir: input.outDir,
  formats: [...OUTPUT_FORMATS],
  local: { current: () => localBundle, subscribe: () => () => undefined },
});
const cold = await sink.apply({ bundles: held, retained: new Set() });
if (!cold.ok) throw new Error(`cold pass failed: ${JSON.stringify(cold.failed.slice(0, 3))}`);
// The same sink on an in-memory file system: what a pass costs without the file I/O.
const memSink = new FileOutputSink(
  {
    dir: '/mem',
    formats: [...OUTPUT_FORMATS],
    local: { current: () => localBundle, subscribe: () => () => undefined },
  },
  { fs: memoryFs() },
);
if (!(await memSink.apply({ bundles: held, retained: new Set() })).ok) throw new Error('memory pass failed');

const scratch = join(input.outDir, '..', 'floor');
await mkdir(scratch, { recursive: true });
const cpuMs = (a: NodeJS.CpuUsage): number => (a.user + a.system) / 1000;
const fetchCpuMs: number[] = [];
const renderCpuMs: number[] = [];
const renderWallMs: number[] = [];
const renderMemCpuMs: number[] = [];
const mapWriteCpuMs: number[] = [];
const MAP_FILES = ['grpc-bundle-map.json', 'envoy-bundle-map.json', 'bundle-map.json'];
const tag = (text: string): string =>
  createHash('sha256').update(Buffer.from(text, 'utf8')).digest('base64url');
const n = allowlist.peers.length;

// 2. Alternately: one fetch + policy, one output pass for a rotated bundle.
for (let k = 0; k < input.count; k++) {
  const peer = allowlist.peers[(k * 37) % n]!;
  const td = peer.trustDomain.name;
  const current = held.get(td)!;
  // Prepared outside the measurement (a new CA key is about 5 ms): the peer's work, not ours.
  const rot = await rotateFully(current, `c${k}`);

  let c0 = process.cpuUsage();
  const fetched = await fetchOne(peer);
  const decision = evaluatePeerBundle({ peer, current, candidate: fetched });
  fetchCpuMs.push(cpuMs(process.cpuUsage(c0)));
  if (!decision.accepted) throw new Error(`${td}: policy refused its own bundle`);

  c0 = process.cpuUsage();
  const t0 = performance.now();
  held.set(td, rot.bundle);
  const report = await sink.apply({ bundles: held, retained: new Set() });
  const relay = tag(marshalBundle(rot.bundle));
  const oidcJwks = tag(renderJwks(rot.bundle));
  const oidcDiscovery = tag(
    renderOidcDiscovery(rot.bundle, {
      issuer: `https://${td}`,
      jwksUri: `${input.oidcIssuer}/peers/${td}/keys`,
    }),
  );
  renderWallMs.push(performance.now() - t0);
  renderCpuMs.push(cpuMs(process.cpuUsage(c0)));
  if (!report.ok || !report.written.includes(td) || !relay || !oidcJwks || !oidcDiscovery) {
    throw new Error(`${td}: output pass did not write it: ${JSON.stringify(report)}`);
  }

  c0 = process.cpuUsage();
  const memReport = await memSink.apply({ bundles: held, retained: new Set() });
  renderMemCpuMs.push(cpuMs(process.cpuUsage(c0)));
  if (!memReport.written.includes(td)) throw new Error(`${td}: memory pass did not write it`);

  // The floor of any whole-set map output: just encoding and writing the three map documents
  // (temp file, fsync, rename) once, with no rendering or comparison at all.
  const texts = await Promise.all(MAP_FILES.map((f) => readFile(join(input.outDir, f), 'utf8')));
  c0 = process.cpuUsage();
  for (const [j, text] of texts.entries()) {
    const tmp = join(input.outDir, `.floor-${j}.tmp`);
    const h = await open(tmp, 'wx', 0o644);
    await h.writeFile(new TextEncoder().encode(text));
    await h.sync();
    await h.close();
    await rename(tmp, join(scratch, MAP_FILES[j]!));
  }
  mapWriteCpuMs.push(cpuMs(process.cpuUsage(c0)));
}

const files = (await readdir(input.outDir)).length;
process.stdout.write(
  `${JSON.stringify({ fetchCpuMs, renderCpuMs, renderWallMs, renderMemCpuMs, mapWriteCpuMs, files })}\n`,
);
