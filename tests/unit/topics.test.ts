import { describe, expect, it } from 'vitest';
import { isDeviceId, parseDeviceTopic, parseSensorTopic, topics } from '../../schemas/topics.js';

const device = '3f2b8c1e-9d4a-4c7b-8e21-5a6f0b9c2d13';

describe('topic builders and parsers agree', () => {
  it.each([
    [topics.telemetry(device), { deviceId: device, kind: 'telemetry' }],
    [topics.syncAck(device), { deviceId: device, kind: 'sync-ack' }],
    [topics.status(device), { deviceId: device, kind: 'status' }],
    [topics.configReported(device), { deviceId: device, kind: 'config-reported' }],
    [topics.config(device, 'sampling'), { deviceId: device, kind: 'config', subject: 'sampling' }],
    [topics.command(device, 'c1'), { deviceId: device, kind: 'command', subject: 'c1' }],
    [topics.commandResult(device, 'c1'), { deviceId: device, kind: 'command-result', subject: 'c1' }],
  ])('%s', (topic, expected) => {
    expect(parseDeviceTopic(topic)).toEqual(expected);
  });

  it.each([
    'devices',
    `devices/${device}`,
    `devices/${device}/telemetry/extra`,
    `devices/+/telemetry`,
    `devices/#`,
    `sensors/${device}/telemetry`,
    `devices/${device}/sync`,
    `devices/${device}/commands/c1/other`,
  ])('rejects %s', (topic) => {
    expect(parseDeviceTopic(topic)).toBeNull();
  });

  it('parses sensor topics and refuses malformed ones', () => {
    expect(parseSensorTopic('sensors/t-1/temperature')).toEqual({ sensorId: 't-1', dataType: 'temperature' });
    expect(parseSensorTopic('sensors/t 1/temperature')).toBeNull();
    expect(parseSensorTopic('sensors/t1')).toBeNull();
    expect(parseSensorTopic('sensors/t1/temperature/error')).toBeNull();
    expect(parseSensorTopic('other/t1/temperature')).toBeNull();
    expect(parseSensorTopic(`sensors/${'x'.repeat(65)}/temperature`)).toBeNull();
  });

  it('recognises device ids', () => {
    expect(isDeviceId(device)).toBe(true);
    expect(isDeviceId(device.toUpperCase())).toBe(false);
    expect(isDeviceId('bridge')).toBe(false);
  });
});
