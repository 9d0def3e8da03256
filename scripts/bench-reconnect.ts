/**
 * `npm run bench:reconnect`: how long N devices take to be back after a broker restart, and how
 * many connection attempts and TLS handshakes that wastes.
 *
 *   npm run bench:reconnect -- [--devices 1000] [--before] [--policy current|previous]
 *                              [--admission on|off] [--ramp 200] [--timeout 240]
 *
 * The devices are mqtt.js clients with the edge's own client options (buildUplinkClientOptions)
 * and its own reconnect loop pieces (ReconnectScheduler with the chosen policy, classifyError),
 * each from its own loopback address (127.1.x.y, as devices on the internet have their own), all
 * in this process. The broker is broker/main.ts as a child process, so its CPU is its own:
 *
 *   1. connect the N devices, starting --ramp per second (a first connect that fails backs off
 *      like any other);
 *   2. SIGKILL the broker and start a new one on the same port at once;
 *   3. measure from the kill until every device is connected again.
 *
 * `--before` is the state before issue 6/7: the previous reconnect policy (1 s doubling to 60 s,
 * equal jitter) and no admission limits on the broker (rate, burst and caps set out of reach).
 * `--policy` and `--admission` set the two halves separately.
 *
 * Failed attempts are split by what they cost the broker: 'down' (ECONNREFUSED: no broker
 * listening; nothing), 'admission' (reset before TLS by the broker's admission limits: one
 * accept; counted by the broker, mqtt_broker_refused_connections_total{reason="rate"|…}) and
 * 'failed handshakes' (everything else: the broker started a handshake that produced no session,
 * typically a client that gave up after its 10 s connect timeout while its handshake was queued).
 *
 * Device certificates: one RSA key pair for all devices and one certificate per device id, signed
 * by the development CA, cached in .data/bench-reconnect/ (issuing is the slow part the first time).
 * The script raises its own and the broker's open-files limit with prlimit (util-linux) when the
 * limit is below what N devices need. Results: printed, and .data/bench-reconnect/result-*.json.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, writeFileSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import mqtt, { Store, type IClientOptions, type MqttClient } from 'mqtt';
import { fleetCertificates, type FleetCertificates } from '../devtools/fleet-certificates.js';
import { classifyError, type ReconnectPolicy } from '../common/retry-policy.js';
import { freePort } from '../devtools/free-port.js';
import { buildUplinkClientOptions, statusPayload, uplinkSecureContext } from '../edge/uplink/mqtt-options.js';
import {
  DEFAULT_RECONNECT_POLICY,
  PREVIOUS_RECONNECT_POLICY,
  ReconnectScheduler,
} from '../edge/uplink/reconnect-scheduler.js';
import { DEFAULT_ADMISSION_LIMITS } from '../broker/admission-policy.js';
import { topics } from '../schemas/topics.js';

const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    before: { type: 'boolean', default: false },
    policy: { type: 'string' },
    admission: { type: 'string' },
    ramp: { type: 'string', default: '200' },
    timeout: { type: 'string', default: '240' },
    rate: { type: 'string' },
    burst: { type: 'string' },
  },
});

const DEVICES = Number(args.devices);
const RAMP_PER_SECOND = Number(args.ramp);
const PHASE_TIMEOUT_MS = Number(args.timeout) * 1000;
const policyName = args.policy ?? (args.before ? 'previous' : 'current');
const admissionOn = (args.admission ?? (args.before ? 'off' : 'on')) === 'on';
const POLICY: ReconnectPolicy = policyName === 'previous' ? PREVIOUS_RECONNECT_POLICY : DEFAULT_RECONNECT_POLICY;
const CONNECT_TIMEOUT_MS = 10_000;
const DIR = join('.data', 'bench-reconnect');
const UNLIMITED = '1000000';

// ---------------------------------------------------------------------------------------------
// certificates

// ---------------------------------------------------------------------------------------------
// open files

function openFilesLimit(pid: number | 'self'): number {
  const limits = readFileSync(`/proc/${pid}/limits`, 'utf8');
  const match = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
  return match?.[1] === undefined || match[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(match[1]);
}

function raiseOpenFiles(pid: number, needed: number): void {
  if (openFilesLimit(pid === process.pid ? 'self' : pid) >= needed) return;
  try {
    execFileSync('prlimit', ['--pid', String(pid), `--nofile=${needed}:${needed}`]);
  } catch (error) {
    throw new Error(
      `open-files limit below ${needed} and prlimit failed (${(error as Error).message}); raise it with ulimit -n first`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// the broker process

interface BrokerProcess {
  child: ChildProcess;
  exited: Promise<void>;
}

async function startBrokerProcess(
  port: number,
  metricsPort: number,
  files: FleetCertificates['brokerFiles'],
  logFd: number,
): Promise<BrokerProcess> {
  const admissionEnv = admissionOn
    ? {
        ...(args.rate === undefined ? {} : { BROKER_HANDSHAKE_RATE: args.rate }),
        ...(args.burst === undefined ? {} : { BROKER_HANDSHAKE_BURST: args.burst }),
      }
    : {
        BROKER_HANDSHAKE_RATE: UNLIMITED,
        BROKER_HANDSHAKE_BURST: UNLIMITED,
        BROKER_MAX_CONNECTIONS: UNLIMITED,
        BROKER_MAX_HANDSHAKES_PER_SOURCE: UNLIMITED,
        BROKER_MAX_EVENT_LOOP_LAG_MS: UNLIMITED,
        BROKER_HANDSHAKE_TARGET_MS: '120000',
        // node's default, as before
        BROKER_LISTEN_BACKLOG: '511',
      };
  const child = spawn(process.execPath, ['--import', 'tsx', 'broker/main.ts'], {
    env: {
      ...process.env,
      BROKER_HOST: '127.0.0.1',
      BROKER_PORT: String(port),
      METRICS_PORT: String(metricsPort),
      BROKER_TLS_CERT: files.cert,
      BROKER_TLS_KEY: files.key,
      BROKER_TLS_CA: files.ca,
      LOG_LEVEL: 'info',
      ...admissionEnv,
    },
    stdio: ['ignore', logFd, logFd],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.pid !== undefined) raiseOpenFiles(child.pid, DEVICES * 2 + 1000);
  for (;;) {
    if (child.exitCode !== null) throw new Error('the broker exited during start-up; see its log');
    const healthy = await fetch(`http://127.0.0.1:${metricsPort}/healthz`).then(
      (response) => response.ok,
      () => false,
    );
    if (healthy) return { child, exited };
    await sleep(20);
  }
}

/** CPU time the process has used (user + system), in ms; Linux /proc, 100 ticks a second. */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function brokerMetrics(metricsPort: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const values: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match =
      /^(mqtt_broker_refused_connections_total\{reason="[^"]+"\}|mqtt_broker_connected_clients|mqtt_broker_admitted_handshake_rate) (\S+)$/.exec(
        line,
      );
    if (match?.[1] !== undefined)
      values[match[1].replace(/^mqtt_broker_refused_connections_total/, 'refused')] = Number(match[2]);
  }
  return values;
}

