/**
 * Every place the production code reaches past a package's public API, checked on real instances
 * of the installed packages, so an upgrade that removes or changes one fails here with the file to
 * revisit, instead of silently disabling a guarantee:
 *
 *   mqtt.js 5.16.0   MqttClient#_sendPacket, #handleMessage and handlers/publish.js skipping the
 *                    PUBACK when handleMessage calls back with an error  → bridge/mqtt/deferred-puback.ts
 *   aedes 1.2.0 /    client._parser (mqtt-packet 9) with _parseLength, _emitError, packet.length
 *   mqtt-packet 9                                                       → common/packet-size-guard.ts
 *   aedes 1.2.0      client._parser emitting 'packet' before aedes handles it, and a SUBACK built
 *                    from the requested QoS                             → broker/subscribe-qos.ts
 *   aedes 1.2.0      storeSubscriptions handing every filter of a SUBSCRIBE, refused ones included,
 *                    to persistence.addSubscriptions                    → broker/session-subscriptions.ts
 *   aedes 1.2.0      a packet re-addressed in authorizePublish is acknowledged and routed to its
 *                    new topic only, not retained; a will is authorized as client.will itself
 *                    (isWillPublish); PUBLISH packets read before a close are still authorized
 *                    after it, with client.closed set (isLatePublish)   → broker/authorization-hooks.ts
 *   aedes 1.2.0 /    aedes.subscribe() gets what clients publish, with no client in between, and
 *   aedes-persistence 11   persistence.createRetainedStream(topic) yields the retained packet
 *                                                                       → broker/revocation-sync.ts
 *   aedes 1.2.0      a packet rewritten in authorizePublish is acknowledged and routed by its new
 *                    topic and retain flag; '#' never matches a '$' topic → edge/ingest/unrouted-publish.ts
 *   pg-promise 12.7.1 / pg 8.23.0   client.connection.stream, Client.prototype.end and the
 *                    'Query read timeout' message                       → bridge/db/connection.ts
 *   mqemitter-redis 7.2.1 / ioredis 5.11.1 / aedes-persistence-redis 11.2.2   ioredis resolved
 *                    from mqemitter-redis, the emitter's internal `state`, the persistence
 *                    factory's shape                                    → broker/cluster-backends.ts
 *   node:tls (node 20, 22)   a tls.Server's TLS work in its own 'connection' listener; a
 *                    server-side TLSSocket's `_parent` (the accepted net.Socket)
 *                                                                       → broker/connection-admission.ts
 *
 * And the versions those files were verified against are pinned exactly in package.json and are
 * the ones package-lock.json installs.
 *
 * No server is needed: MQTT runs over an in-memory stream pair between a real mqtt.js client and
 * a real Aedes; node-postgres talks to a few lines of PostgreSQL wire protocol on loopback; the
 * Redis clients never connect.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect as connectTcp, createServer, Socket, type AddressInfo, type Server } from 'node:net';
import { connect as connectTls, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { Aedes, type AedesOptions } from 'aedes';
import { Redis as PinnedRedis } from 'ioredis';
import MQEmitterRedis from 'mqemitter-redis';
import { MqttClient } from 'mqtt';
import { describe, expect, it } from 'vitest';
import { createRedisPersistence, RedisClient } from '../../broker/cluster-backends.js';
import { limitIncomingPacketSize, type PacketTooLargeError } from '../../common/packet-size-guard.js';
import { storeOnlyGrantedSubscriptions } from '../../broker/session-subscriptions.js';
import { grantQosInSuback } from '../../broker/subscribe-qos.js';
import { pgp } from '../../bridge/db/connection.js';
import { deferPubacks, type Delivery } from '../../bridge/mqtt/deferred-puback.js';
import { registerCleanup } from '../helpers/teardown.js';
import { acknowledgeWithoutRouting, UNROUTED_TOPIC } from '../../edge/ingest/unrouted-publish.js';
import { createTestCertificates } from '../helpers/certs.js';

const root = join(import.meta.dirname, '..', '..');

/** Two connected in-memory duplex streams: what one side writes, the other reads. */
function duplexPair(): [Duplex, Duplex] {
  const sides: Duplex[] = [];
  const make = (other: () => Duplex) =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        other().push(chunk);
        callback();
      },
      final(callback) {
        other().push(null);
        callback();
      },
    });
  sides.push(
    make(() => sides[1]!),
    make(() => sides[0]!),
  );
  return [sides[0]!, sides[1]!];
}

