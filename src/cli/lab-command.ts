import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Lab, type LabDomain } from '../lab/lab.js';
import { runMtlsDemo } from '../lab/mtls-demo.js';
import { type CliIo, EXIT_OK, EXIT_REFUSED } from './io.js';
import { printJson, reportFailure, UsageError } from './output.js';

export const LAB_USAGE = `usage: spiffe-broker lab [--json] [--spire auto|real|emulator] [--keep-running]

Runs three SPIFFE trust domains on loopback — each with its SPIRE server (the real spire-server
built by scripts/install-spire.sh when present, else the in-process SPIRE emulator), a broker, and
allowlists federating them — then walks through a demo: a rotation propagates (with the measured
time), a peer goes down and stays trusted, an allowlist removal revokes.

--json            print one line {"ok":true,"ready":true,...} once everything is federated and every
                  output written (per trust domain: bundle endpoint, admin URL, and "outputs": files
                  by format, relayBase, oidcDiscovery, oidcCa), then keep running
--spire           which SPIRE to use (default auto)
--keep-running    after the demo, keep the lab up until Ctrl-C
Stops everything and removes its temp dirs on SIGINT/SIGTERM.`;

/** Where scripts/install-spire.sh puts spire-server. */
export function defaultSpireServerBin(env: Readonly<Record<string, string | undefined>>): string {
  if (env.SPIRE_SERVER_BIN) return env.SPIRE_SERVER_BIN;
  const cache = env.SPIFFE_BROKER_CACHE ?? join(homedir(), '.cache', 'spiffe-broker');
  return join(cache, 'bin', 'spire-server');
}

/**
 * True once the domain's broker reports every hub output current for its `peers` peers: each file
 * format lists them, each relayed peer has an accepted bundle, and the OIDC listener listens.
 */
function outputsReady(d: LabDomain, peers: number): boolean {
  const o = d.daemon.view.status().outputs;
  const relay = o?.relay as { trustDomains?: readonly { accepted: boolean }[] } | undefined;
  return (
    o?.files?.every((f) => f.trustDomains.length === peers && f.lastError === null) === true &&
    relay?.trustDomains?.length === peers &&
    relay.trustDomains.every((t) => t.accepted) &&
    typeof o.oidc?.url === 'string'
  );
}

