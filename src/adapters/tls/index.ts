/**
 * `spiffe-broker/tls`: sidecar-less SPIFFE mTLS for Node's `tls` and `https`. Peers are verified
 * with the broker's X509-SVID verifier against the bundle of the peer's own trust domain from a
 * live {@link BundleSource} (e.g. the broker's bundles, polled with {@link PolledBundleMapSource}),
 * and authorized with a SPIFFE ID matcher; bundle and SVID rotation need no restart.
 * See docs/verification.md.
 *
 * @example
 * import { tlsOptions, SvidHolder, PolledBundleMapSource } from 'spiffe-broker/tls';
 * const bundles = new PolledBundleMapSource({ url: 'http://127.0.0.1:8089/v1/bundles' });
 * void bundles.run(signal);
 * const mtls = tlsOptions({ source: bundles, authorize: matchMemberOf(peerTd), svid: new SvidHolder(material) });
 * const server = https.createServer(mtls.serverOptions(), handler);
 * mtls.secure(server);
 * https.get('https://peer:8443/', { agent: mtls.agent() }, onResponse);
 * @module
 */
export type { BundleSource } from '../../core/bundle/source.js';
export type { PolledBundleMapSourceOptions } from './bundle-map-source.js';
export { DEFAULT_BUNDLE_MAP_POLL_MS, PolledBundleMapSource } from './bundle-map-source.js';
export type { SpiffeConnectOptions, SpiffeTlsOptions } from './spiffe-tls.js';
export {
  claimedSpiffeId,
  connectError,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  peerChain,
  SpiffeTls,
  tlsOptions,
} from './spiffe-tls.js';
export type { SvidSource, X509SvidMaterial } from './svid.js';
export { SvidHolder, toSvidSource } from './svid.js';