async function aedesBroker(options?: AedesOptions): Promise<Aedes> {
  const aedes = await Aedes.createBroker(options);
  registerCleanup(() => new Promise<void>((resolve) => aedes.close(() => resolve())));
  return aedes;
}

describe('mqtt.js (bridge/mqtt/deferred-puback.ts)', () => {
  const SEE = 'see bridge/mqtt/deferred-puback.ts';

  it('has _sendPacket(packet, cb, cbStorePut, noStore) and handleMessage(packet, callback) on a client', () => {
    const client = new MqttClient(() => duplexPair()[0], { manualConnect: true, reconnectPeriod: 0 });
    const internals = client as unknown as Record<string, unknown>;
    expect(typeof internals['_sendPacket'], `mqtt.js removed MqttClient#_sendPacket: ${SEE}`).toBe('function');
    expect(
      (internals['_sendPacket'] as (...args: unknown[]) => void).length,
      `mqtt.js changed _sendPacket's parameters: ${SEE}`,
    ).toBe(4);
    expect(typeof client.handleMessage, `mqtt.js removed MqttClient#handleMessage: ${SEE}`).toBe('function');
    expect(client.handleMessage.length, `mqtt.js changed handleMessage's parameters: ${SEE}`).toBe(2);
  });

  it('sends no PUBACK when handleMessage calls back with an error, and _sendPacket sends it later', async () => {
    const aedes = await aedesBroker();
    const acked: string[] = [];
    aedes.on('ack', (packet) => {
      if (packet !== undefined && 'topic' in packet) acked.push(packet.topic);
    });
    const [clientSide, brokerSide] = duplexPair();
    aedes.handle(brokerSide);
    // clean: false, like the bridge: aedes keeps the in-flight message and names it in 'ack'
    const client = new MqttClient(() => clientSide, {
      clientId: 'internals',
      clean: false,
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    registerCleanup(() => void client.end(true));
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));

    let delivered: (delivery: Delivery) => void = () => undefined;
    const delivery = new Promise<Delivery>((resolve) => (delivered = resolve));
    const pubacks = deferPubacks(client, (d) => delivered(d));
    registerCleanup(() => pubacks.dispose());
    await client.subscribeAsync('telemetry/#', { qos: 1 });
    aedes.publish(
      { cmd: 'publish', topic: 'telemetry/1', payload: Buffer.from('x'), qos: 1, retain: false, dup: false },
      () => undefined,
    );
    const deferred = await delivery;

    // aedes handles one client's packets in order: a PUBACK sent for telemetry/1 would be handled
    // before this publish is acknowledged
    await client.publishAsync('marker', 'm', { qos: 1 });
    expect(acked, `mqtt.js now sends the PUBACK although handleMessage called back with an error: ${SEE}`).toEqual([]);

    const ackSeen = new Promise<void>((resolve) => aedes.once('ack', () => resolve()));
    deferred.ack();
    await ackSeen;
    expect(acked, `MqttClient#_sendPacket no longer sends a PUBACK: ${SEE}`).toEqual(['telemetry/1']);
  });
});

