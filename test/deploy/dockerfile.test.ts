/**
 * The Dockerfile's structure, without building it (test/container/ builds and runs the image): a
 * builder and a runtime stage on Node 24, production dependencies only in the runtime stage, a
 * numeric non-root user, the documented entrypoint, a .dockerignore that admits only what is
 * copied — and the source's runtime imports are all production dependencies.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

interface Instruction {
  readonly op: string;
  readonly args: string;
}
interface Stage {
  readonly from: string;
  readonly name: string | undefined;
  readonly body: Instruction[];
}

/** Splits a Dockerfile into instructions (joining `\` continuations, dropping comments). */
function parseDockerfile(text: string): { args: Map<string, string>; stages: Stage[] } {
  const logical: string[] = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (cur === '' && (line.trim() === '' || line.trim().startsWith('#'))) continue;
    if (line.endsWith('\\')) cur += `${line.slice(0, -1)} `;
    else {
      logical.push(cur + line);
      cur = '';
    }
  }
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const l of logical) {
    const m = /^\s*(\w+)\s+(.*)$/s.exec(l);
    if (!m) continue;
    const op = m[1]!.toUpperCase();
    const rest = m[2]!.trim();
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!;
      stages.push({ from: f[1]!, name: f[2], body: [] });
    } else if (stages.length === 0 && op === 'ARG') {
      const [k, v] = rest.split('=');
      args.set(k!, v ?? '');
    } else stages.at(-1)?.body.push({ op, args: rest.replace(/\s+/g, ' ') });
  }
  return { args, stages };
}

const dockerfile = parseDockerfile(readFileSync('Dockerfile', 'utf8'));
const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  bin: Record<string, string>;
};

function resolveImage(from: string): string {
  return from.replace(/\$\{(\w+)\}/g, (_, k: string) => dockerfile.args.get(k) ?? '');
}

