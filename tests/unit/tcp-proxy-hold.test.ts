import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startTcpProxy } from '../../devtools/tcp-proxy.js';
import { registerCleanup } from '../helpers/teardown.js';

/** a few bytes over loopback, also on a loaded machine; three such waits stay within the unit test timeout (15 s) */
const poll = { timeout: 4_000, interval: 5 };

/** A server that records what it receives and answers each chunk with 'ok:<chunk>'; closed at teardown. */
async function recordingServer() {
  const received: string[] = [];
  const closed: Socket[] = [];
  const server = createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.on('close', () => closed.push(socket));
    socket.on('data', (data) => {
      received.push(data.toString());
      socket.write(`ok:${data.toString()}`);
    });
  });
  registerCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    received,
    closedConnections: () => closed.length,
  };
}

/** A proxy in front of a recording server, both closed at teardown. */
async function proxiedServer() {
  const target = await recordingServer();
  const proxy = await startTcpProxy({ host: '127.0.0.1', port: target.port });
  registerCleanup(() => proxy.close());
  return { target, proxy };
}

/** A connection to `port`, destroyed at teardown, with every reply it got. */
async function client(port: number) {
  const replies: string[] = [];
  const socket = connect(port, '127.0.0.1');
  registerCleanup(() => socket.destroy());
  socket.on('data', (data) => replies.push(data.toString()));
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return { socket, replies };
}

describe('tcp proxy holding one direction', () => {
  it('keeps what the client sends while held, with the connection open, and forwards it on release', async () => {
    const { target, proxy } = await proxiedServer();
    const { socket, replies } = await client(proxy.port);

    socket.write('a');
    await expect.poll(() => replies.join(''), poll).toBe('ok:a');
    proxy.hold('toTarget');
    socket.write('b');
    await expect.poll(() => proxy.heldBytes('toTarget'), poll).toBe(1);
    expect(target.received.join('')).toBe('a');
    expect(socket.destroyed).toBe(false);

    proxy.release('toTarget');
    await expect.poll(() => replies.join(''), poll).toBe('ok:aok:b');
    expect(proxy.heldBytes('toTarget')).toBe(0);
  });

  it('keeps the replies while the other direction is held, and drops them with a closed connection', async () => {
    const { target, proxy } = await proxiedServer();
    proxy.hold('fromTarget'); // also applies to connections opened later
    const { socket, replies } = await client(proxy.port);

    socket.write('c');
    await expect.poll(() => proxy.heldBytes('fromTarget'), poll).toBe('ok:c'.length);
    expect(target.received).toEqual(['c']);
    expect(replies).toEqual([]);

    socket.destroy();
    await expect.poll(() => target.closedConnections(), poll).toBe(1);
    expect(proxy.heldBytes('fromTarget')).toBe(0);
  });
});
