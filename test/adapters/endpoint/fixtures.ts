/** Fixtures for the endpoint tests: bundles from fresh CAs, a controllable GetBundle source, a log sink. */

import { randomBytes } from 'node:crypto';
import { keyPairSync } from '../../../src/platform/keygen.js';
import 'reflect-metadata';
import { Pkcs10CertificateRequest, SubjectAlternativeNameExtension } from '@peculiar/x509';
import type { EndpointLogger } from '../../../src/adapters/endpoint/deps.js';
import type { LocalBundleGetter } from '../../../src/adapters/endpoint/local-bundle.js';
import type { X509SvidMinter } from '../../../src/adapters/endpoint/svid-credentials.js';
import { createCa, type IssuedCert, signCsr } from '../../../src/adapters/pki/index.js';
import { jwtAuthority, TrustBundle } from '../../../src/core/bundle/trust-bundle.js';
import { SpiffeId } from '../../../src/core/spiffeid/spiffe-id.js';
import { TrustDomain } from '../../../src/core/spiffeid/trust-domain.js';

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
      jwtAuthority(randomBytes(8).toString('hex'), keyPairSync('ec', { namedCurve: 'P-256' }).publicKey),
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

/**
 * A MintX509SVID stand-in signing CSRs with a local CA (what SPIRE's SVID API does), for the
 * given lifetime from `clock.now()`.
 */
export class CaMinter implements X509SvidMinter {
  readonly ca: IssuedCert;
  readonly clock: { now(): number };
  /** Default lifetime when the caller asks for 0. */
  readonly defaultTtlSeconds: number;
  /** When set, the next mint certifies this ID instead of the one requested (a misbehaving server). */
  overrideId: SpiffeId | undefined;
  error: Error | undefined;
  minted: { id: string; notAfter: number }[] = [];

  constructor(ca: IssuedCert, clock: { now(): number }, defaultTtlSeconds = 3600) {
    this.ca = ca;
    this.clock = clock;
    this.defaultTtlSeconds = defaultTtlSeconds;
  }

  async mintX509Svid(
    csrDer: Uint8Array,
    ttlSeconds: number,
  ): Promise<{ certChain: Uint8Array[]; expiresAt: number }> {
    if (this.error) throw this.error;
    const req = new Pkcs10CertificateRequest(Uint8Array.from(csrDer));
    const san = req.extensions.find((e) => e instanceof SubjectAlternativeNameExtension) as
      | SubjectAlternativeNameExtension
      | undefined;
    const uri = san?.names.items.find((n) => n.type === 'url')?.value;
    const id = this.overrideId ?? SpiffeId.parse(uri ?? '');
    const now = this.clock.now();
    const ttl = ttlSeconds > 0 ? ttlSeconds : this.defaultTtlSeconds;
    const notBefore = new Date(Math.floor(now / 1000) * 1000);
    const notAfter = new Date(notBefore.getTime() + ttl * 1000);
    const svid = await signCsr({ csrDer, issuer: this.ca, id, notBefore, notAfter });
    this.minted.push({ id: id.toString(), notAfter: notAfter.getTime() });
    return { certChain: [svid.der], expiresAt: Math.floor(notAfter.getTime() / 1000) };
  }
}
