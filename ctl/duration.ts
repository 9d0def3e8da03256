/** Durations on the command line: 90s, 10m, 2h, 7d, or plain milliseconds (pure). */
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(text: string): number | null {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(text.trim());
  if (match === null) return null;
  const value = Number(match[1]) * (UNITS[match[2] ?? 'ms'] ?? 1);
  return Number.isSafeInteger(value) && value > 0 ? value : null;
}
