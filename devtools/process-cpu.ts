/**
 * CPU time of the benches' processes, from Linux /proc (USER_HZ ticks, user + system): the
 * broker and bridge children of the bench, PostgreSQL's postmaster with all its backends, and the
 * whole machine's busy share. Used by scripts/bench-drain.ts (CPU µs per row) and
 * scripts/bench-fairness.ts (how busy the machine was during the flood). On another OS the
 * numbers are 0.
 */
import { readdirSync, readFileSync } from 'node:fs';

const USER_HZ = 100;

interface ProcEntry {
  pid: number;
  ppid: number;
  cmdline: string;
}

function processes(): ProcEntry[] {
  const entries: ProcEntry[] = [];
  let names: string[] = [];
  try {
    names = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return entries;
  }
  for (const name of names) {
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      entries.push({ pid: Number(name), ppid, cmdline: readFileSync(`/proc/${name}/cmdline`, 'utf8') });
    } catch {
      // gone meanwhile
    }
  }
  return entries;
}

/** Children of `parentPid` whose command line contains `fragment` (e.g. 'bridge/main.ts'). */
export function childProcesses(parentPid: number, fragment: string): number[] {
  return processes()
    .filter((entry) => entry.ppid === parentPid && entry.cmdline.includes(fragment))
    .map((entry) => entry.pid);
}

/** Every process whose command line contains `fragment`, and all their descendants (PostgreSQL: its data directory). */
export function processTreeOf(fragment: string): number[] {
  const all = processes();
  const tree = new Set(all.filter((entry) => entry.cmdline.includes(fragment)).map((entry) => entry.pid));
  for (let grown = true; grown; ) {
    grown = false;
    for (const entry of all) {
      if (tree.has(entry.ppid) && !tree.has(entry.pid)) {
        tree.add(entry.pid);
        grown = true;
      }
    }
  }
  return [...tree];
}

/** CPU seconds (user + system) the processes used so far. */
export function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone meanwhile
    }
  }
  return ticks / USER_HZ;
}

/** The machine's busy and total CPU ticks so far (all cores), from /proc/stat. */
export function machineTicks(): { busy: number; total: number } {
  try {
    const fields = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
    const total = fields.reduce((sum, value) => sum + value, 0);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0); // idle + iowait
    return { busy: total - idle, total };
  } catch {
    return { busy: 0, total: 0 };
  }
}
