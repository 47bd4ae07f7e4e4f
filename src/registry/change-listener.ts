import postgres from 'postgres';
import type { PolicyConfig } from '../config/schema.js';
import { type Clock, systemClock, type TimerHandle } from '../time/clock.js';
import { reconnectBackoff } from './connect.js';
import { readExtensionVersion } from './migrate.js';
import type { GateObserver } from './query-gate.js';

/** The channel the extension's triggers notify (migrations/extension/0001_live_authorization.sql). */
export const REGISTRY_CHANGED_CHANNEL = 'agent_gateway_registry_changed';

export interface ChangeHandlers {
  /** A registry change was committed (UPDATE, DELETE or TRUNCATE of a registry table). */
  changed(): void;
  /**
   * LISTEN is (again) in place. Notifications sent while it was not are lost, so everything must be
   * re-checked now.
   */
  listening(): void;
  /** The listener lost its connection, or the registry has no extension (notifications never come). */
  down(detail: string): void;
}

export interface ChangeListenerState {
  /** LISTEN is active on a connection that answered its last heartbeat, on a registry with the extension. */
  readonly listening: boolean;
  readonly extensionVersion: number;
  readonly detail: string;
}

export interface ChangeListenerOptions {
  readonly databaseUrl: string;
  readonly policy: Pick<PolicyConfig, 'connect_timeout_ms'>;
  /** How often the listener's connection must prove it is alive (and the extension is checked for). */
  readonly heartbeatMs: number;
  readonly clock?: Clock;
  /**
   * Told how each of the listener's own queries went (the registry's health): its heartbeat is what
   * notices an outage, and the end of one, while no CONNECT is being decided.
   */
  readonly observer?: GateObserver;
}

/**
 * LISTEN for the registry's change notifications on a connection of its own.
 *
 * Not postgres.js's `sql.listen()`: it re-LISTENs after a drop, but offers no way to learn that the
 * connection dropped or is silently dead, and the gateway must know, because its decision cache is only
 * safe while notifications arrive. So this owns a one-connection pool: `onclose` says when the connection
 * is gone, a heartbeat (`SELECT 1` within the heartbeat interval) catches a connection that is dead
 * without a reset, and LISTEN is re-issued on every new connection, followed by `listening()` so the
 * caller re-checks what it may have missed. Notifications arrive through the driver's `onnotify` hook,
 * the one its own listen() uses.
 */
export class RegistryChangeListener {
  private sql: postgres.Sql | undefined;
  private state: ChangeListenerState = { listening: false, extensionVersion: 0, detail: 'not started' };
  private timer: TimerHandle | undefined;
  private stopped = false;
  private connecting = false;
  private readonly clock: Clock;

  constructor(
    private readonly options: ChangeListenerOptions,
    private readonly handlers: ChangeHandlers,
  ) {
    this.clock = options.clock ?? systemClock;
  }

  get current(): ChangeListenerState {
    return this.state;
  }

  start(): void {
    void this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
    const sql = this.sql;
    this.sql = undefined;
    await sql?.end({ timeout: 1 }).catch(() => undefined);
  }

  private open(): postgres.Sql {
    const options = {
      max: 1,
      idle_timeout: 0,
      max_lifetime: 0,
      fetch_types: false,
      backoff: reconnectBackoff,
      connect_timeout: Math.max(1, Math.ceil(this.options.policy.connect_timeout_ms / 1000)),
      connection: { application_name: 'agent-gateway-listener' },
      onnotice: () => {},
      onclose: () => this.lost('the listener connection to the registry closed'),
      onnotify: (channel: string) => {
        if (channel === REGISTRY_CHANGED_CHANNEL) this.handlers.changed();
      },
    };
    // `onnotify` is how postgres.js delivers NotificationResponse messages; it is not in its typings.
    return postgres(this.options.databaseUrl, options as postgres.Options<Record<string, never>>);
  }

  /** (Re)opens the connection, checks for the extension, and LISTENs. Retries on the heartbeat. */
  private async connect(): Promise<void> {
    if (this.stopped || this.connecting) return;
    this.connecting = true;
    const startedAt = this.clock.now();
    try {
      this.sql ??= this.open();
      const sql = this.sql;
      const version = await this.withDeadline(readExtensionVersion(sql));
      this.options.observer?.settled(true, undefined, this.clock.now() - startedAt);
      if (version < 1) {
        this.set({
          listening: false,
          extensionVersion: 0,
          detail: 'the registry has no agent_gateway_ext extension',
        });
      } else {
        await this.withDeadline(sql.unsafe(`LISTEN ${REGISTRY_CHANGED_CHANNEL}`));
        this.set({ listening: true, extensionVersion: version, detail: 'listening' });
      }
    } catch (err) {
      this.options.observer?.settled(false, err, this.clock.now() - startedAt);
      this.lost(`cannot LISTEN on the registry: ${(err as Error).message}`);
    } finally {
      this.connecting = false;
      this.schedule();
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined;
      void this.heartbeat();
    }, this.options.heartbeatMs);
  }

  /** Proves the connection is alive, or starts over on a new one. */
  private async heartbeat(): Promise<void> {
    if (this.stopped) return;
    if (!this.state.listening) {
      await this.connect();
      return;
    }
    const startedAt = this.clock.now();
    try {
      await this.withDeadline(this.sql!.unsafe('SELECT 1'));
      this.options.observer?.settled(true, undefined, this.clock.now() - startedAt);
      this.schedule();
    } catch (err) {
      this.options.observer?.settled(false, err, this.clock.now() - startedAt);
      // Dead without a reset (or just slow): drop that connection; the next one LISTENs afresh.
      const sql = this.sql;
      this.sql = undefined;
      void sql?.end({ timeout: 0 }).catch(() => undefined);
      this.lost(`the listener connection did not answer its heartbeat: ${(err as Error).message}`);
      await this.connect();
    }
  }

  private lost(detail: string): void {
    if (this.stopped) return;
    this.set({ listening: false, extensionVersion: this.state.extensionVersion, detail });
  }

  private set(next: ChangeListenerState): void {
    const was = this.state;
    this.state = next;
    if (next.listening && !was.listening) this.handlers.listening();
    else if (!next.listening && (was.listening || was.detail !== next.detail))
      this.handlers.down(next.detail);
  }

  private withDeadline<T>(work: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = this.clock.setTimer(
        () => reject(new Error(`no answer within ${this.options.heartbeatMs} ms`)),
        this.options.heartbeatMs,
      );
      work.then(
        (value) => {
          this.clock.clearTimer(timer);
          resolve(value);
        },
        (error: unknown) => {
          this.clock.clearTimer(timer);
          reject(error);
        },
      );
    });
  }
}