describe('aedes / mqtt-packet (common/packet-size-guard.ts)', () => {
  const SEE = 'see common/packet-size-guard.ts';

  it('gives each client a parser with _parseLength(), _emitError(error) and packet.length', async () => {
    const aedes = await aedesBroker();
    const [clientSide, brokerSide] = duplexPair();
    const client = aedes.handle(brokerSide);
    registerCleanup(() => void clientSide.destroy());
    const parser = (client as unknown as { _parser?: Record<string, unknown> })._parser;
    expect(parser, `aedes no longer keeps the mqtt-packet parser at client._parser: ${SEE}`).toBeTypeOf('object');
    expect(typeof parser?.['_parseLength'], `mqtt-packet removed Parser#_parseLength: ${SEE}`).toBe('function');
    expect(
      (parser?.['_parseLength'] as () => boolean).length,
      `mqtt-packet changed _parseLength's parameters: ${SEE}`,
    ).toBe(0);
    expect(typeof parser?.['_emitError'], `mqtt-packet removed Parser#_emitError: ${SEE}`).toBe('function');
    expect(
      (parser?.['packet'] as { length?: unknown } | undefined)?.length,
      `mqtt-packet changed Parser#packet: ${SEE}`,
    ).toBeTypeOf('number');
    expect(
      limitIncomingPacketSize(client, 1024, () => undefined),
      `the guard no longer recognises aedes' parser: ${SEE}`,
    ).toBe(true);
  });

  it('refuses a packet by its declared length before its body arrives, and aedes closes the connection', async () => {
    const aedes = await aedesBroker();
    const [clientSide, brokerSide] = duplexPair();
    const client = aedes.handle(brokerSide);
    const refused = new Promise<PacketTooLargeError>((resolve) => limitIncomingPacketSize(client, 1024, resolve));
    const closed = new Promise<void>((resolve) => brokerSide.once('close', () => resolve()));
    clientSide.resume();
    // CONNECT with a declared remaining length of 2 MiB (variable-length encoding), no body
    clientSide.write(Buffer.from([0x10, 0x80, 0x80, 0x80, 0x01]));
    const error = await refused;
    expect(error.declaredBytes, `mqtt-packet's packet.length no longer holds the declared length: ${SEE}`).toBe(
      2 * 1024 * 1024,
    );
    await closed;
  });
});

describe('aedes subscriptions (broker/subscribe-qos.ts, broker/session-subscriptions.ts)', () => {
  async function connectedClient(aedes: Aedes, clientId: string, clean: boolean): Promise<MqttClient> {
    const [clientSide, brokerSide] = duplexPair();
    aedes.handle(brokerSide);
    const client = new MqttClient(() => clientSide, { clientId, clean, protocolVersion: 4, reconnectPeriod: 0 });
    registerCleanup(() => void client.end(true));
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));
    return client;
  }

  async function grantedCodes(client: MqttClient, filters: string[], qos: 0 | 1 | 2): Promise<number[]> {
    return new Promise((resolve, reject) =>
      client.subscribe(filters, { qos }, (error, _grants, packet) =>
        packet && 'granted' in packet ? resolve(packet.granted as number[]) : reject(error ?? new Error('no SUBACK')),
      ),
    );
  }

  it('echoes the requested QoS in the SUBACK although authorizeSubscribe granted another, unless the parser rewrites it', async () => {
    const SEE = 'see broker/subscribe-qos.ts';
    let rewrite = false;
    const aedes = await aedesBroker({
      preConnect: (client, _packet, callback) => {
        if (rewrite)
          expect(grantQosInSuback(client, 1), `aedes no longer keeps a parser at client._parser: ${SEE}`).toBe(true);
        callback(null, true);
      },
      authorizeSubscribe: (_client, subscription, callback) => callback(null, { ...subscription, qos: 1 }),
    });

    const plain = await connectedClient(aedes, 'plain', true);
    expect(await grantedCodes(plain, ['a'], 0), `aedes now reports the granted QoS itself: ${SEE} may go`).toEqual([0]);
    rewrite = true;
    const rewritten = await connectedClient(aedes, 'rewritten', true);
    expect(
      await grantedCodes(rewritten, ['a', 'b'], 2),
      `the parser's 'packet' event no longer precedes aedes: ${SEE}`,
    ).toEqual([1, 1]);
  });

  it('stores every filter of a mixed SUBSCRIBE of a clean:false client, refused ones included, unless filtered', async () => {
    const SEE = 'see broker/session-subscriptions.ts';
    const aedes = await aedesBroker({
      authorizeSubscribe: (_client, subscription, callback) =>
        callback(null, subscription.topic === 'refused' ? null : subscription),
    });
    const persistence = (aedes as unknown as { persistence: object }).persistence as {
      subscriptionsByClient(client: { id: string }): Promise<Array<{ topic: string }>>;
    };
    const stored = async (id: string) =>
      (await persistence.subscriptionsByClient({ id })).map((sub) => sub.topic).sort();

    const before = await connectedClient(aedes, 'before', false);
    expect(await grantedCodes(before, ['ok', 'refused'], 1)).toEqual([1, 128]);
    expect(await stored('before'), `aedes no longer stores refused filters: ${SEE} may go`).toEqual(['ok', 'refused']);

    expect(
      storeOnlyGrantedSubscriptions(persistence, (_client, subscription) =>
        subscription.topic === 'refused' ? null : 1,
      ),
      `the persistence lost addSubscriptions: ${SEE}`,
    ).toBe(true);
    const after = await connectedClient(aedes, 'after', false);
    expect(await grantedCodes(after, ['ok', 'refused'], 0)).toEqual([0, 128]);
    expect(await stored('after'), `aedes stores subscriptions past persistence.addSubscriptions: ${SEE}`).toEqual([
      'ok',
    ]);
  });
});

