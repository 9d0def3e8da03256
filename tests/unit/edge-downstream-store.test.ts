/**
 * G6: command_queue and device_config as the edge stores them (edge/store/downstream-store.ts):
 * a command id is inserted once, transitions only move forward (guarded in the UPDATE), a command
 * left executing fails at start, reports stay until confirmed, and a config version never goes down.
 * Also through the worker-thread store, which forwards the same operations.
 */
import { describe, expect, it } from 'vitest';
import { openEdgeStores } from '../../edge/store/edge-stores.js';
import type { DownstreamStore, NewCommand } from '../../edge/store/downstream-store.js';
import { openWorkerEdgeStores } from '../../edge/store/worker-store.js';
import { tempDatabase } from '../helpers/edge-temp-db.js';
import { TEST_DEVICE_ID } from '../helpers/records.js';
import { registerCleanup } from '../helpers/teardown.js';

const command = (commandId: string, overrides: Partial<NewCommand> = {}): NewCommand => ({
  commandId,
  type: 'ping',
  payload: '{}',
  createdAt: '2026-11-29T10:00:00.000Z',
  expiresAtMs: null,
  status: 'delivered',
  receivedAtMs: 1000,
  error: null,
  report: 'delivered',
  ...overrides,
});

for (const placement of ['event-loop', 'worker'] as const) {
  async function open(): Promise<DownstreamStore> {
    const database = tempDatabase(`downstream-${placement}`);
    const options = { url: database.url, deviceId: TEST_DEVICE_ID };
    const stores = placement === 'worker' ? await openWorkerEdgeStores(options) : await openEdgeStores(options);
    registerCleanup(() => stores.telemetry.close());
    return stores.downstream;
  }

  describe(`downstream store (${placement})`, () => {
    it('inserts a command id once and moves it only forward', async () => {
      const store = await open();
      expect(await store.insertCommand(command('c1'))).toBe(true);
      expect(await store.insertCommand(command('c1', { type: 'other' }))).toBe(false);
      expect(await store.getCommand('c1')).toMatchObject({
        type: 'ping',
        status: 'delivered',
        reportStatus: 'delivered',
        reportConfirmed: false,
      });
      const start = {
        from: ['delivered'] as const,
        to: 'executing' as const,
        atMs: 2000,
        report: 'executing' as const,
      };
      expect(await store.transitionCommand('c1', start)).toBe(true);
      expect(await store.transitionCommand('c1', start)).toBe(false);
      expect(
        await store.transitionCommand('c1', { from: ['delivered'], to: 'canceled', atMs: 2500, report: null }),
      ).toBe(false);
      expect(
        await store.transitionCommand('c1', {
          from: ['executing'],
          to: 'executed',
          atMs: 3000,
          report: 'executed',
          result: '{"pong":true}',
        }),
      ).toBe(true);
      expect(await store.getCommand('c1')).toMatchObject({
        status: 'executed',
        startedAtMs: 2000,
        finishedAtMs: 3000,
        result: '{"pong":true}',
        reportStatus: 'executed',
        reportConfirmed: false,
      });
      expect((await store.unconfirmedCommandReports()).map((row) => row.commandId)).toEqual(['c1']);
      expect(await store.confirmCommandReport('c1', 'delivered')).toBe(false);
      expect(await store.confirmCommandReport('c1', 'executed')).toBe(true);
      expect(await store.unconfirmedCommandReports()).toEqual([]);
      expect(await store.countUnconfirmedReports()).toEqual({ commands: 0, config: 0 });
    });

    it('fails every command left executing, with the reason and a report to send', async () => {
      const store = await open();
      await store.insertCommand(command('running'));
      await store.insertCommand(command('waiting'));
      await store.transitionCommand('running', {
        from: ['delivered'],
        to: 'executing',
        atMs: 2000,
        report: 'executing',
      });
      expect(await store.failInterruptedCommands(5000, 'agent restarted')).toEqual(['running']);
      expect(await store.getCommand('running')).toMatchObject({
        status: 'failed',
        error: 'agent restarted',
        reportStatus: 'failed',
        reportConfirmed: false,
      });
      expect(await store.getCommand('waiting')).toMatchObject({ status: 'delivered' });
      expect((await store.listCommands('delivered')).map((row) => row.commandId)).toEqual(['waiting']);
    });

    it('keeps the newest config version: an older outcome changes nothing, a rejected one keeps the value in effect', async () => {
      const store = await open();
      await store.recordConfigOutcome({ key: 'k', version: 3, status: 'applied', value: '"three"', atMs: 1 });
      await store.recordConfigOutcome({ key: 'k', version: 2, status: 'applied', value: '"two"', atMs: 2 });
      expect(await store.getConfig('k')).toMatchObject({ value: '"three"', version: 3, appliedVersion: 3 });
      await store.recordConfigOutcome({ key: 'k', version: 4, status: 'rejected', error: 'bad', atMs: 3 });
      expect(await store.getConfig('k')).toMatchObject({
        value: '"three"',
        version: 4,
        appliedVersion: 3,
        reportStatus: 'rejected',
        reportError: 'bad',
        reportConfirmed: false,
      });
      expect(await store.confirmConfigReport('k', 3)).toBe(false);
      expect(await store.confirmConfigReport('k', 4)).toBe(true);
      await store.recordConfigOutcome({ key: 'fresh', version: 1, status: 'rejected', error: 'bad', atMs: 4 });
      expect(await store.getConfig('fresh')).toMatchObject({ value: null, appliedVersion: null });
      expect((await store.unconfirmedConfigReports()).map((row) => row.key)).toEqual(['fresh']);
      expect(await store.deleteConfig('k')).toBe(true);
      expect((await store.listConfigs()).map((row) => row.key)).toEqual(['fresh']);
    });
  });
}
