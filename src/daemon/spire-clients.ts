import { SpireServerClient } from '../adapters/spire/client.js';
import type { TrustDomain } from '../core/spiffeid/trust-domain.js';
import type { SpireServerConfig } from '../engine/config/types.js';
import { BrokerError } from '../errors.js';

/** The TLS material of a SPIRE server reached over TCP (`dns:` address); undefined for a unix socket. */
export type SpireTls = Awaited<ReturnType<typeof loadSpireTls>>;

/** Reads the admin client certificate, key and server bundle of a `dns:` SPIRE server address. */
export async function loadSpireTls(
  server: SpireServerConfig,
  read: (p: string) => Promise<Uint8Array>,
  td: TrustDomain,
) {
  if (!server.address.startsWith('dns:')) return undefined;
  const text = async (p: string | undefined, what: string): Promise<string> => {
    if (!p)
      throw new BrokerError(
        'ERR_CONFIG_FILE',
        `SPIRE server "${server.name}": ${what} is required for a dns: address`,
      );
    return Buffer.from(await read(p)).toString('utf8');
  };
  return {
    certChainPem: await text(server.adminCertFile, 'adminCertFile'),
    privateKeyPem: await text(server.adminKeyFile, 'adminKeyFile'),
    trustBundlePem: await text(server.serverBundleFile, 'serverBundleFile'),
    serverTrustDomain: td,
  };
}

/** One client per configured SPIRE server, in config order (they connect lazily). */
export async function createSpireClients(
  servers: readonly SpireServerConfig[],
  td: TrustDomain,
  read: (p: string) => Promise<Uint8Array>,
  make?: (server: SpireServerConfig, tls: SpireTls) => SpireServerClient,
): Promise<Map<string, SpireServerClient>> {
  const clients = new Map<string, SpireServerClient>();
  for (const server of servers) {
    const tls = await loadSpireTls(server, read, td);
    clients.set(
      server.name,
      make
        ? make(server, tls)
        : new SpireServerClient({
            address: server.address,
            timeoutMs: server.timeoutMs,
            ...(tls ? { tls } : {}),
          }),
    );
  }
  return clients;
}
