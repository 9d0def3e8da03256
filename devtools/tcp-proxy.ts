/**
 * A TCP relay that can be cut and restored: the demo and the tests put it between an edge
 * agent and the broker to simulate a network outage of one device without touching the broker.
 * While cut, open connections are destroyed and new ones are reset at once.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  port: number;
  isCut(): boolean;
  cut(): void;
  restore(): void;
  /** destroys open connections and stops listening; idempotent */
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }, listenPort = 0): Promise<TcpProxy> {
  const open = new Set<Socket>();
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
    };
    downstream.on('error', teardown).on('close', teardown);
    upstream.on('error', teardown).on('close', teardown);
    downstream.pipe(upstream);
    upstream.pipe(downstream);
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
    },
    restore() {
      cut = false;
    },
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      })),
  };
}
