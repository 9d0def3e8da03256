import { chmodSync, statSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { databaseFilePath, openEdgeDatabase } from '../../edge/store/database.js';
import { tempDatabase } from '../helpers/edge-temp-db.js';
import { registerCleanup } from '../helpers/teardown.js';
import { SerialQueue } from '../../edge/store/serial-queue.js';

describe('databaseFilePath', () => {
  it('understands relative, absolute and in-memory file: URLs', () => {
    expect(databaseFilePath('file:.data/edge-1.db')).toBe(resolve('.data/edge-1.db'));
    expect(databaseFilePath('file:/var/lib/edge.db')).toBe('/var/lib/edge.db');
    expect(databaseFilePath('file:///var/lib/edge.db')).toBe('/var/lib/edge.db');
    expect(databaseFilePath('file://localhost/var/lib/edge.db')).toBe('/var/lib/edge.db');
    expect(databaseFilePath('file:/tmp/with%20space.db?mode=rwc')).toBe('/tmp/with space.db');
    expect(databaseFilePath('file::memory:')).toBeNull();
  });

  it('refuses anything but a local file', () => {
    expect(() => databaseFilePath('libsql://db.example.com')).toThrow(
      "the edge database must be a local file: URL (e.g. file:.data/edge.db), got 'libsql://db.example.com'",
    );
    expect(() => databaseFilePath('file://db.example.com/x.db')).toThrow(/names a host/);
  });
});

describe('openEdgeDatabase file permissions', () => {
  const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);

  it('creates the database and its -wal and -shm files readable and writable by the owner only', async () => {
    const database = tempDatabase('edge-mode');
    const db = await openEdgeDatabase(database.url);
    registerCleanup(() => db.close());
    await db.exclusive((client) => client.execute('CREATE TABLE t (x)')); // writes the WAL
    expect([database.path, `${database.path}-wal`, `${database.path}-shm`].map(mode)).toEqual(['600', '600', '600']);
  });

  it('tightens a database file left world-readable by an earlier version', async () => {
    const database = tempDatabase('edge-mode');
    writeFileSync(database.path, '');
    chmodSync(database.path, 0o644);
    const db = await openEdgeDatabase(database.url);
    registerCleanup(() => db.close());
    expect(mode(database.path)).toBe('600');
  });
});

describe('SerialQueue', () => {
  it('runs work one at a time in call order, and a failure does not stop the queue', async () => {
    const queue = new SerialQueue();
    const events: string[] = [];
    const step = (name: string, fail = false) =>
      queue.run(async () => {
        events.push(`${name}:start`);
        await new Promise((resolve) => setImmediate(resolve));
        events.push(`${name}:end`);
        if (fail) throw new Error(`${name} failed`);
        return name;
      });
    const results = await Promise.allSettled([step('a'), step('b', true), step('c')]);
    expect(events).toEqual(['a:start', 'a:end', 'b:start', 'b:end', 'c:start', 'c:end']);
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(queue.size).toBe(0);
  });
});
