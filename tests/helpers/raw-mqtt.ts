/**
 * A raw MQTT 3.1.1 client over mutual TLS for tests that must see the exact bytes a broker sends
 * (CONNACK return codes, SUBACK grants) or send packets a library would not (keepalive 0, QoS 0 and
 * 2 in one SUBSCRIBE). Packets are built by hand from the specification and split by their fixed
 * header; nothing is interpreted beyond the packet type. The socket is destroyed at teardown.
 */
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { TlsFiles } from '../../common/tls-files.js';
import { registerCleanup } from './teardown.js';

export interface RawPacket {
  /** the packet type, the high nibble of the first byte (2 CONNACK, 4 PUBACK, 9 SUBACK, 13 PINGRESP) */
  type: number;
  /** the whole packet as received, fixed header included */
  bytes: Buffer;
}

export interface RawMqttConnection {
  socket: TLSSocket;
  /** every complete packet received so far, in order */
  received: RawPacket[];
  send(packet: Buffer): void;
  /** resolves with the first packet of `type` not returned by an earlier call */
  next(type: number, timeoutMs?: number): Promise<RawPacket>;
  /** resolves when the broker closed the connection (also when that happened before) */
  closed: Promise<void>;
  destroy(): void;
}

export async function openRawMqtts(port: number, tls: TlsFiles): Promise<RawMqttConnection> {
  const socket = tlsConnect({
    host: '127.0.0.1',
    port,
    ca: tls.ca,
    cert: tls.cert,
    key: tls.key,
    servername: 'localhost',
  });
  registerCleanup(() => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
  const received: RawPacket[] = [];
  const taken = new Set<RawPacket>();
  let buffer = Buffer.alloc(0);
  const waiters = new Set<() => void>();
  socket.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      const packet = splitPacket(buffer);
      if (packet === null) break;
      received.push({ type: (packet[0] ?? 0) >> 4, bytes: packet });
      buffer = buffer.subarray(packet.length);
    }
    for (const wake of waiters) wake();
  });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    socket,
    received,
    send: (packet) => void socket.write(packet),
    next: (type, timeoutMs = 5_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const found = received.find((packet) => packet.type === type && !taken.has(packet));
          if (found === undefined) return false;
          taken.add(found);
          waiters.delete(wake);
          clearTimeout(timer);
          resolve(found);
          return true;
        };
        const wake = () => void check();
        const timer = setTimeout(() => {
          waiters.delete(wake);
          reject(
            new Error(
              `no packet of type ${type} within ${timeoutMs} ms (received types ${received.map((p) => p.type).join(',')})`,
            ),
          );
        }, timeoutMs);
        if (!check()) waiters.add(wake);
      }),
    closed,
    destroy: () => socket.destroy(),
  };
}

/** One complete packet at the start of `buffer`, or null while it is incomplete. */
function splitPacket(buffer: Buffer): Buffer | null {
  let length = 0;
  let multiplier = 1;
  for (let index = 1; index <= 4; index++) {
    const byte = buffer[index];
    if (byte === undefined) return null;
    length += (byte & 0x7f) * multiplier;
    multiplier *= 128;
    if ((byte & 0x80) === 0) {
      const total = index + 1 + length;
      return buffer.length >= total ? buffer.subarray(0, total) : null;
    }
  }
  throw new Error('malformed remaining length');
}

function remainingLength(length: number): Buffer {
  const bytes: number[] = [];
  do {
    let byte = length % 128;
    length = Math.floor(length / 128);
    if (length > 0) byte |= 0x80;
    bytes.push(byte);
  } while (length > 0);
  return Buffer.from(bytes);
}

function utf8(text: string): Buffer {
  const body = Buffer.from(text, 'utf8');
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16BE(body.length);
  return Buffer.concat([prefix, body]);
}

function packet(firstByte: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([firstByte]), remainingLength(body.length), body]);
}

function uint16(value: number): Buffer {
  const bytes = Buffer.alloc(2);
  bytes.writeUInt16BE(value);
  return bytes;
}

export const rawPackets = {
  /** CONNECT, protocol level 4 (MQTT 3.1.1), no will, no user name */
  connect(options: { clientId: string; keepaliveSeconds: number; clean: boolean }): Buffer {
    const flags = options.clean ? 0x02 : 0x00;
    return packet(
      0x10,
      Buffer.concat([utf8('MQTT'), Buffer.from([4, flags]), uint16(options.keepaliveSeconds), utf8(options.clientId)]),
    );
  },
  subscribe(packetId: number, filters: Array<[filter: string, qos: number]>): Buffer {
    return packet(
      0x82,
      Buffer.concat([
        uint16(packetId),
        ...filters.map(([filter, qos]) => Buffer.concat([utf8(filter), Buffer.from([qos])])),
      ]),
    );
  },
  publishQos1(packetId: number, topic: string, payload: Buffer | string, retain = false): Buffer {
    return packet(0x32 | (retain ? 1 : 0), Buffer.concat([utf8(topic), uint16(packetId), Buffer.from(payload)]));
  },
  pingreq(): Buffer {
    return Buffer.from([0xc0, 0x00]);
  },
};
