import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { EndpointError, type EndpointErrorCode } from '../../errors.js';
import { pemToDerList, toPem } from '../pki/pem.js';
import { defaultEndpointDeps, type EndpointDeps, sleep } from './deps.js';

/** A certificate chain and its private key, validated, ready for a TLS server. Immutable. */
export interface TlsCredentials {
  /** PEM certificates, leaf first, then intermediates. */
  readonly certChainPem: string;
  /** PEM (PKCS#8 or the file's own form) private key of the leaf. */
  readonly keyPem: string;
  /** The parsed leaf certificate. */
  readonly leaf: X509Certificate;
  /** Leaf validity, ms since the epoch. */
  readonly notBefore: number;
  readonly notAfter: number;
  /** Where these came from, for logs: file paths or the SPIFFE ID. */
  readonly origin: string;
}

/**
 * Where the endpoint's server certificate comes from. {@link TlsCredentialSource.ready} gives the
 * first pair (or throws a coded error); {@link TlsCredentialSource.run} keeps it current
 * (file changes, SVID renewal) and announces each new pair to subscribers.
 */
export interface TlsCredentialSource {
  current(): TlsCredentials | undefined;
  /** Loads the first pair when none is loaded yet. */
  ready(signal?: AbortSignal): Promise<TlsCredentials>;
  /** Calls `listener` with every new pair after the first. */
  subscribe(listener: (creds: TlsCredentials) => void): () => void;
  /** Keeps the pair current until `signal` aborts. */
  run(signal: AbortSignal): Promise<void>;
}

/** What a refused reload or renewal reports. */
export interface CredentialRefusal {
  readonly error: unknown;
  /** The pair still in use, if any. */
  readonly keeping: TlsCredentials | undefined;
}

function fail(code: EndpointErrorCode, message: string, cause?: unknown): never {
  throw new EndpointError(code, message, cause === undefined ? undefined : { cause });
}

/**
 * Validates a certificate chain and key: PEM certificates (leaf first), a private key matching the
 * leaf, the leaf valid at `now`, and a pair OpenSSL accepts as a server context.
 * @throws EndpointError with `code` naming what failed.
 */
export function validateTlsCredentials(input: {
  certChainPem: string;
  keyPem: string;
  now: number;
  origin: string;
  code: EndpointErrorCode;
}): TlsCredentials & { readonly chain: readonly X509Certificate[]; readonly key: KeyObject } {
  const { code, origin } = input;
  let ders: Uint8Array[];
  try {
    ders = pemToDerList(input.certChainPem, 'CERTIFICATE');
  } catch (cause) {
    fail(code, `${origin}: the certificate chain is not PEM certificates`, cause);
  }
  const chain = ders.map((der, i) => {
    try {
      return new X509Certificate(der);
    } catch (cause) {
      return fail(code, `${origin}: certificate ${i} of the chain is not a valid X.509 certificate`, cause);
    }
  });
  const leaf = chain[0]!;
  let key: KeyObject;
  try {
    key = createPrivateKey(input.keyPem);
  } catch (cause) {
    fail(code, `${origin}: the private key is not a valid PEM private key`, cause);
  }
  if (!leaf.checkPrivateKey(key)) {
    fail(code, `${origin}: the private key does not match the leaf certificate's public key`);
  }
  const notBefore = Date.parse(leaf.validFrom);
  const notAfter = Date.parse(leaf.validTo);
  if (input.now < notBefore)
    fail(code, `${origin}: the leaf certificate is not valid before ${leaf.validFrom}`);
  if (input.now >= notAfter) fail(code, `${origin}: the leaf certificate expired at ${leaf.validTo}`);
  try {
    createSecureContext({ cert: input.certChainPem, key: input.keyPem });
  } catch (cause) {
    fail(code, `${origin}: OpenSSL refused the certificate and key`, cause);
  }
  return {
    certChainPem: input.certChainPem,
    keyPem: input.keyPem,
    leaf,
    notBefore,
    notAfter,
    origin,
    chain,
    key,
  };
}

/** PEM of a DER certificate chain, leaf first. */
export function chainToPem(chain: readonly Uint8Array[]): string {
  return chain.map((der) => toPem(der)).join('');
}

/** Base of the credential sources: holds the current pair and announces each new one. */
export abstract class CredentialHolder implements TlsCredentialSource {
  protected readonly deps: EndpointDeps;
  readonly #listeners = new Set<(c: TlsCredentials) => void>();
  #current: TlsCredentials | undefined;

  constructor(deps: Partial<EndpointDeps> | undefined) {
    this.deps = defaultEndpointDeps(deps);
  }

  current(): TlsCredentials | undefined {
    return this.#current;
  }

