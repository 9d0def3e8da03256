import { describe, expect, it } from 'vitest';
import { nameBasedId, newId } from '../../common/ids.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('ids', () => {
  it('makes random v4 UUIDs', () => {
    const a = newId();
    expect(a).toMatch(UUID);
    expect(a[14]).toBe('4');
    expect(newId()).not.toBe(a);
  });

  it('makes stable name-based UUIDs that differ by namespace and name', () => {
    const a = nameBasedId('device-1', 's1/temperature/1700000000000');
    expect(a).toMatch(UUID);
    expect(a[14]).toBe('5');
    expect(nameBasedId('device-1', 's1/temperature/1700000000000')).toBe(a);
    expect(nameBasedId('device-2', 's1/temperature/1700000000000')).not.toBe(a);
    expect(nameBasedId('device-1', 's1/temperature/1700000000001')).not.toBe(a);
  });
});
