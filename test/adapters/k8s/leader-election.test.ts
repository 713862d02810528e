/**
 * Lease-based leader election: against a real kube-apiserver with two (or three) electors — one
 * leads, a standby takes over only after the leader stops renewing, graceful release hands over at
 * once, racing candidates never both lead — and with a fake clock over an in-memory lease store for
 * the exact expiry rule.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type KubeApi,
  KubeApiError,
  type KubeObject,
  LEASES,
  LeaderElector,
  type LeaderElectorOptions,
  type LeaseAttempt,
} from '../../../src/adapters/k8s/index.js';
import { systemClock } from '../../../src/platform/clock.js';
import { FakeClock } from '../../fakes/fake-clock.js';
import { type KubeHarness, kubeAvailable, startKube } from '../../support/kube-harness.js';
import { apiFor, eventually } from './helpers.js';

function start(opts: LeaderElectorOptions) {
  const attempts: LeaseAttempt[] = [];
  const changes: boolean[] = [];
  let released = 0;
  const elector = new LeaderElector({
    ...opts,
    observer: {
      attempt: (r) => attempts.push(r),
      released: () => {
        released++;
      },
    },
  });
  elector.onLeadershipChange((l) => changes.push(l));
  const ac = new AbortController();
  const done = elector.run(ac.signal);
  return {
    elector,
    attempts,
    changes,
    released: () => released,
    stop: async () => {
      ac.abort();
      await done;
    },
  };
}

describe('LeaderElector options', () => {
  it('refuses inconsistent durations', () => {
    const api = {} as KubeApi;
    const base = { api, clock: systemClock, namespace: 'ns', name: 'l', identity: 'a' };
    expect(() => new LeaderElector({ ...base, leaseDurationMs: 1000, renewDeadlineMs: 1000 })).toThrow(
      TypeError,
    );
    expect(() => new LeaderElector({ ...base, renewDeadlineMs: 1000, retryPeriodMs: 1000 })).toThrow(
      TypeError,
    );
    expect(() => new LeaderElector({ ...base, identity: '' })).toThrow(TypeError);
  });
});

/** Leases in memory with resourceVersion conflicts, like the API server. */
class MemoryLeases {
  readonly objects = new Map<string, KubeObject>();
  #rv = 0;
  failing = new Set<string>();
  api(identity: string): KubeApi {
    const fail = (): void => {
      if (this.failing.has(identity)) throw new KubeApiError('ERR_K8S_UNAVAILABLE', 'injected outage', 0);
    };
    return {
      list: async () => ({ items: [], resourceVersion: '' }),
      watch: async () => 'closed',
      replaceStatus: async (_t, o) => o,
      delete: async () => false,
      get: async (_t, name) => {
        fail();
        const o = this.objects.get(name);
        return o ? structuredClone(o) : undefined;
      },
      create: async (_t, obj) => {
        fail();
        if (this.objects.has(obj.metadata.name))
          throw new KubeApiError('ERR_K8S_CONFLICT', 'exists', 409, 'AlreadyExists');
        const stored = {
          ...structuredClone(obj),
          metadata: { ...obj.metadata, resourceVersion: String(++this.#rv) },
        };
        this.objects.set(obj.metadata.name, stored);
        return structuredClone(stored);
      },
      replace: async (_t, obj) => {
        fail();
        const cur = this.objects.get(obj.metadata.name);
        if (!cur || cur.metadata.resourceVersion !== obj.metadata.resourceVersion) {
          throw new KubeApiError('ERR_K8S_CONFLICT', 'conflict', 409, 'Conflict');
        }
        const stored = {
          ...structuredClone(obj),
          metadata: { ...obj.metadata, resourceVersion: String(++this.#rv) },
        };
        this.objects.set(obj.metadata.name, stored);
        return structuredClone(stored);
      },
    };
  }
}

describe('LeaderElector timing rules (fake clock, in-memory leases)', () => {
  const timing = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

  it('a standby waits a full lease duration from when it last saw the record change', async () => {
    const clock = new FakeClock();
    const leases = new MemoryLeases();
    const base = { clock, namespace: 'ns', name: 'lease', ...timing };
    const a = start({ ...base, api: leases.api('a'), identity: 'a' });
    await clock.advance(0);
    expect(a.elector.isLeader()).toBe(true);
    const b = start({ ...base, api: leases.api('b'), identity: 'b' });
    await clock.advance(20_000);
    expect(b.elector.isLeader()).toBe(false);
    expect(b.attempts.every((r) => r === 'held')).toBe(true);
    // a stops renewing (crash: no release).
    leases.failing.add('a');
    const stoppedAt = clock.now();
    // b saw the last renewal at most one retry period before a stopped.
    await clock.advance(12_000);
    expect(b.elector.isLeader()).toBe(false);
    // a gave up leading after renewDeadline, before b may take over.
    expect(a.elector.isLeader()).toBe(false);
    expect(a.changes).toEqual([true, false]);
    await clock.advance(6_000);
    expect(b.elector.isLeader()).toBe(true);
    expect(clock.now() - stoppedAt).toBeGreaterThanOrEqual(timing.leaseDurationMs - timing.retryPeriodMs);
    const spec = leases.objects.get('lease')!.spec as { holderIdentity: string; leaseTransitions: number };
    expect(spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    await a.stop();
    await b.stop();
  });

  it('runWhileLeader runs the task only while leading and aborts it when leadership is lost', async () => {
    const clock = new FakeClock();
    const leases = new MemoryLeases();
    const a = start({ clock, namespace: 'ns', name: 'task', identity: 'a', api: leases.api('a'), ...timing });
    const ac = new AbortController();
    const events: string[] = [];
    const gated = a.elector.runWhileLeader(ac.signal, async (s) => {
      events.push('start');
      await new Promise<void>((resolve) => s.addEventListener('abort', () => resolve(), { once: true }));
      events.push('aborted');
    });
    await clock.advance(0);
    expect(events).toEqual(['start']);
    leases.failing.add('a');
    await clock.advance(12_000);
    expect(a.elector.isLeader()).toBe(false);
    expect(events).toEqual(['start', 'aborted']);
    ac.abort();
    await gated;
    await a.stop();
  });
});

describe.skipIf(!kubeAvailable())('LeaderElector against a real kube-apiserver', () => {
  let kube: KubeHarness;
  let api: KubeApi;

  beforeAll(async () => {
    kube = await startKube();
    console.info(`kube-apiserver + etcd ready in ${kube.startupMs} ms`);
    api = apiFor(kube);
  });
  afterAll(async () => {
    await kube?.stop();
  });

  const fast = { leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 200 };
  const holder = async (name: string) =>
    ((await api.get(LEASES, name, 'default'))?.spec as { holderIdentity?: string } | undefined)
      ?.holderIdentity;

  it('one leads, the standby stays standby while the leader renews, then takes over after expiry', async () => {
    const base = { api, clock: systemClock, namespace: 'default', name: 'expiry', ...fast };
    const a = start({ ...base, identity: 'replica-a', releaseOnCancel: false });
    await eventually('a leads', () => a.elector.isLeader());
    const b = start({ ...base, identity: 'replica-b' });
    try {
      await eventually('b tried several times', () => b.attempts.length >= 8);
      expect(b.elector.isLeader()).toBe(false);
      expect(b.attempts.every((r) => r === 'held')).toBe(true);
      expect(b.elector.leader).toBe('replica-a');
      expect(await holder('expiry')).toBe('replica-a');
      expect(a.attempts.filter((r) => r === 'renewed').length).toBeGreaterThan(3);

      await a.stop(); // a crash: no release
      expect(a.released()).toBe(0);
      await eventually('b takes over after expiry', () => b.elector.isLeader());
      expect(await holder('expiry')).toBe('replica-b');
      const spec = (await api.get(LEASES, 'expiry', 'default'))!.spec as { leaseTransitions: number };
      expect(spec.leaseTransitions).toBe(1);
      // b saw the lease held after a stopped, before it expired.
      const afterStop = b.attempts.slice(b.attempts.lastIndexOf('held'));
      expect(afterStop[0]).toBe('held');
      expect(b.changes).toEqual([true]);
    } finally {
      await b.stop();
    }
  });

  it('hands over at once on graceful shutdown (release), long before the lease would expire', async () => {
    const slow = { leaseDurationMs: 60_000, renewDeadlineMs: 40_000, retryPeriodMs: 200 };
    const base = { api, clock: systemClock, namespace: 'default', name: 'handover', ...slow };
    const a = start({ ...base, identity: 'replica-a' });
    await eventually('a leads', () => a.elector.isLeader());
    const b = start({ ...base, identity: 'replica-b' });
    try {
      await eventually('b is standing by', () => b.attempts.length >= 3);
      expect(b.elector.isLeader()).toBe(false);
      await a.stop();
      expect(a.released()).toBe(1);
      expect(a.changes).toEqual([true, false]);
      // A 60 s lease cannot expire within this test's timeout: only the release explains this.
      await eventually('b leads after the release', () => b.elector.isLeader(), 10_000);
      expect(await holder('handover')).toBe('replica-b');
    } finally {
      await b.stop();
    }
  });

  it('stops leading when renewals fail for renewDeadline, before the lease expires for others', async () => {
    let outage = false;
    const flaky: KubeApi = {
      ...api,
      get: async (...a) => {
        if (outage) throw new KubeApiError('ERR_K8S_UNAVAILABLE', 'injected outage', 0);
        return api.get(...a);
      },
      create: (...a) => api.create(...a),
      replace: (...a) => api.replace(...a),
    };
    const a = start({
      api: flaky,
      clock: systemClock,
      namespace: 'default',
      name: 'deadline',
      identity: 'replica-a',
      ...fast,
    });
    await eventually('a leads', () => a.elector.isLeader());
    const base = { api, clock: systemClock, namespace: 'default', name: 'deadline', ...fast };
    let aLeadingWhenBTookOver: boolean | undefined;
    const b = start({ ...base, identity: 'replica-b' });
    b.elector.onLeadershipChange((l) => {
      if (l) aLeadingWhenBTookOver = a.elector.isLeader();
    });
    try {
      await eventually('b is standing by', () => b.attempts.length >= 3);
      expect(b.elector.isLeader()).toBe(false);
      outage = true;
      await eventually('a steps down', () => !a.elector.isLeader());
      expect(a.attempts.at(-1)).toBe('error');
      await eventually('b takes over', () => b.elector.isLeader());
      expect(aLeadingWhenBTookOver).toBe(false);
    } finally {
      await a.stop();
      await b.stop();
    }
  });

  it('never lets racing candidates both lead', async () => {
    const base = { api, clock: systemClock, namespace: 'default', name: 'race', ...fast };
    const cs = ['r1', 'r2', 'r3'].map((identity) => start({ ...base, identity }));
    let bothSeen = false;
    for (const c of cs) {
      c.elector.onLeadershipChange(() => {
        if (cs.filter((x) => x.elector.isLeader()).length > 1) bothSeen = true;
      });
    }
    try {
      await eventually('someone leads', () => cs.some((c) => c.elector.isLeader()));
      await eventually('everyone tried a few times', () => cs.every((c) => c.attempts.length >= 5));
      expect(cs.filter((c) => c.elector.isLeader())).toHaveLength(1);
      expect(bothSeen).toBe(false);
      const leader = cs.find((c) => c.elector.isLeader())!;
      expect(await holder('race')).toBe(leader.elector.leader);
    } finally {
      for (const c of cs) await c.stop();
    }
  });
});
