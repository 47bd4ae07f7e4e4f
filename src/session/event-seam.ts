/** A subscriber handles any subset of the events of map `M`. */
export type Subscriber<M> = { readonly [K in keyof M]?: (event: M[K]) => void };

type Handler = (event: never) => void;

/**
 * One publish seam, typed by its event map: every transition is published once, and logs, metrics and
 * traces subscribe (undici's diagnostics channels are the model). The gateway's GatewayEvents and the
 * sidecar's SidecarEvents are the two instances.
 *
 * Synchronous fan-out: a handler runs inside the transition that published it, so a log line is written
 * in the same turn as the event. A handler that throws is reported once per subscriber through
 * `onSubscriberError` and otherwise ignored: observability must never take a tunnel down, and nothing is
 * ever allowed because a subscriber failed (events are published after the decision).
 */
export class EventSeam<M extends object> {
  readonly #handlers = new Map<keyof M, Handler[]>();
  readonly #reported = new WeakSet<object>();

  constructor(private readonly onSubscriberError: (error: unknown, event: keyof M) => void = () => {}) {}

  /** Adds a subscriber; the returned function removes it. */
  subscribe(subscriber: Subscriber<M>): () => void {
    const added: Array<[keyof M, Handler]> = [];
    for (const name of [...handlerNames(subscriber)] as Array<keyof M>) {
      const handler = (subscriber as Record<keyof M, unknown>)[name] as Handler | undefined;
      if (typeof handler !== 'function') continue;
      const bound = this.guard(subscriber, name, handler.bind(subscriber));
      let list = this.#handlers.get(name);
      if (list === undefined) {
        list = [];
        this.#handlers.set(name, list);
      }
      list.push(bound);
      added.push([name, bound]);
    }
    return () => {
      for (const [name, bound] of added) {
        const list = this.#handlers.get(name);
        const at = list?.indexOf(bound) ?? -1;
        if (list !== undefined && at >= 0) list.splice(at, 1);
      }
    };
  }

  /** Whether anyone listens for `name` (so a publisher can skip building an expensive payload). */
  has(name: keyof M): boolean {
    return (this.#handlers.get(name)?.length ?? 0) > 0;
  }

  emit<K extends keyof M>(name: K, event: M[K]): void {
    const list = this.#handlers.get(name) as Array<(event: M[K]) => void> | undefined;
    if (list === undefined) return;
    for (let i = 0; i < list.length; i++) list[i]!(event);
  }

  private guard(subscriber: object, name: keyof M, handler: Handler): Handler {
    return (event: never): void => {
      try {
        handler(event);
      } catch (error) {
        if (this.#reported.has(subscriber)) return;
        this.#reported.add(subscriber);
        this.onSubscriberError(error, name);
      }
    };
  }
}

/** Own and inherited method names (a subscriber may be an object literal or a class instance). */
function handlerNames(subscriber: object): Set<string> {
  const names = new Set<string>();
  for (
    let o: object | null = subscriber;
    o !== null && o !== Object.prototype;
    o = Object.getPrototypeOf(o)
  ) {
    for (const name of Object.getOwnPropertyNames(o)) if (name !== 'constructor') names.add(name);
  }
  return names;
}
