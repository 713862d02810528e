import { RuntimeError } from '../../errors.js';
import type { StateStore } from '../federation/state-store.js';
import type { ManagedSetStore } from './spire-sync.js';

/**
 * Persists, per SPIRE server, the trust domains whose federated bundles the broker wrote (and so
 * may delete on revocation): `managed-<server>.json` in the state directory, written with the
 * state store's crash-safe protocol. A missing file is an empty set; a corrupt one is an error
 * (the broker must not silently forget what it owns).
 */
export class FileManagedSetStore implements ManagedSetStore {
  readonly #state: StateStore;

  constructor(state: StateStore) {
    this.#state = state;
  }

  async load(server: string): Promise<Set<string>> {
    const name = `managed-${server}.json`;
    const text = await this.#state.readAuxiliary(name);
    if (text === undefined) return new Set();
    try {
      const doc = JSON.parse(text) as { version?: number; server?: string; trustDomains?: unknown };
      const tds = doc.trustDomains;
      if (
        doc.version !== 1 ||
        doc.server !== server ||
        !Array.isArray(tds) ||
        !tds.every((t) => typeof t === 'string')
      ) {
        throw new Error('unexpected shape');
      }
      return new Set(tds as string[]);
    } catch (cause) {
      throw new RuntimeError(
        'ERR_STATE_CORRUPT',
        `${name} is not a managed-set file: ${(cause as Error).message}`,
        {
          cause,
        },
      );
    }
  }

  async save(server: string, managed: ReadonlySet<string>): Promise<void> {
    await this.#state.writeAuxiliary(
      `managed-${server}.json`,
      `${JSON.stringify({ version: 1, server, trustDomains: [...managed].sort() })}\n`,
    );
  }
}