describe('Dockerfile', () => {
  const { stages } = dockerfile;
  const builder = stages.find((s) => s.name === 'builder');
  const runtime = stages.at(-1)!;
  const runs = (s: Stage) => s.body.filter((i) => i.op === 'RUN').map((i) => i.args);

  it('has a builder and a final runtime stage, both on Node 24', () => {
    expect(stages.map((s) => s.name)).toEqual(['builder', 'runtime']);
    for (const s of stages) expect(resolveImage(s.from)).toMatch(/^node:24[-.]/);
  });

  it('builds in the builder: npm ci with dev dependencies, then the TypeScript build', () => {
    const r = runs(builder!);
    const ci = r.findIndex((c) => /\bnpm ci\b/.test(c));
    const build = r.findIndex((c) => /\btsc -p tsconfig\.build\.json\b/.test(c));
    expect(ci).toBeGreaterThanOrEqual(0);
    expect(r[ci]).not.toContain('--omit=dev');
    expect(r[ci]).toContain('--ignore-scripts');
    expect(build).toBeGreaterThan(ci);
  });

  it('prunes to production dependencies in the builder; the runtime stage installs nothing and copies one tree', () => {
    const r = runs(builder!);
    const prune = r.findIndex((c) => /\bnpm prune --omit=dev\b/.test(c));
    expect(prune).toBeGreaterThan(r.findIndex((c) => /\btsc\b/.test(c)));
    expect(r[prune]).toContain('--ignore-scripts');
    // No registry work in the runtime stage (so no CA is ever needed there).
    expect(runs(runtime).filter((c) => /\bnpm (ci|install|i|prune)\b/.test(c))).toEqual([]);
    const fromBuilder = runtime.body.filter((i) => i.op === 'COPY' && i.args.startsWith('--from='));
    expect(fromBuilder.map((i) => i.args)).toEqual(['--from=builder /out/app /app']);
    expect(runtime.body.some((i) => i.op === 'COPY' && !i.args.startsWith('--from='))).toBe(false);
  });

  it('brings a build CA into the builder only, and removes it there', () => {
    const copy = builder!.body.find((i) => i.op === 'COPY' && i.args.includes('$' + '{NPM_CA_FILE}'));
    expect(copy).toBeDefined();
    expect(runs(builder!).some((c) => /rm -f "\/src\/\$NPM_CA_FILE"/.test(c))).toBe(true);
    expect(runtime.body.some((i) => i.args.includes('NPM_CA_FILE'))).toBe(false);
  });

  it('runs as a numeric non-root user, set after every RUN', () => {
    const users = runtime.body.filter((i) => i.op === 'USER');
    expect(users).toHaveLength(1);
    const [uid, gid] = users[0]!.args.split(':').map(Number);
    expect(uid).toBeGreaterThan(0);
    expect(gid).toBeGreaterThan(0);
    const userAt = runtime.body.indexOf(users[0]!);
    expect(runtime.body.slice(userAt).some((i) => i.op === 'RUN')).toBe(false);
    // The Deployment runs as the same user.
    const dep = parseAllDocuments(readFileSync('deploy/base/deployment.yaml', 'utf8'))[0]!.toJSON() as {
      spec: { template: { spec: { securityContext: { runAsUser: number; runAsGroup: number } } } };
    };
    expect(dep.spec.template.spec.securityContext).toMatchObject({ runAsUser: uid, runAsGroup: gid });
  });

  it('starts `node --max-semi-space-size=4 --no-memory-reducer dist/cli/main.js run --config /etc/spiffe-broker/config.yaml`', () => {
    const entry = runtime.body.find((i) => i.op === 'ENTRYPOINT')!;
    const cmd = runtime.body.find((i) => i.op === 'CMD')!;
    expect(JSON.parse(entry.args)).toEqual([
      'node',
      '--max-semi-space-size=4',
      '--no-memory-reducer',
      'dist/cli/main.js',
    ]);
    // The npm bin starts with the same V8 flags.
    expect(readFileSync('src/cli/main.ts', 'utf8').split('\n')[0]).toBe(
      '#!/usr/bin/env -S node --max-semi-space-size=4 --no-memory-reducer',
    );
    expect(JSON.parse(cmd.args)).toEqual(['run', '--config', '/etc/spiffe-broker/config.yaml']);
    expect(pkg.bin['spiffe-broker']).toBe('dist/cli/main.js');
    expect(statSync('src/cli/main.ts').isFile()).toBe(true);
  });

  it('ships the .proto files the SPIRE client loads at run time', () => {
    expect(builder!.body.some((i) => i.op === 'COPY' && i.args === 'proto ./proto')).toBe(true);
    expect(runs(builder!).some((c) => /mv [^&]*\bproto\b[^&]* \/out\/app\//.test(c))).toBe(true);
    // dist/adapters/spire/proto.js → /app/proto
    expect(readFileSync('src/adapters/spire/proto.ts', 'utf8')).toContain(
      "new URL('../../../proto/', import.meta.url)",
    );
  });

  it('has a .dockerignore that admits only what the build copies', () => {
    const lines = readFileSync('.dockerignore', 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    expect(lines[0]).toBe('*');
    const allowed = lines.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
    const copied = stages
      .flatMap((s) => s.body)
      .filter((i) => i.op === 'COPY' && !i.args.startsWith('--from='))
      .flatMap((i) => i.args.split(' ').slice(0, -1))
      .filter((src) => !src.startsWith('${')); // a build-arg naming a file the build script adds
    expect(copied.length).toBeGreaterThan(4);
    for (const src of copied) expect(allowed, src).toContain(src.replace(/\/$/, ''));
    expect(lines).toContain('**/node_modules');
  });
});

describe('runtime dependencies', () => {
  function walk(dir: string): string[] {
    return readdirSync(dir).flatMap((n) => {
      const p = join(dir, n);
      return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
    });
  }

  it('every package src/ imports at run time is a production dependency', () => {
    const builtins = new Set(builtinModules);
    const used = new Map<string, string>();
    for (const file of walk('src')) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^\s*(?:import|export)\s+(?!type\b)[^'";]*?from\s+'([^']+)'/gm)) {
        const spec = m[1]!;
        if (spec.startsWith('.') || spec.startsWith('node:') || builtins.has(spec)) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        used.set(name, file);
      }
    }
    expect(used.size).toBeGreaterThan(3);
    const notProd = [...used].filter(([name]) => !(name in pkg.dependencies)).map(([n, f]) => `${n} (${f})`);
    expect(notProd).toEqual([]);
    expect(used.has('@kubernetes/client-node')).toBe(true);
  });
});
