/** Starting and stopping the broker: port 0, clean shutdown with clients connected, clear startup errors. */
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker } from '../../broker/server.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';

const DEVICE = '6f1c2b8e-3d4a-4e5b-8c9d-0a1b2c3d4e5f';
const silent = pino({ level: 'silent' });
let certs: TestCertificates;

beforeAll(async () => {
  certs = await createTestCertificates({ deviceIds: [DEVICE] });
});

afterAll(async () => {
  await certs?.cleanup();
});

describe('startBroker / close', () => {
  it('reports the port it got, disconnects clients on close, and close is idempotent', async () => {
    const broker = await startBroker({ tls: certs.broker, host: '127.0.0.1', port: 0, logger: silent });
    expect(broker.port).toBeGreaterThan(0);
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${broker.port}`, {
      ...certs.devices[DEVICE]!,
      clientId: DEVICE,
      reconnectPeriod: 0,
    });
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    expect(broker.aedes.connectedClients).toBe(1);

    const first = broker.close();
    expect(broker.close()).toBe(first);
    await Promise.all([first, broker.close()]);
    await closed;
    expect(broker.aedes.closed).toBe(true);
    await expect(broker.close()).resolves.toBeUndefined();
    await client.endAsync(true);
  });

  it('fails clearly when the port is taken', async () => {
    const first = await startBroker({ tls: certs.broker, host: '127.0.0.1', port: 0, logger: silent });
    try {
      await expect(
        startBroker({ tls: certs.broker, host: '127.0.0.1', port: first.port, logger: silent }),
      ).rejects.toThrow(`broker cannot listen on 127.0.0.1:${first.port}: EADDRINUSE`);
    } finally {
      await first.close();
    }
  });

  it('fails clearly, before starting anything, when the TLS key does not fit', async () => {
    await expect(
      startBroker({
        tls: { ...certs.broker, key: certs.devices[DEVICE]!.key },
        host: '127.0.0.1',
        port: 0,
        logger: silent,
      }),
    ).rejects.toThrow(/the broker's TLS key, certificate or CA is unusable: .*key values mismatch/);
  });
});
