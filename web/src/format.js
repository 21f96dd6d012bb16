// Human-readable sizes, speeds and durations for the transfer list, and error messages.

/**
 * The message of something thrown: an Error's, or the thing itself as text.
 * @param {unknown} error
 */
export const errorText = (error) => (error instanceof Error ? error.message : String(error));

/** @param {number} n */
export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** @param {number} seconds */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds)) return '';
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/**
 * "12 MB of 50 MB · 25 MB/s · 2 s left" for a running transfer.
 * @param {import('./transfer.js').Transfer} t
 */
export function describeProgress(t, now = performance.now()) {
  const seconds = ((t.finishedAt ?? now) - t.startedAt) / 1000;
  const parts = [`${formatBytes(t.bytes)} of ${formatBytes(t.size)}`];
  if (seconds > 0.2 && t.bytes > 0) {
    const rate = t.bytes / seconds;
    parts.push(`${formatBytes(rate)}/s`);
    if (!t.finished && t.state === 'active') parts.push(`${formatDuration((t.size - t.bytes) / rate)} left`);
  }
  return parts.join(' · ');
}
