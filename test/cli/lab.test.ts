import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runCliCapture } from '../support/cli.js';

describe('spiffe-broker lab', () => {
  it('--json prints one ready line once federated, runs until stopped, then removes its temp dirs', async () => {
    const stop = new AbortController();
    let stdout = '';
    const running = runCliCapture(['lab', '--json', '--spire', 'emulator'], {
      io: {
        signal: stop.signal,
        stdout: (t) => {
          stdout += t;
          if (t.includes('"ready"')) setTimeout(() => stop.abort(), 200);
        },
      },
    });
    const r = await running;
    expect(r.code, `stdout: ${stdout}\nstderr: ${r.stderr}`).toBe(0);
    const line = JSON.parse(stdout.trim().split('\n')[0]!) as {
      ready: boolean;
      spire: string;
      spireServerBin: string | null;
      trustDomains: {
        name: string;
        bundleEndpoint: string;
        profile: string;
        endpointSpiffeId: string;
        admin: string;
        spireSockets: string[];
      }[];
    };
    expect(line.ready).toBe(true);
    expect(line.spire).toBe('emulator');
    expect(line.spireServerBin).toBeNull();
    expect(line.trustDomains.map((d) => d.name)).toEqual(['alpha.lab', 'beta.lab', 'gamma.lab']);
    for (const d of line.trustDomains) {
      expect(d.bundleEndpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
      expect(d.admin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(d.profile).toBe('https_spiffe');
      expect(d.endpointSpiffeId).toBe(`spiffe://${d.name}/spiffe-broker`);
      expect(existsSync(d.spireSockets[0]!)).toBe(false); // removed on stop
    }
  }, 60_000);

  it('narrates the demo: rotation, mTLS, outage (STALE, still trusted), revocation', async () => {
    const r = await runCliCapture(['lab', '--spire', 'emulator']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/reached alpha\.lab's and gamma\.lab's SPIRE servers in \d+ ms/);
    expect(r.stdout).toContain('frontend -> backend: backend served spiffe://beta.lab/frontend');
    expect(r.stdout).toMatch(/beta\.lab\/intruder -> backend: refused/);
    expect(r.stdout).toMatch(/reports gamma\.lab STALE \(ERR_PEER_STALE\)/);
    expect(r.stdout).toContain('still trusted.');
    expect(r.stdout).toMatch(/beta\.lab's bundle was deleted from alpha\.lab's SPIRE server/);
    expect(r.stdout).toMatch(/backend now: refused/);
  }, 90_000);
});
