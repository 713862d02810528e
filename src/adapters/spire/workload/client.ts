import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type ClientReadableStream,
  credentials,
  loadPackageDefinition,
  Metadata,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { SpiffeId } from '../../../core/spiffeid/spiffe-id.js';
import { SpireError } from '../../../errors.js';
import { splitDerSequence } from '../convert.js';
import { PROTO_LOADER_OPTIONS } from '../proto.js';
import { grpcStatusName, spireErrorCodeFor } from '../status.js';

/** One X509-SVID received from the Workload API. */
export interface WorkloadX509Svid {
  readonly spiffeId: SpiffeId;
  /** DER certificates, leaf first. */
  readonly certChain: readonly Uint8Array[];
  /** PKCS#8 DER private key of the leaf. */
  readonly privateKeyPkcs8: Uint8Array;
  /** The trust domain's X.509 authorities, DER. */
  readonly bundle: readonly Uint8Array[];
  readonly hint: string;
}

/** One message of the FetchX509SVID stream. */
export interface WorkloadX509Update {
  /** The caller's SVIDs; the first is the default. */
  readonly svids: readonly WorkloadX509Svid[];
}

/** Handlers of {@link WorkloadApiClient.watchX509Svids}. */
export interface X509SvidWatcher {
  onUpdate(update: WorkloadX509Update): void;
  /** A stream failed or a message was malformed; the client reconnects after a backoff. */
  onError?(error: SpireError): void;
}

/** Options of {@link WorkloadApiClient}. */
export interface WorkloadApiClientOptions {
  /** `unix:///path/to/agent.sock` or an absolute socket path. */
  readonly address: string;
  /** Directory holding `workload/workload.proto`; defaults to the package's `proto/`. */
  readonly protoDir?: string;
  /** First reconnect delay, ms (doubles up to `maxBackoffMs`). Default 500. */
  readonly minBackoffMs?: number;
  /** Default 10 000. */
  readonly maxBackoffMs?: number;
  /** Sleep used between reconnects; resolves early (or rejects) when the signal aborts. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** The metadata header every Workload API call must carry (SPIFFE Workload API §5.2). */
export const WORKLOAD_API_HEADER = 'workload.spiffe.io';

interface WireX509Svid {
  spiffe_id: string;
  x509_svid: Uint8Array;
  x509_svid_key: Uint8Array;
  bundle: Uint8Array;
  hint: string;
}

function defaultSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

function socketTarget(address: string): string {
  const path = address.startsWith('unix://') ? address.slice('unix://'.length) : address;
  if (!isAbsolute(path)) {
    throw new SpireError(
      'ERR_SPIRE_ADDRESS',
      `Workload API address ${JSON.stringify(address)}: expected unix:///absolute/path or an absolute path`,
    );
  }
  return `unix://${path}`;
}

/** Converts one wire SVID. @throws SpireError `ERR_SPIRE_CONVERSION` */
export function workloadSvidFromWire(w: WireX509Svid, index: number): WorkloadX509Svid {
  const where = `Workload API X509-SVID ${index}`;
  let spiffeId: SpiffeId;
  try {
    spiffeId = SpiffeId.parse(w.spiffe_id);
  } catch (cause) {
    throw new SpireError(
      'ERR_SPIRE_CONVERSION',
      `${where}: spiffe_id ${JSON.stringify(w.spiffe_id)} is invalid`,
      {
        cause,
      },
    );
  }
  if (w.x509_svid_key.length === 0) {
    throw new SpireError('ERR_SPIRE_CONVERSION', `${where} (${w.spiffe_id}): x509_svid_key is empty`);
  }
  return {
    spiffeId,
    certChain: splitDerSequence(w.x509_svid, `${where}: x509_svid`),
    privateKeyPkcs8: Uint8Array.from(w.x509_svid_key),
    bundle: w.bundle.length === 0 ? [] : splitDerSequence(w.bundle, `${where}: bundle`),
    hint: w.hint,
  };
}

/**
 * A client of the SPIFFE Workload API's X.509 part (FetchX509SVID) over a unix socket, e.g. a
 * SPIRE agent's. The broker uses it to take its endpoint's X509-SVID from the agent instead of
 * minting one through the server API.
 */
export class WorkloadApiClient {
  readonly target: string;
  readonly #client: InstanceType<ServiceClientConstructor>;
  readonly #minBackoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>;

