import { importSPKI, jwtVerify, SignJWT } from 'jose';
import { generateKeyPair } from '../src/adapters/pki/index.js';
import { BundleSet } from '../src/core/bundle/source.js';
import { jwtAuthority, TrustBundle } from '../src/core/bundle/trust-bundle.js';
import { verifyJwtSvid, verifyX509Svid, X509VerifyCache } from '../src/core/verify/index.js';
import { type BenchResult, compare, type MeasureOptions, measurePair } from './lib.js';
import { benchSvidChain } from './support/svid-chain.js';

/** Runs the three comparisons; `opts` tunes measuring time (default 1 s per side per round). */
export async function run(opts: MeasureOptions & { rounds?: number } = {}): Promise<BenchResult[]> {
  // Certificates and tokens are valid around the real time: jose checks exp against the real clock.
  const now = Date.now();
  const { trustDomain: td, root, intermediate, leaf, rawVerify: raw } = await benchSvidChain();
  const jwtKeys = await generateKeyPair('ec-p256');
  const spkiDer = new Uint8Array(await crypto.subtle.exportKey('spki', jwtKeys.publicKey));
  const bundle = TrustBundle.create({
    trustDomain: td,
    x509Authorities: [root.der],
    jwtAuthorities: [jwtAuthority('k1', spkiDer)],
  });
  const source = new BundleSet([bundle]);
  const chain = [leaf.der, intermediate.der];

  const cold = () => {
    if (!verifyX509Svid(chain, source, { now }).ok) throw new Error('cold verification failed');
  };
  const cache = new X509VerifyCache();
  const warm = () => {
    if (!verifyX509Svid(chain, source, { now, cache }).ok) throw new Error('warm verification failed');
  };

  const audience = 'spiffe://bench.test/api';
  const token = await new SignJWT({ aud: audience })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' })
    .setSubject('spiffe://bench.test/svc')
    .setIssuedAt(Math.floor(now / 1000))
    .setExpirationTime(Math.floor(now / 1000) + 3600)
    .sign(jwtKeys.privateKey);
  const pem = `-----BEGIN PUBLIC KEY-----\n${Buffer.from(spkiDer).toString('base64')}\n-----END PUBLIC KEY-----\n`;
  const joseKey = await importSPKI(pem, 'ES256');
  const joseVerify = () => jwtVerify(token, joseKey, { audience, algorithms: ['ES256'] });
  const ours = () => {
    if (!verifyJwtSvid(token, source, { now, audience }).ok) throw new Error('JWT verification failed');
  };

  const [coldOps, rawOps] = await measurePair(cold, raw, opts);
  const [warmOps, rawOps2] = await measurePair(warm, raw, opts);
  const [jwtOps, joseOps] = await measurePair(ours, joseVerify, opts);
  const rawBaseline = 'node:crypto new X509Certificate x3 + verify x2';
  return [
    compare({
      name: 'X509-SVID cold (EC P-256, leaf→intermediate→root, no cache)',
      opsPerSec: coldOps,
      baselineName: rawBaseline,
      baselineOpsPerSec: rawOps,
      minRatio: 0.8,
    }),
    compare({
      name: 'X509-SVID warm (X509VerifyCache hit)',
      opsPerSec: warmOps,
      baselineName: rawBaseline,
      baselineOpsPerSec: rawOps2,
      minRatio: 10,
    }),
    compare({
      name: 'JWT-SVID ES256 (verifyJwtSvid)',
      opsPerSec: jwtOps,
      baselineName: 'jose jwtVerify, pre-imported key',
      baselineOpsPerSec: joseOps,
      minRatio: 1,
    }),
  ];
}
