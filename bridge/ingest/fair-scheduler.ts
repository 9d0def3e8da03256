/**
 * Fair scheduling of telemetry messages into database batches, with hard bounds on what the
 * bridge holds (pure: no timers, no I/O; the caller passes the clock). G7.
 *
 * Why (issue 7, item 2): one FIFO queue let a device that floods full batches stall every other
 * device. Its backlog filled the queue, another device's message waited behind all of it (44 ms →
 * 47 s), and the bridge held up to MAX_IN_FLIGHT full messages (RSS 1.3–1.5 GB). So:
 *
 *   - one queue per device; take() builds a batch round-robin over the devices with queued
 *     messages, one message per device per round, starting after the device served last, so every
 *     waiting device gets a message into the next batch (as long as the batch limits hold that
 *     many devices);
 *   - a batch holds either small messages or large ones (a quarter of maxRecords or maxBytes or
 *     more), never both: a device's few readings never share a transaction with another device's
 *     thousand, so they never wait for those rows to be written;
 *   - a device whose messages are in a batch being written is "busy": its further messages wait
 *     for that batch, so a flooding device occupies at most one of the pipeline's writers and the
 *     next free writer takes everyone else's messages. One device's backlog therefore delays
 *     another device's message by at most the one batch in progress (and keeps each device's
 *     messages written in arrival order);
 *   - admit() bounds what is held (queued or being written), per device and in all, in messages
 *     and payload bytes. A message over a bound is not held: the caller answers it "retry later"
 *     (schemas/messages.ts SyncAck.retryAfterMs) and the device sends it again. Memory is bounded
 *     whatever the input, and reading from the broker never has to pause (a paused connection
 *     would hold every device's messages behind the flood, in the broker). A message is always
 *     admitted when its device holds nothing (a single message larger than a per-device bound
 *     still gets through) and when the bridge holds nothing.
 *
 * A batch is due when the messages of non-busy devices reach maxRecords, maxMessages or maxBytes,
 * or when the oldest of them has waited lingerMs. take() hands out at most maxRecords records,
 * maxMessages messages and maxBytes payload bytes, but always at least one message.
 */
import type { BatchLimits, MessageSize } from './batch-accumulator.js';

export interface HoldLimits {
  /** messages held (queued or being written) by the bridge in all */
  maxMessages: number;
  /** payload bytes held by the bridge in all */
  maxBytes: number;
  /** messages held for one device */
  maxDeviceMessages: number;
  /** payload bytes held for one device */
  maxDeviceBytes: number;
}

export const DEFAULT_HOLD_LIMITS: HoldLimits = {
  maxMessages: 1000,
  maxBytes: 64 * 1024 * 1024,
  maxDeviceMessages: 32,
  maxDeviceBytes: 8 * 1024 * 1024,
};

export type RefusalReason = 'device-messages' | 'device-bytes' | 'bridge-messages' | 'bridge-bytes';

export type Admission = { ok: true } | { ok: false; reason: RefusalReason };

interface Entry<M> extends MessageSize {
  message: M;
  device: string;
  arrivedAtMs: number;
}

interface DeviceState<M> {
  queue: Entry<M>[];
  /** messages held: queued and being written */
  heldMessages: number;
  heldBytes: number;
  busy: boolean;
}

export class FairScheduler<M> {
  private readonly devices = new Map<string, DeviceState<M>>();
  /** devices with queued messages, in service order (served last = at the end) */
  private readonly rotation = new Set<string>();
  private readonly entryOf = new Map<M, Entry<M>>();
  private heldMessageTotal = 0;
  private heldByteTotal = 0;
  private queuedMessageTotal = 0;

  constructor(
    private readonly batchLimits: BatchLimits,
    private readonly holdLimits: HoldLimits,
    private readonly describe: (message: M) => MessageSize & { device: string },
  ) {}

  /** messages held: queued, or taken and not yet settled */
  get heldMessages(): number {
    return this.heldMessageTotal;
  }

