/** A libSQL file in its own directory under os.tmpdir(), removed by cleanup(). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createClient, type Client } from '@libsql/client';

export interface TempDatabase {
  path: string;
  url: string;
  /** an independent connection to the same file, for checking what is committed */
  openReader(): Client;
  cleanup(): void;
}

export function tempDatabase(name = 'edge'): TempDatabase {
  const directory = mkdtempSync(join(tmpdir(), `${name}-`));
  const path = join(directory, `${name}.db`);
  const readers: Client[] = [];
  return {
    path,
    url: `file:${path}`,
    openReader() {
      const reader = createClient({ url: `file:${path}`, concurrency: 1 });
      readers.push(reader);
      return reader;
    },
    cleanup() {
      for (const reader of readers) reader.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
