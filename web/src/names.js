// Names that arrive from a peer are only ever text: strip what could disguise them.

/** Controls, separators and every format character (\p{Cf}: bidi overrides, zero-width ones). */
const UNSAFE = /[\p{Cc}\p{Cf}\\:*?"<>|]/gu;

/**
 * One path segment: no control or format characters, no separators, never "." or "..".
 * @param {unknown} segment
 * @param {string} [fallback]
 */
export function safeSegment(segment, fallback = 'file') {
  const clean = String(segment ?? '').replace(UNSAFE, '').replace(/\//g, '_').trim().slice(0, 200);
  return clean && clean !== '.' && clean !== '..' ? clean : fallback;
}

/**
 * A relative path from a peer: each segment made safe, empty ones dropped, at most 32 deep.
 * @param {unknown} path
 */
export function safePath(path) {
  const segments = String(path ?? '').split('/').filter((s) => s !== '' && s !== '.').slice(-32);
  return segments.length ? segments.map((s) => safeSegment(s)).join('/') : 'file';
}

/** A display name from a peer. @param {unknown} name */
export function safeName(name) {
  return String(name ?? '').replace(/[\p{Cc}\p{Cf}]/gu, '').trim().slice(0, 64) || 'Someone';
}
