/** Starting and stopping the broker: port 0, clean shutdown with clients connected, clear startup errors. */
import { beforeAll, describe, expect, it } from 'vitest';
import { startBroker } from '../../broker/server.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { capturedLogger, testLogger } from '../helpers/logger.js';
import { closed, connectClient } from '../helpers/mqtt-client.js';
import { registerCleanup } from '../helpers/teardown.js';

const DEVICE = '6f1c2b8e-3d4a-4e5b-8c9d-0a1b2c3d4e5f';
const silent = testLogger('broker');
let certs: TestCertificates;

beforeAll(async () => {
  certs = await createTestCertificates({ deviceIds: [DEVICE] });
});

describe('startBroker / close', () => {
  it('reports the port it got, disconnects clients on close, and close is idempotent', async () => {
    const broker = await startBroker({ tls: certs.broker, host: '127.0.0.1', port: 0, logger: silent });
    registerCleanup(() => broker.close());
    expect(broker.port).toBeGreaterThan(0);
    const client = await connectClient(`mqtts://127.0.0.1:${broker.port}`, {
      ...certs.devices[DEVICE]!,
      clientId: DEVICE,
    });
    expect(broker.aedes.connectedClients).toBe(1);

    const first = broker.close();
    expect(broker.close()).toBe(first);
    await Promise.all([first, broker.close()]);
    await closed(client);
    expect(broker.aedes.closed).toBe(true);
    await expect(broker.close()).resolves.toBeUndefined();
  });

  it('logs and counts an error of the MQTTS listener after start-up, and keeps accepting devices', async () => {
    const log = capturedLogger();
    const broker = await startBroker({ tls: certs.broker, host: '127.0.0.1', port: 0, logger: log.logger });
    registerCleanup(() => broker.close());
    // what libuv hands to the server when accept() fails (see the header of broker/server.ts for
    // why running a real process out of file descriptors does not produce it)
    broker.server.emit('error', Object.assign(new Error('accept ENFILE'), { code: 'ENFILE', syscall: 'accept' }));
    expect(await broker.registry.metrics()).toMatch(
      /^mqtt_broker_listener_errors_total\{listener="mqtts",code="ENFILE"\} 1$/m,
    );
    expect(log.lines).toContainEqual(
      expect.objectContaining({ level: 50, code: 'ENFILE', msg: expect.stringContaining('MQTT listener error') }),
    );
    await connectClient(`mqtts://127.0.0.1:${broker.port}`, { ...certs.devices[DEVICE]!, clientId: DEVICE });
  });

  it('fails clearly when the port is taken', async () => {
    const first = await startBroker({ tls: certs.broker, host: '127.0.0.1', port: 0, logger: silent });
    registerCleanup(() => first.close());
    await expect(
      startBroker({ tls: certs.broker, host: '127.0.0.1', port: first.port, logger: silent }),
    ).rejects.toThrow(`broker cannot listen on 127.0.0.1:${first.port}: EADDRINUSE`);
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
