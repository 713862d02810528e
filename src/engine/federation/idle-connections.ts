import type * as tls from 'node:tls';
import { type Clock, systemClock } from '../../platform/clock.js';

/**
 * Kept-alive bundle endpoint connections between polls: an HTTP/1.1 connection whose response
 * ended cleanly waits here, idle, for the next fetch from the same endpoint under the same trust
 * configuration. A poll on it costs one request and response instead of a TCP and TLS handshake
 * (issue 13 item 1: at 1,000 polling peers the broker's CPU was mostly connection setup —
 * TLSSocket creation, OpenSSL's SSL object, the handshake — bench/scale.bench.ts).
 *
 * What keeps verification intact (SPIFFE Federation §5.2.1.4 / §5.2.2.4) is the key a connection
 * is filed under, built by the caller: an https_web connection carries its CA set's fingerprint
 * and host, so a rotated CA file never reuses a connection verified under the old one; an
 * https_spiffe connection carries its expected SPIFFE ID, and its X509-SVID chain is kept with it
 * so the caller checks it again against the current bundle before every reuse.
 *
 * Bounded twice: a connection idle longer than `idleTimeoutMs` is not reused but closed (poll
 * intervals longer than that pay a handshake, as before; expiry is checked against the injected
 * clock whenever a connection is taken or returned), and at most `maxIdle` wait at once (the
 * least recently used closes first) — each costs about 40 KiB of native TLS memory
 * (docs/scaling.md). An idle connection that errors, ends, closes or receives bytes nobody asked
 * for is dropped at once. Nothing here reads process state or starts a timer.
 * @module
 */

/** One idle connection and what was verified about it. */
export interface IdleConnection {
  readonly socket: tls.TLSSocket;
  /** https_spiffe: the server's certificate chain (DER, leaf first) as presented at the handshake. */
  readonly chain?: readonly Uint8Array[];
}

/** Defaults: 10 minutes idle (a 300 s refresh hint polls every 75 s), 1,024 connections. */
export const DEFAULT_IDLE_TIMEOUT_MS = 600_000;
export const DEFAULT_MAX_IDLE = 1024;

/**
 * `maxIdle: 'auto'`: one connection per peer of the allowlist in force ({@link IdleConnections.fitTo}),
 * never fewer than {@link DEFAULT_MAX_IDLE}. A fleet larger than that otherwise pays a new
 * connection for most polls: at 10,000 peers, 19.5 % of a core with 1,024 kept against 8.7 % with
 * all kept (bench/scale.bench.ts, docs/scaling.md).
 */
export type MaxIdle = number | 'auto';

interface Entry extends IdleConnection {
  readonly key: string;
  /** Clock time it was returned. */
  readonly since: number;
  readonly release: () => void;
}

/** The idle connection pool of one broker (see the module comment). */
export class IdleConnections {
  readonly #idleTimeoutMs: number;
  readonly #auto: boolean;
  #maxIdle: number;
  readonly #clock: Pick<Clock, 'now'>;
  /** Per key, a stack (the most recently returned on top: it is the least likely to be closing). */
  readonly #byKey = new Map<string, Entry[]>();
  /** Every idle entry in the order it was returned: the first is the least recently used. */
  readonly #lru = new Set<Entry>();
  #reused = 0;
  #closed = false;

