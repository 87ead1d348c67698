import { readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** User + system CPU seconds in a /proc stat file (a process's, or one thread's); `children`: of its children waited for. */
function statCpuSeconds(path: string, children = false): number {
  const stat = readFileSync(path, 'utf8');
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const at = children ? 13 : 11; // utime stime, or cutime cstime
  return (Number(fields[at]) + Number(fields[at + 1])) / TICKS_PER_SECOND;
}

/** User + system CPU seconds a process has used so far, all its threads, ended ones included (Linux /proc). */
export const cpuSeconds = (pid: number): number => statCpuSeconds(`/proc/${pid}/stat`);

/** The same for its main thread alone (where a Node process runs its JavaScript and I/O). */
export const mainThreadCpuSeconds = (pid: number): number => statCpuSeconds(`/proc/${pid}/task/${pid}/stat`);

/** User + system CPU seconds of this process's children that have exited and been reaped (Node reaps each as it exits). */
export const childrenCpuSeconds = (): number => statCpuSeconds('/proc/self/stat', true);

/** The machine's CPU time so far, all cores, in ticks: idle (iowait included) and in all (/proc/stat). */
export function machineTicks(): { idle: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal; guest time is already counted in user.
  const ticks = fields.slice(0, 8);
  return { idle: ticks[3]! + ticks[4]!, total: ticks.reduce((a, b) => a + b, 0) };
}

/** A `VmXxx: N kB` line of /proc/<pid>/status, in bytes. */
function statusBytes(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${field} for process ${pid}`);
  return Number(m[1]) * 1024;
}

/** Peak resident memory of a live process so far (VmHWM), bytes. */
export const peakRssBytes = (pid: number): number => statusBytes(pid, 'VmHWM');

/** Resident memory of a live process now (VmRSS), bytes. */
export const rssBytes = (pid: number): number => statusBytes(pid, 'VmRSS');