function waitForAbort(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** `spiffe-broker lab`. */
export async function labCommand(args: string[], io: CliIo): Promise<number> {
  let json = args.includes('--json');
  let lab: Lab | undefined;
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: false,
      options: { json: { type: 'boolean' }, spire: { type: 'string' }, 'keep-running': { type: 'boolean' } },
    });
    void positionals;
    json = values.json === true;
    const spire = values.spire ?? 'auto';
    if (spire !== 'auto' && spire !== 'real' && spire !== 'emulator')
      throw new UsageError('--spire must be auto, real or emulator');
    const bin = defaultSpireServerBin(io.env);
    const say = (line = ''): void => {
      if (!json) io.stdout(`${line}\n`);
    };
    say('spiffe-broker lab: three trust domains federating on loopback');
    say(
      spire === 'emulator' || !existsSync(bin)
        ? `SPIRE: the in-process SPIRE emulator${spire !== 'emulator' ? ` (no spire-server at ${bin}; run scripts/install-spire.sh for the real one)` : ''}`
        : `SPIRE: real spire-server at ${bin}`,
    );
    lab = await Lab.start({
      spire: spire === 'auto' ? 'auto' : spire,
      ...(spire !== 'emulator' && existsSync(bin) ? { spireServerBin: bin } : {}),
      baseDir: '/tmp',
      publishedRefreshHint: '5s',
    });
    for (const d of lab.domains) {
      await Lab.until(
        async () => (await d.spire.federatedBundles()).size === lab!.domains.length - 1,
        30_000,
        `${d.name} to federate`,
      );
      await Lab.until(() => outputsReady(d, lab!.domains.length - 1), 30_000, `${d.name}'s outputs`);
    }
    const summary = {
      ok: true,
      ready: true,
      spire: lab.spireKind,
      spireServerBin: lab.spireServerBin ?? null,
      trustDomains: lab.domains.map((d) => ({
        name: d.name,
        bundleEndpoint: d.endpointUrl,
        profile: 'https_spiffe',
        endpointSpiffeId: d.endpointSpiffeId,
        admin: d.daemon.adminUrl ?? null,
        spireSockets: [d.spire.socketPath],
        outputs: {
          files: d.outputs.files,
          relayBase: `${d.endpointUrl.replace(/\/?$/, '/')}bundles/`,
          oidcDiscovery: d.outputs.oidcDiscovery,
          oidcCa: d.outputs.oidcCa,
        },
      })),
    };
    if (json) {
      printJson(io, summary);
      await waitForAbort(io.signal);
      return EXIT_OK;
    }

    say();
    say(
      `Up: ${lab.spireKind === 'real' ? 'real spire-server' : 'SPIRE emulator'} × ${lab.domains.length}, one broker each.`,
    );
    for (const d of lab.domains) {
      say(`  ${d.name.padEnd(10)} endpoint ${d.endpointUrl}  (${d.endpointSpiffeId})`);
      say(`  ${''.padEnd(10)} SPIRE API unix://${d.spire.socketPath}`);
      if (d.daemon.adminUrl)
        say(
          `  ${''.padEnd(10)} admin ${d.daemon.adminUrl}  (status: spiffe-broker status --admin ${d.daemon.adminUrl})`,
        );
    }
    say("Every SPIRE server now holds the other two trust domains' bundles (read back through its API).");

    // 1. A rotation propagates.
    const [a, b, c] = lab.domains as [
      (typeof lab.domains)[0],
      (typeof lab.domains)[0],
      (typeof lab.domains)[0],
    ];
    say();
    say(`1) Rotation: ${b.name} prepares a new JWT authority in its SPIRE server…`);
    const kid = await b.spire.rotateJwtAuthority();
    const ms = await Lab.until(
      async () =>
        (await a.spire.federatedBundles()).get(b.name)?.jwtAuthorities.has(kid) === true &&
        (await c.spire.federatedBundles()).get(b.name)?.jwtAuthorities.has(kid) === true,
      30_000,
      'the rotation to propagate',
    );
    say(`   key ${kid} reached ${a.name}'s and ${c.name}'s SPIRE servers in ${ms} ms`);
    say("   (the brokers hold a long-poll on each other's endpoint: no waiting for a refresh hint).");

    // 2. Cross-domain mTLS with no sidecar.
    say();
    say(
      `2) mTLS: ${b.name}'s frontend calls ${a.name}'s backend; SVIDs from their own SPIRE, bundles from their own broker…`,
    );
    const mtls = await runMtlsDemo(lab, b.name, a.name);
    say(`   frontend -> backend: ${mtls.allowed}`);
    say(`   backend -> frontend: ${mtls.reverse}`);
    say(`   ${b.name}/intruder -> backend: ${mtls.refused.slice(0, 120)}`);
    if (mtls.allowed.startsWith('refused') || !mtls.refused.startsWith('refused')) return EXIT_REFUSED;

    // 2. A peer goes down and stays trusted.
    say();
    say(`3) Outage: ${c.name}'s broker stops serving its bundle endpoint…`);
    await lab.stopEndpoint(c.name);
    const stateOf = () => a.daemon.view.peerStatus().find((p) => p.trustDomain === c.name);
    const failing = await Lab.until(() => stateOf()?.state === 'FAILING', 60_000, `${a.name} to notice`);
    say(
      `   after ${Math.round(failing / 100) / 10} s ${a.name} reports ${c.name} FAILING (${stateOf()?.reason?.code ?? ''}): fetches fail, its bundle is still fresh;`,
    );
    const stale = await Lab.until(() => stateOf()?.state === 'STALE', 60_000, `${c.name} to turn STALE`);
    say(
      `   after ${Math.round((failing + stale) / 100) / 10} s (3 × its 5 s refresh hint) ${a.name} reports ${c.name} STALE (${stateOf()?.reason?.code ?? ''}),`,
    );
    const still = (await a.spire.federatedBundles()).has(c.name);
    say(
      `   and ${a.name}'s SPIRE ${still ? 'still holds' : 'NO LONGER holds'} ${c.name}'s last-known-good bundle: ${still ? 'still trusted.' : 'unexpected!'}`,
    );
    if (!still) return EXIT_REFUSED;

    // 3. Allowlist removal revokes.
    say();
    say(`4) Revocation: ${a.name}'s operator removes ${b.name} from its allowlist…`);
    await lab.writeAllowlist(a.name, [c.name]);
    const revokedMs = await Lab.until(
      async () => !(await a.spire.federatedBundles()).has(b.name),
      30_000,
      'revocation',
    );
    say(
      `   ${b.name}'s bundle was deleted from ${a.name}'s SPIRE server in ${revokedMs} ms (read back: gone).`,
    );
    const after = await runMtlsDemo(lab, b.name, a.name);
    say(`   ${b.name}'s frontend -> ${a.name}'s backend now: ${after.allowed.slice(0, 120)}`);
    if (!after.allowed.startsWith('refused')) return EXIT_REFUSED;

    say();
    say(
      'Where to look: `spiffe-broker status --admin <admin url>` for each broker, /metrics on the admin URL.',
    );
    if (values['keep-running']) {
      say('The lab keeps running; Ctrl-C stops it and removes its files.');
      await waitForAbort(io.signal);
    }
    return EXIT_OK;
  } catch (err) {
    return reportFailure(io, json, err, LAB_USAGE);
  } finally {
    await lab?.stop();
  }
}
