import { describe, expect, it } from 'vitest';
import type { AuditTrail } from '../../../src/adapters/audit/audit-trail.js';
import { auditObservers } from '../../../src/adapters/audit/observers.js';
import { TrustDomain } from '../../../src/core/spiffeid/index.js';
import { logObservers } from '../../../src/daemon/log-observers.js';
import type { PeerConfig } from '../../../src/engine/config/types.js';
import { PolicyError } from '../../../src/errors.js';
import type { Logger } from '../../../src/platform/logger.js';

// The repeat limiter as wired into the daemon's audit and log observers (docs/security.md gap 6):
// a peer refused every second for a minute writes one record and one log line, and the next one
// after the interval says how many it stands for.
const peer = { trustDomain: TrustDomain.parse('hostile.test') } as PeerConfig;
const refusal = () =>
  new PolicyError('ERR_POLICY_SEQUENCE_ROLLBACK', 'spiffe_sequence went back from 9 to 1');

describe('audit and log observers limit repeated refusals', () => {
  it('one audit record and one log line per peer and code per minute, then a count of the suppressed ones', () => {
    let now = 0;
    const records: { code: string; message: string }[] = [];
    const trail = {
      bundleRefused: async (e: { code: string; message: string }) => {
        records.push(e);
        return undefined;
      },
    } as unknown as AuditTrail;
    const audit = auditObservers({
      trail: () => trail,
      onWriteFailure: () => undefined,
      enforce: false,
      now: () => now,
    });
    const lines: string[] = [];
    const logger: Logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (msg, f) => lines.push(`${msg} ${String(f?.error)}`),
      error: () => undefined,
    };
    const logs = logObservers(logger, () => now);
    for (let i = 0; i < 60; i++, now += 1000) {
      audit.federation.refused?.(peer, refusal());
      logs.federation.refused?.(peer, refusal());
    }
    expect(records).toHaveLength(1);
    expect(lines).toHaveLength(1);
    now += 1000;
    audit.federation.refused?.(peer, refusal());
    logs.federation.refused?.(peer, refusal());
    expect(records).toHaveLength(2);
    expect(records[1]!.message).toMatch(/^\[59 identical reports suppressed/);
    expect(lines[1]).toMatch(/\[59 identical reports suppressed/);
    // Another code is not limited by the first.
    audit.federation.refused?.(peer, new PolicyError('ERR_POLICY_EMPTY_BUNDLE_REFUSED', 'empty'));
    expect(records).toHaveLength(3);
  });
});
