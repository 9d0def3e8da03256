import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { startTcpProxy } from '../../devtools/tcp-proxy.js';
import { waitUntil } from '../helpers/mqtt-observe.js';

/** A server that records what it receives and answers each chunk with 'ok:<chunk>'. */
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
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    received,
    closedConnections: () => closed.length,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function client(port: number) {
  const replies: string[] = [];
  const socket = connect(port, '127.0.0.1');
  socket.on('data', (data) => replies.push(data.toString()));
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return { socket, replies };
}

describe('tcp proxy holding one direction', () => {
  const cleanup: Array<() => unknown> = [];
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('keeps what the client sends while held, with the connection open, and forwards it on release', async () => {
    const target = await recordingServer();
    cleanup.push(target.close);
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: target.port });
    cleanup.push(() => proxy.close());
    const { socket, replies } = await client(proxy.port);
    cleanup.push(() => socket.destroy());

    socket.write('a');
    await waitUntil(() => replies.join('') === 'ok:a', 'the first reply');
    proxy.hold('toTarget');
    socket.write('b');
    await waitUntil(() => proxy.heldBytes('toTarget') === 1, 'the held byte');
    expect(target.received.join('')).toBe('a');
    expect(socket.destroyed).toBe(false);

    proxy.release('toTarget');
    await waitUntil(() => replies.join('') === 'ok:aok:b', 'the reply to the released byte');
    expect(proxy.heldBytes('toTarget')).toBe(0);
  });

  it('keeps the replies while the other direction is held, and drops them with a closed connection', async () => {
    const target = await recordingServer();
    cleanup.push(target.close);
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: target.port });
    cleanup.push(() => proxy.close());
    proxy.hold('fromTarget'); // also applies to connections opened later
    const { socket, replies } = await client(proxy.port);

    socket.write('c');
    await waitUntil(() => proxy.heldBytes('fromTarget') === 'ok:c'.length, 'the held reply');
    expect(target.received).toEqual(['c']);
    expect(replies).toEqual([]);

    socket.destroy();
    await waitUntil(() => target.closedConnections() === 1, 'the target side to close');
    expect(proxy.heldBytes('fromTarget')).toBe(0);
  });
});
