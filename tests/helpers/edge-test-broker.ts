/**
 * A real Aedes broker on plain TCP standing in for the cluster in edge uplink tests (the real
 * cluster adds mutual TLS and topic permissions). stop() drops every connection at once, like a
 * crashed or unreachable broker; start again on the same port to bring it back (with an empty
 * session store, like a broker restarted without persistence).
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { Aedes } from 'aedes';

export interface TestBroker {
  port: number;
  url: string;
  aedes: Aedes;
  stop(): Promise<void>;
}

export interface TestBrokerOptions {
  /** whether a client may connect (default: everyone); a refusal is CONNACK 5, not authorized */
  admit?: (clientId: string) => boolean;
}

export async function startTestBroker(port = 0, options: TestBrokerOptions = {}): Promise<TestBroker> {
  const admit = options.admit;
  const aedes = await Aedes.createBroker(
    admit ? { authenticate: (client, _username, _password, done) => done(null, admit(client.id)) } : {},
  );
  const sockets = new Set<Socket>();
  const server = createServer(aedes.handle);
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const actualPort = (server.address() as AddressInfo).port;
  let stopped: Promise<void> | null = null;
  return {
    port: actualPort,
    url: `mqtt://127.0.0.1:${actualPort}`,
    aedes,
    stop() {
      stopped ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        await new Promise<void>((resolve) => aedes.close(() => resolve()));
        await closed;
      })();
      return stopped;
    },
  };
}
