/**
 * The bridge's MQTT connection survives a broker that briefly refuses connections (a restart:
 * CONNACK "Server unavailable"): mqtt.js gives up reconnecting after a refused CONNACK unless
 * reconnectOnConnackError is set.
 */
import { createServer, type Server } from 'node:net';
import { Aedes, type Client } from 'aedes';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBridgeMqttClient, type BridgeMqttClient } from '../../bridge/mqtt/bridge-mqtt-client.js';

const CLIENT_ID = 'bridge-reconnect-test';

let aedes: Aedes;
let server: Server;
let bridge: BridgeMqttClient;
let refusing = false;
let refusals = 0;
let bridgeConnection: Client | undefined;

beforeAll(async () => {
  aedes = await Aedes.createBroker();
  aedes.authenticate = (_client, _username, _password, callback) => {
    if (!refusing) return callback(null, true);
    refusals += 1;
    callback(Object.assign(new Error('Server unavailable'), { returnCode: 3 }), false);
  };
  aedes.on('client', (client) => {
    if (client.id === CLIENT_ID) bridgeConnection = client;
  });
  server = createServer(aedes.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('broker has no TCP address');
  bridge = createBridgeMqttClient({
    url: `mqtt://127.0.0.1:${address.port}`,
    clientId: CLIENT_ID,
    tls: null,
    onMessage: (delivery) => delivery.ack(),
    logger: pino({ level: 'silent' }),
  });
  await bridge.start();
});

afterAll(async () => {
  await bridge?.close();
  await new Promise<void>((resolve) => aedes.close(() => resolve()));
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe('the bridge MQTT client', () => {
  it('keeps reconnecting after the broker refused a CONNACK, and connects once it accepts again', async () => {
    expect(bridge.isConnected()).toBe(true);
    refusing = true;
    bridgeConnection?.close(); // the broker "restarts": the connection drops, reconnects are refused

    await expect.poll(() => refusals, { timeout: 10_000, interval: 50 }).toBeGreaterThanOrEqual(2);
    expect(bridge.isConnected()).toBe(false);

    refusing = false;
    await expect.poll(() => bridge.isConnected(), { timeout: 10_000, interval: 50 }).toBe(true);
  });
});
