/**
 * Connection admission of the broker (broker/connection-admission.ts) with real TLS, a real Aedes
 * and real sockets: sockets that never finish a handshake are closed, the per-source and total
 * caps and the handshake rate refuse before TLS, and a real device still gets in. Different
 * sources are loopback addresses (127.0.0.2, 127.0.0.3) bound as the client's localAddress.
 */
import { registerCleanup } from '../helpers/teardown.js';
import { connect as connectTcp, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { connect as connectTls } from 'node:tls';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AdmissionLimits } from '../../broker/admission-policy.js';
import { startBroker, type BrokerOptions, type RunningBroker } from '../../broker/server.js';
import { classifyError } from '../../common/retry-policy.js';
import { createTestCertificates, type TestCertificates } from '../helpers/certs.js';
import { waitFor } from '../helpers/wait.js';

const DEVICE = '6f1c2b8e-3d4a-4e5b-8c9d-0a1b2c3d4e5f';
const ROOMY: AdmissionLimits = {
  maxConnections: 10_000,
  maxPendingPerSource: 10_000,
  handshakesPerSecond: 100_000,
  handshakeBurst: 100_000,
  // a test process starved by a busy machine must not refuse anybody here
  maxEventLoopLagMs: 1_000_000,
  handshakeTargetMs: 120_000,
};

type LogLine = { msg: string; level: number; [field: string]: unknown };

let certs: TestCertificates;

beforeAll(async () => {
  certs = await createTestCertificates({ deviceIds: [DEVICE] });
});

interface Harness {
  broker: RunningBroker;
  logs: LogLine[];
  /** a series of the broker's /metrics text, 0 when absent */
  metric: (series: string) => Promise<number>;
  /** open sockets as node's server counts them */
  serverConnections: () => Promise<number>;
}

async function brokerWith(options: Partial<BrokerOptions>): Promise<Harness> {
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) logs.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  const broker = await startBroker({
    tls: certs.broker,
    host: '127.0.0.1',
    port: 0,
    logger: pino({ level: 'info' }, sink),
    ...options,
  });
  registerCleanup(() => broker.close());
  return {
    broker,
    logs,
    metric: async (series) => {
      const text = await broker.registry.metrics();
      const line = text.split('\n').find((entry) => entry.startsWith(`${series} `));
      return line === undefined ? 0 : Number(line.slice(series.length + 1));
    },
    serverConnections: () =>
      new Promise((resolve, reject) =>
        broker.server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
      ),
  };
}

interface SilentSocket {
  socket: Socket;
  closed: boolean;
  /** the 'close' event */
  closing: Promise<void>;
}

/** TCP connections that never send a byte (no ClientHello), optionally from another loopback source. */
function silentSockets(port: number, count: number, localAddress?: string): SilentSocket[] {
  return Array.from({ length: count }, () => {
    const socket = connectTcp({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) });
    socket.on('error', () => {});
    const silent: SilentSocket = {
      socket,
      closed: false,
      closing: new Promise<void>((resolve) =>
        socket.once('close', () => {
          silent.closed = true;
          resolve();
        }),
      ),
    };
    registerCleanup(() => void socket.destroy());
    return silent;
  });
}

function connectDevice(port: number, localAddress?: string) {
  return mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, {
    ...certs.devices[DEVICE]!,
    clientId: DEVICE,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    ...(localAddress ? { localAddress } : {}),
  });
}

const refusedSeries = (reason: string) => `mqtt_broker_refused_connections_total{reason="${reason}"}`;