describe('aedes publish re-addressing (broker/authorization-hooks.ts)', () => {
  it('acknowledges a QoS 1 publish whose topic authorizePublish changed, routes it there only and retains nothing', async () => {
    const SEE = 'see broker/authorization-hooks.ts (dropping a publish)';
    const aedes = await aedesBroker({
      authorizePublish: (_client, packet, callback) => {
        if (packet.topic === 'status') {
          packet.topic = '$discarded';
          packet.retain = false;
        }
        callback(null);
      },
    });
    const routed: string[] = [];
    aedes.on('publish', (packet) => routed.push(packet.topic));
    const [clientSide, brokerSide] = duplexPair();
    aedes.handle(brokerSide);
    const client = new MqttClient(() => clientSide, { clientId: 'p', protocolVersion: 4, reconnectPeriod: 0 });
    registerCleanup(() => void client.end(true));
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));
    await client.subscribeAsync('status', { qos: 1 });
    const received: string[] = [];
    client.on('message', (topic) => received.push(topic));

    // resolves on the PUBACK
    await client.publishAsync('status', 'garbage', { qos: 1, retain: true });
    await client.publishAsync('marker', 'm', { qos: 1 });
    // aedes routes after the PUBACK, one client's packets in order
    await expect.poll(() => routed).toContain('marker');
    expect(
      routed.filter((topic) => !topic.startsWith('$SYS')),
      `aedes routes the original topic: ${SEE}`,
    ).toEqual(['$discarded', 'marker']);
    expect(received).toEqual([]);
    const retained: unknown[] = [];
    const persistence = (
      aedes as unknown as { persistence: { createRetainedStream(p: string): AsyncIterable<unknown> } }
    ).persistence;
    for await (const packet of persistence.createRetainedStream('#')) retained.push(packet);
    expect(retained, `aedes retained a re-addressed packet: ${SEE}`).toEqual([]);
  });
});

