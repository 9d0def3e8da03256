/**
 * A TCP relay that can be cut and restored: the demo and the tests put it between an edge
 * agent and the broker to simulate a network outage of one device without touching the broker.
 * While cut, open connections are destroyed and new ones are reset at once.
 *
 * One direction can also be held (`hold('toTarget')`): the bytes the clients send to the target
 * are read and kept, not forwarded, until `release` sends them on, or dropped with their
 * connection. The other direction keeps flowing and both ends see their connection open: a
 * stalled link, e.g. a bridge whose PUBACKs do not reach the broker while it still receives.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

/** 'toTarget': from the connecting client to the target; 'fromTarget': the replies. */
export type ProxyDirection = 'toTarget' | 'fromTarget';

export interface TcpProxy {
  port: number;
  isCut(): boolean;
  cut(): void;
  restore(): void;
  /** Stops forwarding one direction of every connection, open and new; the bytes are kept. */
  hold(direction: ProxyDirection): void;
  /** Forwards what was held in `direction` and resumes forwarding it. */
  release(direction: ProxyDirection): void;
  /** Bytes read in a held direction and not yet forwarded (of connections still open). */
  heldBytes(direction: ProxyDirection): number;
  /** destroys open connections and stops listening; idempotent */
  close(): Promise<void>;
}

/** One direction of one connection: piped while flowing, buffered while held. */
class Relay {
  readonly #from: Socket;
  readonly #to: Socket;
  #held: Buffer[] | null = null;
  readonly #keep = (chunk: Buffer): void => void this.#held?.push(chunk);

  constructor(from: Socket, to: Socket, held: boolean) {
    this.#from = from;
    this.#to = to;
    if (held) this.hold();
    else from.pipe(to);
  }

  hold(): void {
    if (this.#held !== null) return;
    this.#held = [];
    this.#from.unpipe(this.#to);
    this.#from.on('data', this.#keep);
    this.#from.resume();
  }

  release(): void {
    const held = this.#held;
    if (held === null) return;
    this.#held = null;
    this.#from.off('data', this.#keep);
    for (const chunk of held) this.#to.write(chunk);
    this.#from.pipe(this.#to);
  }

  heldBytes(): number {
    return (this.#held ?? []).reduce((sum, chunk) => sum + chunk.length, 0);
  }
}

export async function startTcpProxy(target: { host: string; port: number }, listenPort = 0): Promise<TcpProxy> {
  const open = new Set<Socket>();
  const relays = new Map<Socket, { toTarget: Relay; fromTarget: Relay }>();
  const held: Record<ProxyDirection, boolean> = { toTarget: false, fromTarget: false };
  let cut = false;

  const server: Server = createServer((downstream) => {
    if (cut) {
      downstream.resetAndDestroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    open.add(downstream);
    open.add(upstream);
    const teardown = () => {
      downstream.destroy();
      upstream.destroy();
      open.delete(downstream);
      open.delete(upstream);
      relays.delete(downstream);
    };
    downstream.on('error', teardown).on('close', teardown);
    upstream.on('error', teardown).on('close', teardown);
    relays.set(downstream, {
      toTarget: new Relay(downstream, upstream, held.toTarget),
      fromTarget: new Relay(upstream, downstream, held.fromTarget),
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no TCP address');

  let closing: Promise<void> | undefined;
  return {
    port: address.port,
    isCut: () => cut,
    cut() {
      cut = true;
      for (const socket of open) socket.resetAndDestroy();
      open.clear();
      relays.clear();
    },
    restore() {
      cut = false;
    },
    hold(direction) {
      held[direction] = true;
      for (const relay of relays.values()) relay[direction].hold();
    },
    release(direction) {
      held[direction] = false;
      for (const relay of relays.values()) relay[direction].release();
    },
    heldBytes: (direction) => [...relays.values()].reduce((sum, relay) => sum + relay[direction].heldBytes(), 0),
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      })),
  };
}
