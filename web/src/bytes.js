// Small byte helpers shared by the crypto and transfer modules (no cryptography here).

const encoder = new TextEncoder();

/** UTF-8 encode a string. @param {string} text */
export const utf8 = (text) => encoder.encode(text);

/**
 * Standard base64 (with padding) of a Uint8Array: how public handshake values travel in JSON.
 * @param {Uint8Array} bytes
 */
export function toBase64(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/**
 * Decode base64 into bytes; throws on anything that is not base64 or not `length` long.
 * @param {unknown} text
 * @param {number} [length]
 */
export function fromBase64(text, length) {
  if (typeof text !== 'string') throw new Error('expected a base64 string');
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  if (length !== undefined && out.length !== length) {
    throw new Error(`expected ${length} bytes, got ${out.length}`);
  }
  return out;
}

/** @param {Uint8Array} bytes */
export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** @param {Uint8Array[]} parts */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * Each field prefixed with its 4-byte big-endian length, so no two field lists encode alike.
 * @param {Uint8Array[]} fields
 */
export function lengthPrefixed(fields) {
  const parts = [];
  for (const field of fields) {
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, field.length);
    parts.push(len, field);
  }
  return concat(...parts);
}

/** @param {number} length */
export function randomBytes(length) {
  return crypto.getRandomValues(new Uint8Array(length));
}
