import { join } from 'node:path';

/**
 * Shared pieces of the daemon tests (test/daemon/*): a broker.yaml for a broker on loopback with
 * one SPIRE server and its files in `dir`, an allowlist of https_web peers, and a bounded wait.
 */

/** broker.yaml text: trust domain home.test, state/audit in `dir`, admin and verify on port 0. */
export function brokerYaml(opts: {
  readonly dir: string;
  readonly spireAddress: string;
  readonly allowlistFile?: string;
  readonly stateDir?: string;
  readonly extra?: readonly string[];
}): string {
  const { dir } = opts;
  const extra = opts.extra ?? [];
  return [
    'apiVersion: spiffe-broker.dev/v1',
    'kind: BrokerConfig',
    'trustDomain: home.test',
    `stateDir: ${opts.stateDir ?? join(dir, 'state')}`,
    `spire: { servers: [{ name: main, address: "${opts.spireAddress}" }] }`,
    `allowlist: { file: ${opts.allowlistFile ?? join(dir, 'allowlist.yaml')} }`,
    'admin: { listen: 127.0.0.1:0 }',
    ...(extra.some((l) => l.startsWith('verify:')) ? [] : ['verify: { listen: 127.0.0.1:0 }']),
    `audit: { file: ${join(dir, 'audit.log')}, keyFile: ${join(dir, 'audit.key')}, fsync: never }`,
    ...extra,
    '',
  ].join('\n');
}

/** An allowlist of https_web peers trusting `caFile` (none: `peers: []`). */
export function allowlistYaml(
  peers: readonly { trustDomain: string; url: string }[],
  caFile: string,
): string {
  const lines = ['apiVersion: spiffe-broker.dev/v1', 'kind: Allowlist'];
  if (peers.length === 0) lines.push('peers: []');
  else {
    lines.push('peers:');
    for (const p of peers)
      lines.push(
        `  - trustDomain: ${p.trustDomain}`,
        `    bundleEndpoint: { urls: ["${p.url}"], profile: https_web, caFile: ${caFile} }`,
      );
  }
  return `${lines.join('\n')}\n`;
}

/** Waits until `cond` holds (polling every 20 ms), at most `ms`; returns how long it took. */
export async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  ms = 15_000,
): Promise<number> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - t0;
}
