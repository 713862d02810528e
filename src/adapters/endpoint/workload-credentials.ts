import type { SpiffeId } from '../../core/spiffeid/spiffe-id.js';
import { EndpointError } from '../../errors.js';
import { toPem } from '../pki/pem.js';
import type { EndpointDeps } from './deps.js';
import { validateEndpointSvid } from './svid-credentials.js';
import { CredentialHolder, type CredentialRefusal, type TlsCredentials } from './tls-credentials.js';

/** An X509-SVID as the Workload API hands it over. */
export interface StreamedX509Svid {
  readonly spiffeId: SpiffeId;
  /** DER certificates, leaf first. */
  readonly certChain: readonly Uint8Array[];
  /** PKCS#8 DER private key. */
  readonly privateKeyPkcs8: Uint8Array;
}

/**
 * The FetchX509SVID stream (`WorkloadApiClient` in src/adapters/spire/workload implements it): follows
 * the stream until the signal aborts, reconnecting on failure.
 */
export interface X509SvidStream {
  watchX509Svids(
    signal: AbortSignal,
    watcher: {
      onUpdate(update: { readonly svids: readonly StreamedX509Svid[] }): void;
      onError?(error: Error): void;
    },
  ): Promise<void>;
}

/** Options of {@link WorkloadApiSvidCredentials}. */
export interface WorkloadApiSvidCredentialsOptions {
  readonly stream: X509SvidStream;
  /** The endpoint's SPIFFE ID; the SVID with this ID is used (the default SVID when omitted). */
  readonly spiffeId?: SpiffeId;
  /** Called when an update is unusable or the stream fails (metrics hook). */
  readonly onRefused?: (refusal: CredentialRefusal) => void;
  readonly deps?: Partial<EndpointDeps>;
}

/**
 * https_spiffe credentials taken from a SPIFFE Workload API socket (e.g. a SPIRE agent's): the
 * agent rotates the SVID and streams each new one; every new usable SVID is installed, an unusable
 * one is refused (`ERR_ENDPOINT_SVID`) and the current one kept.
 */
export class WorkloadApiSvidCredentials extends CredentialHolder {
  readonly spiffeId: SpiffeId | undefined;
  readonly #stream: X509SvidStream;
  readonly #onRefused: ((r: CredentialRefusal) => void) | undefined;

  constructor(opts: WorkloadApiSvidCredentialsOptions) {
    super(opts.deps);
    this.spiffeId = opts.spiffeId;
    this.#stream = opts.stream;
    this.#onRefused = opts.onRefused;
  }

  /** Waits for the first usable SVID on the stream. */
  ready(signal?: AbortSignal): Promise<TlsCredentials> {
    const cur = this.current();
    if (cur) return Promise.resolve(cur);
    const ac = new AbortController();
    const onAbort = (): void => ac.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    return new Promise<TlsCredentials>((resolve, reject) => {
      let done = false;
      void this.#watch(ac.signal, (creds) => {
        done = true;
        resolve(creds);
        ac.abort();
      }).finally(() => {
        signal?.removeEventListener('abort', onAbort);
        if (!done) reject(signal?.reason ?? new Error('Workload API watch ended before an SVID arrived'));
      });
    });
  }

  /** Follows the stream, installing each new SVID, until `signal` aborts. */
  run(signal: AbortSignal): Promise<void> {
    return this.#watch(signal, () => {});
  }

  #watch(signal: AbortSignal, onInstalled: (creds: TlsCredentials) => void): Promise<void> {
    return this.#stream.watchX509Svids(signal, {
      onUpdate: (update) => {
        try {
          const creds = this.#select(update.svids);
          const cur = this.current();
          if (cur && cur.certChainPem === creds.certChainPem && cur.keyPem === creds.keyPem) {
            onInstalled(cur);
            return;
          }
          this.install(creds);
          onInstalled(creds);
        } catch (error) {
          this.#refuse(error);
        }
      },
      onError: (error) => this.#refuse(error),
    });
  }

  #select(svids: readonly StreamedX509Svid[]): TlsCredentials {
    const want = this.spiffeId;
    const svid = want ? svids.find((s) => s.spiffeId.equals(want)) : svids[0];
    if (!svid) {
      throw new EndpointError(
        'ERR_ENDPOINT_SVID',
        `the Workload API sent ${svids.length} X509-SVID(s), none for ${want?.toString() ?? 'the default identity'}`,
      );
    }
    return validateEndpointSvid({
      chain: svid.certChain,
      keyPem: toPem(svid.privateKeyPkcs8, 'PRIVATE KEY'),
      expected: want ?? svid.spiffeId,
      now: this.deps.clock.now(),
    });
  }

  #refuse(error: unknown): void {
    this.deps.logger.warn('unusable X509-SVID from the Workload API; keeping the current one', {
      error: error instanceof Error ? error.message : String(error),
      code: (error as { code?: unknown }).code,
      keeping: this.current()?.origin,
    });
    this.#onRefused?.({ error, keeping: this.current() });
  }
}
