/**
 * The FederationPeer rules for other policy engines (deploy/examples/policies), checked with each
 * engine's own offline CLI on the FederationPeers in deploy/examples/policies/testdata — the cases
 * test/deploy/admission-policy.test.ts also puts through the ValidatingAdmissionPolicy on a real
 * kube-apiserver, so the three engines are held to the same verdicts and messages.
 *
 * - Gatekeeper: `gator verify` (built by scripts/install-gator.sh from the Go module proxy).
 *
 * A missing CLI makes its suite skip loudly — except under CI=true, where it fails.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';

const POLICIES = 'deploy/examples/policies';
const TESTDATA = join(POLICIES, 'testdata');

/** Path of a CLI in the project cache, or undefined after a loud warning (a failure under CI). */
function cachedTool(name: string, installer: string): string | undefined {
  const bin = join(
    process.env.SPIFFE_BROKER_CACHE ?? join(homedir(), '.cache', 'spiffe-broker'),
    'bin',
    name,
  );
  if (existsSync(bin)) return bin;
  const msg = `${name} not installed (${bin}); run ${installer}`;
  if (process.env.CI === 'true') throw new Error(`${msg} — CI must run the policy engine tests`);
  console.warn(`\n*** SKIPPING ${name} tests: ${msg} ***\n`);
  return undefined;
}

interface GatorCase {
  name: string;
  object: string;
  assertions: { violations?: string | number | boolean; message?: string }[];
}
interface GatorSuite {
  tests: { name: string; template: string; constraint: string; cases: GatorCase[] }[];
}

const gatorSuitePath = join(POLICIES, 'gatekeeper', 'suite.yaml');
const gatorSuite = () => parse(readFileSync(gatorSuitePath, 'utf8')) as GatorSuite;

describe('the policy engine examples cover the same cases', () => {
  it('the gator suite has one case per testdata object, allowed-* admitted and denied-* refused', () => {
    const files = readdirSync(TESTDATA).filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThanOrEqual(7);
    const cases = gatorSuite().tests.flatMap((t) => t.cases);
    expect(cases.map((c) => c.object.replace('../testdata/', '')).sort()).toEqual([...files].sort());
    for (const c of cases) {
      // `violations: no` is parsed by gator from YAML 1.1, where no is false.
      const none = c.assertions.some((a) => a.violations === 'no' || a.violations === false);
      expect(none, c.name).toBe(c.object.includes('/allowed-'));
    }
  });
});

const gator = cachedTool('gator', 'scripts/install-gator.sh');

describe.skipIf(!gator)('Gatekeeper: gator verify', () => {
  const verify = (dir: string) => {
    const r = spawnSync(gator!, ['verify', '-v', dir], { encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  };

  it('passes the suite in deploy/examples/policies/gatekeeper', () => {
    const r = verify(join(POLICIES, 'gatekeeper'));
    expect(r.out).not.toContain('FAIL');
    expect(r.status, r.out).toBe(0);
    const cases = gatorSuite().tests.flatMap((t) => t.cases);
    for (const c of cases) expect(r.out).toContain(`--- PASS: ${c.name}\t`);
  });

  it('fails when a verdict is wrong (the check can fail)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gator-flipped-'));
    try {
      cpSync(join(POLICIES, 'gatekeeper'), dir, { recursive: true });
      const suite = gatorSuite();
      for (const t of suite.tests) {
        for (const c of t.cases) {
          c.object = resolve(POLICIES, 'gatekeeper', c.object);
          // allowed-* now expected refused, denied-* expected admitted.
          c.assertions = [{ violations: c.object.includes('/allowed-') ? 1 : 'no' }];
        }
      }
      writeFileSync(join(dir, 'suite.yaml'), stringify(suite));
      const r = verify(dir);
      expect(r.status).not.toBe(0);
      const failed = r.out
        .split('\n')
        .filter((l) => l.includes('--- FAIL:') && !l.includes('federationpeer-rules'));
      expect(failed).toHaveLength(suite.tests.flatMap((t) => t.cases).length);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
