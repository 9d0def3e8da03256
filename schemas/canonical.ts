/**
 * One spelling for equal wire values, shared by the edge (duplicate vs correction of a reading)
 * and the bridge (content hash, conflict resolution), so both sides agree on what "the same
 * reading" is.
 */

/** Lowercase, without a urn:uuid: prefix: how the databases return a UUID. */
export function canonicalUuid(id: string): string {
  return id.toLowerCase().replace(/^urn:uuid:/, '');
}

/**
 * JSON with object keys sorted at every level (arrays keep their order), so equal values have
 * one text whatever order their keys arrived in. Builds the text directly: no intermediate
 * object, so a key named __proto__ is kept like any other.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item)).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * Whether objects/arrays nest more than `maxDepth` levels. Level by level, without recursion:
 * a small payload nested thousands of levels deep must be refused before anything recursive
 * (canonicalJson, JSON.stringify) overflows the stack on it.
 */
export function nestedDeeperThan(value: unknown, maxDepth: number): boolean {
  let level: object[] = isContainer(value) ? [value] : [];
  for (let depth = 1; level.length > 0; depth += 1) {
    if (depth > maxDepth) return true;
    level = level.flatMap((container) => Object.values(container).filter(isContainer));
  }
  return false;
}

function isContainer(value: unknown): value is object {
  return value !== null && typeof value === 'object';
}
