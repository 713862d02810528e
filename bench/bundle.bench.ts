/**
 * Bundle parse throughput: our strict parser (own JSON reader, uint64 sequence, duplicate-member
 * refusal, every spec check, certificate decoding) vs `JSON.parse` + the same structural
 * validation + certificate decoding of the same 10 X.509 + 10 JWT key bundle, measured in the same
 * run. Goal ≥ 0.8× (certificate decoding dominates both sides).
 * @module
 */

import { createPublicKey, X509Certificate } from 'node:crypto';
import { createCa } from '../src/adapters/pki/index.js';
import { marshalBundle, parseBundle } from '../src/core/bundle/codec.js';
import { jwtAuthority, TrustBundle } from '../src/core/bundle/trust-bundle.js';
import { TrustDomain } from '../src/core/spiffeid/index.js';
import { keyPairSync } from '../src/platform/keygen.js';
import { type BenchResult, compare, type MeasureOptions, measurePair } from './lib.js';

interface Jwk {
  use?: string;
  kty?: string;
  kid?: string;
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
  x5c?: string[];
}

/** The baseline: what a straightforward implementation on JSON.parse would do. */
function baselineParse(text: string): number {
  const doc = JSON.parse(text) as { keys?: Jwk[]; spiffe_sequence?: number; spiffe_refresh_hint?: number };
  if (!doc || typeof doc !== 'object' || !Array.isArray(doc.keys)) throw new Error('keys');
  if (doc.spiffe_sequence !== undefined && !Number.isInteger(doc.spiffe_sequence))
    throw new Error('sequence');
  let n = 0;
  for (const k of doc.keys) {
    if (k.use === 'x509-svid') {
      if (k.x5c?.length !== 1) throw new Error('x5c');
      const cert = new X509Certificate(Buffer.from(k.x5c[0]!, 'base64'));
      if (!cert.ca) throw new Error('ca');
      const jwkKey = createPublicKey({ key: { kty: k.kty!, crv: k.crv!, x: k.x!, y: k.y! }, format: 'jwk' });
      if (!jwkKey.equals(cert.publicKey)) throw new Error('mismatch');
      n++;
    } else if (k.use === 'jwt-svid') {
      if (!k.kid) throw new Error('kid');
      createPublicKey({ key: { kty: k.kty!, crv: k.crv!, x: k.x!, y: k.y! }, format: 'jwk' });
      n++;
    }
  }
  return n;
}

export async function run(opts: MeasureOptions & { rounds?: number } = {}): Promise<BenchResult[]> {
  const td = TrustDomain.parse('bench.test');
  const notBefore = new Date(Date.now() - 3_600_000);
  const notAfter = new Date(Date.now() + 86_400_000);
  const cas = await Promise.all(
    Array.from({ length: 10 }, () => createCa({ trustDomain: td, notBefore, notAfter })),
  );
  const bundle = TrustBundle.create({
    trustDomain: td,
    x509Authorities: cas.map((c) => c.der),
    jwtAuthorities: Array.from({ length: 10 }, (_, i) =>
      jwtAuthority(`kid-${i}`, keyPairSync('ec', { namedCurve: 'P-256' }).publicKey),
    ),
    sequence: 42n,
    refreshHint: 300,
  });
  const text = marshalBundle(bundle);
  const bytes = new TextEncoder().encode(text);
  if (parseBundle(td, bytes).bundle.x509Authorities.length !== 10 || baselineParse(text) !== 20) {
    throw new Error('bench fixtures are wrong');
  }
  const [ours, base] = await measurePair(
    () => parseBundle(td, bytes),
    () => baselineParse(new TextDecoder().decode(bytes)),
    opts,
  );
  return [
    compare({
      name: 'bundle parse, 10 X.509 + 10 JWT keys (strict reader)',
      opsPerSec: ours,
      baselineName: 'JSON.parse + validation + certificate decoding',
      baselineOpsPerSec: base,
      minRatio: 0.8,
    }),
  ];
}
