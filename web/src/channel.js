// AES-256-GCM framing on one RTCDataChannel (key schedule and nonces: docs/webapp.md).
//
// Every message is one binary frame: AES-GCM(key of this direction, nonce = 4 zero bytes ||
// 64-bit big-endian message counter, plaintext, associated data naming the channel and the
// direction). Counters start at 0 in each direction, belong to the session keys (a session is
// started once, on one channel) and are never sent: the channel is ordered and reliable, so a
// dropped, replayed or reordered frame fails authentication. Plaintext = 1 type byte, then JSON
// (control) or a 4-byte offer id + data. A handler may return a promise: later frames wait for it.
import { fromBase64, toBase64, utf8 } from './bytes.js';

const CONTROL = 1;
const CHUNK = 2;
const TAG_BYTES = 16;
/** Whole frames stay at 64 KiB, well under Chromium's 256 KiB data-channel message cap. */
export const MAX_FRAME = 64 * 1024;
export const CHUNK_BYTES = MAX_FRAME - TAG_BYTES - 5;
/**
 * Back-pressure: stop queueing above HIGH, resume when Chromium's buffer falls below LOW. Small,
 * so a cancel (queued behind what is buffered) reaches the peer promptly; tuned by measurement.
 */
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;
/** Frames the peer may send before our side of the handshake finished (confirm, name, offers). */
export const MAX_EARLY_FRAMES = 64;

const decoder = new TextDecoder();

/** The one data channel of a peer session: its label, and the direction tags in the AAD. */
export const CHANNEL_LABEL = 'tallow';
const DIRECTION = { initiator: 'i2r', responder: 'r2i' };

/**
 * Associated data of every frame: the channel's label and SCTP stream id, and the direction, so a
 * frame is only ever accepted on the channel and in the direction it was sealed for.
 * @param {string} label
 * @param {number | null} streamId
 * @param {string} direction
 */
export function associatedData(label, streamId, direction) {
  return utf8(`tallow/v1 frame ${label} ${streamId} ${direction}`);
}

/** @param {number} counter */
function nonce(counter) {
  const iv = new Uint8Array(12);
  new DataView(iv.buffer).setBigUint64(4, BigInt(counter));
  return iv;
}

/**
 * Frames arriving before the handshake finished are held until `start(session)`; then the first
 * frame each way is the key confirmation, and `confirmed` resolves once the peer's tag verifies.
 */
export class SecureChannel {
  /**
   * `recordFirstFrame` (tests only) receives the bytes of the first frame this side sends.
   * @param {RTCDataChannel} dc
   * @param {{onControl: (message: import('./signaling.js').WireMessage) => unknown,
   *   onChunk: (id: number, data: Uint8Array<ArrayBuffer>) => unknown,
   *   onFailure: (reason: string) => void}} handlers
   * @param {((frame: Uint8Array) => unknown) | null} [recordFirstFrame]
   */
  constructor(dc, { onControl, onChunk, onFailure }, recordFirstFrame = null) {
    this.dc = dc;
    this.recordFirstFrame = recordFirstFrame;
    this.handlers = { onControl, onChunk, onFailure };
    /** @type {import('./handshake.js').Session | null} */
    this.session = null;
    /** Frames that arrived before start(), in order. @type {ArrayBuffer[]} */
    this.pending = [];
    this.tx = Promise.resolve();
    this.rx = Promise.resolve();
    this.failed = false;
    /** @type {() => void} */
    this.resolveConfirmed = () => {};
    /** @type {Promise<void>} */
    this.confirmed = new Promise((resolve) => {
      this.resolveConfirmed = resolve;
    });
    dc.binaryType = 'arraybuffer';
    dc.bufferedAmountLowThreshold = LOW_WATER;
    dc.addEventListener('message', (event) => this.onMessage(event.data));
  }

  /**
   * Begin once both the handshake is done and the channel is open; a session starts once.
   * @param {import('./handshake.js').Session} session
   */
  start(session) {
    if (session.started) throw new Error('these session keys are already in use on another channel');
    session.started = true;
    this.session = session;
    const [mine, theirs] = session.initiator
      ? [DIRECTION.initiator, DIRECTION.responder]
      : [DIRECTION.responder, DIRECTION.initiator];
    this.sendAad = associatedData(this.dc.label, this.dc.id, mine);
    this.recvAad = associatedData(this.dc.label, this.dc.id, theirs);
    this.control({ t: 'confirm', tag: toBase64(session.confirmTag) });
    for (const data of this.pending.splice(0)) this.onMessage(data);
  }

