/** `--set MRL_X=value` arguments as service settings (MRL_… variables) for a benchmark's mesh. */
export function parseSettings(args: string[]): Record<string, string> {
  return Object.fromEntries(
    args.map((kv) => {
      const m = /^(MRL_[A-Z0-9_]+)=(.*)$/.exec(kv);
      if (!m) throw new Error(`--set takes MRL_NAME=value, got ${kv}`);
      return [m[1]!, m[2]!];
    }),
  );
}
