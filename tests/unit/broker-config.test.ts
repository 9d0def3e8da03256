import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { clusterBrokerId } from '../../broker/cluster-backends.js';
import {
  BROKER_TLS_VARIABLES,
  describeRedisEndpoint,
  loadBrokerConfig,
  parseRedisUrl,
  readCrlFile,
  type BrokerConfig,
} from '../../broker/config.js';
import { ConfigError, MAX_TIMER_MS, type Env } from '../../common/env.js';
import { readTlsFiles } from '../../common/tls-files.js';
import { MAX_PAYLOAD_BYTES } from '../../schemas/limits.js';
import {
  describeVariableTables,
  documentedVariables,
  variablesReadIn,
  type BadValue,
  type IntegerVariable,
} from '../helpers/config-cases.js';
import { tempDirectory } from '../helpers/temp-dir.js';

describe('loadBrokerConfig', () => {
  it('is standalone by default, with aedes choosing the id and the heartbeat', () => {
    const config = loadBrokerConfig({});
    expect(config.cluster).toBeUndefined();
    expect(config.brokerId).toBeUndefined();
    expect(config.heartbeatMs).toBeUndefined();
    expect(config.port).toBe(8883);
    // the metrics endpoint has no authentication: loopback unless METRICS_HOST says otherwise
    expect(config.metricsHost).toBe('127.0.0.1');
    expect(loadBrokerConfig({ METRICS_HOST: '0.0.0.0' }).metricsHost).toBe('0.0.0.0');
  });

  it('enables cluster mode with BROKER_REDIS_URL, with a 15 s heartbeat by default', () => {
    const config = loadBrokerConfig({
      BROKER_REDIS_URL: 'redis://:s3cret@redis.internal:6380/2',
      BROKER_ID: 'edge-eu-1',
    });
    expect(config.cluster).toEqual({
      redisUrl: 'redis://:s3cret@redis.internal:6380/2',
      redisUrlForLogs: 'redis://***@redis.internal:6380/2',
    });
    expect(config.brokerId).toBe('edge-eu-1');
    expect(config.heartbeatMs).toBe(15_000);
  });

  it('takes BROKER_HEARTBEAT_MS in both modes, within 1 s … 1 h', () => {
    expect(loadBrokerConfig({ BROKER_HEARTBEAT_MS: '5000' }).heartbeatMs).toBe(5_000);
    expect(loadBrokerConfig({ BROKER_REDIS_URL: 'redis://r', BROKER_HEARTBEAT_MS: '2000' }).heartbeatMs).toBe(2_000);
    expect(() => loadBrokerConfig({ BROKER_HEARTBEAT_MS: '200' })).toThrow(/BROKER_HEARTBEAT_MS must be ≥ 1000/);
    expect(() => loadBrokerConfig({ BROKER_HEARTBEAT_MS: 'soon' })).toThrow(ConfigError);
  });

  it('refuses a BROKER_ID that would break Redis keys or $SYS topics', () => {
    for (const bad of ['node:1', 'a/b', 'node+', '#', 'x'.repeat(49), 'näme']) {
      expect(() => loadBrokerConfig({ BROKER_ID: bad }), bad).toThrow(/BROKER_ID must be 1-48 characters/);
    }
    expect(loadBrokerConfig({ BROKER_ID: 'broker-1.eu_west' }).brokerId).toBe('broker-1.eu_west');
  });

  it('refuses a bad BROKER_REDIS_URL with a ConfigError that does not echo the password', () => {
    const attempt = (url: string) => () => loadBrokerConfig({ BROKER_REDIS_URL: url });
    expect(attempt('not a url')).toThrow(ConfigError);
    expect(attempt('not a url')).toThrow(/BROKER_REDIS_URL is not a valid URL \(expected redis:\/\//);
    expect(attempt('http://redis:6379')).toThrow(/must use the redis:\/\/ scheme, not 'http'/);
    expect(attempt('rediss://redis:6379')).toThrow(/TLS to Redis is not supported yet/);
    expect(attempt('redis://redis:6379/zero')).toThrow(/only path allowed is a database number/);
    expect(attempt('redis://redis:6379/0?family=6')).toThrow(/query parameters/);
    expect(attempt('redis://redis:0')).toThrow(/port 0/);
    expect(attempt('redis://redis:70000')).toThrow(/not a valid URL/);
    for (const url of [
      'rediss://:hunter2@redis',
      'redis://:hunter2@redis/x',
      ':hunter2@redis:6379',
      'redis://u:hun/ter2@redis/x',
    ]) {
      expect(attempt(url)).toThrow(ConfigError);
      expect(attempt(url), url).not.toThrow(/hunter2|hun\/ter2|ter2/);
    }
  });
});

describe('parseRedisUrl', () => {
  it('reads host, port, database and credentials, with defaults', () => {
    expect(parseRedisUrl('redis://redis')).toEqual({
      host: 'redis',
      port: 6379,
      db: 0,
      username: undefined,
      password: undefined,
    });
    expect(parseRedisUrl('redis://10.0.0.5:7000/')).toMatchObject({ host: '10.0.0.5', port: 7000, db: 0 });
    expect(parseRedisUrl('redis://broker:p%40ss@[::1]:6390/3')).toEqual({
      host: '::1',
      port: 6390,
      db: 3,
      username: 'broker',
      password: 'p@ss',
    });
  });

  it('describes an endpoint for logs with the credentials masked', () => {
    expect(describeRedisEndpoint(parseRedisUrl('redis://redis'))).toBe('redis://redis:6379/0');
    expect(describeRedisEndpoint(parseRedisUrl('redis://broker:p%40ss@[::1]:6390/3'))).toBe('redis://***@[::1]:6390/3');
  });
});

describe('clusterBrokerId', () => {
  it('is the node name plus a fresh suffix at every call, safe for Redis keys and $SYS topics', () => {
    const first = clusterBrokerId('edge-eu-1');
    expect(first).toMatch(/^edge-eu-1-[0-9a-f]{8}$/);
    expect(clusterBrokerId('edge-eu-1')).not.toBe(first);
    expect(clusterBrokerId('ip-10-0-0-5.ec2:internal/x')).toMatch(/^ip-10-0-0-5\.ec2-internal-x-[0-9a-f]{8}$/);
    expect(clusterBrokerId()).toMatch(/^[A-Za-z0-9._-]+-[0-9a-f]{8}$/);
  });
});

// ---------------------------------------------------------------------------------------------
// every variable, table-driven

const directory = tempDirectory('broker-config');
const readable = Object.fromEntries(
  Object.values(BROKER_TLS_VARIABLES).map((name) => {
    const path = join(directory, `${name}.pem`);
    writeFileSync(path, name);
    return [name, path];
  }),
);

/** What broker/main.ts does with the environment before it starts anything. */
function loadBroker(env: Env): BrokerConfig {
  const config = loadBrokerConfig(env);
  readTlsFiles(config.tls, BROKER_TLS_VARIABLES);
  if (config.crlPath !== undefined) readCrlFile(config.crlPath);
  return config;
}

const INTEGER_VARIABLES: IntegerVariable<BrokerConfig>[] = [
  { name: 'BROKER_PORT', min: 0, max: 65_535, fallback: 8883, read: (c) => c.port },
  { name: 'METRICS_PORT', min: 0, max: 65_535, fallback: undefined, read: (c) => c.metricsPort },
  {
    name: 'MAX_PAYLOAD_BYTES',
    min: 1,
    max: 268_435_455 - 65_539,
    fallback: MAX_PAYLOAD_BYTES,
    read: (c) => c.maxPayloadBytes,
  },
  { name: 'BROKER_HEARTBEAT_MS', min: 1_000, max: 3_600_000, fallback: undefined, read: (c) => c.heartbeatMs },
  { name: 'SHUTDOWN_GRACE_MS', min: 1, max: MAX_TIMER_MS, fallback: 10_000, read: (c) => c.shutdownGraceMs },
  {
    name: 'BROKER_RATE_MESSAGES_PER_S',
    min: 1,
    max: 1_000_000,
    fallback: 200,
    read: (c) => c.publishRateLimits.messages.perSecond,
  },
  {
    name: 'BROKER_RATE_MESSAGES_BURST',
    min: 1,
    max: 10_000_000,
    fallback: 400,
    read: (c) => c.publishRateLimits.messages.burst,
  },
  {
    name: 'BROKER_RATE_BYTES_PER_S',
    min: 1024,
    max: 1024 ** 3,
    fallback: 4 * 1024 ** 2,
    read: (c) => c.publishRateLimits.bytes.perSecond,
  },
  {
    name: 'BROKER_RATE_BYTES_BURST',
    min: 1024,
    max: 16 * 1024 ** 3,
    fallback: 1024 ** 2,
    read: (c) => c.publishRateLimits.bytes.burst,
  },
  {
    name: 'BROKER_RATE_MAX_THROTTLED_MS',
    min: 100,
    max: 3_600_000,
    fallback: 10_000,
    read: (c) => c.publishRateLimits.maxThrottledMs,
  },
  ...(
    [
      ['BROKER_MAX_CONNECTIONS', 10_000, (c) => c.admission.maxConnections],
      ['BROKER_MAX_HANDSHAKES_PER_SOURCE', 64, (c) => c.admission.maxPendingPerSource],
      ['BROKER_HANDSHAKE_RATE', 250, (c) => c.admission.handshakesPerSecond],
      ['BROKER_HANDSHAKE_BURST', 100, (c) => c.admission.handshakeBurst],
      ['BROKER_MAX_EVENT_LOOP_LAG_MS', 1_000, (c) => c.admission.maxEventLoopLagMs],
    ] as const satisfies readonly (readonly [string, number, (c: BrokerConfig) => number])[]
  ).map(([name, fallback, read]) => ({ name, min: 1, max: 1_000_000, fallback, read })),
  {
    name: 'BROKER_HANDSHAKE_TARGET_MS',
    min: 100,
    max: 120_000,
    fallback: 2_000,
    read: (c) => c.admission.handshakeTargetMs,
  },
  { name: 'BROKER_LISTEN_BACKLOG', min: 1, max: 65_535, fallback: 4096, read: (c) => c.listenBacklog },
  {
    name: 'BROKER_HANDSHAKE_TIMEOUT_MS',
    min: 1_000,
    max: 120_000,
    fallback: 10_000,
    read: (c) => c.handshakeTimeoutMs,
  },
];

const BAD_VALUES: BadValue[] = [
  ...['http://0.0.0.0', '0.0.0.0:9465', 'my host'].map((value) => ({
    name: 'METRICS_HOST',
    value,
    message: `METRICS_HOST must be an IP address or a host name (no scheme, port or brackets), got '${value}'`,
  })),
  ...['http://0.0.0.0', '0.0.0.0:8883', '[::1]', 'my host', '-leading.dash'].map((value) => ({
    name: 'BROKER_HOST',
    value,
    message: `BROKER_HOST must be an IP address or a host name (no scheme, port or brackets), got '${value}'`,
  })),
  ...Object.values(BROKER_TLS_VARIABLES).map((name) => ({
    name,
    value: join(directory, 'missing.pem'),
    message: `${name}: cannot read '${join(directory, 'missing.pem')}': ENOENT`,
  })),
  ...['node:1', 'a/b', '#', 'x'.repeat(49)].map((value) => ({
    name: 'BROKER_ID',
    value,
    message: /^BROKER_ID must be 1-48 characters/,
  })),
  { name: 'BROKER_REDIS_URL', value: 'http://redis:6379', message: /^BROKER_REDIS_URL must use the redis:\/\/ scheme/ },
  {
    name: 'BROKER_CRL_FILE',
    value: join(directory, 'missing.crl'),
    message: `BROKER_CRL_FILE: cannot read '${join(directory, 'missing.crl')}': ENOENT`,
  },
  { name: 'BROKER_REDIS_URL', value: 'redis://', message: /^BROKER_REDIS_URL (has no host|is not a valid URL)/ },
];

describe('broker environment, variable by variable', () => {
  it('has a test table entry for exactly the variables broker/config.ts documents and reads', () => {
    const tested = [...new Set([...INTEGER_VARIABLES.map((v) => v.name), ...BAD_VALUES.map((v) => v.name)])].sort();
    expect(tested).toEqual(documentedVariables('broker/config.ts'));
    expect(variablesReadIn('broker/config.ts')).toEqual(documentedVariables('broker/config.ts'));
  });

  describeVariableTables(loadBroker, readable, INTEGER_VARIABLES, BAD_VALUES);
});