describe('aedes wills and internal subscriptions (broker/authorization-hooks.ts, broker/revocation-sync.ts)', () => {
  async function client(aedes: Aedes, clientId: string, extra: Record<string, unknown> = {}) {
    const [clientSide, brokerSide] = duplexPair();
    aedes.handle(brokerSide);
    const mqttClient = new MqttClient(() => clientSide, { clientId, protocolVersion: 4, reconnectPeriod: 0, ...extra });
    registerCleanup(() => void mqttClient.end(true));
    await new Promise<void>((resolve) => mqttClient.once('connect', () => resolve()));
    return { mqttClient, brokerSide };
  }

  it('authorizes a PUBLISH with the client open, and its will with client.closed set, passing client.will itself', async () => {
    const SEE = 'see broker/authorization-hooks.ts isWillPublish';
    const seen: Array<{ topic: string; closed: boolean | undefined; brokerId: unknown; isClientWill: boolean }> = [];
    const aedes = await aedesBroker({
      authorizePublish: (c, packet, callback) => {
        seen.push({
          topic: packet.topic,
          closed: c?.closed,
          brokerId: (packet as { brokerId?: unknown }).brokerId,
          isClientWill: c !== null && packet === (c as { will?: unknown }).will,
        });
        callback(null);
      },
    });
    const { mqttClient, brokerSide } = await client(aedes, 'w', {
      will: { topic: 'will', payload: Buffer.from('gone'), qos: 1, retain: false },
    });
    await mqttClient.publishAsync('live', 'x', { qos: 1 });
    brokerSide.destroy(); // the connection drops: no DISCONNECT, so the will fires
    await expect.poll(() => seen.length).toBeGreaterThanOrEqual(2);
    expect(seen, `aedes authorizes wills differently now: ${SEE}`).toEqual([
      { topic: 'live', closed: false, brokerId: undefined, isClientWill: false },
      { topic: 'will', closed: true, brokerId: aedes.id, isClientWill: true },
    ]);
  });

  it('goes on authorizing PUBLISH packets it had read after a denied one closed the connection', async () => {
    const SEE = 'see broker/authorization-hooks.ts isLatePublish';
    const seen: Array<{ topic: string; closed: boolean | undefined }> = [];
    const aedes = await aedesBroker({
      authorizePublish: (c, packet, callback) => {
        seen.push({ topic: packet.topic, closed: c?.closed });
        callback(packet.topic === 'denied' ? new Error('denied') : null);
      },
    });
    // a persistent session with a subscription: close() unsubscribes first, asynchronously
    const { mqttClient } = await client(aedes, 'late', { clean: false });
    await mqttClient.subscribeAsync('x', { qos: 1 });
    mqttClient.end(true);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const [clientSide, brokerSide] = duplexPair();
    aedes.handle(brokerSide);
    // CONNECT, a denied PUBLISH and three more, in one write
    const publish = (id: number, topic: string) =>
      Buffer.from([
        0x32,
        2 + topic.length + 2 + 2,
        0,
        topic.length,
        ...Buffer.from(topic),
        id >> 8,
        id & 255,
        0x7b,
        0x7d,
      ]);
    const connect = Buffer.from([0x10, 16, 0, 4, ...Buffer.from('MQTT'), 4, 0, 0, 60, 0, 4, ...Buffer.from('late')]);
    clientSide.write(Buffer.concat([connect, publish(1, 'denied'), publish(2, 'a'), publish(3, 'b'), publish(4, 'c')]));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(seen, `aedes authorizes publishes read before a close differently now: ${SEE}`).toEqual([
      { topic: 'denied', closed: false },
      { topic: 'a', closed: true },
      { topic: 'b', closed: true },
      { topic: 'c', closed: true },
    ]);
  });

  it('delivers a retained client publish to aedes.subscribe() and keeps it for createRetainedStream()', async () => {
    const SEE = 'see broker/revocation-sync.ts';
    const aedes = await aedesBroker();
    const internal: string[] = [];
    await new Promise<void>((resolve) =>
      aedes.subscribe(
        'control/x',
        (packet, callback) => {
          internal.push(String(packet.payload));
          callback();
        },
        resolve,
      ),
    );
    const { mqttClient } = await client(aedes, 'p');
    await mqttClient.publishAsync('control/x', 'list', { qos: 1, retain: true });
    await expect.poll(() => internal.length).toBeGreaterThan(0);
    expect(internal, `aedes.subscribe() no longer sees client publishes: ${SEE}`).toEqual(['list']);
    const persistence = (
      aedes as unknown as { persistence: { createRetainedStream(p: string): AsyncIterable<{ payload: Buffer }> } }
    ).persistence;
    const retained: string[] = [];
    for await (const packet of persistence.createRetainedStream('control/x')) retained.push(String(packet.payload));
    expect(retained, `persistence.createRetainedStream changed: ${SEE}`).toEqual(['list']);
  });
});