// ---------------------------------------------------------------------------------------------
// the devices

type FailureKind = 'down' | 'reset' | 'timeout' | 'other';

interface Counters {
  attempts: number;
  failures: Record<FailureKind, number>;
}

const newCounters = (): Counters => ({ attempts: 0, failures: { down: 0, reset: 0, timeout: 0, other: 0 } });

class Device {
  readonly id: string;
  connected = false;
  #client: MqttClient | undefined;
  readonly #scheduler = new ReconnectScheduler(POLICY);
  readonly #incoming = new Store();
  /** built once per device, as the uplink does (edge/uplink/mqtt-options.ts) */
  readonly #secureContext;
  readonly #outgoing = new Store();
  #firstError: Error | undefined;
  #stopped = false;

  constructor(
    id: string,
    readonly options: { url: string; ca: Buffer; cert: Buffer; key: Buffer; localAddress: string },
    readonly counters: { current: Counters },
    readonly onConnected: (device: Device) => void,
  ) {
    this.id = id;
    const { ca, cert, key } = options;
    this.#secureContext = uplinkSecureContext({ ca, cert, key });
  }

  start(): void {
    const clientOptions = buildUplinkClientOptions(
      {
        deviceId: this.id,
        tls: { ca: this.options.ca, cert: this.options.cert, key: this.options.key },
        secureContext: this.#secureContext,
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
        keepaliveSeconds: 30,
        incomingStore: this.#incoming,
        outgoingStore: this.#outgoing,
      },
      new Date(),
    );
    this.counters.current.attempts += 1;
    // localAddress reaches net.connect through tls.connect (mqtt.js passes its options on)
    const client = mqtt.connect(this.options.url, {
      ...clientOptions,
      localAddress: this.options.localAddress,
    } as IClientOptions);
    this.#client = client;
    client.on('error', (error) => {
      this.#firstError ??= error;
    });
    client.on('connect', () => {
      this.connected = true;
      this.#firstError = undefined;
      this.#scheduler.connected();
      // what the uplink does on every connect: the online status, the ack subscription
      client.publish(topics.status(this.id), statusPayload(true, new Date()), { qos: 1, retain: true });
      client.subscribe(topics.syncAck(this.id), { qos: 1 });
      this.onConnected(this);
    });
    client.on('close', () => {
      const wasConnected = this.connected;
      this.connected = false;
      if (this.#stopped) return;
      const error = this.#firstError;
      this.#firstError = undefined;
      if (!wasConnected) this.counters.current.failures[failureKind(error)] += 1;
      this.#scheduler.schedule(error === undefined ? 'network' : classifyError(error), () => this.#reconnect());
    });
  }

  #reconnect(): void {
    if (this.#stopped || this.#client === undefined) return;
    this.counters.current.attempts += 1;
    this.#client.reconnect({ incomingStore: this.#incoming, outgoingStore: this.#outgoing });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#scheduler.cancel();
    await this.#client?.endAsync(true);
  }
}

function failureKind(error: Error | undefined): FailureKind {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ECONNREFUSED') return 'down';
  if (code === 'ECONNRESET' || error === undefined) return 'reset';
  if (error.message === 'connack timeout') return 'timeout';
  return 'other';
}

/** 127.1.0.1, 127.1.0.2, … : one source address per device. */
function sourceAddress(index: number): string {
  const n = index + 1;
  return `127.1.${Math.floor(n / 250)}.${(n % 250) + 1}`;
}

// ---------------------------------------------------------------------------------------------

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitAllConnected(
  devices: Device[],
  what: string,
  since: number,
  metricsPort: number,
): Promise<number | null> {
  const deadline = since + PHASE_TIMEOUT_MS;
  let lastReport = 0;
  for (;;) {
    const connected = devices.filter((device) => device.connected).length;
    if (connected === devices.length) return Date.now() - since;
    if (Date.now() > deadline) {
      console.log(`  ${what}: timed out with ${connected}/${devices.length} connected`);
      return null;
    }
    if (Date.now() - lastReport >= 5_000) {
      lastReport = Date.now();
      const broker = await brokerMetrics(metricsPort).catch(() => ({}) as Record<string, number>);
      const refusals = Object.entries(broker).filter(([name]) => name.startsWith('refused'));
      console.log(
        `  ${what}: t=${((Date.now() - since) / 1000).toFixed(1)} s, ${connected}/${devices.length} connected;` +
          ` broker: admitted rate ${broker['mqtt_broker_admitted_handshake_rate'] ?? '-'}/s,` +
          ` refusals ${JSON.stringify(Object.fromEntries(refusals))}`,
      );
    }
    await sleep(50);
  }
}

function summarize(counters: Counters, refusedByAdmission: number) {
  const failed = Object.values(counters.failures).reduce((sum, n) => sum + n, 0);
  // the broker's count of connections it reset before TLS; the rest of the resets had a handshake
  const failedHandshakes = failed - counters.failures.down - refusedByAdmission;
  return {
    attempts: counters.attempts,
    failedAttempts: failed,
    byKind: counters.failures,
    refusedByAdmission,
    failedHandshakes,
    failedHandshakesPerDevice: Number((failedHandshakes / DEVICES).toFixed(3)),
    failedAttemptsPerDevice: Number((failed / DEVICES).toFixed(3)),
  };
}

/**
 * This process's event-loop delay: 5,000 devices share one event loop here, which real devices
 * do not; a delay near the 10 s connect timeout makes attempts time out on this side.
 */
const clientLoopDelay = monitorEventLoopDelay({ resolution: 20 });
clientLoopDelay.enable();

/** CPU ms per device of the broker and of this load client over a phase, and this loop's worst delay. */
function cpuPerDevice(brokerCpu: number, clientCpuBefore: NodeJS.CpuUsage) {
  const client = process.cpuUsage(clientCpuBefore);
  const loopDelay = {
    clientLoopDelayP99Ms: Math.round(clientLoopDelay.percentile(99) / 1e6),
    clientLoopDelayMaxMs: Math.round(clientLoopDelay.max / 1e6),
  };
  clientLoopDelay.reset();
  return {
    ...loopDelay,
    brokerCpuMsPerDevice: Number((brokerCpu / DEVICES).toFixed(2)),
    clientCpuMsPerDevice: Number(((client.user + client.system) / 1000 / DEVICES).toFixed(2)),
  };
}

function admissionRefusals(metrics: Record<string, number>): number {
  return ['rate', 'overload', 'source-cap', 'total-cap'].reduce(
    (sum, reason) => sum + (metrics[`refused{reason="${reason}"}`] ?? 0),
    0,
  );
}

async function main(): Promise<void> {
  mkdirSync(DIR, { recursive: true });
  raiseOpenFiles(process.pid, DEVICES + 1000);
  const certificates = await fleetCertificates(join(DIR, 'certs'), DEVICES);
  if (certificates.issuedSeconds > 0) {
    console.log(`issued device certificates up to ${DEVICES} in ${certificates.issuedSeconds.toFixed(1)} s`);
  }
  const [port, metricsPort] = [await freePort(), await freePort()];
  const mode = `${policyName} policy, admission ${admissionOn ? 'on' : 'off'}`;
  const logPath = join(DIR, `broker-${DEVICES}-${policyName}-${admissionOn ? 'admission' : 'open'}.log`);
  const logFd = openSync(logPath, 'w');
  console.log(
    `bench:reconnect: ${DEVICES} devices, ${mode}` +
      (admissionOn
        ? ` (broker: ${args.rate ?? DEFAULT_ADMISSION_LIMITS.handshakesPerSecond} handshakes/s, burst ${args.burst ?? DEFAULT_ADMISSION_LIMITS.handshakeBurst})`
        : '') +
      `; policy ${JSON.stringify(POLICY)}; broker log ${logPath}`,
  );

  let broker = await startBrokerProcess(port, metricsPort, certificates.brokerFiles, logFd);
  const counters = { current: newCounters() };
  const contextsStarted = Date.now();
  const devices = certificates.certs.map(
    ({ id, cert }, index) =>
      new Device(
        id,
        {
          url: `mqtts://127.0.0.1:${port}`,
          ca: certificates.ca,
          cert,
          key: certificates.key,
          localAddress: sourceAddress(index),
        },
        counters,
        () => {},
      ),
  );

  console.log(`built ${DEVICES} device TLS contexts in ${((Date.now() - contextsStarted) / 1000).toFixed(1)} s`);
  try {
    // phase 1: first connect, ramped
    const firstStart = Date.now();
    const brokerCpuBefore = cpuMs(broker.child.pid);
    clientLoopDelay.reset();
    const clientCpuBefore = process.cpuUsage();
    const starting = (async () => {
      for (let index = 0; index < devices.length; index++) {
        const due = firstStart + (index * 1000) / RAMP_PER_SECOND;
        if (due > Date.now()) await sleep(due - Date.now());
        devices[index]!.start();
      }
    })();
    const firstMs = await waitAllConnected(devices, 'first connect', firstStart, metricsPort);
    await starting;
    const first = {
      ...summarize(counters.current, admissionRefusals(await brokerMetrics(metricsPort))),
      ...cpuPerDevice(cpuMs(broker.child.pid) - brokerCpuBefore, clientCpuBefore),
    };
    console.log(`first connect at ${RAMP_PER_SECOND}/s: all connected after ${fmt(firstMs)}`, JSON.stringify(first));
    await sleep(2_000);

    // phase 2: SIGKILL and restart on the same port
    counters.current = newCounters();
    const killedAt = Date.now();
    broker.child.kill('SIGKILL');
    await broker.exited;
    broker = await startBrokerProcess(port, metricsPort, certificates.brokerFiles, logFd);
    const brokerBackMs = Date.now() - killedAt;
    const restartCpuBefore = cpuMs(broker.child.pid);
    clientLoopDelay.reset();
    const restartClientCpuBefore = process.cpuUsage();
    const restartMs = await waitAllConnected(devices, 'after the restart', killedAt, metricsPort);
    const serverSide = await brokerMetrics(metricsPort);
    const restart = {
      ...summarize(counters.current, admissionRefusals(serverSide)),
      ...cpuPerDevice(cpuMs(broker.child.pid) - restartCpuBefore, restartClientCpuBefore),
    };
    console.log(
      `restart: broker listening again ${fmt(brokerBackMs)} after the kill; all ${DEVICES} connected after ${fmt(restartMs)}`,
      JSON.stringify(restart),
    );
    console.log(`  broker counters since its restart: ${JSON.stringify(serverSide)}`);
    const result = {
      devices: DEVICES,
      policy: policyName,
      admission: admissionOn,
      reconnectPolicy: POLICY,
      firstConnect: { rampPerSecond: RAMP_PER_SECOND, allConnectedMs: firstMs, ...first },
      restart: { brokerListeningAfterMs: brokerBackMs, allConnectedMs: restartMs, ...restart, broker: serverSide },
    };
    const resultPath = join(DIR, `result-${DEVICES}-${policyName}-${admissionOn ? 'admission' : 'open'}.json`);
    writeFileSync(resultPath, JSON.stringify(result, null, 2));
    console.log(`written to ${resultPath}`);
  } finally {
    await Promise.all(devices.map((device) => device.stop()));
    broker.child.kill('SIGKILL');
    await broker.exited;
    closeSync(logFd);
  }
}

function fmt(ms: number | null): string {
  return ms === null ? 'never (timed out)' : `${(ms / 1000).toFixed(1)} s`;
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
