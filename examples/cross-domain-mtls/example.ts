/**
 * Two services in different trust domains talking mTLS with no sidecar.
 *
 * `frontend` lives in `spiffe://alpha.lab`, `backend` in `spiffe://gamma.lab`. Each trust domain
 * has its own SPIRE server (the real spire-server when `scripts/install-spire.sh` built it, else
 * the SPIRE emulator) and its own broker, federating through each other's bundle endpoints — the
 * lab of `spiffe-broker lab`.
 *
 * - Each service gets its X509-SVID from its own SPIRE server with MintX509SVID (a CSR for a key it
 *   generated; the key never leaves the service).
 * - Each service gets the bundles it trusts from its own broker's admin API (`GET /v1/bundles`, a
 *   SPIFFE Bundle Map the broker keeps current through rotations), polled by
 *   `PolledBundleMapSource`.
 * - `tlsOptions` from `spiffe-broker/tls` verifies every peer with the bundle of the peer's own
 *   trust domain and a SPIFFE ID matcher: `backend` admits only `frontend`. An identity the
 *   matcher refuses (`spiffe://alpha.lab/intruder`) is dropped at the handshake.
 *
 * Run it: `node --import tsx examples/cross-domain-mtls/example.ts` (see src/lab/mtls-demo.ts).
 * @module
 */
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { defaultSpireServerBin } from '../../src/cli/lab-command.js';
import { Lab } from '../../src/lab/lab.js';
import { type MtlsDemoResult, runMtlsDemo } from '../../src/lab/mtls-demo.js';

/** Starts a two-domain lab, runs the demo, tears everything down. */
export async function runExample(
  opts: { spire?: 'emulator' | 'real' } = {},
  log: (line: string) => void = () => undefined,
): Promise<MtlsDemoResult & { spire: 'real' | 'emulator' }> {
  const bin = defaultSpireServerBin(process.env);
  const spire = opts.spire ?? (existsSync(bin) ? 'real' : 'emulator');
  const lab = await Lab.start({
    trustDomains: ['alpha.lab', 'gamma.lab'],
    spire,
    ...(spire === 'real' ? { spireServerBin: bin } : {}),
    baseDir: '/tmp',
  });
  try {
    await Lab.until(
      async () => (await lab.domain('alpha.lab').spire.federatedBundles()).has('gamma.lab'),
      30_000,
    );
    await Lab.until(
      async () => (await lab.domain('gamma.lab').spire.federatedBundles()).has('alpha.lab'),
      30_000,
    );
    log(
      `two trust domains up (${lab.spireKind === 'real' ? 'real spire-server' : 'SPIRE emulator'}), brokers federating`,
    );
    const r = await runMtlsDemo(lab, 'alpha.lab', 'gamma.lab');
    log(`frontend -> backend: ${r.allowed}`);
    log(`backend -> frontend: ${r.reverse}`);
    log(`intruder -> backend: ${r.refused}`);
    return { ...r, spire: lab.spireKind };
  } finally {
    await lab.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runExample({}, (line) => process.stdout.write(`${line}\n`));
}