  get heldBytes(): number {
    return this.heldByteTotal;
  }

  /** messages waiting in the queues (not being written) */
  get queuedMessages(): number {
    return this.queuedMessageTotal;
  }

  /** Whether a message of `bytes` from `device` may be held now. */
  admit(device: string, bytes: number): Admission {
    const state = this.devices.get(device);
    const limits = this.holdLimits;
    if (state !== undefined && state.heldMessages > 0) {
      if (state.heldMessages + 1 > limits.maxDeviceMessages) return { ok: false, reason: 'device-messages' };
      if (state.heldBytes + bytes > limits.maxDeviceBytes) return { ok: false, reason: 'device-bytes' };
    }
    if (this.heldMessageTotal > 0) {
      if (this.heldMessageTotal + 1 > limits.maxMessages) return { ok: false, reason: 'bridge-messages' };
      if (this.heldByteTotal + bytes > limits.maxBytes) return { ok: false, reason: 'bridge-bytes' };
    }
    return { ok: true };
  }

  /**
   * Holds an admitted message that is not ready to queue yet (being parsed): it counts against
   * every bound from now on. Then either add() it with `reserved` true, or unreserve() it.
   */
  reserve(device: string, bytes: number): void {
    this.hold(device, bytes, 1);
  }

  /** Gives back a reserve() for a message that will not be added (unreadable, or shutting down). */
  unreserve(device: string, bytes: number): void {
    this.hold(device, bytes, -1);
    const state = this.devices.get(device);
    if (state !== undefined) this.forgetIfIdle(device, state);
  }

  /**
   * Holds and queues an admitted message (call admit() first). `reserved`: it was held by
   * reserve(device, bytes) with the same device and bytes as describe() gives.
   */
  add(message: M, nowMs: number, reserved = false): void {
    const { device, records, bytes } = this.describe(message);
    const entry: Entry<M> = { message, device, records, bytes, arrivedAtMs: nowMs };
    if (!reserved) this.hold(device, bytes, 1);
    const state = this.stateOf(device);
    this.entryOf.set(message, entry);
    this.enqueue(state, entry, 'back');
  }

  /**
   * Puts taken messages back in front of their devices' queues (a failed batch is retried before
   * newer messages), as due at once. They stay held. Call done() for their batch as well.
   */
  requeue(messages: readonly M[], nowMs: number): void {
    for (let i = messages.length - 1; i >= 0; i -= 1) {
      const entry = this.entryOf.get(messages[i] as M);
      if (entry === undefined) continue;
      entry.arrivedAtMs = nowMs - this.batchLimits.lingerMs;
      this.enqueue(this.stateOf(entry.device), entry, 'front');
    }
  }

  private hold(device: string, bytes: number, sign: 1 | -1): void {
    const state = this.stateOf(device);
    state.heldMessages += sign;
    state.heldBytes += sign * bytes;
    this.heldMessageTotal += sign;
    this.heldByteTotal += sign * bytes;
  }

  /** The message needs no more database work (committed, rejected or released): no longer held. */
  settle(message: M): void {
    const entry = this.entryOf.get(message);
    if (entry === undefined) return;
    this.entryOf.delete(message);
    const state = this.stateOf(entry.device);
    state.heldMessages -= 1;
    state.heldBytes -= entry.bytes;
    this.heldMessageTotal -= 1;
    this.heldByteTotal -= entry.bytes;
    this.forgetIfIdle(entry.device, state);
  }

  /** The batch these messages were taken in is finished: their devices may be batched again. */
  done(messages: readonly M[]): void {
    for (const message of messages) {
      const device = this.entryOf.get(message)?.device ?? this.describe(message).device;
      const state = this.devices.get(device);
      if (state === undefined) continue;
      state.busy = false;
      this.forgetIfIdle(device, state);
    }
  }

