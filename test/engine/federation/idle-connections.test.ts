import { EventEmitter } from 'node:events';
import type * as tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_IDLE, IdleConnections } from '../../../src/engine/federation/idle-connections.js';

/** Just what the pool looks at of a socket: its state, its events, destroy(). */
class FakeSocket extends EventEmitter {
  destroyed = false;
  writable = true;
  readableEnded = false;
  destroy(): this {
    this.destroyed = true;
    return this;
  }
}

function fill(pool: IdleConnections, n: number, from = 0): FakeSocket[] {
  const sockets: FakeSocket[] = [];
  for (let i = from; i < from + n; i++) {
    const socket = new FakeSocket();
    sockets.push(socket);
    pool.put(`peer-${i}`, { socket: socket as unknown as tls.TLSSocket });
  }
  return sockets;
}

const open = (sockets: FakeSocket[]) => sockets.filter((s) => !s.destroyed).length;

describe('IdleConnections maxIdle', () => {
  it("'auto' keeps one connection per allowlisted peer, never fewer than the default", () => {
    const pool = new IdleConnections({ maxIdle: 'auto', clock: { now: () => 0 } });
    expect(pool.maxIdle).toBe(DEFAULT_MAX_IDLE);
    // Before any allowlist: the default cap; the least recently used beyond it close.
    const first = fill(pool, DEFAULT_MAX_IDLE + 100);
    expect(pool.size).toBe(DEFAULT_MAX_IDLE);
    expect(open(first)).toBe(DEFAULT_MAX_IDLE);
    expect(first[0]!.destroyed).toBe(true);
    expect(first.at(-1)!.destroyed).toBe(false);

    // An allowlist of 3,000 peers: 3,000 kept.
    pool.fitTo(3000);
    expect(pool.maxIdle).toBe(3000);
    const more = fill(pool, 3000, 10_000);
    expect(pool.size).toBe(3000);
    expect(open(more)).toBe(3000);

    // It shrinks to 1,500 peers: the least recently used close at once.
    pool.fitTo(1500);
    expect(pool.maxIdle).toBe(1500);
    expect(pool.size).toBe(1500);
    expect(open(more.slice(0, 1500))).toBe(0);
    expect(open(more.slice(1500))).toBe(1500);

    // A small allowlist still keeps up to the default; so does a count that is not one.
    pool.fitTo(3);
    expect(pool.maxIdle).toBe(DEFAULT_MAX_IDLE);
    pool.fitTo(Number.NaN);
    expect(pool.maxIdle).toBe(DEFAULT_MAX_IDLE);
    expect(pool.enabled).toBe(true);
    expect(pool.size).toBe(DEFAULT_MAX_IDLE);
    pool.close();
    expect(open(more)).toBe(0);
  });

  it('a configured number is left as it is by fitTo', () => {
    const pool = new IdleConnections({ maxIdle: 5, clock: { now: () => 0 } });
    pool.fitTo(10_000);
    expect(pool.maxIdle).toBe(5);
    const sockets = fill(pool, 8);
    expect(pool.size).toBe(5);
    expect(open(sockets)).toBe(5);
    pool.fitTo(0);
    expect(pool.maxIdle).toBe(5);
    expect(pool.size).toBe(5);
  });

  it('refuses a cap that is not a non-negative integer', () => {
    for (const bad of [-1, 1.5, Number.NaN]) {
      expect(() => new IdleConnections({ maxIdle: bad }), String(bad)).toThrow(TypeError);
    }
  });
});
