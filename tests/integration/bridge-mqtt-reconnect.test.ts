/**
 * The bridge's MQTT connection survives a broker that briefly refuses connections (a restart:
 * CONNACK "Server unavailable"): mqtt.js gives up reconnecting after a refused CONNACK unless
 * reconnectOnConnackError is set.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createBridgeMqttClient, type BridgeMqttClient } from '../../bridge/mqtt/bridge-mqtt-client.js';
import { testLogger } from '../helpers/logger.js';
import { registerCleanup } from '../helpers/teardown.js';
import { startTestBroker, type TestBroker } from '../helpers/test-broker.js';

const CLIENT_ID = 'bridge-reconnect-test';

let broker: TestBroker;
let bridge: BridgeMqttClient;
let refusing = false;
let refusals = 0;

beforeAll(async () => {
  broker = await startTestBroker({
    authenticate: (_client, _username, _password, callback) => {
      if (!refusing) return callback(null, true);
      refusals += 1;
      callback(Object.assign(new Error('Server unavailable'), { returnCode: 3 as const }), false);
    },
  });
  bridge = createBridgeMqttClient({
    url: broker.url,
    clientId: CLIENT_ID,
    tls: null,
    onMessage: (delivery) => delivery.ack(),
    logger: testLogger(CLIENT_ID),
  });
  registerCleanup(() => bridge.close());
  await bridge.start();
});

describe('the bridge MQTT client', () => {
  it('keeps reconnecting after the broker refused a CONNACK, and connects once it accepts again', async () => {
    expect(bridge.isConnected()).toBe(true);
    refusing = true;
    broker.dropConnection(CLIENT_ID); // the broker "restarts": the connection drops, reconnects are refused

    await expect.poll(() => refusals, { timeout: 10_000, interval: 50 }).toBeGreaterThanOrEqual(2);
    expect(bridge.isConnected()).toBe(false);

    refusing = false;
    await expect.poll(() => bridge.isConnected(), { timeout: 10_000, interval: 50 }).toBe(true);
  });
});
