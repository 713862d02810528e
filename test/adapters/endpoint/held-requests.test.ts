import { describe, expect, it } from 'vitest';
import { HeldRequests, type ReleaseReason } from '../../../src/adapters/endpoint/held-requests.js';
import { FakeClock } from '../../fakes/fake-clock.js';

function setup(max = 100, tickMs = 250) {
  const clock = new FakeClock(1_000_000);
  const held = new HeldRequests({ max, clock, tickMs });
  return { clock, held };
}

describe('HeldRequests', () => {
  it('releases everyone on a change, with one timer for all deadlines', async () => {
    const { clock, held } = setup();
    const reasons: ReleaseReason[] = [];
    for (let i = 0; i < 50; i++) held.hold(1000 * (1 + (i % 10)), (r) => reasons.push(r));
    expect(held.size).toBe(50);
    expect(clock.pending).toBe(1);
    held.releaseAll('changed');
    expect(reasons).toEqual(Array(50).fill('changed'));
    expect(held.size).toBe(0);
    await clock.settle();
    expect(clock.pending).toBe(0);
  });

  it('calls one shared callback with the item of each request (no closure per request)', async () => {
    const clock = new FakeClock(1_000_000);
    const held = new HeldRequests<{ id: number }>({ max: 10, clock, tickMs: 250 });
    const log: string[] = [];
    const done = (r: ReleaseReason, item: { id: number }) => log.push(`${item.id}:${r}`);
    const a = held.hold(1000, done, { id: 1 });
    held.hold(5000, done, { id: 2 });
    held.hold(5000, done, { id: 3 });
    a?.cancel();
    await clock.advance(1000);
    held.releaseAll('changed');
    expect(log).toEqual(['1:cancelled', '2:changed', '3:changed']);
  });

  it('times requests out by deadline bucket, never later than asked', async () => {
    const { clock, held } = setup();
    const log: string[] = [];
    held.hold(1000, (r) => log.push(`a:${r}`));
    held.hold(3000, (r) => log.push(`b:${r}`));
    held.hold(2000, (r) => log.push(`c:${r}`));
    await clock.advance(999);
    expect(log).toEqual([]);
    await clock.advance(1);
    expect(log).toEqual(['a:timeout']);
    await clock.advance(1000);
    expect(log).toEqual(['a:timeout', 'c:timeout']);
    expect(held.size).toBe(1);
    await clock.advance(1000);
    expect(log).toEqual(['a:timeout', 'c:timeout', 'b:timeout']);
    expect(held.size).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('rounds deadlines down to the tick', async () => {
    const { clock, held } = setup(10, 250);
    const log: ReleaseReason[] = [];
    await clock.advance(100); // now = 1_000_100
    held.hold(1000, (r) => log.push(r)); // deadline 1_001_100 → bucket 1_001_000
    await clock.advance(899);
    expect(log).toEqual([]);
    await clock.advance(1);
    expect(log).toEqual(['timeout']);
  });

  it('cancel releases one request at once and re-arms for the next deadline', async () => {
    const { clock, held } = setup();
    const log: string[] = [];
    const a = held.hold(1000, (r) => log.push(`a:${r}`));
    held.hold(5000, (r) => log.push(`b:${r}`));
    a?.cancel();
    a?.cancel();
    expect(log).toEqual(['a:cancelled']);
    expect(held.size).toBe(1);
    await clock.advance(4999);
    expect(log).toEqual(['a:cancelled']);
    await clock.advance(1);
    expect(log).toEqual(['a:cancelled', 'b:timeout']);
  });

  it('refuses past the cap', () => {
    const { held } = setup(2);
    expect(held.hold(1000, () => {})).toBeDefined();
    expect(held.hold(1000, () => {})).toBeDefined();
    expect(held.hold(1000, () => {})).toBeUndefined();
    held.releaseAll('closing');
    expect(held.hold(1000, () => {})).toBeDefined();
  });

  it('holds 10,000 requests and wakes them all in one pass', async () => {
    const { clock, held } = setup(10_000);
    let woken = 0;
    for (let i = 0; i < 10_000; i++) held.hold(1000 + (i % 60) * 1000, () => woken++);
    expect(held.size).toBe(10_000);
    expect(held.hold(1000, () => {})).toBeUndefined();
    expect(clock.pending).toBe(1);
    held.releaseAll('changed');
    expect(woken).toBe(10_000);
  });
});
