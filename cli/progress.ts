/** A one-line progress bar on stderr when it is a terminal; silent otherwise or when `quiet`. */
export function progressBar(label: string, total: number, quiet: boolean): { tick(done: number): void; end(): void } {
  const show = !quiet && process.stderr.isTTY;
  const width = 30;
  let last = -1;
  return {
    tick(done) {
      if (!show) return;
      const pct = Math.floor((100 * done) / total);
      if (pct === last) return;
      last = pct;
      const fill = Math.round((width * done) / total);
      process.stderr.write(`\r${label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${done}/${total}`);
    },
    end() {
      if (show) process.stderr.write('\n');
    },
  };
}