  constructor(opts: { idleTimeoutMs?: number; maxIdle?: MaxIdle; clock?: Pick<Clock, 'now'> } = {}) {
    this.#clock = opts.clock ?? systemClock;
    this.#idleTimeoutMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.#auto = opts.maxIdle === 'auto';
    this.#maxIdle = opts.maxIdle === 'auto' ? DEFAULT_MAX_IDLE : (opts.maxIdle ?? DEFAULT_MAX_IDLE);
    if (!Number.isSafeInteger(this.#idleTimeoutMs) || this.#idleTimeoutMs < 0)
      throw new TypeError(
        `IdleConnections: idleTimeoutMs must be an integer ≥ 0, got ${this.#idleTimeoutMs}`,
      );
    if (!Number.isSafeInteger(this.#maxIdle) || this.#maxIdle < 0)
      throw new TypeError(`IdleConnections: maxIdle must be an integer ≥ 0, got ${this.#maxIdle}`);
  }

  /** False when connections are never kept (`maxIdle` or `idleTimeoutMs` 0, or closed). */
  get enabled(): boolean {
    return !this.#closed && this.#maxIdle > 0 && this.#idleTimeoutMs > 0;
  }

  /** Most idle connections held at once, now. */
  get maxIdle(): number {
    return this.#maxIdle;
  }

  /**
   * Sizes an `'auto'` pool for `peers` (one each, at least {@link DEFAULT_MAX_IDLE}), closing the
   * least recently used beyond a lowered cap. A fixed `maxIdle` is left as configured.
   */
  fitTo(peers: number): void {
    if (!this.#auto) return;
    this.#maxIdle = Number.isSafeInteger(peers) && peers > DEFAULT_MAX_IDLE ? peers : DEFAULT_MAX_IDLE;
    this.#trim();
  }

  /** Idle connections held now. */
  get size(): number {
    return this.#lru.size;
  }

  /** Connections handed out for reuse so far. */
  get reused(): number {
    return this.#reused;
  }

  /**
   * An idle connection filed under `key`, removed from the pool (the caller now owns it and must
   * check it before use), or undefined.
   */
  take(key: string): IdleConnection | undefined {
    this.#expire();
    const stack = this.#byKey.get(key);
    while (stack && stack.length > 0) {
      const e = stack.pop()!;
      if (stack.length === 0) this.#byKey.delete(key);
      this.#lru.delete(e);
      e.release();
      if (e.socket.destroyed || !e.socket.writable) {
        e.socket.destroy();
        continue;
      }
      this.#reused++;
      return e.chain ? { socket: e.socket, chain: e.chain } : { socket: e.socket };
    }
    return undefined;
  }

  /**
   * Files a connection whose last response ended cleanly and that the server did not ask to
   * close. Destroys it instead when the pool is disabled or the connection is unusable.
   */
  put(key: string, conn: IdleConnection): void {
    const s = conn.socket;
    if (!this.enabled || s.destroyed || !s.writable || s.readableEnded) {
      s.destroy();
      return;
    }
    const drop = (): void => {
      if (this.#lru.has(entry)) {
        this.#forget(entry);
        entry.release();
      }
      s.destroy();
    };
    const onData = (): void => drop(); // an idle HTTP/1.1 server has nothing to say
    s.on('error', drop);
    s.on('close', drop);
    s.on('end', drop);
    s.on('data', onData);
    const entry: Entry = {
      key,
      since: this.#clock.now(),
      socket: s,
      ...(conn.chain ? { chain: conn.chain } : {}),
      release: () => {
        s.off('error', drop);
        s.off('close', drop);
        s.off('end', drop);
        s.off('data', onData);
        // Left flowing: the next request's parser attaches before that request is written.
      },
    };
    let stack = this.#byKey.get(key);
    if (!stack) {
      stack = [];
      this.#byKey.set(key, stack);
    }
    stack.push(entry);
    this.#lru.add(entry);
    this.#expire();
    this.#trim();
  }

  /** Closes the least recently used connections beyond the cap. */
  #trim(): void {
    while (this.#lru.size > this.#maxIdle) {
      const oldest = this.#lru.values().next().value!;
      this.#forget(oldest);
      oldest.release();
      oldest.socket.destroy();
    }
  }

  /** Closes every idle connection; later `put`s destroy what they are given. */
  close(): void {
    this.#closed = true;
    for (const e of [...this.#lru]) {
      this.#forget(e);
      e.release();
      e.socket.destroy();
    }
  }

  /** Closes the connections idle for longer than the timeout (the LRU order is return order). */
  #expire(): void {
    const oldest = this.#clock.now() - this.#idleTimeoutMs;
    for (const e of this.#lru) {
      if (e.since > oldest) break;
      this.#forget(e);
      e.release();
      e.socket.destroy();
    }
  }

  #forget(e: Entry): void {
    this.#lru.delete(e);
    const stack = this.#byKey.get(e.key);
    if (!stack) return;
    const i = stack.indexOf(e);
    if (i >= 0) stack.splice(i, 1);
    if (stack.length === 0) this.#byKey.delete(e.key);
  }
}
