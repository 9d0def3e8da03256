/** A fresh folder under os.tmpdir(), removed with everything in it when the test (or, from beforeAll, the file) ends. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { registerCleanup } from './teardown.js';

export function tempDirectory(prefix: string): string {
  const directory = mkdtempSync(join(tmpdir(), `${prefix}-`));
  registerCleanup(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}
