/**
 * A small filesystem for full-disk tests: a tmpfs of the given size mounted on a fresh temporary
 * folder (needs root, which the development machines and CI have). Where mounting is not
 * permitted, `mounted` is false and the folder is an ordinary one: the caller then caps the
 * database with EDGE_MAX_DB_BYTES instead and says so. Unmounted and removed at teardown.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { registerCleanup } from './teardown.js';

export interface SmallFilesystem {
  dir: string;
  mounted: boolean;
  bytes: number;
}

export function smallFilesystem(mebibytes: number): SmallFilesystem {
  const dir = mkdtempSync(join(tmpdir(), 'edge-small-fs-'));
  let mounted = false;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mebibytes}m,mode=0700`, 'tmpfs', dir], { stdio: 'pipe' });
    mounted = true;
  } catch {
    mounted = false;
  }
  registerCleanup(() => {
    if (mounted) execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, mounted, bytes: mebibytes * 1024 * 1024 };
}
