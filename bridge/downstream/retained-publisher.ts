/**
 * G6: publishes the database's truth on the retained downstream topics
 * (devices/{id}/commands/{cid}, devices/{id}/config/{key}), one path for the services, the report
 * handler, the change poller, the expiry sweep and the reconciler.
 *
 * Publishes of one topic go out one after the other (QoS 1, retained, the next after the previous
 * PUBACK), and a publish whose order is below the last one published for that topic is skipped:
 * command statuses and config versions only grow, so a read that finished late (a poll that
 * started before a report committed) never puts an older truth back on the topic. Equal order is
 * published again: the confirmation of a duplicate report, or a retained store that was lost
 * (docs/contract.md, "Confirmation"). The order memory of a topic is forgotten after
 * `memoryMs` (a read older than that does not exist), so it stays bounded.
 */
import type { Logger } from '../../common/logger.js';

export type RetainedPublish = (topic: string, payload: string) => Promise<void>;

export interface RetainedPublisherOptions {
  publish: RetainedPublish;
  logger: Logger;
  now?: () => number;
  /** how long the order and payload of a topic are remembered; default 60 s */
  memoryMs?: number;
  onPublished?: (topic: string, cleared: boolean) => void;
}

interface TopicMemory {
  order: number[];
  payload: string;
  atMs: number;
}

export function compareOrder(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i += 1) {
    const difference = (a[i] ?? 0) - (b[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

export class RetainedPublisher {
  readonly #options: RetainedPublisherOptions;
  readonly #memory = new Map<string, TopicMemory>();
  readonly #chains = new Map<string, Promise<void>>();
  readonly #now: () => number;
  readonly #memoryMs: number;
  #lastPrunedMs = 0;
  #closed = false;
  #signalClosed: () => void = () => undefined;
  /** resolves at close(): a publish waiting for a PUBACK (broker unreachable) stops waiting */
  readonly #whenClosed = new Promise<void>((resolve) => {
    this.#signalClosed = resolve;
  });

  constructor(options: RetainedPublisherOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#memoryMs = options.memoryMs ?? 60_000;
  }

  /** The payload last published on `topic` within the memory window, if any. */
  lastPayload(topic: string): string | undefined {
    return this.#memory.get(topic)?.payload;
  }

  /**
   * Publishes `payload` ('' clears) retained on `topic` after the publishes already queued for it,
   * unless a newer order went out meanwhile. Resolves when done; never rejects (a failure is
   * logged; the poller and the reconciler publish the truth again).
   */
  publish(topic: string, payload: string, order: number[]): Promise<void> {
    const previous = this.#chains.get(topic) ?? Promise.resolve();
    const next = previous.then(() => this.#publishNow(topic, payload, order));
    this.#chains.set(topic, next);
    void next.finally(() => {
      if (this.#chains.get(topic) === next) this.#chains.delete(topic);
    });
    return next;
  }

  /** Waits for every queued publish. */
  async idle(): Promise<void> {
    while (this.#chains.size > 0) await Promise.all([...this.#chains.values()]);
  }

  /** Stops publishing: queued publishes are dropped, and callers stop waiting for one in flight. */
  close(): void {
    this.#closed = true;
    this.#signalClosed();
  }

  async #publishNow(topic: string, payload: string, order: number[]): Promise<void> {
    if (this.#closed) return;
    const nowMs = this.#now();
    this.#prune(nowMs);
    const last = this.#memory.get(topic);
    if (last !== undefined && compareOrder(order, last.order) < 0) return;
    try {
      let published = false;
      await Promise.race([this.#options.publish(topic, payload).then(() => void (published = true)), this.#whenClosed]);
      if (!published) return;
      this.#memory.set(topic, { order, payload, atMs: nowMs });
      this.#options.onPublished?.(topic, payload === '');
    } catch (error) {
      if (!this.#closed)
        this.#options.logger.warn(
          { err: error, topic },
          'retained publish failed; the poller or the reconciler publishes it again',
        );
    }
  }

  #prune(nowMs: number): void {
    if (nowMs - this.#lastPrunedMs < this.#memoryMs / 4) return;
    this.#lastPrunedMs = nowMs;
    for (const [topic, memory] of this.#memory) if (nowMs - memory.atMs > this.#memoryMs) this.#memory.delete(topic);
  }
}
