import { issuerProblem } from '../../core/bundle/oidc.js';
import type { ListenAddress, OidcConfig } from './types.js';
import type { Field, YamlReader } from './yaml-reader.js';

/**
 * The `oidc:` section of the broker config: OpenID Connect discovery for the local trust
 * domain's JWT-SVIDs on its own listener (docs/configuration.md). Split from broker-config.ts,
 * which calls {@link readOidc}.
 * @module
 */

/** Default `Cache-Control: max-age` of the discovery document and JWKS, ms. */
export const OIDC_DEFAULT_MAX_AGE_MS = 60_000;

const OIDC_KEYS = ['listen', 'issuer', 'jwksUri', 'certFile', 'keyFile', 'maxAge'] as const;
const DAY_MS = 86_400_000;

/**
 * Reads `oidc:`. `listen` and `issuer` are required; `certFile` + `keyFile` make the listener
 * HTTPS, and without them it serves plain HTTP on a loopback address only (a TLS-terminating
 * proxy in front publishes the https issuer).
 */
export function readOidc(
  reader: YamlReader,
  f: Field,
  deps: {
    readonly parseListenAddress: (value: string) => ListenAddress | string;
    readonly isLoopbackHost: (host: string) => boolean;
  },
): OidcConfig | undefined {
  const m = reader.map(f, OIDC_KEYS);
  if (!m) return undefined;
  const before = reader.issues.length;
  const present = (k: string): Field | undefined => {
    const ff = m.get(k);
    return ff && !reader.isNull(ff) ? ff : undefined;
  };
  const lF = m.require('listen');
  let listen: ListenAddress | undefined;
  const rawListen = lF ? reader.string(lF, 'host:port') : undefined;
  if (lF && rawListen !== undefined) {
    const r = deps.parseListenAddress(rawListen);
    if (typeof r === 'string') reader.report(lF, r, 'ERR_CONFIG_ADDRESS');
    else listen = r;
  }
  const iF = m.require('issuer');
  const issuer = iF ? reader.string(iF, 'an https URL such as https://oidc.example.org') : undefined;
  if (iF && issuer !== undefined) {
    const problem = issuerProblem(issuer);
    if (problem) reader.report(iF, `issuer ${problem}`, 'ERR_CONFIG_URL');
  }
  const jF = present('jwksUri');
  const jwksUri = jF ? reader.string(jF, 'an https URL') : undefined;
  if (jF && jwksUri !== undefined) {
    let ok = false;
    try {
      const u = new URL(jwksUri);
      ok = u.protocol === 'https:' && u.search === '' && u.hash === '' && u.pathname !== '/';
    } catch {
      ok = false;
    }
    if (!ok)
      reader.report(
        jF,
        'jwksUri must be an https URL with a path and no query or fragment',
        'ERR_CONFIG_URL',
      );
  }
  const str = (k: string): string | undefined => {
    const ff = present(k);
    return ff ? reader.string(ff, 'a file path') : undefined;
  };
  const certFile = str('certFile');
  const keyFile = str('keyFile');
  if ((certFile === undefined) !== (keyFile === undefined)) {
    reader.report(f, 'certFile and keyFile go together', 'ERR_CONFIG_PROFILE');
  }
  if (listen && certFile === undefined && !deps.isLoopbackHost(listen.host)) {
    reader.report(
      lF ?? f,
      `oidc listen ${listen.host} is not loopback: set certFile and keyFile (HTTPS), or listen on loopback behind a TLS-terminating proxy`,
      'ERR_CONFIG_ADDRESS',
    );
  }
  const aF = present('maxAge');
  const maxAgeMs = aF ? reader.duration(aF, 0, DAY_MS) : OIDC_DEFAULT_MAX_AGE_MS;
  if (aF && maxAgeMs !== undefined && maxAgeMs % 1000 !== 0) {
    reader.report(aF, 'maxAge is published in whole seconds (Cache-Control max-age)');
  }
  if (reader.issues.length > before || !listen || issuer === undefined || maxAgeMs === undefined)
    return undefined;
  return {
    listen,
    issuer,
    ...(jwksUri !== undefined ? { jwksUri } : {}),
    ...(certFile !== undefined && keyFile !== undefined ? { certFile, keyFile } : {}),
    maxAgeSeconds: maxAgeMs / 1000,
  };
}
