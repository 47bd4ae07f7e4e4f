/** One kept entry: its sequence number and its JSON text (serialized once, sent to every client as is). */
export interface RingEntry<T> {
  readonly seq: number;
  readonly value: T;
  readonly json: string;
}

/**
 * The most recent `capacity` values, each numbered from 1 upwards. Memory is bounded by the capacity
 * whatever the rate of events; an SSE client that reconnects with `Last-Event-ID` gets what it missed,
 * as far as it is still kept.
 */
export class Ring<T> {
  private readonly entries: Array<RingEntry<T> | undefined>;
  private next = 1;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('ring capacity must be >= 1');
    this.entries = new Array(capacity);
  }

  /** The sequence number of the newest entry (0 before the first). */
  get lastSeq(): number {
    return this.next - 1;
  }

  push(value: T): RingEntry<T> {
    const entry = { seq: this.next, value, json: JSON.stringify(value) };
    this.entries[(this.next - 1) % this.capacity] = entry;
    this.next++;
    return entry;
  }

  /** Entries newer than `seq`, oldest first (all that are kept for 0). */
  since(seq = 0): RingEntry<T>[] {
    const first = Math.max(seq + 1, this.next - this.capacity, 1);
    const out: RingEntry<T>[] = [];
    for (let s = first; s < this.next; s++) {
      const entry = this.entries[(s - 1) % this.capacity];
      if (entry !== undefined) out.push(entry);
    }
    return out;
  }
}