describe('sockets that never finish the TLS handshake', () => {
  it('300 silent TCP sockets are all closed by the broker after the handshake timeout', async () => {
    const { broker, logs, metric, serverConnections } = await brokerWith({
      handshakeTimeoutMs: 1_000,
      admission: ROOMY,
    });
    const sockets = silentSockets(broker.port, 300);
    await waitFor(
      '300 sockets in the handshake',
      () => metric('mqtt_broker_tls_handshakes_in_progress'),
      (n) => n === 300,
    );
    expect(await metric('mqtt_broker_open_sockets')).toBe(300);
    // silent sockets complete no handshake: they do not lower the admitted rate
    expect(await metric('mqtt_broker_admitted_handshake_rate')).toBe(ROOMY.handshakesPerSecond);

    await Promise.all(sockets.map((silent) => silent.closing));
    await waitFor('no open socket on the server', serverConnections, (n) => n === 0);
    await waitFor(
      'the open-sockets gauge at 0',
      () => metric('mqtt_broker_open_sockets'),
      (n) => n === 0,
    );
    expect(await metric(refusedSeries('tls-handshake'))).toBe(300);
    const timeouts = logs.filter(
      (line) => line.msg === 'TLS handshake refused' && line.code === 'ERR_TLS_HANDSHAKE_TIMEOUT',
    );
    expect(timeouts).toHaveLength(300);
    expect(new Set(timeouts.map((line) => line.remoteAddress))).toEqual(new Set(['127.0.0.1']));
  });

  it('a real device connects while 300 silent sockets are held in the handshake', async () => {
    const { broker, metric } = await brokerWith({ handshakeTimeoutMs: 60_000, admission: ROOMY });
    const sockets = silentSockets(broker.port, 300);
    await waitFor(
      '300 sockets in the handshake',
      () => metric('mqtt_broker_tls_handshakes_in_progress'),
      (n) => n === 300,
    );

    const device = await connectDevice(broker.port);
    expect(device.connected).toBe(true);
    expect(broker.aedes.connectedClients).toBe(1);
    expect(sockets.filter((silent) => silent.closed)).toHaveLength(0);
    await device.endAsync();
  });

  it('logs the remote address of a refused handshake whose client already went away', async () => {
    const { broker, logs } = await brokerWith({ admission: ROOMY });
    // no client certificate: node closes the connection after the handshake, then reports it
    const tcp = connectTcp({ port: broker.port, host: '127.0.0.1', localAddress: '127.0.0.3' });
    const socket = connectTls({ socket: tcp, ca: certs.ca, servername: 'localhost' });
    socket.on('error', () => {});
    registerCleanup(() => void socket.destroy());
    const refusal = await waitFor(
      'the refusal in the log',
      () => logs.find((line) => line.msg === 'TLS handshake refused'),
      (line) => line !== undefined,
    );
    expect(refusal).toMatchObject({ remoteAddress: '127.0.0.3', remotePort: expect.any(Number) });
    expect(refusal?.reason).toMatch(/peer did not return a certificate/);
  });

  it('closes a socket that finished the handshake but sends no CONNECT, after connectTimeout', async () => {
    const { broker, metric } = await brokerWith({ connectTimeoutMs: 1_000, admission: ROOMY });
    const socket = connectTls({ port: broker.port, host: '127.0.0.1', ...certs.devices[DEVICE]! });
    socket.on('error', () => {});
    registerCleanup(() => void socket.destroy());
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
    // TLS 1.3: the client is done before the server has checked the client's Finished
    await waitFor(
      'the handshake done on the server',
      () => metric('mqtt_broker_tls_handshakes_in_progress'),
      (n) => n === 0,
    );
    expect(await metric('mqtt_broker_open_sockets')).toBe(1);

    await closed;
    await waitFor(
      'no open socket',
      () => metric('mqtt_broker_open_sockets'),
      (n) => n === 0,
    );
  });
});

