/**
 * A real Aedes broker on plain TCP, for tests of the edge uplink and the bridge (the real cluster,
 * broker/server.ts, adds mutual TLS and topic permissions; its own tests use it). Closed at
 * teardown. close() drops every connection at once, like a crashed or unreachable broker; start
 * again on the same port to bring it back (with an empty session store, like a broker restarted
 * without persistence).
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Aedes, type AedesOptions, type Client } from 'aedes';
import { registerCleanup } from './teardown.js';

export interface TestBroker {
  port: number;
  url: string;
  aedes: Aedes;
  /** destroys the socket of a connected client, as a network failure would (no DISCONNECT, its will fires) */
  dropConnection(clientId: string): void;
  close(): Promise<void>;
}

export interface TestBrokerOptions extends AedesOptions {
  /** default: a free port */
  port?: number;
}

export async function startTestBroker(options: TestBrokerOptions = {}): Promise<TestBroker> {
  const { port = 0, ...aedesOptions } = options;
  const aedes = await Aedes.createBroker(aedesOptions);
  const sockets = new Set<Socket>();
  const clients = new Map<string, Client>();
  aedes.on('client', (client) => clients.set(client.id, client));
  const server = createServer(aedes.handle);
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const closeBroker = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await closed;
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => {
      void new Promise<void>((done) => aedes.close(() => done())).then(() => reject(error));
    });
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const actualPort = (server.address() as AddressInfo).port;
  return {
    port: actualPort,
    url: `mqtt://127.0.0.1:${actualPort}`,
    aedes,
    dropConnection(clientId) {
      const client = clients.get(clientId);
      if (client === undefined) throw new Error(`${clientId} never connected to the test broker`);
      client.conn.destroy();
    },
    close: registerCleanup(closeBroker),
  };
}
