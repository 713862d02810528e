import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { marshalBundle } from '../../src/core/bundle/codec.js';
import { makePki } from '../support/fixtures.js';
import { BROKER_UID, docker, dockerOk, dockerOrSkip, PRODUCT_IMAGE, STACK_LINE } from './docker.js';

/**
 * The product image as users run it (issue 14): non-root (65532), read-only root filesystem, all
 * capabilities dropped, no-new-privileges; every CLI command answers; bad configuration gives a
 * coded error and exit 1/2, never a stack trace; no layer holds a CA file or a secret.
 * Needs docker and the image (scripts/ci-containers.sh); fails under CI=true without them.
 */
const available = await dockerOrSkip('product image', [PRODUCT_IMAGE]);
const HARDENED = ['--read-only', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges'];

let dir: string;

/** `docker run --rm` of the image, hardened, with `dir` mounted read-only at /cfg. */
function run(args: readonly string[], opts: { entrypoint?: string; extra?: readonly string[] } = {}) {
  return docker(
    [
      'run',
      '--rm',
      ...HARDENED,
      '-v',
      `${dir}:/cfg:ro`,
      ...(opts.extra ?? []),
      ...(opts.entrypoint ? ['--entrypoint', opts.entrypoint] : []),
      PRODUCT_IMAGE,
      ...args,
    ],
    { timeoutMs: 60_000 },
  );
}

describe.skipIf(!available)('product image (docker)', () => {
  beforeAll(() => {
    dir = mkdtempSync('/tmp/sbct-image-');
    chmodSync(dir, 0o755);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function write(name: string, text: string): string {
    writeFileSync(join(dir, name), text, { mode: 0o644 });
    return `/cfg/${name}`;
  }

  it('runs as uid/gid 65532 with a read-only root, no capabilities and no-new-privileges', async () => {
    const user = await dockerOk(['image', 'inspect', '--format', '{{.Config.User}}', PRODUCT_IMAGE]);
    expect(user.trim()).toBe(`${BROKER_UID}:${BROKER_UID}`);
    const probe = [
      "const fs=require('node:fs');",
      "const st=fs.readFileSync('/proc/self/status','utf8');",
      'const f=(k)=>(st.split("\\n").find((l)=>l.startsWith(k+":"))||"").split(/\\s+/)[1];',
      'const tryWrite=(p)=>{try{fs.writeFileSync(p,"x");return "written"}catch(e){return e.code}};',
      'console.log(JSON.stringify({uid:process.getuid(),gid:process.getgid(),groups:process.getgroups(),',
      "capEff:f('CapEff'),capBnd:f('CapBnd'),noNewPrivs:f('NoNewPrivs'),",
      "app:tryWrite('/app/x'),etc:tryWrite('/etc/x'),state:tryWrite('/var/lib/spiffe-broker/x'),",
      "npm:fs.existsSync('/usr/local/bin/npm')||fs.existsSync('/usr/local/lib/node_modules/npm')}))",
    ].join('');
    const r = await run(['-e', probe], {
      entrypoint: 'node',
      extra: ['-v', `sbct-image-state-${process.pid}:/var/lib/spiffe-broker`],
    });
    await docker(['volume', 'rm', '-f', `sbct-image-state-${process.pid}`]);
    expect(r.stderr).toBe('');
    const got = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(got).toEqual({
      uid: BROKER_UID,
      gid: BROKER_UID,
      groups: [BROKER_UID],
      capEff: '0000000000000000',
      capBnd: '0000000000000000',
      noNewPrivs: '1',
      app: 'EROFS',
      etc: 'EROFS',
      // The state volume (initialised from the image: 65532, 0700) is the one writable place.
      state: 'written',
      npm: false,
    });
  });

  it('every CLI command answers in the image (help of each, and the standalone ones for real)', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    const commands = [...help.stdout.matchAll(/^ {2}([a-z][a-z-]+) {2,}/gm)].map((m) => m[1]!);
    expect(commands).toEqual(
      expect.arrayContaining([
        'run',
        'lab',
        'status',
        'diff',
        'check-config',
        'fetch',
        'bundle',
        'verify',
        'audit',
      ]),
    );
    // One container for all --help calls: a container start costs ~1 s on two cores.
    const script = commands
      .map((c) => `node dist/cli/main.js ${c} --help >/dev/null 2>/tmp/e || { echo "${c}: $?"; cat /tmp/e; }`)
      .join('; ');
    const each = await run(['-c', script], { entrypoint: 'sh', extra: ['--tmpfs', '/tmp'] });
    expect(each.stdout + each.stderr).toBe('');

    // check-config on a valid broker config and allowlist; bundle parse on a real bundle.
    const pki = await makePki('example.org');
    const bundle = write('bundle.json', marshalBundle(pki.bundle));
    const allowlist = write(
      'allowlist.yaml',
      'apiVersion: spiffe-broker.dev/v1\nkind: Allowlist\npeers: []\n',
    );
    const config = write(
      'broker.yaml',
      [
        'apiVersion: spiffe-broker.dev/v1',
        'kind: BrokerConfig',
        'trustDomain: example.org',
        'stateDir: /var/lib/spiffe-broker',
        'spire:',
        '  servers:',
        '    - name: main',
        '      address: unix:///run/spire/server/api.sock',
        'allowlist:',
        `  file: ${allowlist}`,
      ].join('\n'),
    );
    const cc = await run(['check-config', config]);
    expect(cc.stderr).toBe('');
    expect(cc.code).toBe(0);
    const ca = await run(['check-config', allowlist, '--broker-config', config]);
    expect(ca.code).toBe(0);
    const bp = await run(['bundle', 'parse', bundle, '--trust-domain', 'example.org', '--json']);
    expect(bp.code).toBe(0);
    expect(JSON.parse(bp.stdout)).toMatchObject({ ok: true });
  }, 60_000);

  it('`lab --json` reaches ready in the hardened container and SIGTERM stops it with exit 0', async () => {
    const name = `sbct-lab-${process.pid}`;
    try {
      await dockerOk([
        'run',
        '-d',
        '--name',
        name,
        ...HARDENED,
        '--tmpfs',
        '/tmp',
        PRODUCT_IMAGE,
        'lab',
        '--json',
        '--spire',
        'emulator',
      ]);
      const start = Date.now();
      let logs = '';
      while (!logs.includes('"ready":true') && Date.now() - start < 60_000) {
        await new Promise((r) => setTimeout(r, 500));
        logs = (await docker(['logs', name])).stdout;
      }
      expect(logs).toContain('"ready":true');
      await dockerOk(['stop', '-t', '10', name]);
      const exit = await dockerOk(['inspect', '--format', '{{.State.ExitCode}}', name]);
      expect(exit.trim()).toBe('0');
    } finally {
      await docker(['rm', '-f', '-v', name]);
    }
  }, 90_000);

  it('bad configuration: a coded error and exit 1 or 2, never a stack trace', async () => {
    const bad = write(
      'bad.yaml',
      'apiVersion: spiffe-broker.dev/v1\nkind: BrokerConfig\ntrustDomain: Not A Domain\n',
    );
    const cases: [string[], RegExp][] = [
      [['run', '--config', bad], /\(ERR_CONFIG_[A-Z_]+\)/],
      // An unreadable file is reported by the CLI as a usage error (exit 2).
      [['run', '--config', '/cfg/missing.yaml'], /\(ERR_[A-Z_]+\)/],
      [['run'], /usage|--config/i],
      [['check-config', bad], /\(ERR_CONFIG_TRUST_DOMAIN\)/],
      [['no-such-command'], /unknown command|usage/i],
    ];
    for (const [args, pattern] of cases) {
      const r = await run(args);
      expect([1, 2], `${args.join(' ')}: exit ${r.code}\n${r.stderr}`).toContain(r.code);
      expect(r.stdout + r.stderr).toMatch(pattern);
      expect(r.stdout + r.stderr, args.join(' ')).not.toMatch(STACK_LINE);
    }
  }, 60_000);

  it('no layer of the image holds the build CA, any CA/key file or a secret; history shows none', async () => {
    const history = await dockerOk(['history', '--no-trunc', '--format', '{{.CreatedBy}}', PRODUCT_IMAGE]);
    for (const bad of [
      'NPM_CA_FILE',
      'npm-build-ca',
      'BEGIN CERTIFICATE',
      'PRIVATE KEY',
      'cafile',
      '_authToken',
      'NODE_EXTRA_CA_CERTS',
    ]) {
      expect(history, bad).not.toContain(bad);
    }
    const env = await dockerOk(['image', 'inspect', '--format', '{{json .Config.Env}}', PRODUCT_IMAGE]);
    expect(env).not.toMatch(/CA_CERT|cafile|TOKEN|PASSWORD|SECRET/i);

    // Every file of every layer: none is the build CA or a CA bundle; the layers this build added
    // (above its base) hold no PEM certificate or key at all.
    const base = (
      await dockerOk([
        'image',
        'inspect',
        '--format',
        '{{index .Config.Labels "dev.spiffe-broker.node-image"}}',
        PRODUCT_IMAGE,
      ])
    ).trim();
    const baseLayers = JSON.parse(
      await dockerOk(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', base]),
    ) as string[];
    const imageLayers = JSON.parse(
      await dockerOk(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', PRODUCT_IMAGE]),
    ) as string[];
    expect(imageLayers.slice(0, baseLayers.length)).toEqual(baseLayers);
    const added = imageLayers.length - baseLayers.length;
    expect(added).toBeGreaterThan(0);

    const out = mkdtempSync('/tmp/sbct-save-');
    try {
      await promisify(execFile)('sh', ['-c', `docker save ${PRODUCT_IMAGE} | tar -x -C ${out}`], {
        maxBuffer: 1 << 20,
      });
      const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { Layers: string[] }[];
      const layers = manifest[0]!.Layers;
      expect(layers).toHaveLength(imageLayers.length);
      // The CA certificates the build trusted (the intercepting CA among them), by DER fingerprint.
      const caFile = process.env.SSL_CERT_FILE ?? '/etc/ssl/certs/ca-certificates.crt';
      const caFingerprints = new Set<string>();
      try {
        for (const m of readFileSync(caFile, 'utf8').matchAll(
          /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g,
        )) {
          caFingerprints.add(new X509Certificate(m[0]).fingerprint256);
        }
      } catch {
        // No CA bundle on this machine: nothing to look for beyond the file names and PEM blocks.
      }
      const caText = caFingerprints.size > 0 ? readFileSync(caFile, 'utf8') : undefined;
      for (const [i, layer] of layers.entries()) {
        const ldir = join(out, `layer-${i}`);
        await promisify(execFile)('mkdir', ['-p', ldir]);
        await promisify(execFile)('tar', ['-x', '-C', ldir, '-f', join(out, layer)]).catch(() => undefined);
        const files = (
          await promisify(execFile)('find', [ldir, '-type', 'f'], { maxBuffer: 64 << 20 })
        ).stdout
          .split('\n')
          .filter(Boolean);
        for (const f of files) {
          const rel = f.slice(ldir.length);
          expect(rel, `layer ${i}`).not.toMatch(/npm-build-ca|\.npmrc$/);
          if (i < baseLayers.length) continue;
          // A layer this build added.
          expect(rel, `layer ${i}`).not.toMatch(/\.(pem|crt|key|p12|pfx)$/);
          const data = readFileSync(f);
          if (caText !== undefined && data.length === Buffer.byteLength(caText)) {
            expect(data.toString('utf8') === caText, `${rel} is the build CA bundle`).toBe(false);
          }
          const text = data.toString('latin1');
          for (const m of text.matchAll(
            /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----/g,
          )) {
            let fp: string | undefined;
            try {
              fp = new X509Certificate(m[0]).fingerprint256;
            } catch {
              fp = undefined;
            }
            expect(fp !== undefined && caFingerprints.has(fp), `${rel} holds a trusted CA certificate`).toBe(
              false,
            );
          }
          expect(text, rel).not.toMatch(
            /-----BEGIN (EC |RSA )?PRIVATE KEY-----[A-Za-z0-9+/=\s]{40,}-----END/,
          );
        }
      }
      expect(readdirSync(out).length).toBeGreaterThan(0);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 180_000);
});
