// Hybrid ML-KEM-768 + X25519 key agreement between two peers, run over the signaling channel.
//
// Three messages, all public values (docs/webapp.md has the exact key schedule):
//   hs1  initiator -> responder  X25519 public key, ML-KEM-768 encapsulation key, commitment SHA-256(nI)
//   hs2  responder -> initiator  X25519 public key, ML-KEM-768 ciphertext, nonce nR
//   hs3  initiator -> responder  nonce nI (the responder checks it against the commitment)
// The initiator commits to its nonce before it sees the responder's values, and the responder
// picks its values before it sees that nonce, so a man in the middle cannot steer both sides'
// verification words to the same value: they match with probability 2^-44 when someone interferes.
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { wordlist } from '@scure/bip39/wordlists/english.js';
import { concat, fromBase64, lengthPrefixed, randomBytes, toBase64, utf8 } from './bytes.js';

/** @typedef {import('./signaling.js').WireMessage} WireMessage */

const subtle = crypto.subtle;
const X25519 = { name: 'X25519' };
const SIZES = { x: 32, ek: 1184, ct: 1088, nonce: 32, digest: 32 };

/** HKDF `info` labels; each output key has its own. */
export const LABELS = {
  transcript: 'tallow/v1 transcript',
  keyI2R: 'tallow/v1 key initiator to responder',
  keyR2I: 'tallow/v1 key responder to initiator',
  confirmI: 'tallow/v1 confirm initiator',
  confirmR: 'tallow/v1 confirm responder',
  sas: 'tallow/v1 sas',
};

export const SAS_WORDS = 4;

const sha256 = async (/** @type {BufferSource} */ data) => new Uint8Array(await subtle.digest('SHA-256', data));

/** True when this browser's WebCrypto can do X25519 (Chromium 133+, Firefox 130+, Safari 17+). */
export async function x25519Supported() {
  try {
    await subtle.generateKey(X25519, false, ['deriveBits']);
    return true;
  } catch {
    return false;
  }
}

/** @param {boolean} extractable */
async function x25519KeyPair(extractable) {
  // An X25519 key is always a pair (the DOM library's overloads cannot tell from the name).
  const pair = /** @type {CryptoKeyPair} */ (await subtle.generateKey(X25519, extractable, ['deriveBits']));
  const pub = new Uint8Array(await subtle.exportKey('raw', pair.publicKey));
  return { privateKey: pair.privateKey, pub };
}

/**
 * @param {CryptoKey} privateKey
 * @param {Uint8Array<ArrayBuffer>} peerPub
 */
async function x25519Shared(privateKey, peerPub) {
  const pub = await subtle.importKey('raw', peerPub, X25519, false, []);
  return new Uint8Array(await subtle.deriveBits({ name: 'X25519', public: pub }, privateKey, 256));
}

/**
 * @param {CryptoKey} ikmKey
 * @param {Uint8Array<ArrayBuffer>} salt
 * @param {string} label
 * @param {number} bits
 */
async function hkdf(ikmKey, salt, label, bits) {
  const params = { name: 'HKDF', hash: 'SHA-256', salt, info: utf8(label) };
  return new Uint8Array(await subtle.deriveBits(params, ikmKey, bits));
}

/**
 * 4 words from the first 44 bits of `bytes`, 11 bits a word, most significant first.
 * @param {Uint8Array} bytes
 */
export function sasWords(bytes) {
  let value = 0n;
  for (const b of bytes.subarray(0, 6)) value = (value << 8n) | BigInt(b);
  const words = [];
  for (let i = 1; i <= SAS_WORDS; i++) words.push(wordlist[Number((value >> BigInt(48 - 11 * i)) & 0x7ffn)]);
  return words;
}

/**
 * The public values of a handshake (docs/webapp.md, "Key schedule"), as each step adds them.
 * @typedef {object} Fields
 * @property {Uint8Array} xI
 * @property {Uint8Array} ekI
 * @property {Uint8Array} commitI
 * @property {Uint8Array} [xR]
 * @property {Uint8Array} [ct]
 * @property {Uint8Array} [nonceR]
 * @property {Uint8Array} [nonceI]
 */
/** @typedef {'keyI2R' | 'keyR2I' | 'confirmI' | 'confirmR' | 'sas'} KeyName */

/**
 * Everything a handshake agreed on. `sendKey`/`recvKey` are non-extractable AES-256-GCM keys;
 * `confirmTag` is what this side sends to prove it holds the keys; `checkConfirm` verifies the other's.
 * @param {{initiator: boolean, initiatorId: string, responderId: string, ssKem: Uint8Array,
 *   ssX: Uint8Array} & Required<Fields>} h
 */
