import { createServer, connect, type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startTcpProxy } from '../../devtools/tcp-proxy.js';
import { registerCleanup } from '../helpers/teardown.js';

function echoServer() {
  const server = createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  registerCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return new Promise<{ port: number }>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ port: (server.address() as AddressInfo).port })),
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
  it('relays, refuses while cut, and relays again after restore', async () => {
    const echo = await echoServer();
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: echo.port });
    registerCleanup(() => proxy.close());

    expect(await roundTrip(proxy.port, 'one')).toBe('one');
    proxy.cut();
    expect(proxy.isCut()).toBe(true);
    await expect(roundTrip(proxy.port, 'two')).rejects.toThrow();
    proxy.restore();
    expect(await roundTrip(proxy.port, 'three')).toBe('three');
  });
});
