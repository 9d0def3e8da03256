import { describe, expect, it } from 'vitest';
import { filterCoveredBy, isValidTopicFilter, topicMatchesFilter } from '../../broker/topic-filter.js';

describe('isValidTopicFilter', () => {
  it.each(['#', '+', 'a/b', 'a/+/c', 'a/#', '+/+/#', 'a//b'])('accepts %s', (filter) => {
    expect(isValidTopicFilter(filter)).toBe(true);
  });
  it.each(['', 'a/#/b', 'a#', 'a/b#', 'a+/b', 'a/+b', '#/a'])('rejects %j', (filter) => {
    expect(isValidTopicFilter(filter)).toBe(false);
  });
});

describe('filterCoveredBy', () => {
  const allowed = 'devices/d1/config/#';

  it.each([
    ['devices/d1/config/#', allowed],
    ['devices/d1/config/+', allowed],
    ['devices/d1/config/interval', allowed],
    ['devices/d1/config/a/b/c', allowed],
    ['devices/d1/config', allowed], // '#' also matches the parent level
    ['devices/d1/sync/ack', 'devices/d1/sync/ack'],
    ['devices/+/telemetry', 'devices/+/telemetry'],
    ['devices/d1/telemetry', 'devices/+/telemetry'],
    ['devices/+/telemetry', 'devices/#'],
    ['devices/#', 'devices/#'],
    ['devices/+/+/#', 'devices/#'],
    ['anything/at/all', '#'],
    ['#', '#'],
    ['+', '+'],
  ])('%s is covered by %s', (requested, allowedFilter) => {
    expect(filterCoveredBy(requested, allowedFilter)).toBe(true);
  });

  it.each([
    ['devices/#', allowed], // wider than allowed
    ['devices/+/config/#', allowed], // '+' where allowed has a literal
    ['devices/d2/config/#', allowed], // other device
    ['devices/d1/#', allowed],
    ['devices/d1/commands/#', allowed],
    ['#', 'devices/#'],
    ['+/d1/telemetry', 'devices/+/telemetry'],
    ['devices/#', 'devices/+/telemetry'], // '#' where allowed has '+'
    ['devices/+', 'devices/+/telemetry'], // shorter
    ['devices/d1/telemetry/extra', 'devices/+/telemetry'], // longer
    ['devices/d1/sync/ack/x', 'devices/d1/sync/ack'],
    ['devices/d1/sync', 'devices/d1/sync/ack'],
    ['Devices/d1/sync/ack', 'devices/d1/sync/ack'], // topics are case-sensitive
    ['devices/d1/config/#/x', allowed], // invalid requested filter
    ['devices/d1/conf#', allowed],
  ])('%s is NOT covered by %s', (requested, allowedFilter) => {
    expect(filterCoveredBy(requested, allowedFilter)).toBe(false);
  });
});

describe('topicMatchesFilter', () => {
  it('matches concrete topics like an MQTT broker', () => {
    expect(topicMatchesFilter('devices/d1/telemetry', 'devices/+/telemetry')).toBe(true);
    expect(topicMatchesFilter('devices/d1/config/x', 'devices/d1/config/#')).toBe(true);
    expect(topicMatchesFilter('devices/d1/status', 'devices/+/telemetry')).toBe(false);
    expect(topicMatchesFilter('other/d1', 'devices/#')).toBe(false);
  });

  it('does not match $ topics with a leading wildcard', () => {
    expect(topicMatchesFilter('$SYS/broker/heartbeat', '#')).toBe(false);
    expect(topicMatchesFilter('$SYS/broker/heartbeat', '+/broker/heartbeat')).toBe(false);
    expect(topicMatchesFilter('$SYS/broker/heartbeat', '$SYS/#')).toBe(true);
  });

  it('never treats a topic containing wildcards as concrete', () => {
    expect(topicMatchesFilter('devices/+/telemetry', 'devices/#')).toBe(false);
    expect(topicMatchesFilter('devices/#', 'devices/#')).toBe(false);
  });
});