describe('caps', () => {
  it('refuses the N+1th handshake from one source before TLS while another source is admitted', async () => {
    const { broker, metric } = await brokerWith({
      handshakeTimeoutMs: 60_000,
      admission: { ...ROOMY, maxPendingPerSource: 5 },
    });
    const held = silentSockets(broker.port, 5, '127.0.0.2');
    await waitFor(
      '5 handshakes from 127.0.0.2',
      () => metric('mqtt_broker_tls_handshakes_in_progress'),
      (n) => n === 5,
    );

    const [extra] = silentSockets(broker.port, 1, '127.0.0.2');
    await extra!.closing;
    expect(await metric(refusedSeries('source-cap'))).toBe(1);
    expect(held.filter((silent) => silent.closed)).toHaveLength(0);

    const [other] = silentSockets(broker.port, 1, '127.0.0.3');
    await waitFor(
      'the handshake from 127.0.0.3',
      () => metric('mqtt_broker_tls_handshakes_in_progress'),
      (n) => n === 6,
    );
    expect(other!.closed).toBe(false);
    const device = await connectDevice(broker.port, '127.0.0.3');
    expect(device.connected).toBe(true);
    await device.endAsync();
  });

  it('refuses connections over the total cap until one closes', async () => {
    const { broker, metric } = await brokerWith({
      handshakeTimeoutMs: 60_000,
      admission: { ...ROOMY, maxConnections: 3 },
    });
    const held = silentSockets(broker.port, 3, '127.0.0.2');
    await waitFor(
      '3 open sockets',
      () => metric('mqtt_broker_open_sockets'),
      (n) => n === 3,
    );

    await expect(connectDevice(broker.port, '127.0.0.3')).rejects.toMatchObject({ code: 'ECONNRESET' });
    expect(await metric(refusedSeries('total-cap'))).toBe(1);

    held[0]!.socket.destroy();
    await waitFor(
      '2 open sockets',
      () => metric('mqtt_broker_open_sockets'),
      (n) => n === 2,
    );
    const device = await connectDevice(broker.port, '127.0.0.3');
    expect(device.connected).toBe(true);
    await device.endAsync();
  });
});

describe('handshake rate', () => {
  it('refuses the excess at once, before any handshake timed out, and a device is admitted once a token is back', async () => {
    const { broker, metric, logs } = await brokerWith({
      handshakeTimeoutMs: 60_000,
      admission: { ...ROOMY, handshakesPerSecond: 2, handshakeBurst: 3 },
    });
    const admitted = silentSockets(broker.port, 3, '127.0.0.2');
    await waitFor(
      '3 handshakes admitted',
      () => metric('mqtt_broker_tls_handshakes_in_progress'),
      (n) => n === 3,
    );

    const excess = silentSockets(broker.port, 20, '127.0.0.2');
    await Promise.all(excess.map((silent) => silent.closing));
    // closed by the refusal, not by a timeout: the admitted ones (60 s timeout) are all still open
    expect(admitted.filter((silent) => silent.closed)).toHaveLength(0);
    // 2 tokens/s: at most a few of the 20 can have found a fresh token while they were opened
    const refusedByRate = await metric(refusedSeries('rate'));
    expect(refusedByRate).toBeGreaterThanOrEqual(17);
    expect(refusedByRate + (await metric('mqtt_broker_tls_handshakes_in_progress')) - 3).toBe(20);
    expect(await metric(refusedSeries('tls-handshake'))).toBe(0);
    const warnings = logs.filter((line) => line.msg.startsWith('connections refused before TLS'));
    expect(warnings).toHaveLength(1);

    // a refused device fails with a network error (its uplink backs off and retries)
    const refused = await connectDevice(broker.port).then(
      (client) => client.endAsync().then(() => undefined),
      (error: unknown) => error,
    );
    if (refused !== undefined) expect(classifyError(refused)).toBe('network');

    const device = await waitFor(
      'a device admitted by the rate',
      () => connectDevice(broker.port).catch(() => undefined),
      (client) => client !== undefined,
      { timeoutMs: 20_000, intervalMs: 250 },
    );
    expect(device?.connected).toBe(true);
    await device?.endAsync();
  });
});

describe('overload', () => {
  it('refuses a handshake that arrives while the event loop is behind, and admits the next one once it caught up', async () => {
    const { broker, metric } = await brokerWith({ admission: { ...ROOMY, maxEventLoopLagMs: 200 } });
    const [late] = silentSockets(broker.port, 1, '127.0.0.2');
    // the broker runs in this process: a 600 ms stall puts its event loop 600 ms behind
    const stallUntil = Date.now() + 600;
    while (Date.now() < stallUntil) {
      // busy
    }
    await late!.closing;
    expect(await metric(refusedSeries('overload'))).toBeGreaterThanOrEqual(1);

    // the lag is measured again on the next timer tick; from then on devices are admitted
    const device = await waitFor(
      'a device admitted after the stall',
      () => connectDevice(broker.port).catch(() => undefined),
      (client) => client !== undefined,
      { intervalMs: 100 },
    );
    expect(device?.connected).toBe(true);
    await device?.endAsync();
  });
});
