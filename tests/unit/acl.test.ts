import { describe, expect, it } from 'vitest';
import {
  decideDelivery,
  decidePublish,
  decideStoredWillPublish,
  decideSubscribe,
  type PublishRequest,
} from '../../broker/acl.js';
import type { ClientIdentity } from '../../broker/identity.js';
import { MAX_PAYLOAD_BYTES } from '../../schemas/limits.js';
import { topics } from '../../schemas/topics.js';

const OWN = '6f1c2b8e-3d4a-4e5b-8c9d-0a1b2c3d4e5f';
const OTHER = '0b7e9a52-1c3d-4f5a-9b6c-7d8e9f0a1b2c';
const device: ClientIdentity = { role: 'device', id: OWN };
const bridge: ClientIdentity = { role: 'service', id: 'bridge' };
const explorer: ClientIdentity = { role: 'observer', id: 'mqtt-explorer' };
const limits = { maxPayloadBytes: MAX_PAYLOAD_BYTES };

function publish(topic: string, overrides: Partial<PublishRequest> = {}): PublishRequest {
  return { topic, qos: 1, retain: false, payloadBytes: 100, ...overrides };
}

function reasonOf(decision: ReturnType<typeof decidePublish>): string {
  if (decision.allowed) throw new Error('expected a denial');
  return decision.reason;
}

describe('decidePublish: device', () => {
  it.each([
    topics.telemetry(OWN),
    topics.configReported(OWN),
    topics.commandResult(OWN, 'c0ffee00-0000-4000-8000-000000000001'),
    topics.status(OWN),
  ])('may publish its own %s', (topic) => {
    expect(decidePublish(device, publish(topic), limits)).toEqual({ allowed: true });
  });

  it('may retain its status (the will and the online flag)', () => {
    expect(decidePublish(device, publish(topics.status(OWN), { retain: true }), limits).allowed).toBe(true);
  });

  it.each([topics.telemetry(OWN), topics.configReported(OWN), topics.commandResult(OWN, 'c1')])(
    'may not retain %s',
    (topic) => {
      expect(reasonOf(decidePublish(device, publish(topic, { retain: true }), limits))).toMatch(/may not be retained/);
    },
  );

  it.each([
    topics.telemetry(OTHER),
    topics.status(OTHER),
    topics.configReported(OTHER),
    topics.commandResult(OTHER, 'c1'),
  ])('may not publish for another device (%s)', (topic) => {
    expect(reasonOf(decidePublish(device, publish(topic), limits))).toContain(`may not publish for device '${OTHER}'`);
  });

  it.each([topics.syncAck(OWN), topics.config(OWN, 'interval'), topics.command(OWN, 'c1')])(
    'may not publish bridge-owned topics (%s)',
    (topic) => {
      expect(reasonOf(decidePublish(device, publish(topic), limits))).toMatch(/published by the bridge/);
    },
  );

  it.each([
    `devices/${OWN}`,
    `devices/${OWN}/telemetry/extra`,
    `devices/${OWN}/unknown`,
    `devices/${OWN}/commands/c1/other`,
  ])('may not publish non-contract topics (%s)', (topic) => {
    expect(reasonOf(decidePublish(device, publish(topic), limits))).toMatch(/not a topic of the devices\/ contract/);
  });
});

