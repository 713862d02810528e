/** Fixtures for the endpoint tests: bundles from fresh CAs, a controllable GetBundle source, a log sink. */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { jwtAuthority, TrustBundle } from '../../src/bundle/trust-bundle.js';
import type { EndpointLogger } from '../../src/endpoint/deps.js';
import type { LocalBundleGetter } from '../../src/endpoint/local-bundle.js';
import { createCa, type IssuedCert } from '../../src/pki/index.js';
import { TrustDomain } from '../../src/spiffeid/trust-domain.js';

export const NOT_BEFORE = new Date('2025-01-01T00:00:00Z');
export const NOT_AFTER = new Date('2035-01-01T00:00:00Z');
export const LOCAL_TD = TrustDomain.parse('local.test');

export async function makeCa(td: TrustDomain = LOCAL_TD): Promise<IssuedCert> {
  return createCa({ trustDomain: td, notBefore: NOT_BEFORE, notAfter: NOT_AFTER });
}

/** A bundle with the given CAs (fresh ones when omitted) and one JWT key. */
export async function makeBundle(
  opts: { td?: TrustDomain; cas?: IssuedCert[]; sequence?: bigint; refreshHint?: number; jwt?: number } = {},
): Promise<TrustBundle> {
  const td = opts.td ?? LOCAL_TD;
  const cas = opts.cas ?? [await makeCa(td)];
  return TrustBundle.create({
    trustDomain: td,
    x509Authorities: cas.map((c) => c.der),
    jwtAuthorities: Array.from({ length: opts.jwt ?? 1 }, () =>
      jwtAuthority(
        randomBytes(8).toString('hex'),
        generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey,
      ),
    ),
    refreshHint: opts.refreshHint ?? 0,
    sequence: opts.sequence ?? 1n,
  });
}

/** A GetBundle source whose answer the test controls. */
export class FakeBundleGetter implements LocalBundleGetter {
  bundle: TrustBundle | undefined;
  error: Error | undefined;
  calls = 0;
  /** When set, getBundle waits for this promise before answering. */
  gate: Promise<void> | undefined;

  constructor(bundle?: TrustBundle) {
    this.bundle = bundle;
  }

  async getBundle(): Promise<TrustBundle> {
    this.calls++;
    if (this.gate) await this.gate;
    if (this.error) throw this.error;
    if (!this.bundle) throw new Error('no bundle configured');
    return this.bundle;
  }
}

/** A logger that records every line. */
export class RecordingLogger implements EndpointLogger {
  readonly lines: { level: string; message: string; fields?: Readonly<Record<string, unknown>> }[] = [];
  debug(message: string, fields?: Readonly<Record<string, unknown>>): void {
    this.lines.push({ level: 'debug', message, ...(fields ? { fields } : {}) });
  }
  info(message: string, fields?: Readonly<Record<string, unknown>>): void {
    this.lines.push({ level: 'info', message, ...(fields ? { fields } : {}) });
  }
  warn(message: string, fields?: Readonly<Record<string, unknown>>): void {
    this.lines.push({ level: 'warn', message, ...(fields ? { fields } : {}) });
  }
  error(message: string, fields?: Readonly<Record<string, unknown>>): void {
    this.lines.push({ level: 'error', message, ...(fields ? { fields } : {}) });
  }
  at(level: string): string[] {
    return this.lines.filter((l) => l.level === level).map((l) => l.message);
  }
}
