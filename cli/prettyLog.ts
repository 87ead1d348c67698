/** One JSON log line as a short readable line: `time level msg key=value …`; other text as it is. */
export function prettyLogLine(line: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (typeof entry !== 'object' || entry === null || typeof entry.msg !== 'string') return line;
  const { time, level, msg, service: _service, ...rest } = entry;
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return [String(time ?? '').slice(11, 23), String(level ?? '').padEnd(5), msg, ...fields].join(' ');
}
