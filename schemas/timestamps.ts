/**
 * The one rule for a reading's timestamp, applied by the edge to a sensor's `ts`
 * (edge/ingest/reading-normalizer.ts) and by the bridge to a record's `timestamp`
 * (bridge/ingest/telemetry-row.ts): [2000-01-01T00:00:00.000Z, 2100-01-01T00:00:00.000Z).
 *
 * The range is absolute, not relative to any clock: a device without a battery-backed clock boots
 * in 1970 until NTP answers, and refusing every correctly stamped reading until then would lose
 * real data. The bounds still catch unit mistakes (epoch seconds, microseconds) and garbage. The
 * bridge used to accept 1970…9999 while the edge took only 2000…2100, so a device other than this
 * edge agent (or an older one) could store readings no edge would ever send; one rule closes that.
 * JSON Schema's `date-time` format cannot express a range, so the telemetry record schema checks
 * only the form and this module the range (G5: a record out of range is rejected alone).
 */

/** The earliest accepted instant (inclusive): 2000-01-01T00:00:00.000Z. */
export const EARLIEST_READING_TIMESTAMP_MS = Date.UTC(2000, 0, 1);

/** The first instant no longer accepted (exclusive): 2100-01-01T00:00:00.000Z. */
export const LATEST_READING_TIMESTAMP_MS = Date.UTC(2100, 0, 1);

export type TimestampRangeCheck = { ok: true } | { ok: false; tooEarly: boolean; reason: string };

/** Whether epoch milliseconds `ms` (finite) lie in the accepted range, with a reason when not. */
export function checkReadingTimestamp(ms: number): TimestampRangeCheck {
  if (ms < EARLIEST_READING_TIMESTAMP_MS) {
    return { ok: false, tooEarly: true, reason: `is before ${new Date(EARLIEST_READING_TIMESTAMP_MS).toISOString()}` };
  }
  if (ms >= LATEST_READING_TIMESTAMP_MS) {
    return {
      ok: false,
      tooEarly: false,
      reason: `is not before ${new Date(LATEST_READING_TIMESTAMP_MS).toISOString()}`,
    };
  }
  return { ok: true };
}

/** True when `ms` is in the accepted range. */
export function isReadingTimestampInRange(ms: number): boolean {
  return ms >= EARLIEST_READING_TIMESTAMP_MS && ms < LATEST_READING_TIMESTAMP_MS;
}
