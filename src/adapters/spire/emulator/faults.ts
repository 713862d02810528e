import type { GrpcStatusName } from '../status.js';

/** Which calls a fault applies to: a method name (`'GetBundle'`), a full path, or a pattern. */
export type MethodMatcher = string | RegExp | ((method: string) => boolean);

/** A planned failure or delay. */
export interface FaultSpec {
  /** Calls matched; all methods when absent. */
  readonly method?: MethodMatcher;
  /** Fail with this status (default UNAVAILABLE) — unless `delayMs` alone is given. */
  readonly code?: GrpcStatusName;
  readonly message?: string;
  /** Wait this long before answering (or failing). */
  readonly delayMs?: number;
  /** Answer with this raw response object instead of the real one (see {@link EmulatorFaults.respondNext}). */
  readonly response?: object;
}

interface Rule {
  remaining: number;
  readonly spec: FaultSpec;
  readonly kind: 'fail' | 'delay' | 'respond';
}

/** What to do with one call. */
export interface FaultDecision {
  readonly delayMs: number;
  readonly fail?: { readonly code: GrpcStatusName; readonly message: string };
  /** A canned response to send instead of the real one. */
  readonly response?: object;
}

function matches(m: MethodMatcher | undefined, method: string): boolean {
  if (m === undefined) return true;
  if (typeof m === 'function') return m(method);
  if (m instanceof RegExp) return m.test(method);
  return method === m || method.endsWith(`/${m}`);
}

/**
 * Fault injection for the emulator: make the next N matching calls fail with a gRPC status, or
 * answer late. Rules are consumed in the order they were added.
 *
 * @example
 * emulator.faults.failNext(2);                                 // next 2 calls: UNAVAILABLE
 * emulator.faults.failNext(1, { method: 'BatchSetFederatedBundle', code: 'INTERNAL' });
 * emulator.faults.delayNext(1, 500, { method: 'GetBundle' }); // for deadline tests
 * emulator.faults.respondNext(1, { results: [] }, { method: 'BatchSetFederatedBundle' }); // a broken server
 */
export class EmulatorFaults {
  readonly #rules: Rule[] = [];

  /** The next `count` matching calls fail (default status UNAVAILABLE). */
  failNext(count: number, spec: FaultSpec = {}): void {
    if (!Number.isInteger(count) || count < 1)
      throw new TypeError('failNext: count must be a positive integer');
    this.#rules.push({ remaining: count, spec, kind: 'fail' });
  }

  /** The next `count` matching calls are answered after `delayMs` (then normally). */
  delayNext(count: number, delayMs: number, spec: Omit<FaultSpec, 'delayMs' | 'code'> = {}): void {
    if (!Number.isInteger(count) || count < 1)
      throw new TypeError('delayNext: count must be a positive integer');
    this.#rules.push({ remaining: count, spec: { ...spec, delayMs }, kind: 'delay' });
  }

  /**
   * The next `count` matching calls are answered with `response` (a raw message object in the
   * loader's shape), whatever the request — to test how clients cope with odd or broken servers.
   */
  respondNext(count: number, response: object, spec: Pick<FaultSpec, 'method' | 'delayMs'> = {}): void {
    if (!Number.isInteger(count) || count < 1)
      throw new TypeError('respondNext: count must be a positive integer');
    this.#rules.push({ remaining: count, spec: { ...spec, response }, kind: 'respond' });
  }

  /** Drops every pending rule. */
  clear(): void {
    this.#rules.length = 0;
  }

  /** Rules still waiting for calls. */
  get pending(): number {
    return this.#rules.reduce((n, r) => n + r.remaining, 0);
  }

  /** Consumes the first rule matching `method` (a full path like `/pkg.Service/Method`). */
  take(method: string): FaultDecision {
    const i = this.#rules.findIndex((r) => matches(r.spec.method, method));
    if (i === -1) return { delayMs: 0 };
    const rule = this.#rules[i]!;
    rule.remaining -= 1;
    if (rule.remaining === 0) this.#rules.splice(i, 1);
    const delayMs = rule.spec.delayMs ?? 0;
    if (rule.kind === 'delay') return { delayMs };
    if (rule.kind === 'respond') return { delayMs, response: rule.spec.response ?? {} };
    return {
      delayMs,
      fail: {
        code: rule.spec.code ?? 'UNAVAILABLE',
        message: rule.spec.message ?? `injected fault (${rule.spec.code ?? 'UNAVAILABLE'})`,
      },
    };
  }
}