describe('decidePublish: rules for everyone', () => {
  it.each([device, bridge, explorer])('$role: nothing outside devices/', (identity) => {
    expect(reasonOf(decidePublish(identity, publish('sensors/s1/temperature'), limits))).toMatch(/outside devices\//);
    expect(reasonOf(decidePublish(identity, publish('devices'), limits))).toMatch(/outside devices\//);
    expect(reasonOf(decidePublish(identity, publish('devicesX/a'), limits))).toMatch(/outside devices\//);
  });

  it.each([device, bridge, explorer])('$role: no $SYS publishing', (identity) => {
    expect(reasonOf(decidePublish(identity, publish('$SYS/broker/heartbeat'), limits))).toMatch(
      /reserved for the broker/,
    );
  });

  it.each([0, 2])('QoS %i is refused (aedes#994), for devices and services alike', (qos) => {
    expect(reasonOf(decidePublish(device, publish(topics.telemetry(OWN), { qos }), limits))).toMatch(
      new RegExp(`QoS ${qos}.*must use QoS 1`),
    );
    expect(reasonOf(decidePublish(bridge, publish(topics.syncAck(OWN), { qos }), limits))).toMatch(/must use QoS 1/);
  });

  it('the payload limit is inclusive', () => {
    const atLimit = publish(topics.telemetry(OWN), { payloadBytes: MAX_PAYLOAD_BYTES });
    const overLimit = publish(topics.telemetry(OWN), { payloadBytes: MAX_PAYLOAD_BYTES + 1 });
    expect(decidePublish(device, atLimit, limits).allowed).toBe(true);
    expect(reasonOf(decidePublish(device, overLimit, limits))).toBe(
      `payload of ${MAX_PAYLOAD_BYTES + 1} bytes on '${topics.telemetry(OWN)}' exceeds the limit of ${MAX_PAYLOAD_BYTES} bytes`,
    );
    expect(decidePublish(bridge, { ...overLimit, topic: topics.syncAck(OWN) }, limits).allowed).toBe(false);
  });

  it('honours a smaller configured limit', () => {
    expect(
      decidePublish(device, publish(topics.telemetry(OWN), { payloadBytes: 11 }), { maxPayloadBytes: 10 }).allowed,
    ).toBe(false);
  });
});

describe('decidePublish: service and observer', () => {
  it.each([topics.syncAck(OWN), topics.config(OWN, 'interval'), topics.command(OWN, 'c1'), topics.telemetry(OWN)])(
    'the bridge may publish %s, retained or not',
    (topic) => {
      expect(decidePublish(bridge, publish(topic), limits).allowed).toBe(true);
      expect(decidePublish(bridge, publish(topic, { retain: true }), limits).allowed).toBe(true);
    },
  );

  it('an observer may not publish anything', () => {
    expect(reasonOf(decidePublish(explorer, publish(topics.telemetry(OWN)), limits))).toBe(
      `observer 'mqtt-explorer' is read-only and may not publish (to '${topics.telemetry(OWN)}')`,
    );
  });
});

describe('decideStoredWillPublish', () => {
  it('applies the identity-free rules to wills of clients that are gone', () => {
    expect(decideStoredWillPublish(publish(topics.status(OWN), { retain: true }), limits).allowed).toBe(true);
    expect(decideStoredWillPublish(publish('elsewhere'), limits).allowed).toBe(false);
    expect(decideStoredWillPublish(publish(topics.status(OWN), { qos: 0 }), limits).allowed).toBe(false);
  });
});

describe('decideSubscribe: device', () => {
  it.each([
    topics.syncAck(OWN),
    topics.configFilter(OWN),
    `devices/${OWN}/config/+`,
    topics.config(OWN, 'interval'),
    topics.commandsFilter(OWN),
    `devices/${OWN}/commands/+`,
    `devices/${OWN}/commands/+/result`,
  ])('may subscribe to %s, granted QoS 1', (filter) => {
    expect(decideSubscribe(device, filter)).toEqual({ allowed: true, qos: 1 });
  });

  it.each([
    topics.syncAck(OTHER),
    topics.configFilter(OTHER),
    'devices/+/sync/ack',
    'devices/+/config/#',
    `devices/${OWN}/#`,
    `devices/${OWN}/+/ack`,
    `devices/${OWN}/telemetry`,
    'devices/#',
    '#',
    '+/+/+',
    'sensors/+/+',
  ])('may not subscribe to %s', (filter) => {
    const decision = decideSubscribe(device, filter);
    expect(decision.allowed).toBe(false);
    if (!decision.allowed) expect(decision.reason).toContain(`not to '${filter}'`);
  });

  it('names the filters a device may use', () => {
    const decision = decideSubscribe(device, topics.syncAck(OTHER));
    expect(decision).toEqual({
      allowed: false,
      reason: `device '${OWN}' may subscribe only within devices/${OWN}/sync/ack, devices/${OWN}/config/#, devices/${OWN}/commands/#, not to 'devices/${OTHER}/sync/ack'`,
    });
  });
});

describe('decideSubscribe: service, observer and everyone', () => {
  it.each([bridge, explorer])('$role may subscribe anywhere under devices/', (identity) => {
    for (const filter of ['devices/#', 'devices/+/telemetry', topics.syncAck(OWN), 'devices/+/commands/+/result']) {
      expect(decideSubscribe(identity, filter)).toEqual({ allowed: true, qos: 1 });
    }
  });

  it.each([bridge, explorer])('$role may not subscribe outside devices/', (identity) => {
    for (const filter of ['#', '+/+/telemetry', 'sensors/#', '$SYS/#']) {
      expect(decideSubscribe(identity, filter).allowed).toBe(false);
    }
  });

  it.each([device, bridge, explorer])('$role: $ topics and invalid filters are refused', (identity) => {
    expect(decideSubscribe(identity, '$SYS/#')).toEqual({
      allowed: false,
      reason: "'$SYS/#': topics starting with '$' are reserved for the broker",
    });
    expect(decideSubscribe(identity, 'devices/#/x')).toEqual({
      allowed: false,
      reason: "'devices/#/x' is not a valid MQTT topic filter",
    });
  });
});

describe('decideDelivery', () => {
  it('a device receives only its own bridge-to-device topics', () => {
    expect(decideDelivery(device, topics.syncAck(OWN)).allowed).toBe(true);
    expect(decideDelivery(device, topics.config(OWN, 'interval')).allowed).toBe(true);
    expect(decideDelivery(device, topics.command(OWN, 'c1')).allowed).toBe(true);
    expect(decideDelivery(device, topics.syncAck(OTHER))).toEqual({
      allowed: false,
      reason: `device '${OWN}' may not receive 'devices/${OTHER}/sync/ack'`,
    });
    expect(decideDelivery(device, topics.telemetry(OWN)).allowed).toBe(false);
  });

  it('services and observers receive everything under devices/ and nothing else', () => {
    for (const identity of [bridge, explorer]) {
      expect(decideDelivery(identity, topics.telemetry(OTHER)).allowed).toBe(true);
      expect(decideDelivery(identity, '$SYS/x/heartbeat').allowed).toBe(false);
      expect(decideDelivery(identity, 'sensors/s1/t').allowed).toBe(false);
    }
  });
});
