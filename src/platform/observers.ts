type AnyFn = (...args: never[]) => unknown;

/**
 * Combines several partial observers into one: each event is delivered to every part that
 * handles it, in order. An observer that throws does not stop the others (its error is passed to
 * `onError`).
 */
export function composeObservers<T extends { [K in keyof T]: AnyFn }>(
  parts: readonly (Partial<T> | undefined)[],
  onError: (err: unknown, event: string) => void = () => {},
): Partial<T> {
  const out: Partial<Record<keyof T, AnyFn>> = {};
  const keys = new Set<keyof T>();
  for (const p of parts) if (p) for (const k of Object.keys(p) as (keyof T)[]) keys.add(k);
  for (const k of keys) {
    const fns = parts.map((p) => p?.[k]).filter((f): f is NonNullable<typeof f> => typeof f === 'function');
    out[k] = (...args: never[]) => {
      for (const f of fns) {
        try {
          const r = (f as AnyFn)(...args);
          if (r instanceof Promise) r.catch((err: unknown) => onError(err, String(k)));
        } catch (err) {
          onError(err, String(k));
        }
      }
    };
  }
  return out as Partial<T>;
}
