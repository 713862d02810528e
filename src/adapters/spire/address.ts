import { SpireError } from '../../errors.js';

/** A parsed SPIRE server API address. */
export type SpireAddress =
  | { readonly kind: 'unix'; readonly path: string; readonly target: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly target: string };

/** SPIRE's default `bind_port` for the TCP server API. */
export const DEFAULT_SPIRE_TCP_PORT = 8081;

/** SPIRE's default private API socket (`/tmp/spire-server/private/api.sock`). */
export const DEFAULT_SPIRE_SOCKET_PATH = '/tmp/spire-server/private/api.sock';

/**
 * Parses a SPIRE server address:
 * - `unix:///abs/path/api.sock` (also `unix:/abs/path`): the local API socket, no TLS;
 * - `dns:///host:port` (port defaults to 8081; IPv6 as `[::1]:8081`): TCP with mTLS.
 *
 * @throws SpireError `ERR_SPIRE_ADDRESS` naming what is wrong.
 * @example
 * parseSpireAddress('unix:///tmp/spire-server/private/api.sock'); // { kind: 'unix', path: '/tmp/…' }
 */
export function parseSpireAddress(address: string): SpireAddress {
  const bad = (why: string) =>
    new SpireError('ERR_SPIRE_ADDRESS', `SPIRE server address ${JSON.stringify(address)}: ${why}`);
  if (address.startsWith('unix:')) {
    const path = address.startsWith('unix://')
      ? address.slice('unix://'.length)
      : address.slice('unix:'.length);
    if (!path.startsWith('/')) throw bad('the unix socket path must be absolute (unix:///path/to/api.sock)');
    if (path.includes('\0')) throw bad('the socket path contains a NUL byte');
    // Linux sun_path holds 108 bytes including the terminating NUL.
    if (Buffer.byteLength(path) > 107) throw bad('the socket path is longer than 107 bytes');
    return { kind: 'unix', path, target: `unix://${path}` };
  }
  if (address.startsWith('dns:')) {
    const rest = address.startsWith('dns:///') ? address.slice('dns:///'.length) : undefined;
    if (rest === undefined)
      throw bad('use dns:///host:port (an authority between // and / is not supported)');
    let host: string;
    let portText: string | undefined;
    if (rest.startsWith('[')) {
      const end = rest.indexOf(']');
      if (end === -1) throw bad('unterminated IPv6 literal');
      host = rest.slice(1, end);
      const after = rest.slice(end + 1);
      if (after !== '' && !after.startsWith(':')) throw bad('unexpected text after the IPv6 literal');
      portText = after === '' ? undefined : after.slice(1);
    } else {
      const colon = rest.lastIndexOf(':');
      host = colon === -1 ? rest : rest.slice(0, colon);
      portText = colon === -1 ? undefined : rest.slice(colon + 1);
    }
    if (host === '' || /[\s/]/.test(host)) throw bad('the host is missing or invalid');
    let port = DEFAULT_SPIRE_TCP_PORT;
    if (portText !== undefined) {
      if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
        throw bad(`port ${JSON.stringify(portText)} is not in 1..65535`);
      }
      port = Number(portText);
    }
    const hostPart = host.includes(':') ? `[${host}]` : host;
    return { kind: 'tcp', host, port, target: `dns:///${hostPart}:${port}` };
  }
  throw bad('expected unix:///path/to/api.sock or dns:///host:port');
}