  /** @throws SpireError `ERR_SPIRE_ADDRESS` */
  constructor(opts: WorkloadApiClientOptions) {
    this.target = socketTarget(opts.address);
    const protoDir = opts.protoDir ?? fileURLToPath(new URL('../../../../proto/', import.meta.url));
    const def = loadSync('workload/workload.proto', { ...PROTO_LOADER_OPTIONS, includeDirs: [protoDir] });
    const ctor = loadPackageDefinition(def).SpiffeWorkloadAPI as ServiceClientConstructor;
    this.#client = new ctor(this.target, credentials.createInsecure());
    this.#minBackoffMs = opts.minBackoffMs ?? 500;
    this.#maxBackoffMs = opts.maxBackoffMs ?? 10_000;
    this.#sleep = opts.sleep ?? defaultSleep;
  }

  close(): void {
    this.#client.close();
  }

  /**
   * Follows the FetchX509SVID stream until `signal` aborts, reconnecting after failures with
   * exponential backoff (reset by every good message).
   */
  async watchX509Svids(signal: AbortSignal, watcher: X509SvidWatcher): Promise<void> {
    let backoff = this.#minBackoffMs;
    while (!signal.aborted) {
      const gotMessage = await this.#stream(signal, watcher);
      if (signal.aborted) return;
      if (gotMessage) backoff = this.#minBackoffMs;
      await this.#sleep(backoff, signal).catch(() => {});
      backoff = Math.min(backoff * 2, this.#maxBackoffMs);
    }
  }

  /** The first message of a FetchX509SVID stream. */
  fetchX509Svids(signal?: AbortSignal): Promise<WorkloadX509Update> {
    const ac = new AbortController();
    const onAbort = (): void => ac.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    return new Promise<WorkloadX509Update>((resolve, reject) => {
      let settled = false;
      void this.#stream(ac.signal, {
        onUpdate: (u) => {
          settled = true;
          resolve(u);
          ac.abort();
        },
        onError: (e) => {
          if (settled) return;
          settled = true;
          reject(e);
          ac.abort();
        },
      }).then(() => {
        signal?.removeEventListener('abort', onAbort);
        if (!settled) reject(new SpireError('ERR_SPIRE_ABORTED', 'Workload API fetch aborted'));
      });
    });
  }

  /** One stream; resolves when it ends. Returns whether any good message arrived. */
  #stream(signal: AbortSignal, watcher: X509SvidWatcher): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const md = new Metadata();
      // SPIFFE Workload API: the security header proves the caller is not a browser/SSRF proxy.
      md.set(WORKLOAD_API_HEADER, 'true');
      const fetch = this.#client.FetchX509SVID as (
        req: object,
        md: Metadata,
      ) => ClientReadableStream<unknown>;
      const call = fetch.call(this.#client, {}, md) as ClientReadableStream<{ svids: WireX509Svid[] }>;
      let good = false;
      const onAbort = (): void => call.cancel();
      signal.addEventListener('abort', onAbort, { once: true });
      call.on('data', (msg: { svids: WireX509Svid[] }) => {
        try {
          const svids = msg.svids.map((s, i) => workloadSvidFromWire(s, i));
          good = true;
          watcher.onUpdate({ svids });
        } catch (err) {
          watcher.onError?.(
            err instanceof SpireError
              ? err
              : new SpireError('ERR_SPIRE_CONVERSION', `Workload API message: ${String(err)}`, {
                  cause: err,
                }),
          );
        }
      });
      call.on('error', (err: ServiceError) => {
        if (!signal.aborted) {
          watcher.onError?.(
            new SpireError(
              spireErrorCodeFor(err.code),
              `Workload API FetchX509SVID at ${this.target}: ${grpcStatusName(err.code)}: ${err.details || err.message}`,
              { cause: err },
            ),
          );
        }
      });
      call.on('close', () => {
        signal.removeEventListener('abort', onAbort);
        resolve(good);
      });
    });
  }
}
