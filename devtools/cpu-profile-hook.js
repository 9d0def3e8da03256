// Loaded with NODE_OPTIONS="--import <this file>" (Node.js refuses --cpu-prof there): starts the
// V8 sampling profiler through node:inspector and writes a .cpuprofile into CPU_PROFILE_DIR when
// the process exits (a same-thread inspector session answers synchronously, so this works in an
// 'exit' handler). Open the file in Chrome DevTools or speedscope. Used by scripts/bench-drain.ts.
import { Session } from 'node:inspector';
import process from 'node:process';
import { writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

const dir = process.env.CPU_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.start');
  process.on('exit', () => {
    session.post('Profiler.stop', (error, result) => {
      if (error) return;
      const name = basename(process.argv.at(-1) ?? 'node').replace(/\W+/g, '-');
      writeFileSync(join(dir, `${name}-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