  /** Every device may be batched again (shutdown: nothing is being written any more). */
  releaseAll(): void {
    for (const [device, state] of this.devices) {
      state.busy = false;
      this.forgetIfIdle(device, state);
    }
  }

  /** 0 when a batch is due now, the wait until the linger expires, or null when nothing can be taken. */
  msUntilDue(nowMs: number): number | null {
    let oldest = Number.POSITIVE_INFINITY;
    let records = 0;
    let messages = 0;
    let bytes = 0;
    for (const device of this.rotation) {
      const state = this.devices.get(device) as DeviceState<M>;
      if (state.busy) continue;
      const head = state.queue[0] as Entry<M>;
      oldest = Math.min(oldest, head.arrivedAtMs);
      for (const entry of state.queue) {
        records += entry.records;
        bytes += entry.bytes;
        messages += 1;
      }
      const { maxRecords, maxMessages, maxBytes } = this.batchLimits;
      if (records >= maxRecords || messages >= maxMessages || bytes >= maxBytes) return 0;
    }
    if (oldest === Number.POSITIVE_INFINITY) return null;
    return Math.max(0, oldest + this.batchLimits.lingerMs - nowMs);
  }

  /**
   * The next batch, round-robin over the non-busy devices with queued messages; their devices
   * are busy until done(). Empty when nothing can be taken.
   */
  take(): M[] {
    const { maxRecords, maxMessages, maxBytes } = this.batchLimits;
    const batch: M[] = [];
    const served: string[] = [];
    let records = 0;
    let bytes = 0;
    let full = false;
    let large: boolean | undefined;
    for (let addedThisRound = true; addedThisRound && !full; ) {
      addedThisRound = false;
      for (const device of [...this.rotation]) {
        const state = this.devices.get(device) as DeviceState<M>;
        const alreadyServed = served.includes(device);
        if (state.busy && !alreadyServed) continue;
        const head = state.queue[0];
        if (head === undefined) continue;
        // a small message never shares a transaction with another device's large one: it would
        // wait for the large one's rows (a 1000-reading batch took seconds under load)
        const headIsLarge = this.isLarge(head);
        if (large !== undefined && headIsLarge !== large && !alreadyServed) continue;
        if (batch.length >= maxMessages) {
          full = true;
          break;
        }
        if (batch.length > 0 && (records + head.records > maxRecords || bytes + head.bytes > maxBytes)) {
          full = true;
          break;
        }
        large ??= headIsLarge;
        state.queue.shift();
        this.queuedMessageTotal -= 1;
        records += head.records;
        bytes += head.bytes;
        batch.push(head.message);
        addedThisRound = true;
        if (!alreadyServed) {
          served.push(device);
          state.busy = true;
        }
        // served last: to the back of the rotation (or out of it when its queue is empty)
        this.rotation.delete(device);
        if (state.queue.length > 0) this.rotation.add(device);
      }
    }
    return batch;
  }

  /** A quarter of a batch's records or bytes or more. */
  private isLarge(entry: Entry<M>): boolean {
    return entry.records * 4 >= this.batchLimits.maxRecords || entry.bytes * 4 >= this.batchLimits.maxBytes;
  }

  private stateOf(device: string): DeviceState<M> {
    let state = this.devices.get(device);
    if (state === undefined) {
      state = { queue: [], heldMessages: 0, heldBytes: 0, busy: false };
      this.devices.set(device, state);
    }
    return state;
  }

  private enqueue(state: DeviceState<M>, entry: Entry<M>, where: 'front' | 'back'): void {
    if (where === 'front') state.queue.unshift(entry);
    else state.queue.push(entry);
    this.queuedMessageTotal += 1;
    if (!this.rotation.has(entry.device)) this.rotation.add(entry.device);
  }

  private forgetIfIdle(device: string, state: DeviceState<M>): void {
    if (state.heldMessages === 0 && !state.busy && state.queue.length === 0) this.devices.delete(device);
  }
}
