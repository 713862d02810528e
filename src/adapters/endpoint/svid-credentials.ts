import { KeyObject } from 'node:crypto';
import type { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import { parseCertificateDer } from '../../core/verify/der.js';
import { EndpointError } from '../../errors.js';
import { createCsr } from '../pki/csr.js';
import { generateKeyPair, type KeyAlgorithm } from '../pki/keys.js';
import type { EndpointDeps } from './deps.js';
import { sleep } from './deps.js';
import {
  CredentialHolder,
  type CredentialRefusal,
  chainToPem,
  type TlsCredentials,
  validateTlsCredentials,
} from './tls-credentials.js';

/** SPIRE's MintX509SVID (`SpireServerClient` implements this). */
export interface X509SvidMinter {
  /**
   * Signs `csrDer` (PKCS#10 carrying the SPIFFE ID as its URI SAN) for `ttlSeconds` (0 = the
   * server's default X509-SVID TTL).
   */
  mintX509Svid(
    csrDer: Uint8Array,
    ttlSeconds: number,
    opts?: { readonly signal?: AbortSignal },
  ): Promise<{ readonly certChain: readonly Uint8Array[]; readonly expiresAt: number }>;
}

/** First retry delay after a failed mint, ms; doubles up to {@link MAX_MINT_RETRY_MS}. */
export const MIN_MINT_RETRY_MS = 1_000;
/** Longest retry delay after failed mints, ms. */
export const MAX_MINT_RETRY_MS = 30_000;

/** Options of {@link MintedSvidCredentials}. */
export interface MintedSvidCredentialsOptions {
  readonly minter: X509SvidMinter;
  /** The endpoint's SPIFFE ID, e.g. `spiffe://<trust domain>/spiffe-broker`. */
  readonly spiffeId: SpiffeId;
  /** Requested SVID lifetime, seconds; 0 (default) lets SPIRE apply its default X509-SVID TTL. */
  readonly ttlSeconds?: number;
  /** Key type of the endpoint's key pair. Default `'ec-p256'`. */
  readonly keyAlgorithm?: KeyAlgorithm;
  /** Called when a mint fails or its SVID is refused (metrics hook). */
  readonly onRefused?: (refusal: CredentialRefusal) => void;
  readonly deps?: Partial<EndpointDeps>;
}

/** The SPIFFE ID of the broker's own endpoint when none is configured. */
export const DEFAULT_ENDPOINT_ID_PATH = '/spiffe-broker';

/**
 * Checks that an X509-SVID chain certifies exactly `expected` (X509-SVID §2: one URI SAN, the
 * SPIFFE ID) and is usable with `keyPem`; returns the validated credentials.
 * @throws EndpointError `ERR_ENDPOINT_SVID`
 */
export function validateEndpointSvid(input: {
  chain: readonly Uint8Array[];
  keyPem: string;
  expected: SpiffeId;
  now: number;
}): TlsCredentials {
  const origin = `X509-SVID ${input.expected.toString()}`;
  if (input.chain.length === 0) throw new EndpointError('ERR_ENDPOINT_SVID', `${origin}: the chain is empty`);
  let uris: readonly string[];
  try {
    uris = parseCertificateDer(input.chain[0]!).uris;
  } catch (cause) {
    throw new EndpointError('ERR_ENDPOINT_SVID', `${origin}: the leaf certificate cannot be parsed`, {
      cause,
    });
  }
  // SPIFFE Federation §5.2.2.3: the server certificate must be a valid X509-SVID, and clients check
  // it is for exactly the configured endpoint ID (§5.2.2.4).
  if (uris.length !== 1 || uris[0] !== input.expected.toString()) {
    throw new EndpointError(
      'ERR_ENDPOINT_SVID',
      `${origin}: the leaf certifies ${uris.length === 0 ? 'no URI' : uris.join(', ')}, expected exactly ${input.expected.toString()}`,
    );
  }
  return validateTlsCredentials({
    certChainPem: chainToPem(input.chain),
    keyPem: input.keyPem,
    now: input.now,
    origin,
    code: 'ERR_ENDPOINT_SVID',
  });
}

/**
 * https_spiffe credentials (SPIFFE Federation §5.2.2.3): an X509-SVID for the broker's own SPIFFE
 * ID minted through SPIRE's SVID API — a fresh key pair, a CSR, MintX509SVID, the returned chain —
 * and renewed at half its lifetime on the injected clock. A failed renewal is retried with backoff
 * (1 s doubling to 30 s) while the current SVID keeps being served.
 */
export class MintedSvidCredentials extends CredentialHolder {
  readonly spiffeId: SpiffeId;
  readonly #minter: X509SvidMinter;
  readonly #ttlSeconds: number;
  readonly #keyAlgorithm: KeyAlgorithm;
  readonly #onRefused: ((r: CredentialRefusal) => void) | undefined;

  constructor(opts: MintedSvidCredentialsOptions) {
    super(opts.deps);
    this.spiffeId = opts.spiffeId;
    this.#minter = opts.minter;
    this.#ttlSeconds = opts.ttlSeconds ?? 0;
    this.#keyAlgorithm = opts.keyAlgorithm ?? 'ec-p256';
    this.#onRefused = opts.onRefused;
  }

  /**
   * Mints the first SVID if none is held.
   * @throws EndpointError `ERR_ENDPOINT_SVID`, or the minter's error (e.g. a SpireError)
   */
  async ready(signal?: AbortSignal): Promise<TlsCredentials> {
    const cur = this.current();
    if (cur) return cur;
    const creds = await this.mint(signal);
    this.install(creds);
    return creds;
  }

  /** Mints and validates one SVID without installing it. */
  async mint(signal?: AbortSignal): Promise<TlsCredentials> {
    const keys = await generateKeyPair(this.#keyAlgorithm);
    const csr = await createCsr({ keys, id: this.spiffeId });
    const minted = await this.#minter.mintX509Svid(csr, this.#ttlSeconds, signal ? { signal } : {});
    const keyPem = KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }).toString();
    return validateEndpointSvid({
      chain: minted.certChain,
      keyPem,
      expected: this.spiffeId,
      now: this.deps.clock.now(),
    });
  }

  /** The renewal time of `creds`: half-way through the leaf's lifetime. */
  static renewalTime(creds: TlsCredentials): number {
    return creds.notBefore + Math.floor((creds.notAfter - creds.notBefore) / 2);
  }

  async run(signal: AbortSignal): Promise<void> {
    let retry = MIN_MINT_RETRY_MS;
    while (!signal.aborted) {
      const cur = this.current();
      const delay = cur ? MintedSvidCredentials.renewalTime(cur) - this.deps.clock.now() : 0;
      if (delay > 0 && !(await sleep(this.deps.clock, delay, signal))) return;
      try {
        this.install(await this.mint(signal));
        retry = MIN_MINT_RETRY_MS;
      } catch (error) {
        if (signal.aborted) return;
        this.deps.logger.warn('could not renew the bundle endpoint X509-SVID; keeping the current one', {
          error: error instanceof Error ? error.message : String(error),
          code: (error as { code?: unknown }).code,
          retryInMs: retry,
          currentExpires: cur ? new Date(cur.notAfter).toISOString() : undefined,
        });
        this.#onRefused?.({ error, keeping: cur });
        if (!(await sleep(this.deps.clock, retry, signal))) return;
        retry = Math.min(retry * 2, MAX_MINT_RETRY_MS);
      }
    }
  }
}
