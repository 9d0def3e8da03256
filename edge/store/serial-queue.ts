/**
 * Runs async work strictly one piece at a time, in call order. The edge store owns a single
 * libSQL connection; every operation goes through one queue so that a transaction never meets
 * another operation on the same connection and a claim (read, plan, update) is never interleaved
 * with a concurrent correction.
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #queued = 0;

  run<T>(work: () => Promise<T>): Promise<T> {
    this.#queued += 1;
    const result = this.#tail.then(work).finally(() => {
      this.#queued -= 1;
    });
    this.#tail = result.catch(() => undefined);
    return result;
  }

  /** Operations waiting or running. */
  get size(): number {
    return this.#queued;
  }

  /** Resolves once everything queued so far has finished (successfully or not). */
  async idle(): Promise<void> {
    await this.#tail;
  }
}
