/**
 * Bytes received, with when: the attacker's view of a budget. `maxIn(W)` is the most bytes that arrived
 * inside any window of W milliseconds (both ends included), over every position of the window, which is
 * what `rate × W + burst` bounds. Arrivals are kept in two growing number arrays (no object per arrival);
 * the caller bounds how many there are by bounding the bytes it sends.
 */
export class WindowCounter {
  private times: number[] = [];
  private sizes: number[] = [];
  private sum = 0;

  record(timeMs: number, bytes: number): void {
    this.times.push(timeMs);
    this.sizes.push(bytes);
    this.sum += bytes;
  }

  get total(): number {
    return this.sum;
  }

  get arrivals(): number {
    return this.times.length;
  }

  /** First and last arrival (undefined when none). */
  get span(): { readonly first: number; readonly last: number } | undefined {
    if (this.times.length === 0) return undefined;
    return { first: this.times[0]!, last: this.times[this.times.length - 1]! };
  }

  /** The most bytes in any window of `windowMs`. Arrivals are recorded in time order. */
  maxIn(windowMs: number): number {
    let best = 0;
    let inWindow = 0;
    let from = 0;
    for (let to = 0; to < this.times.length; to++) {
      inWindow += this.sizes[to]!;
      while (this.times[to]! - this.times[from]! > windowMs) inWindow -= this.sizes[from++]!;
      if (inWindow > best) best = inWindow;
    }
    return best;
  }

  /** The arrivals as transferable arrays (the sink thread hands them over). */
  arrays(): { times: Float64Array<ArrayBuffer>; sizes: Float64Array<ArrayBuffer> } {
    return { times: Float64Array.from(this.times), sizes: Float64Array.from(this.sizes) };
  }

  reset(): void {
    this.times = [];
    this.sizes = [];
    this.sum = 0;
  }
}