describe('aedes (edge/ingest/unrouted-publish.ts)', () => {
  const SEE = 'see edge/ingest/unrouted-publish.ts';

  /** An mqtt.js client on an in-memory connection to `aedes`. */
  async function connectedClient(aedes: Aedes, clientId: string): Promise<MqttClient> {
    const [clientSide, brokerSide] = duplexPair();
    aedes.handle(brokerSide);
    const client = new MqttClient(() => clientSide, { clientId, protocolVersion: 4, reconnectPeriod: 0 });
    registerCleanup(() => void client.end(true));
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));
    return client;
  }

  function received(client: MqttClient): { topic: string; payload: string; retain: boolean }[] {
    const messages: { topic: string; payload: string; retain: boolean }[] = [];
    client.on('message', (topic, payload, packet) =>
      messages.push({ topic, payload: payload.toString(), retain: packet.retain }),
    );
    return messages;
  }

  it('acknowledges a publish rewritten in authorizePublish, routes it only to the sink topic and retains nothing', async () => {
    // subscriptions are not restricted here: even '#' must not see the sink
    const aedes = await aedesBroker({
      authorizePublish: (_client, packet, callback) => {
        if (packet.topic.startsWith('drop/')) acknowledgeWithoutRouting(packet);
        callback(null);
      },
    });
    const everything = await connectedClient(aedes, 'everything');
    const sink = await connectedClient(aedes, 'sink');
    const publisher = await connectedClient(aedes, 'publisher');
    const seenByEverything = received(everything);
    const seenBySink = received(sink);
    await everything.subscribeAsync('#', { qos: 1 });
    await sink.subscribeAsync(UNROUTED_TOPIC, { qos: 1 });

    // resolves on the PUBACK (QoS 1); QoS 0 has none
    await publisher.publishAsync('drop/me', 'rejected', { qos: 1, retain: true });
    await publisher.publishAsync('drop/me', 'rejected too', { qos: 0, retain: true });
    await publisher.publishAsync('kept', 'marker', { qos: 1 });
    await expect
      .poll(() => seenByEverything.length > 0 && seenBySink.length === 2, { message: 'the marker and the sink' })
      .toBe(true);

    expect(seenByEverything, `aedes routed a rewritten packet by its old topic, or '#' matched '$': ${SEE}`).toEqual([
      { topic: 'kept', payload: 'marker', retain: false },
    ]);
    expect(seenBySink, `aedes no longer routes by the topic authorizePublish left: ${SEE}`).toEqual([
      { topic: UNROUTED_TOPIC, payload: '', retain: false },
      { topic: UNROUTED_TOPIC, payload: '', retain: false },
    ]);
    // retained messages are delivered right after the SUBACK, before anything published later
    const later = await connectedClient(aedes, 'later');
    const seenLater = received(later);
    await later.subscribeAsync(['#', UNROUTED_TOPIC], { qos: 1 });
    await publisher.publishAsync('kept', 'second marker', { qos: 1 });
    await expect.poll(() => seenLater.length > 0, { message: 'the marker at the later subscriber' }).toBe(true);
    expect(seenLater, `aedes retained a packet whose retain flag authorizePublish cleared: ${SEE}`).toEqual([
      { topic: 'kept', payload: 'second marker', retain: false },
    ]);
  });
});

