/**
 * Runs go-spiffe v2's `federation.FetchBundle` (test/interop/cmd/fetch, built by
 * scripts/install-interop.sh) against a bundle endpoint. Skips loudly when the binary is missing,
 * except with CI=true, where suites fail instead.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseBundle } from '../../../src/core/bundle/codec.js';
import type { TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';

/** Path of the go-spiffe fetch program. */
export function goFetchBinary(): string {
  const cache = process.env.SPIFFE_BROKER_CACHE ?? join(homedir(), '.cache', 'spiffe-broker');
  return join(cache, 'bin', 'interop', 'fetch');
}

/** True when the binary exists; otherwise warns loudly, or throws with CI=true. */
export function goFetchOrSkip(suite: string): boolean {
  const path = goFetchBinary();
  if (existsSync(path)) return true;
  const message = `go-spiffe interop program missing for "${suite}": ${path} (run scripts/install-interop.sh)`;
  if (process.env.CI === 'true') throw new Error(`${message} (CI=true: failing instead of skipping)`);
  console.warn(`\n${'!'.repeat(100)}\n!! SKIPPING ${message}\n${'!'.repeat(100)}\n`);
  return false;
}

/** What go-spiffe fetched, re-read with the broker's own parser. */
export interface GoFetchResult {
  readonly bundle: TrustBundle;
  readonly sequence: bigint | undefined;
  readonly refreshHintSeconds: number | undefined;
  readonly x509Authorities: readonly string[];
  readonly jwtAuthorities: Readonly<Record<string, string>>;
}

export type GoFetchAuth =
  | { readonly profile: 'https_spiffe'; readonly endpointId: string; readonly bundleFile: string }
  | { readonly profile: 'https_web'; readonly caFile: string };

/** Runs the fetch; rejects with go-spiffe's error text when it fails. */
export function goFetch(trustDomain: string, url: string, auth: GoFetchAuth): Promise<GoFetchResult> {
  const args = ['-trustDomain', trustDomain, '-url', url, '-profile', auth.profile, '-timeout', '15s'];
  if (auth.profile === 'https_spiffe') args.push('-endpointID', auth.endpointId, '-bundle', auth.bundleFile);
  else args.push('-caFile', auth.caFile);
  return new Promise((resolve, reject) => {
    execFile(goFetchBinary(), args, { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`go-spiffe fetch failed: ${stderr.trim() || err.message}`));
        return;
      }
      const out = JSON.parse(stdout) as {
        bundle: unknown;
        sequence: string | null;
        refresh_hint_seconds: number | null;
        x509_authorities: string[];
        jwt_authorities: Record<string, string>;
      };
      resolve({
        bundle: parseBundle(TrustDomain.parse(trustDomain), JSON.stringify(out.bundle)).bundle,
        sequence: out.sequence === null ? undefined : BigInt(out.sequence),
        refreshHintSeconds: out.refresh_hint_seconds ?? undefined,
        x509Authorities: out.x509_authorities,
        jwtAuthorities: out.jwt_authorities,
      });
    });
  });
}
