import { describe, expect, it } from 'vitest';
import type { BrokerStatus } from '../../src/adapters/admin/status.js';
import type { CliIo } from '../../src/cli/io.js';
import { escapeTerminal } from '../../src/cli/output.js';
import type { AdminCliIo } from '../../src/cli/status-command.js';
import { jwtAuthority, marshalBundle, TrustBundle } from '../../src/core/bundle/index.js';
import { TrustDomain } from '../../src/core/spiffeid/index.js';
import { keyPairSync } from '../../src/platform/keygen.js';
import { STATUS } from '../adapters/admin/fixtures.js';
import { runCliCapture } from '../support/cli.js';

// ESC ] 0 ; … BEL retitles a terminal window; ESC [ 2 J clears the screen; CR rewrites the line.
const HOSTILE = 'k\u001b]0;owned\u0007\u001b[2J\rx\u009b31m\u202eevil';
// biome-ignore lint/suspicious/noControlCharactersInRegex: the test looks for them.
const ANY_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

describe('terminal escape injection (peer-chosen strings in human CLI output)', () => {
  it('escapeTerminal turns every control character into a visible \\u escape and keeps tab and newline', () => {
    expect(escapeTerminal(`a\tb\n${HOSTILE}`)).toBe(
      'a\tb\nk\\u001b]0;owned\\u0007\\u001b[2J\\u000dx\\u009b31m\\u202eevil',
    );
    expect(escapeTerminal('plain ü text')).toBe('plain ü text');
  });

  it('bundle parse prints a hostile kid escaped, never raw', async () => {
    const key = keyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    const doc = marshalBundle(
      TrustBundle.create({
        trustDomain: TrustDomain.parse('example.org'),
        jwtAuthorities: [jwtAuthority(HOSTILE, key)],
      }),
    );
    const r = await runCliCapture(['bundle', 'parse', 'b.json', '--trust-domain', 'example.org'], {
      files: { 'b.json': doc },
    });
    expect(r.code).toBe(0);
    expect(r.stdout).not.toMatch(ANY_CONTROL);
    expect(r.stdout).toContain('kid k\\u001b]0;owned\\u0007\\u001b[2J\\u000dx\\u009b31m\\u202eevil');
    // --json is still valid JSON carrying the kid unchanged.
    const j = await runCliCapture(['bundle', 'parse', 'b.json', '--trust-domain', 'example.org', '--json'], {
      files: { 'b.json': doc },
    });
    expect(j.stdout).not.toMatch(ANY_CONTROL);
    expect((j.json().jwtAuthorities as { kid: string }[])[0]?.kid).toBe(HOSTILE);
  });

  it('status prints a refusal message quoting a hostile kid escaped', async () => {
    const status: BrokerStatus = {
      ...STATUS,
      peers: [
        {
          ...STATUS.peers[0]!,
          state: 'FAILING',
          reason: { code: 'ERR_POLICY_KEY_TYPE', message: `key "${HOSTILE}" refused` },
        },
      ],
    };
    const httpGet: AdminCliIo['httpGet'] = async () => ({ status: 200, body: JSON.stringify(status) });
    const r = await runCliCapture(['status'], {
      now: Date.parse('2030-01-01T00:00:30.000Z'),
      io: { httpGet } as Partial<CliIo>,
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('key "k\\u001b]0;owned');
    expect(r.stdout).not.toMatch(ANY_CONTROL);
  });

  it('errors on stderr are escaped too', async () => {
    const r = await runCliCapture(['bundle', 'parse', `b\u001b[31m.json`, '--trust-domain', 'example.org'], {
      disk: false,
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('b\\u001b[31m.json');
    expect(r.stderr).not.toMatch(ANY_CONTROL);
  });
});