async function deriveSession(h) {
  const transcript = await sha256(
    lengthPrefixed([
      utf8(LABELS.transcript),
      utf8(h.initiatorId),
      utf8(h.responderId),
      h.xI,
      h.ekI,
      h.commitI,
      h.xR,
      h.ct,
      h.nonceR,
      h.nonceI,
    ]),
  );
  const ikm = concat(h.ssKem, h.ssX);
  const ikmKey = await subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  const raw = /** @type {Record<KeyName, Uint8Array<ArrayBuffer>>} */ ({});
  /** @type {[KeyName, number][]} */
  const outputs = [['keyI2R', 256], ['keyR2I', 256], ['confirmI', 256], ['confirmR', 256], ['sas', 48]];
  for (const [name, bits] of outputs) {
    raw[name] = await hkdf(ikmKey, transcript, LABELS[name], bits);
  }
  const aes = (/** @type {Uint8Array<ArrayBuffer>} */ bytes) => subtle.importKey('raw', bytes, 'AES-GCM', false, ['encrypt', 'decrypt']);
  const hmac = (/** @type {Uint8Array<ArrayBuffer>} */ bytes, /** @type {KeyUsage} */ use) => subtle.importKey('raw', bytes, { name: 'HMAC', hash: 'SHA-256' }, false, [use]);
  /** @type {KeyName[]} */
  const mine = h.initiator ? ['keyI2R', 'confirmI'] : ['keyR2I', 'confirmR'];
  /** @type {KeyName[]} */
  const theirs = h.initiator ? ['keyR2I', 'confirmR'] : ['keyI2R', 'confirmI'];
  const confirmTag = new Uint8Array(
    await subtle.sign('HMAC', await hmac(raw[mine[1]], 'sign'), transcript),
  );
  const theirConfirmKey = await hmac(raw[theirs[1]], 'verify');
  const session = {
    initiator: h.initiator,
    transcript,
    sas: sasWords(raw.sas),
    sendKey: await aes(raw[mine[0]]),
    recvKey: await aes(raw[theirs[0]]),
    confirmTag,
    checkConfirm: (/** @type {Uint8Array<ArrayBuffer>} */ tag) => subtle.verify('HMAC', theirConfirmKey, tag, transcript),
    // The nonce counters belong to the keys, not to a channel: one session is started on one
    // channel, once (SecureChannel.start), so a (key, nonce) pair can never be used twice.
    started: false,
    sendCounter: 0,
    recvCounter: 0,
  };
  return { session, raw, ikm };
}

/** @typedef {Awaited<ReturnType<typeof deriveSession>>['session']} Session the keys of one session */

/**
 * What an earlier step of the handshake set (`expect` keeps the steps in order).
 * @template T
 * @param {T | null | undefined} value
 * @returns {T}
 */
function earlier(value) {
  if (value === null || value === undefined) throw new Error('handshake step out of order');
  return value;
}

/**
 * One side of the handshake with one peer. Call `start()` (initiator) or feed messages to
 * `receive(msg)`; each returns `{ reply, session }`, either may be null. Throws on bad input.
 */
export class Handshake {
  /**
   * @param {object} o
   * @param {boolean} o.initiator
   * @param {string} o.selfId
   * @param {string} o.peerId
   * @param {import('./peer.js').TestHook | null} [o.hook] given, the secrets are recorded there
   */
  constructor({ initiator, selfId, peerId, hook = null }) {
    this.initiator = initiator;
    this.ids = initiator
      ? { initiatorId: selfId, responderId: peerId }
      : { initiatorId: peerId, responderId: selfId };
    this.hook = hook;
    this.step = initiator ? 'start' : 'hs1';
    // Set by the steps, in the order `expect` enforces; the secrets are wiped by finish().
    /** @type {Uint8Array | null} the initiator's ML-KEM secret key */
    this.kemSecret = null;
    /** @type {{privateKey: CryptoKey, pub: Uint8Array<ArrayBuffer>} | null} */
    this.x = null;
    /** @type {Uint8Array<ArrayBuffer> | null} this side's nonce */
    this.nonce = null;
    /** @type {Fields | null} */
    this.fields = null;
    /** @type {{ssKem: Uint8Array, ssX: Uint8Array} | null} */
    this.shared = null;
    /** @type {{kemSeed: Uint8Array} | null} the ML-KEM seed, kept only for the test hook */
    this.secrets = null;
  }

