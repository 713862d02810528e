import { createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import { pemToDerList } from '../../adapters/pki/pem.js';
import { parseBundleFile } from '../../core/bundle/bundle-file.js';
import type { TrustDomain } from '../../core/spiffeid/trust-domain.js';
import { type AllowlistParseOptions, parseAllowlist } from './allowlist.js';
import { ConfigValidationError } from './config-error.js';
import type { ParsedConfigFile } from './config-file.js';
import type { Allowlist, BrokerConfig, ConfigIssue } from './types.js';
import { locateField } from './yaml-reader.js';

/**
 * Opens and parses every file a configuration names, so a missing CA file, a garbage bootstrap
 * bundle or a key that does not belong to its certificate is reported before the broker runs,
 * with the key's line — not as `ERR_FETCH_CONNECT` hours later. Used by `spiffe-broker
 * check-config` and by the daemon at start-up (the same checks, the same code, `ERR_CONFIG_FILE`).
 *
 * Paths are used exactly as the daemon uses them: as written, so a relative path is relative to
 * the working directory of the process (never to the configuration file's directory).
 * @module
 */

/** The one side effect the checks need. */
export interface ReferencedFileFs {
  readFile(path: string): Promise<Uint8Array>;
}

/** Options of {@link checkReferencedFiles}. */
export interface ReferencedFileCheckOptions {
  /**
   * The YAML text the configuration was parsed from: issues then point at the key's line and
   * column. Without it, an allowlist issue points at its peer entry's line, a broker config issue
   * at 1:1.
   */
  readonly text?: string;
  /**
   * For a broker config: also read the allowlist file it names, validate it against the broker
   * config (as the daemon does) and check the files it names. Default true; off when the allowlist
   * comes from Kubernetes (`kubernetes.allowlist`), which never reads `allowlist.file`.
   */
  readonly followAllowlist?: boolean;
  /** For an allowlist: the context it is validated against (local trust domain, server names). */
  readonly allowlistOptions?: AllowlistParseOptions;
}

type Check = { readonly path: string; readonly line?: number } & (
  | { readonly kind: 'pem-certificates'; readonly key: string; readonly file: string }
  | {
      readonly kind: 'key-pair';
      readonly certKey: string;
      readonly certFile: string;
      readonly keyKey: string;
      readonly keyFile: string;
    }
  | {
      readonly kind: 'bundle';
      readonly key: string;
      readonly file: string;
      readonly trustDomain: TrustDomain;
    }
);

const decoder = new TextDecoder('utf-8');

/** Why a file could not be read, in words (Node's errno codes are not an operator's language). */
function readProblem(err: unknown): string {
  // The errno code, or the one a message starts with ("ENOENT: no such file…") when it was lost.
  const code = (err as { code?: unknown })?.code ?? /^(E[A-Z]+):/.exec(String((err as Error)?.message))?.[1];
  if (code === 'ENOENT') return 'does not exist';
  if (code === 'EACCES' || code === 'EPERM') return 'cannot be read: permission denied';
  if (code === 'EISDIR') return 'is a directory, not a file';
  return `cannot be read: ${(err as Error)?.message ?? String(err)}`;
}

function where(file: string): string {
  return file.startsWith('/') ? file : `${file} (relative to the working directory)`;
}

/** PEM CERTIFICATE blocks that all parse as X.509 certificates, leaf first. */
function certificates(bytes: Uint8Array): X509Certificate[] {
  return pemToDerList(decoder.decode(bytes), 'CERTIFICATE').map((der, i) => {
    try {
      return new X509Certificate(der);
    } catch {
      throw new Error(`PEM block ${i} is not a valid X.509 certificate`);
    }
  });
}

function spki(key: KeyObject): string {
  const pub = key.type === 'public' ? key : createPublicKey(key);
  return pub.export({ type: 'spki', format: 'der' }).toString('base64');
}

/**
 * Checks every file `parsed` names and returns the problems (empty when all is well), each an
 * `ERR_CONFIG_FILE` issue at the key that names the file. A broker config's allowlist file is
 * followed (see {@link ReferencedFileCheckOptions.followAllowlist}); its issues carry `file`.
 *
 * What is checked: `spire.servers[].adminCertFile`/`adminKeyFile`, `endpoint.certFile`/
 * `keyFile` and `oidc.certFile`/`keyFile` (PEM certificates that parse, a private key that parses and belongs to the first
 * certificate), `spire.servers[].serverBundleFile` (PEM CA certificates), `allowlist.file` (a
 * valid allowlist), and in an allowlist each peer's `caFile` (PEM CA certificates) and
 * `bootstrapBundleFile` (a bundle of the endpoint ID's trust domain: a SPIFFE bundle, a Bundle Map
 * holding it, or PEM CA certificates). Files the broker creates itself (state directory, audit
 * log and key, admin socket) are not required to exist.
 *
 * @example
 * const issues = await checkReferencedFiles({ kind: 'BrokerConfig', config }, { readFile }, { text });
 * if (issues.length > 0) throw new ConfigValidationError('broker config', issues);
 */
export async function checkReferencedFiles(
  parsed: ParsedConfigFile,
  fs: ReferencedFileFs,
  options: ReferencedFileCheckOptions = {},
): Promise<ConfigIssue[]> {
  const issues: ConfigIssue[] = [];
  const at = (path: string, line: number | undefined, message: string, file?: string): void => {
    const pos = options.text === undefined ? undefined : locateField(options.text, path);
    issues.push({
      line: pos?.line ?? line ?? 1,
      column: pos?.column ?? 1,
      path,
      message,
      code: 'ERR_CONFIG_FILE',
      ...(file !== undefined ? { file } : {}),
    });
  };
  const checks =
    parsed.kind === 'BrokerConfig' ? brokerChecks(parsed.config) : allowlistChecks(parsed.allowlist);
  await runChecks(checks, fs, (c, message) => at(c.path, c.line, message));

  if (parsed.kind === 'BrokerConfig' && options.followAllowlist !== false) {
    const config = parsed.config;
    if (config.kubernetes?.allowlist === undefined) {
      const file = config.allowlist.file;
      let text: string | undefined;
      try {
        text = decoder.decode(await fs.readFile(file));
      } catch (err) {
        at('/allowlist/file', undefined, `allowlist file ${where(file)} ${readProblem(err)}`);
      }
      if (text !== undefined) {
        let allowlist: Allowlist | undefined;
        try {
          allowlist = parseAllowlist(text, {
            localTrustDomain: config.trustDomain,
            serverNames: config.spire.servers.map((s) => s.name),
          });
        } catch (err) {
          if (!(err instanceof ConfigValidationError)) throw err;
          at(
            '/allowlist/file',
            undefined,
            `allowlist file ${file} is invalid (${err.issues.length} problem${err.issues.length === 1 ? '' : 's'}, listed under its name)`,
          );
          for (const i of err.issues) issues.push({ ...i, file });
        }
        if (allowlist) {
          const nested = await checkReferencedFiles({ kind: 'Allowlist', allowlist }, fs, { text });
          for (const i of nested) issues.push({ ...i, file });
        }
      }
    }
  }
  return issues;
}

/**
 * {@link checkReferencedFiles}, throwing when anything is wrong: the daemon's start-up form.
 * @throws ConfigValidationError (`ERR_CONFIG_FILE` when every problem is a file problem) listing
 *   every problem.
 */
export async function assertReferencedFiles(
  parsed: ParsedConfigFile,
  fs: ReferencedFileFs,
  options: ReferencedFileCheckOptions = {},
): Promise<void> {
  const issues = await checkReferencedFiles(parsed, fs, options);
  if (issues.length > 0) {
    throw new ConfigValidationError(parsed.kind === 'BrokerConfig' ? 'broker config' : 'allowlist', issues);
  }
}

function brokerChecks(config: BrokerConfig): Check[] {
  const out: Check[] = [];
  config.spire.servers.forEach((s, i) => {
    const base = `/spire/servers/${i}`;
    if (s.adminCertFile !== undefined && s.adminKeyFile !== undefined) {
      out.push({
        kind: 'key-pair',
        path: base,
        certKey: 'adminCertFile',
        certFile: s.adminCertFile,
        keyKey: 'adminKeyFile',
        keyFile: s.adminKeyFile,
      });
    }
    if (s.serverBundleFile !== undefined) {
      out.push({
        kind: 'pem-certificates',
        path: `${base}/serverBundleFile`,
        key: 'serverBundleFile',
        file: s.serverBundleFile,
      });
    }
  });
  const ep = config.endpoint;
  if (ep?.certFile !== undefined && ep.keyFile !== undefined) {
    out.push({
      kind: 'key-pair',
      path: '/endpoint',
      certKey: 'certFile',
      certFile: ep.certFile,
      keyKey: 'keyFile',
      keyFile: ep.keyFile,
    });
  }
  const oidc = config.oidc;
  if (oidc?.certFile !== undefined && oidc.keyFile !== undefined) {
    out.push({
      kind: 'key-pair',
      path: '/oidc',
      certKey: 'certFile',
      certFile: oidc.certFile,
      keyKey: 'keyFile',
      keyFile: oidc.keyFile,
    });
  }
  return out;
}

function allowlistChecks(allowlist: Allowlist): Check[] {
  const out: Check[] = [];
  allowlist.peers.forEach((p, i) => {
    const base = `/peers/${i}/bundleEndpoint`;
    const line = p.line;
    if (p.profile.kind === 'https_web' && p.profile.caFile !== undefined) {
      out.push({
        kind: 'pem-certificates',
        path: `${base}/caFile`,
        key: 'caFile',
        file: p.profile.caFile,
        ...(line !== undefined ? { line } : {}),
      });
    }
    if (p.profile.kind === 'https_spiffe' && p.profile.bootstrapBundleFile !== undefined) {
      out.push({
        kind: 'bundle',
        path: `${base}/bootstrapBundleFile`,
        key: 'bootstrapBundleFile',
        file: p.profile.bootstrapBundleFile,
        trustDomain: p.profile.endpointSpiffeId.trustDomain,
        ...(line !== undefined ? { line } : {}),
      });
    }
  });
  return out;
}

async function runChecks(
  checks: readonly Check[],
  fs: ReferencedFileFs,
  report: (c: { path: string; line?: number }, message: string) => void,
): Promise<void> {
  // A file named twice (one CA for several peers) is read once…
  const cache = new Map<string, Promise<Uint8Array>>();
  const read = (file: string): Promise<Uint8Array> => {
    let p = cache.get(file);
    if (!p) {
      p = fs.readFile(file);
      cache.set(file, p);
    }
    return p;
  };
  const load = async (
    path: string,
    line: number | undefined,
    key: string,
    file: string,
  ): Promise<Uint8Array | undefined> => {
    try {
      return await read(file);
    } catch (err) {
      report({ path, ...(line !== undefined ? { line } : {}) }, `${key} ${where(file)} ${readProblem(err)}`);
      return undefined;
    }
  };
  // …and its certificates parsed once: 10,000 peers naming one CA file parsed it 10,000 times
  // (1.3 s of a 10,000-peer start, bench/scale.bench.ts). Value: the problem, or '' for none.
  const pemProblems = new Map<Uint8Array, string>();
  const pemProblem = (bytes: Uint8Array): string => {
    let problem = pemProblems.get(bytes);
    if (problem === undefined) {
      try {
        certificates(bytes);
        problem = '';
      } catch (err) {
        problem = (err as Error).message;
      }
      pemProblems.set(bytes, problem);
    }
    return problem;
  };
  for (const c of checks) {
    const line = c.line;
    const at = (path: string) => ({ path, ...(line !== undefined ? { line } : {}) });
    if (c.kind === 'pem-certificates') {
      const bytes = await load(c.path, line, c.key, c.file);
      if (!bytes) continue;
      const problem = pemProblem(bytes);
      if (problem !== '') report(c, `${c.key} ${c.file} does not hold PEM CA certificates: ${problem}`);
    } else if (c.kind === 'bundle') {
      const bytes = await load(c.path, line, c.key, c.file);
      if (!bytes) continue;
      try {
        parseBundleFile(c.trustDomain, bytes);
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        report(
          c,
          `${c.key} ${c.file} is not a bundle of ${c.trustDomain.name} (a SPIFFE bundle, a Bundle Map holding it, or PEM CA certificates): ${(err as Error).message}${typeof code === 'string' ? ` (${code})` : ''}`,
        );
      }
    } else {
      const certPath = `${c.path}/${c.certKey}`;
      const keyPath = `${c.path}/${c.keyKey}`;
      const certBytes = await load(certPath, line, c.certKey, c.certFile);
      const keyBytes = await load(keyPath, line, c.keyKey, c.keyFile);
      let leaf: X509Certificate | undefined;
      if (certBytes) {
        try {
          leaf = certificates(certBytes)[0];
        } catch (err) {
          report(
            at(certPath),
            `${c.certKey} ${c.certFile} does not hold a PEM certificate chain: ${(err as Error).message}`,
          );
        }
      }
      let key: KeyObject | undefined;
      if (keyBytes) {
        try {
          key = createPrivateKey(Buffer.from(keyBytes));
        } catch {
          report(at(keyPath), `${c.keyKey} ${c.keyFile} does not hold a PEM private key`);
        }
      }
      if (leaf && key && spki(leaf.publicKey) !== spki(key)) {
        report(
          at(keyPath),
          `${c.keyKey} ${c.keyFile} is not the private key of the certificate in ${c.certKey} ${c.certFile}`,
        );
      }
    }
  }
}
