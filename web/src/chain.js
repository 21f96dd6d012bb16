// The chain hash that closes every received file (docs/webapp.md, "Chain hash"): SHA-256 of each
// 65,515-byte block, chained, so both sides compute it while the bytes stream, with native
// WebCrypto, and a resume can compare the hashes of a prefix without holding the file.
import { concat, toHex, utf8 } from './bytes.js';

const SEED = utf8('tallow/v1 file');
const digest = async (/** @type {BufferSource} */ data) => new Uint8Array(await crypto.subtle.digest('SHA-256', data));

export class ChainHash {
  constructor() {
    this.bytes = 0;
    this.tail = digest(SEED);
  }

  /**
   * Add the next block. WebCrypto copies `block` at once, so the caller may reuse it.
   * @param {Uint8Array<ArrayBuffer>} block
   */
  update(block) {
    this.bytes += block.length;
    const blockDigest = digest(block);
    this.tail = Promise.all([this.tail, blockDigest]).then(([h, d]) => digest(concat(h, d)));
    this.tail.catch(() => {}); // awaited by hex()
  }

  /** Hex of the chain over everything added so far. */
  async hex() {
    return toHex(await this.tail);
  }
}
