/**
 * The grpc-bundle-map file output read by its real consumer: grpc-go (Go module proxy; the
 * program is scripts/go/grpc-consumer, built by scripts/install-grpc-consumer.sh). Its client
 * loads the file through grpc-go's own SPIFFE Bundle Map support (xds/bootstrap "tls" channel
 * credentials with spiffe_trust_bundle_map_file, gRFC A87) and verifies the server; its server
 * loads the same file through grpc-go's pemfile provider and verifies the client with go-spiffe.
 * Skips loudly without the program — and fails under CI=true.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TrustBundle } from '../../../src/core/bundle/index.js';
import { FileOutputSink } from '../../../src/engine/publish/file-output.js';
import { DAY, HOUR, makePki, type TestPki } from '../../support/fixtures.js';

function consumerPath(): string {
  const cache = process.env.SPIFFE_BROKER_CACHE ?? join(homedir(), '.cache', 'spiffe-broker');
  return join(cache, 'bin', 'grpc-consumer');
}

function consumerOrSkip(suite: string): boolean {
  const path = consumerPath();
  if (existsSync(path)) return true;
  const message = `grpc-go consumer missing for "${suite}": ${path} (run scripts/install-grpc-consumer.sh)`;
  if (process.env.CI === 'true') throw new Error(`${message} (CI=true: failing instead of skipping)`);
  console.warn(`\n${'!'.repeat(100)}\n!! SKIPPING ${message}\n${'!'.repeat(100)}\n`);
  return false;
}

interface Outcome {
  readonly code: number;
  readonly ok: boolean;
  readonly serverPeer?: string;
  readonly clientPeer?: string;
  readonly error?: string;
  readonly serverError?: string;
}

const SUITE = 'grpc-bundle-map read by grpc-go';
const available = consumerOrSkip(SUITE);

describe.skipIf(!available)(SUITE, () => {
  let dir: string;
  let a: TestPki;
  let b: TestPki;
  let c: TestPki;
  const files: Record<string, { cert: string; key: string }> = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'grpc-consumer-'));
    // grpc-go verifies against the wall clock: CAs and SVIDs valid around now.
    const now = Date.now();
    const ca = { caNotBefore: now - DAY, caNotAfter: now + DAY };
    [a, b, c] = await Promise.all([
      makePki('grpc-a.example', ca),
      makePki('grpc-b.example', { ...ca, keyAlg: 'rsa-2048' }),
      makePki('grpc-c.example', ca),
    ]);
    for (const [name, pki] of [
      ['a', a],
      ['b', b],
      ['c', c],
    ] as const) {
      const svid = await pki.svid(`/${name}-workload`, {
        notBefore: new Date(now - HOUR),
        notAfter: new Date(now + HOUR),
      });
      const cert = join(dir, `${name}.crt`);
      const key = join(dir, `${name}.key`);
      writeFileSync(cert, svid.pem + pki.intermediate.pem);
      writeFileSync(key, svid.privateKeyPem!);
      files[name] = { cert, key };
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function run(mapFile: string, server: string, client: string): Promise<Outcome> {
    return new Promise((resolve, reject) => {
      execFile(
        consumerPath(),
        [
          '-bundle-map',
          mapFile,
          '-server-cert',
          files[server]!.cert,
          '-server-key',
          files[server]!.key,
          '-client-cert',
          files[client]!.cert,
          '-client-key',
          files[client]!.key,
          '-timeout',
          '10s',
        ],
        { timeout: 30_000 },
        (err, stdout, stderr) => {
          const code = err ? ((err as { code?: number }).code ?? -1) : 0;
          if (code === 2 || code === -1) {
            reject(new Error(`grpc-consumer failed to run (${code}): ${stderr}`));
            return;
          }
          resolve({ code, ...(JSON.parse(stdout.trim()) as Omit<Outcome, 'code'>) });
        },
      );
    });
  }

  it('completes mTLS between two trust domains in the map, and refuses a third; a removed peer is refused next', async () => {
    const out = join(dir, 'out');
    const sink = new FileOutputSink({ dir: out, formats: ['grpc-bundle-map'] });
    const report = await sink.apply({
      bundles: new Map([
        ['grpc-a.example', a.bundle],
        ['grpc-b.example', b.bundle],
      ]),
      retained: new Set(),
    });
    expect(report.ok).toBe(true);
    const mapFile = join(out, 'grpc-bundle-map.json');

    const ab = await run(mapFile, 'a', 'b');
    expect(ab).toMatchObject({
      code: 0,
      ok: true,
      serverPeer: 'spiffe://grpc-b.example/b-workload',
      clientPeer: 'spiffe://grpc-a.example/a-workload',
    });
    const ba = await run(mapFile, 'b', 'a');
    expect(ba).toMatchObject({ code: 0, ok: true, serverPeer: 'spiffe://grpc-a.example/a-workload' });

    // A server from the third trust domain: grpc-go's client refuses it (no bundle in the map).
    const ca = await run(mapFile, 'c', 'a');
    expect(ca.code).toBe(1);
    expect(ca.error).toMatch(/no bundle found for peer certificates trust domain \\*"grpc-c\.example/);
    // A client from the third trust domain: the server refuses it.
    const ac = await run(mapFile, 'a', 'c');
    expect(ac.code).toBe(1);
    expect(ac.serverError).toMatch(/grpc-c\.example/);

    // b removed from the federation: the next apply drops it from the file, and grpc-go refuses it.
    const removed = await sink.apply({
      bundles: new Map([['grpc-a.example', a.bundle]]),
      retained: new Set(),
    });
    expect(removed).toMatchObject({ ok: true, removed: ['grpc-b.example'] });
    const after = await run(mapFile, 'b', 'a');
    expect(after.code).toBe(1);
    expect(after.error).toMatch(/no bundle found for peer certificates trust domain \\*"grpc-b\.example/);
  }, 60_000);

  it('loads a map whose JWT-only and revoked trust domains were left out', async () => {
    const out = join(dir, 'out-omitted');
    const sink = new FileOutputSink({ dir: out, formats: ['grpc-bundle-map'] });
    const jwtOnly = TrustBundle.create({
      trustDomain: c.td,
      jwtAuthorities: [...c.bundle.jwtAuthorities.values()],
    });
    const revoked = TrustBundle.create({ trustDomain: b.td, sequence: 7n });
    await sink.apply({
      bundles: new Map([
        ['grpc-a.example', a.bundle],
        ['grpc-b.example', revoked],
        ['grpc-c.example', jwtOnly],
      ]),
      retained: new Set(),
    });
    expect(sink.status()[0]!.omitted.map((o) => o.trustDomain)).toEqual(['grpc-b.example', 'grpc-c.example']);
    const mapFile = join(out, 'grpc-bundle-map.json');
    // a ↔ a works (the map loaded); b, revoked, is refused.
    expect(await run(mapFile, 'a', 'a')).toMatchObject({ code: 0, ok: true });
    const refused = await run(mapFile, 'b', 'a');
    expect(refused.code).toBe(1);
    expect(refused.error).toMatch(/grpc-b\.example/);
  }, 60_000);
});
