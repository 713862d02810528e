import { describe, expect, it } from 'vitest';
import { Trigger } from '../../src/platform/trigger.js';
import { FakeClock } from '../fakes/fake-clock.js';

describe('Trigger (the one wake-up primitive)', () => {
  it('coalesces fires: many before a wait wake it once, at once; otherwise the period passes', async () => {
    const clock = new FakeClock();
    const t = new Trigger();
    const stop = new AbortController();
    t.fire();
    t.fire();
    await t.wait(clock, 60_000, stop.signal); // pending: returns at once
    let woke = false;
    const waiting = t.wait(clock, 60_000, stop.signal).then(() => {
      woke = true;
    });
    await clock.advance(59_999);
    expect(woke).toBe(false);
    await clock.advance(1);
    await waiting;
    expect(woke).toBe(true);
  });

  it('a fire wakes a current waiter; an abort rejects it', async () => {
    const clock = new FakeClock();
    const t = new Trigger();
    const stop = new AbortController();
    const w = t.wait(clock, 60_000, stop.signal);
    t.fire();
    await w;
    const w2 = t.wait(clock, 60_000, stop.signal);
    stop.abort(new Error('stopping'));
    await expect(w2).rejects.toThrow('stopping');
  });

  it('pending and take(): a loop can look at and consume the pending work without waiting', () => {
    const t = new Trigger();
    expect(t.pending).toBe(false);
    t.fire();
    expect(t.pending).toBe(true);
    expect(t.take()).toBe(true);
    expect(t.take()).toBe(false);
  });
});
