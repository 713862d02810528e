/**
 * The FederationPeer rules for other policy engines (deploy/examples/policies), checked with each
 * engine's own offline CLI on the FederationPeers in deploy/examples/policies/testdata — the cases
 * test/deploy/admission-policy.test.ts also puts through the ValidatingAdmissionPolicy on a real
 * kube-apiserver, so the three engines are held to the same verdicts and messages.
 *
 * - Gatekeeper: `gator verify` (built by scripts/install-gator.sh from the Go module proxy).
 * - Kyverno: `kyverno test` (built by scripts/install-kyverno.sh from the Go module proxy).
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

interface KyvernoTest {
  policies: string[];
  clusterResources: string[];
  resources: string[];
  results: { policy: string; rule: string; kind: string; resources: string[]; result: 'pass' | 'fail' }[];
}
const kyvernoTestPath = join(POLICIES, 'kyverno', 'kyverno-test.yaml');
const kyvernoTest = () => parse(readFileSync(kyvernoTestPath, 'utf8')) as KyvernoTest;
const testdataFiles = () => readdirSync(TESTDATA).filter((f) => f.endsWith('.yaml'));

describe('the policy engine examples cover the same cases', () => {
  it('the gator suite has one case per testdata object, allowed-* admitted and denied-* refused', () => {
    const files = testdataFiles();
    expect(files.length).toBeGreaterThanOrEqual(7);
    const cases = gatorSuite().tests.flatMap((t) => t.cases);
    expect(cases.map((c) => c.object.replace('../testdata/', '')).sort()).toEqual([...files].sort());
    for (const c of cases) {
      // `violations: no` is parsed by gator from YAML 1.1, where no is false.
      const none = c.assertions.some((a) => a.violations === 'no' || a.violations === false);
      expect(none, c.name).toBe(c.object.includes('/allowed-'));
    }
  });

  it('the kyverno test has every testdata object, one result per rule each, denied-* failing some rule', () => {
    const t = kyvernoTest();
    const names = testdataFiles().map((f) => f.replace(/\.yaml$/, ''));
    expect(t.resources.map((r) => r.replace('../testdata/', '').replace(/\.yaml$/, '')).sort()).toEqual(
      [...names].sort(),
    );
    const rules = [...new Set(t.results.map((r) => r.rule))];
    expect(rules).toHaveLength(3);
    for (const name of names) {
      const verdicts = t.results.filter((r) => r.resources.includes(name));
      expect(verdicts.map((r) => r.rule).sort(), name).toEqual([...rules].sort());
      expect(
        verdicts.some((r) => r.result === 'fail'),
        name,
      ).toBe(name.startsWith('denied-'));
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

const kyverno = cachedTool('kyverno', 'scripts/install-kyverno.sh');

describe.skipIf(!kyverno)('Kyverno: kyverno test', () => {
  const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
  const kyvernoRun = (dir: string) => {
    const r = spawnSync(kyverno!, ['test', dir, '--detailed-results'], { encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, out: `${r.stdout}${r.stderr}`.replace(ANSI, '') };
  };
  const total = () => kyvernoTest().results.reduce((n, r) => n + r.resources.length, 0);

  it('passes the test in deploy/examples/policies/kyverno, with the policy messages of the other engines', () => {
    const r = kyvernoRun(join(POLICIES, 'kyverno'));
    expect(r.status, r.out).toBe(0);
    expect(total()).toBe(21);
    expect(r.out).toContain(`Test Summary: ${total()} tests passed and 0 tests failed`);
    for (const m of [
      'spec.trustDomain: prod.example.org is the local trust domain; a trust domain never federates with itself',
      'spec.trustDomain: other.test is outside the allowed trust domain suffixes (partner.example, vendor.example)',
      'spec.trustDomain: evilpartner.example is outside the allowed trust domain suffixes (partner.example, vendor.example)',
      'spec.bundleEndpoint: profile https_web needs caConfigMapRef (a pinned CA) in this cluster; the system web roots are not trusted for federation here',
    ]) {
      expect(r.out).toContain(m);
    }
  });

  it('fails when a verdict is wrong (the check can fail)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kyverno-flipped-'));
    try {
      cpSync(join(POLICIES, 'kyverno'), dir, { recursive: true });
      const t = kyvernoTest();
      t.resources = t.resources.map((f) => resolve(POLICIES, 'kyverno', f));
      for (const res of t.results) res.result = res.result === 'pass' ? 'fail' : 'pass';
      writeFileSync(join(dir, 'kyverno-test.yaml'), stringify(t));
      const cr = parse(readFileSync(join(dir, 'clusterresources.yaml'), 'utf8')) as {
        spec: { crds: string[] };
      };
      cr.spec.crds = cr.spec.crds.map((f) => resolve(POLICIES, 'kyverno', f));
      writeFileSync(join(dir, 'clusterresources.yaml'), stringify(cr));
      const r = kyvernoRun(dir);
      expect(r.status).not.toBe(0);
      expect(r.out).toContain(`Test Summary: 0 tests passed and ${total()} tests failed`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
