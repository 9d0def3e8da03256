/** The ctl program: `npm run ctl -- <command>` (see ./cli.ts and ctl/README.md). */
import { runCtl } from './cli.js';

const code = await runCtl(process.argv.slice(2), process.env, {
  log: (text) => process.stdout.write(`${text}\n`),
  error: (text) => process.stderr.write(`${text}\n`),
});
process.exitCode = code;