  subscribe(listener: (creds: TlsCredentials) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  protected install(creds: TlsCredentials): void {
    const first = this.#current === undefined;
    this.#current = creds;
    this.deps.logger.info('bundle endpoint TLS credentials loaded', {
      origin: creds.origin,
      subject: creds.leaf.subject.replace(/\n/g, ', '),
      notAfter: new Date(creds.notAfter).toISOString(),
    });
    if (first) return;
    for (const l of [...this.#listeners]) {
      try {
        l(creds);
      } catch (err) {
        this.deps.logger.error('TLS credentials listener threw', { error: String(err) });
      }
    }
  }

  abstract ready(signal?: AbortSignal): Promise<TlsCredentials>;
  abstract run(signal: AbortSignal): Promise<void>;
}

/** Default period of the certificate file check, ms. */
export const DEFAULT_FILE_POLL_INTERVAL_MS = 5_000;

/** Options of {@link FileTlsCredentials}. */
export interface FileTlsCredentialsOptions {
  /** PEM certificate chain, leaf first (e.g. cert-manager's `tls.crt`). */
  readonly certFile: string;
  /** PEM private key (e.g. `tls.key`). */
  readonly keyFile: string;
  /** How often the files are re-read, ms. Default 5 s. */
  readonly pollIntervalMs?: number;
  /** Called when a changed pair is refused (metrics hook). */
  readonly onRefused?: (refusal: CredentialRefusal) => void;
  readonly deps?: Partial<EndpointDeps>;
}

/**
 * https_web credentials (SPIFFE Federation §5.2.1.3) from a certificate file and a key file,
 * re-read every poll interval on the injected clock. Polling (not fs.watch) follows Kubernetes
 * secret volumes, whose atomic symlink swaps file watchers miss. A changed pair is validated
 * before use; a bad one — e.g. the moment between an ACME client writing the certificate and the
 * key — is refused with a coded error, logged once per distinct content, and the old pair kept.
 */
export class FileTlsCredentials extends CredentialHolder {
  readonly certFile: string;
  readonly keyFile: string;
  readonly pollIntervalMs: number;
  readonly #onRefused: ((r: CredentialRefusal) => void) | undefined;
  /** The bytes last looked at (accepted or refused), so an unchanged pair is not re-validated. */
  #seen: string | undefined;

  constructor(opts: FileTlsCredentialsOptions) {
    super(opts.deps);
    this.certFile = opts.certFile;
    this.keyFile = opts.keyFile;
    this.pollIntervalMs = opts.pollIntervalMs ?? DEFAULT_FILE_POLL_INTERVAL_MS;
    this.#onRefused = opts.onRefused;
  }

  /**
   * Loads the pair if none is loaded yet.
   * @throws EndpointError `ERR_ENDPOINT_TLS_FILE` or `ERR_ENDPOINT_TLS_CREDENTIALS`
   */
  async ready(): Promise<TlsCredentials> {
    const cur = this.current();
    if (cur) return cur;
    const { text, key } = await this.#read();
    const creds = this.#validate(text.cert, text.key);
    this.#seen = key;
    this.install(creds);
    return creds;
  }

  /**
   * Re-reads the files once; installs a changed valid pair.
   * @returns true when a new pair was installed.
   */
  async reload(): Promise<boolean> {
    try {
      const { text, key } = await this.#read();
      if (key === this.#seen) return false;
      this.#seen = key;
      this.install(this.#validate(text.cert, text.key));
      return true;
    } catch (error) {
      this.deps.logger.warn('refused new bundle endpoint TLS credentials; keeping the current ones', {
        error: error instanceof Error ? error.message : String(error),
        code: (error as { code?: unknown }).code,
        keeping: this.current()?.origin,
      });
      this.#onRefused?.({ error, keeping: this.current() });
      return false;
    }
  }

  async run(signal: AbortSignal): Promise<void> {
    while (await sleep(this.deps.clock, this.pollIntervalMs, signal)) await this.reload();
  }

  async #read(): Promise<{ text: { cert: string; key: string }; key: string }> {
    const read = async (path: string, what: string): Promise<string> => {
      try {
        return Buffer.from(await this.deps.readFile(path)).toString('utf8');
      } catch (cause) {
        return fail('ERR_ENDPOINT_TLS_FILE', `cannot read the ${what} file ${path}`, cause);
      }
    };
    const [cert, key] = await Promise.all([read(this.certFile, 'certificate'), read(this.keyFile, 'key')]);
    return { text: { cert, key }, key: `${cert}\u0000${key}` };
  }

  #validate(cert: string, key: string): TlsCredentials {
    return validateTlsCredentials({
      certChainPem: cert,
      keyPem: key,
      now: this.deps.clock.now(),
      origin: `${this.certFile} + ${this.keyFile}`,
      code: 'ERR_ENDPOINT_TLS_CREDENTIALS',
    });
  }
}