  /** The session's keys: nothing is sealed or confirmed before start(). */
  started() {
    if (!this.session) throw new Error('the keys are not agreed yet');
    return this.session;
  }

  /** @param {{t: string} & Record<string, unknown>} message */
  control(message) {
    const body = utf8(JSON.stringify(message));
    const plain = new Uint8Array(1 + body.length);
    plain[0] = CONTROL;
    plain.set(body, 1);
    return this.send(plain);
  }

  /**
   * @param {number} fileId
   * @param {Uint8Array} data
   */
  async chunk(fileId, data) {
    const plain = new Uint8Array(5 + data.length);
    plain[0] = CHUNK;
    new DataView(plain.buffer).setUint32(1, fileId);
    plain.set(data, 5);
    await this.send(plain);
    if (this.dc.bufferedAmount > HIGH_WATER) await this.drained();
  }

  /**
   * Changes whenever a frame arrives or the channel hands buffered bytes on: a sign of life that
   * the peer's stall watchdog compares over time.
   */
  progressMark() {
    return `${this.session?.recvCounter ?? 0}/${this.dc.bufferedAmount}`;
  }

  /** @returns {Promise<void>} */
  drained() {
    return new Promise((resolve) => {
      const done = () => {
        this.dc.removeEventListener('bufferedamountlow', done);
        this.dc.removeEventListener('close', done);
        resolve();
      };
      this.dc.addEventListener('bufferedamountlow', done);
      this.dc.addEventListener('close', done);
    });
  }

  /**
   * Encrypt now (counters in call order), hand frames to the channel in the same order.
   * @param {Uint8Array<ArrayBuffer>} plain
   */
  send(plain) {
    const session = this.started();
    const counter = session.sendCounter++;
    const sealed = crypto.subtle.encrypt(
      { name: 'AES-GCM', iv: nonce(counter), additionalData: this.sendAad },
      session.sendKey,
      plain,
    );
    this.tx = this.tx.then(async () => {
      const frame = await sealed;
      if (counter === 0) this.recordFirstFrame?.(new Uint8Array(frame));
      if (this.dc.readyState !== 'open') throw new Error('the connection closed');
      this.dc.send(frame);
    });
    return this.tx;
  }

  /** @param {ArrayBuffer} data */
  onMessage(data) {
    if (this.failed) return;
    if (!this.session) {
      if (this.pending.length >= MAX_EARLY_FRAMES) this.fail(`more than ${MAX_EARLY_FRAMES} messages arrived before the keys were agreed`);
      else this.pending.push(data);
      return;
    }
    const counter = this.session.recvCounter++;
    const opened = crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: nonce(counter), additionalData: this.recvAad },
      this.session.recvKey,
      data,
    );
    opened.catch(() => {}); // handled in order below
    this.rx = this.rx
      .then(() => opened)
      .then(
        (plain) => this.dispatch(new Uint8Array(plain), counter),
        () => this.fail('a message from the peer failed authentication'),
      )
      .catch((error) => this.fail(error.message));
  }

  /**
   * @param {Uint8Array<ArrayBuffer>} plain
   * @param {number} counter
   */
  async dispatch(plain, counter) {
    if (this.failed) return;
    if (plain[0] === CHUNK) {
      if (counter === 0) throw new Error('the peer sent data before confirming its keys');
      await this.handlers.onChunk(new DataView(plain.buffer).getUint32(1), plain.subarray(5));
      return;
    }
    if (plain[0] !== CONTROL) throw new Error('unknown frame type');
    const message = JSON.parse(decoder.decode(plain.subarray(1)));
    if (counter === 0) {
      if (message.t !== 'confirm' || !(await this.started().checkConfirm(fromBase64(message.tag, 32)))) {
        throw new Error('key confirmation failed');
      }
      this.resolveConfirmed();
      return;
    }
    await this.handlers.onControl(message);
  }

  /** @param {string} reason */
  fail(reason) {
    if (this.failed) return;
    this.failed = true;
    this.pending = []; // frames held before the handshake are dropped at once
    this.dc.close();
    this.handlers.onFailure(reason);
  }
}