describe('node-postgres through pg-promise (bridge/db/connection.ts)', () => {
  const SEE = 'see bridge/db/connection.ts';

  /** node-postgres's Client as far as used here (pg-promise's typings describe only its own use) */
  interface PgClient {
    connect(): Promise<void>;
    query(text: string): Promise<unknown>;
    on(event: 'error', listener: (error: Error) => void): unknown;
    once(event: 'end', listener: () => void): unknown;
  }
  const newClient = (port: number, extra: Record<string, unknown> = {}): PgClient => {
    const Client = pgp.pg.Client as unknown as new (config: Record<string, unknown>) => PgClient;
    const client = new Client({ host: '127.0.0.1', port, user: 'u', database: 'd', ...extra });
    client.on('error', () => undefined);
    return client;
  };

  /** Just enough PostgreSQL: accepts the startup message, then never answers a query. */
  async function silentPostgres(): Promise<{ port: number; sockets: Socket[] }> {
    const sockets: Socket[] = [];
    const server: Server = createServer((socket) => {
      sockets.push(socket);
      socket.on('error', () => undefined);
      socket.once('data', () => {
        const authenticationOk = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
        const readyForQuery = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);
        socket.write(Buffer.concat([authenticationOk, readyForQuery]));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    registerCleanup(
      () =>
        new Promise<void>((resolve) => {
          for (const socket of sockets) socket.destroy();
          server.close(() => resolve());
        }),
    );
    return { port: (server.address() as AddressInfo).port, sockets };
  }

  it("fails an unanswered query with exactly 'Query read timeout'", async () => {
    const { port } = await silentPostgres();
    const client = newClient(port, { query_timeout: 50 });
    await client.connect();
    registerCleanup(() => void (client as unknown as { connection: { stream: Socket } }).connection.stream.destroy());
    await expect(client.query('SELECT 1'), `node-postgres changed its query_timeout error: ${SEE}`).rejects.toThrow(
      /^Query read timeout$/,
    );
  });

  it('exposes the socket at client.connection.stream: destroying it ends the client', async () => {
    const { port } = await silentPostgres();
    const client = newClient(port);
    await client.connect();
    const stream = (client as unknown as { connection?: { stream?: unknown } }).connection?.stream;
    expect(stream, `node-postgres no longer keeps the socket at client.connection.stream: ${SEE}`).toBeInstanceOf(
      Socket,
    );
    const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
    (stream as Socket).destroy();
    await ended;
  });

  it('has Client.prototype.end(), which closes a connected client', async () => {
    const { port, sockets } = await silentPostgres();
    const end = (pgp.pg.Client.prototype as unknown as Record<string, unknown>)['end'];
    expect(typeof end, `node-postgres removed Client.prototype.end: ${SEE}`).toBe('function');
    const client = newClient(port);
    await client.connect();
    const serverSawClose = new Promise<void>((resolve) => sockets[0]?.once('close', () => resolve()));
    await (end as (this: unknown) => Promise<void>).call(client);
    await serverSawClose;
  });
});

describe('mqemitter-redis, ioredis, aedes-persistence-redis (broker/cluster-backends.ts)', () => {
  const SEE = 'see broker/cluster-backends.ts';

  function idleRedis() {
    // never connects: lazyConnect, and nothing here sends a command
    const connection = new RedisClient({ lazyConnect: true, host: '127.0.0.1', port: 1, retryStrategy: () => null });
    registerCleanup(() => connection.disconnect());
    return connection;
  }

  it('resolves ioredis through mqemitter-redis to the pinned ioredis, whose Redis class has what is used', () => {
    expect(RedisClient, `mqemitter-redis brings its own ioredis now, not the pinned one: ${SEE}`).toBe(PinnedRedis);
    for (const method of ['disconnect', 'select', 'on', 'off']) {
      expect(
        typeof (RedisClient.prototype as unknown as Record<string, unknown>)[method],
        `ioredis Redis lost ${method}(): ${SEE}`,
      ).toBe('function');
    }
    expect(idleRedis().status, `ioredis changed its connection states: ${SEE}`).toBe('wait');
  });

  it("re-emits a connection's error on the emitter's internal `state`", () => {
    const publish = idleRedis();
    const subscribe = idleRedis();
    const mq = MQEmitterRedis({ pubConn: publish, subConn: subscribe });
    const state = (mq as unknown as { state?: unknown }).state;
    expect(state, `mqemitter-redis no longer has its internal state emitter: ${SEE}`).toBeInstanceOf(EventEmitter);
    const seen: string[] = [];
    (state as EventEmitter).on('error', (error: Error) => seen.push(error.message));
    subscribe.emit('error', new Error('connection lost'));
    expect(seen, `mqemitter-redis stopped re-emitting connection errors on state: ${SEE}`).toEqual(['connection lost']);
    expect(typeof mq.close, `mqemitter-redis changed close(callback): ${SEE}`).toBe('function');
    expect(mq.close.length).toBe(1);
  });

  it("builds a persistence from the main export: aedes-persistence's callback adapter with the methods aedes calls", () => {
    const persistence = createRedisPersistence({ conn: idleRedis() }) as unknown as Record<string, unknown>;
    expect(
      (persistence.constructor as { name?: string }).name,
      `aedes-persistence-redis' main export is no longer the CallBackPersistence adapter: ${SEE}`,
    ).toBe('CallBackPersistence');
    for (const method of ['setup', 'destroy', 'createRetainedStreamCombi', 'outgoingStream']) {
      expect(typeof persistence[method], `aedes-persistence-redis lost ${method}(): ${SEE}`).toBe('function');
    }
  });
});

describe('node:tls (broker/connection-admission.ts)', () => {
  it("does a tls.Server's TLS work in 'connection' listeners: without them no handshake starts", async () => {
    const certs = await createTestCertificates({ deviceIds: [] });
    const server = createTlsServer({ key: certs.broker.key, cert: certs.broker.cert, handshakeTimeout: 200 });
    expect(server.listeners('connection').length).toBeGreaterThan(0);
    const tlsListeners = server.listeners('connection');
    server.removeAllListeners('connection');
    const gated: Socket[] = [];
    server.on('connection', (socket: Socket) => gated.push(socket));
    const tlsErrors: string[] = [];
    server.on('tlsClientError', (error: NodeJS.ErrnoException) => tlsErrors.push(error.code ?? error.message));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    registerCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const port = (server.address() as AddressInfo).port;

    // gated: the socket is accepted, the handshake timeout never fires (no TLSSocket was made)
    const idle = connectTcp(port, '127.0.0.1');
    idle.on('error', () => {});
    registerCleanup(() => void idle.destroy());
    await new Promise<void>((resolve) => idle.once('connect', () => resolve()));
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(tlsErrors).toEqual([]);
    expect(gated).toHaveLength(1);

    // handed to the original listeners: a real handshake, and a server-side TLSSocket whose _parent is the accepted socket
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      gated.push(socket);
      for (const listener of tlsListeners) (listener as (socket: Socket) => void).call(server, socket);
    });
    const secured = new Promise<TLSSocket>((resolve) => server.once('secureConnection', resolve));
    const client = connectTls({ port, host: '127.0.0.1', ca: certs.ca, servername: 'localhost' });
    client.on('error', () => {});
    registerCleanup(() => void client.destroy());
    const serverSide = await secured;
    expect((serverSide as TLSSocket & { _parent?: unknown })._parent).toBe(gated[1]);
  });
});

describe('pinned versions', () => {
  const PINNED = {
    aedes: '1.2.0',
    mqtt: '5.16.0',
    'pg-promise': '12.7.1',
    'mqemitter-redis': '7.2.1',
    'aedes-persistence-redis': '11.2.2',
    ioredis: '5.11.1',
  };
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version?: string; dependencies?: Record<string, string> }>;
  };

  it.each(Object.entries(PINNED))(
    'package.json pins %s to exactly %s, and package-lock.json installs it',
    (name, version) => {
      expect(
        manifest.dependencies[name],
        `${name} must be pinned exactly (no ^ or ~): the code reaches into its internals`,
      ).toBe(version);
      expect(
        lock.packages[''] && (lock.packages[''] as { dependencies?: Record<string, string> }).dependencies?.[name],
      ).toBe(version);
      expect(lock.packages[`node_modules/${name}`]?.version, `package-lock.json installs another ${name}`).toBe(
        version,
      );
    },
  );

  it('pg comes only through pg-promise, which pins it exactly', () => {
    const pgPromise = lock.packages['node_modules/pg-promise'];
    const pgVersion = pgPromise?.dependencies?.['pg'];
    expect(pgVersion, 'pg-promise no longer pins pg exactly: see bridge/db/connection.ts').toMatch(/^\d+\.\d+\.\d+$/);
    const installed = lock.packages['node_modules/pg-promise/node_modules/pg'] ?? lock.packages['node_modules/pg'];
    expect(installed?.version).toBe(pgVersion);
    expect(pgp.pg.Client, 'pgp.pg is not node-postgres').toBeTypeOf('function');
  });
});
