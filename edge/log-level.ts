/**
 * G6 (agent.logLevel): a log level that can change while the agent runs. In pino 10 a child
 * logger takes its parent's level when it is created and keeps its own afterwards (lib/proto.js
 * child: `options.level || this.level`), so setting the agent logger's level would not reach the
 * component loggers (uplink, listener, store guard…) made from it at start. This keeps every
 * logger derived from the agent's logger, at any depth, and sets the level on all of them.
 */
import type { Logger } from '../common/logger.js';

export type LogLevelSetter = (level: string) => void;

/** Patches `logger.child` (and its children's) so that the returned setter reaches all of them. */
export function liveLogLevel(logger: Logger): LogLevelSetter {
  const family = new Set<WeakRef<Logger>>();
  const adopt = (member: Logger): Logger => {
    family.add(new WeakRef(member));
    const child = member.child.bind(member) as unknown as (...args: unknown[]) => Logger;
    (member as unknown as { child: (...args: unknown[]) => Logger }).child = (...args) => adopt(child(...args));
    return member;
  };
  adopt(logger);
  return (level) => {
    for (const reference of family) {
      const member = reference.deref();
      if (member === undefined) family.delete(reference);
      else member.level = level;
    }
  };
}
