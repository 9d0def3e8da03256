/** MQTT 3.1.1 topic-filter algebra (pure). */

/** '#' only as the whole last level, '+' only as a whole level, no empty filter. */
export function isValidTopicFilter(filter: string): boolean {
  if (filter.length === 0) return false;
  const levels = filter.split('/');
  return levels.every((level, index) => {
    if (level.includes('#')) return level === '#' && index === levels.length - 1;
    if (level.includes('+')) return level === '+';
    return true;
  });
}

/**
 * True when every topic the `requested` filter can match is also matched by `allowed`.
 * '#' in `allowed` covers the rest (including the parent level itself, as in MQTT); '+' covers one
 * level, including a requested '+'; a literal covers only the same literal. A requested '#' or '+'
 * where `allowed` has a literal is not covered. An invalid requested filter is never covered.
 */
export function filterCoveredBy(requested: string, allowed: string): boolean {
  if (!isValidTopicFilter(requested) || !isValidTopicFilter(allowed)) return false;
  const requestedLevels = requested.split('/');
  const allowedLevels = allowed.split('/');
  for (let index = 0; index < allowedLevels.length; index++) {
    const allowedLevel = allowedLevels[index];
    const requestedLevel = requestedLevels[index];
    if (allowedLevel === '#') return true;
    if (requestedLevel === undefined || requestedLevel === '#') return false;
    if (allowedLevel === '+') continue;
    if (requestedLevel !== allowedLevel) return false;
  }
  return requestedLevels.length === allowedLevels.length;
}

/** True when the concrete `topic` is matched by `filter` ('$' topics are not matched by a leading wildcard). */
export function topicMatchesFilter(topic: string, filter: string): boolean {
  if (!isValidTopicFilter(filter) || topic.includes('+') || topic.includes('#')) return false;
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  return filterCoveredBy(topic, filter);
}