  async start() {
    this.expect('start');
    const seed = randomBytes(64);
    const kem = ml_kem768.keygen(seed);
    this.kemSecret = kem.secretKey;
    this.x = await x25519KeyPair(this.hook !== null);
    this.nonce = randomBytes(SIZES.nonce);
    this.fields = { xI: this.x.pub, ekI: kem.publicKey, commitI: await sha256(this.nonce) };
    if (this.hook) this.secrets = { kemSeed: seed };
    this.step = 'hs2';
    const f = this.fields;
    return { reply: { t: 'hs1', x: toBase64(f.xI), k: toBase64(f.ekI), c: toBase64(f.commitI) }, session: null };
  }

  /** @param {WireMessage} msg */
  async receive(msg) {
    this.expect(msg.t);
    if (msg.t === 'hs1') return this.onHs1(msg);
    if (msg.t === 'hs2') return this.onHs2(msg);
    return this.onHs3(msg);
  }

  /** @param {WireMessage} msg */
  async onHs1(msg) {
    const xI = fromBase64(msg.x, SIZES.x);
    const ekI = fromBase64(msg.k, SIZES.ek);
    const commitI = fromBase64(msg.c, SIZES.digest);
    const { cipherText, sharedSecret } = ml_kem768.encapsulate(ekI);
    this.x = await x25519KeyPair(this.hook !== null);
    this.nonce = randomBytes(SIZES.nonce);
    this.fields = { xI, ekI, commitI, xR: this.x.pub, ct: cipherText, nonceR: this.nonce };
    this.shared = { ssKem: sharedSecret, ssX: await x25519Shared(this.x.privateKey, xI) };
    this.step = 'hs3';
    const reply = { t: 'hs2', x: toBase64(this.x.pub), ct: toBase64(cipherText), n: toBase64(this.nonce) };
    return { reply, session: null };
  }

  /** @param {WireMessage} msg */
  async onHs2(msg) {
    const f = earlier(this.fields);
    const xR = fromBase64(msg.x, SIZES.x);
    f.xR = xR;
    f.ct = fromBase64(msg.ct, SIZES.ct);
    f.nonceR = fromBase64(msg.n, SIZES.nonce);
    f.nonceI = earlier(this.nonce);
    this.shared = {
      ssKem: ml_kem768.decapsulate(f.ct, earlier(this.kemSecret)),
      ssX: await x25519Shared(earlier(this.x).privateKey, xR),
    };
    this.step = 'done';
    return { reply: { t: 'hs3', n: toBase64(earlier(this.nonce)) }, session: await this.finish() };
  }

  /** @param {WireMessage} msg */
  async onHs3(msg) {
    const nonceI = fromBase64(msg.n, SIZES.nonce);
    const expected = await sha256(nonceI);
    const f = earlier(this.fields);
    if (!expected.every((b, i) => b === f.commitI[i])) {
      throw new Error('the peer’s nonce does not match its commitment');
    }
    f.nonceI = nonceI;
    this.step = 'done';
    return { reply: null, session: await this.finish() };
  }

  async finish() {
    // The last step completed the fields and the shared secrets (`expect` keeps the order).
    const { session, raw, ikm } = await deriveSession(/** @type {Parameters<typeof deriveSession>[0]} */ ({
      initiator: this.initiator,
      ...this.ids,
      ...this.fields,
      ...this.shared,
    }));
    if (this.hook) await this.record(session, raw, ikm);
    // The keys live on as non-extractable WebCrypto keys: wipe every raw secret they came from.
    for (const secret of [ikm, ...Object.values(raw), ...Object.values(this.shared ?? {}), this.kemSecret]) secret?.fill(0);
    this.kemSecret = null;
    this.shared = null;
    return session;
  }

  /**
   * Test builds only (a page whose test harness installed the hook): reveal this handshake.
   * @param {Session} session
   * @param {Record<string, Uint8Array>} raw
   * @param {Uint8Array} ikm
   */
  async record(session, raw, ikm) {
    const pkcs8 = new Uint8Array(await subtle.exportKey('pkcs8', earlier(this.x).privateKey));
    const b64 = (/** @type {object} */ o) => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, toBase64(v)]));
    earlier(this.hook).handshakes.push({
      role: this.initiator ? 'initiator' : 'responder',
      ...this.ids,
      fields: b64(earlier(this.fields)),
      secrets: b64({ ...this.secrets, xPrivate: pkcs8.subarray(-32), ...this.shared, ikm }),
      derived: b64({ ...raw, transcript: session.transcript, confirmTag: session.confirmTag }),
      sas: session.sas,
    });
  }

  /** @param {string} type */
  expect(type) {
    if (type !== this.step) throw new Error(`unexpected handshake message ${type} (waiting for ${this.step})`);
  }
}
