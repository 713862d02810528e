import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * Where the shared conformance material lives: `$SPIFFE_BROKER_CONFORMANCE_DIR`, else
 * `../shared/conformance` beside the checkout (as in CI). Returns undefined when absent; suites
 * then skip loudly, except under CI=true where absence is a failure.
 */
export function conformanceDir(): string | undefined {
  const candidates = [
    process.env.SPIFFE_BROKER_CONFORMANCE_DIR,
    resolve(process.cwd(), '../shared/conformance'),
  ].filter((p): p is string => typeof p === 'string' && p.length > 0);
  const found = candidates.find((p) => existsSync(resolve(p, 'bundles/expected.json')));
  if (!found) {
    const msg = `conformance vectors not found (looked in ${candidates.join(', ')})`;
    if (process.env.CI === 'true') throw new Error(`${msg}; CI must run them`);
    console.warn(`\n*** SKIPPING conformance vector tests: ${msg} ***\n`);
  }
  return found;
}
