import { createServer, connect, type AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { startTcpProxy } from '../../devtools/tcp-proxy.js';

function echoServer() {
  const server = createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  return new Promise<{ port: number; close: () => void }>((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ port: (server.address() as AddressInfo).port, close: () => server.close() }),
    ),
  );
}

function roundTrip(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(text));
    socket.once('data', (data) => {
      resolve(data.toString());
      socket.destroy();
    });
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed before data')));
  });
}

describe('tcp proxy', () => {
  const cleanup: Array<() => unknown> = [];
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('relays, refuses while cut, and relays again after restore', async () => {
    const echo = await echoServer();
    cleanup.push(echo.close);
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: echo.port });
    cleanup.push(() => proxy.close());

    expect(await roundTrip(proxy.port, 'one')).toBe('one');
    proxy.cut();
    expect(proxy.isCut()).toBe(true);
    await expect(roundTrip(proxy.port, 'two')).rejects.toThrow();
    proxy.restore();
    expect(await roundTrip(proxy.port, 'three')).toBe('three');
  });
});
