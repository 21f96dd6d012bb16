// A streaming ZIP writer (stored, no compression) for folders and several files saved as one
// download: each entry's header, then its bytes as they arrive, then a data descriptor; the
// central directory at the end. ZIP64 records throughout, so no entry or archive size is capped.
import { utf8 } from './bytes.js';

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/**
 * @param {number} crc
 * @param {Uint8Array} bytes
 */
function crc32(crc, bytes) {
  let c = ~crc;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * @typedef {object} RecordWriter
 * @property {(v: number) => RecordWriter} u16
 * @property {(v: number) => RecordWriter} u32
 * @property {(v: number) => RecordWriter} u64
 * @property {(b: Uint8Array) => RecordWriter} bytes
 */

/**
 * Little-endian record builder.
 * @param {number} size
 * @param {(w: RecordWriter) => unknown} fill
 */
function record(size, fill) {
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  let at = 0;
  /** @type {RecordWriter} */
  const w = {
    u16: (v) => { view.setUint16(at, v, true); at += 2; return w; },
    u32: (v) => { view.setUint32(at, v >>> 0, true); at += 4; return w; },
    u64: (v) => { view.setBigUint64(at, BigInt(v), true); at += 8; return w; },
    bytes: (b) => { bytes.set(b, at); at += b.length; return w; },
  };
  fill(w);
  return bytes;
}

const UTF8_NAMES = 0x0800;
const DESCRIPTOR = 0x0008;
const ZIP64_VERSION = 45;

/** @typedef {{name: Uint8Array, offset: number, size: number, crc: number}} Entry */

/** Feeds an archive to `write(bytes)` (which may return a promise: it is awaited). */
export class ZipWriter {
  /** @param {(bytes: Uint8Array) => unknown} write */
  constructor(write) {
    this.write = write;
    this.offset = 0;
    /** @type {Entry[]} */
    this.entries = [];
    /** The file being written, from begin() to end(). @type {Entry | null} */
    this.current = null;
  }

  /** @returns {Entry} */
  open() {
    if (!this.current) throw new Error('no file begun');
    return this.current;
  }

  /** @param {Uint8Array} bytes */
  async emit(bytes) {
    this.offset += bytes.length;
    await this.write(bytes);
  }

  /** @param {string} path */
  async begin(path) {
    const name = utf8(path);
    this.current = { name, offset: this.offset, size: 0, crc: 0 };
    const extra = record(20, (w) => w.u16(1).u16(16).u64(0).u64(0));
    await this.emit(record(30 + name.length + extra.length, (w) => w
      .u32(0x04034b50).u16(ZIP64_VERSION).u16(UTF8_NAMES | DESCRIPTOR).u16(0).u16(0).u16(0x21)
      .u32(0).u32(0xffffffff).u32(0xffffffff).u16(name.length).u16(extra.length)
      .bytes(name).bytes(extra)));
  }

  /** @param {Uint8Array} bytes */
  async data(bytes) {
    const e = this.open();
    e.crc = crc32(e.crc, bytes);
    e.size += bytes.length;
    await this.emit(bytes);
  }

  async end() {
    const e = this.open();
    await this.emit(record(24, (w) => w.u32(0x08074b50).u32(e.crc).u64(e.size).u64(e.size)));
    this.entries.push(e);
    this.current = null;
  }

  async finish() {
    const start = this.offset;
    for (const e of this.entries) {
      const extra = record(28, (w) => w.u16(1).u16(24).u64(e.size).u64(e.size).u64(e.offset));
      await this.emit(record(46 + e.name.length + extra.length, (w) => w
        .u32(0x02014b50).u16(ZIP64_VERSION).u16(ZIP64_VERSION).u16(UTF8_NAMES | DESCRIPTOR).u16(0)
        .u16(0).u16(0x21).u32(e.crc).u32(0xffffffff).u32(0xffffffff).u16(e.name.length)
        .u16(extra.length).u16(0).u16(0).u16(0).u32(0).u32(0xffffffff).bytes(e.name).bytes(extra)));
    }
    const size = this.offset - start;
    const end64 = this.offset;
    const n = this.entries.length;
    await this.emit(record(56, (w) => w.u32(0x06064b50).u64(44).u16(ZIP64_VERSION).u16(ZIP64_VERSION)
      .u32(0).u32(0).u64(n).u64(n).u64(size).u64(start)));
    await this.emit(record(20, (w) => w.u32(0x07064b50).u32(0).u64(end64).u32(1)));
    await this.emit(record(22, (w) => w.u32(0x06054b50).u16(0).u16(0).u16(0xffff).u16(0xffff)
      .u32(0xffffffff).u32(0xffffffff).u16(0)));
  }
}
