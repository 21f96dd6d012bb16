// Transfers over a SecureChannel: the application protocol of docs/webapp.md ("Application
// protocol"). An offer holds one or more files (a folder keeps their relative paths) or a text;
// nothing is sent until the receiver accepts; each file ends with its length and chain hash.
import { CHUNK_BYTES } from './channel.js';
import { ChainHash } from './chain.js';
import { errorText } from './format.js';
import { safePath, safeSegment } from './names.js';
import { openSink } from './sink.js';

/** @typedef {import('./signaling.js').WireMessage} WireMessage */

export const TEXT_MAX_BYTES = 1024 * 1024;
export const MAX_FILES_PER_OFFER = 256;
/** Offers waiting for the person's answer, per peer; more are declined as `busy`. */
export const MAX_WAITING_OFFERS = 16;
/** Files are read in whole chain blocks, so every data frame is exactly one block. */
const READ_BYTES = 16 * CHUNK_BYTES;
const KINDS = ['files', 'folder', 'text'];

const randomTid = () => [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');

/** @typedef {{index: number, offset: number, hash: string}} Resume where an interrupted transfer goes on: file, offset, chain hash */
/** @typedef {{name: string, size: number}} FileEntry one file of an offer: relative path, length */
/** @typedef {{name: string, blob: Blob}} Item one file to send: relative path, bytes */
/**
 * Where an accepted transfer's bytes go (sink.js).
 * @typedef {object} Sink
 * @property {(path: string) => unknown} begin
 * @property {(bytes: Uint8Array<ArrayBuffer>) => unknown} write
 * @property {() => unknown} endFile
 * @property {() => unknown} finish
 * @property {() => unknown} abort
 * @property {string} [where] where the files went, for the person
 * @property {string} [text] a received text, after finish
 */
/**
 * The file of an incoming transfer being received now.
 * @typedef {{index: number, size: number, bytes: number, chain: ChainHash}} IncomingFile
 */

/** One offer going one way; the UI renders it and listens for 'change'. */
export class Transfer extends EventTarget {
  /**
   * @param {object} o
   * @param {number} o.id offer id in the current session
   * @param {string} o.tid random transfer id, stable across sessions
   * @param {'in' | 'out'} o.direction
   * @param {string} o.peer the other person's name
   * @param {string} o.kind 'files', 'folder' or 'text'
   * @param {FileEntry[]} o.files
   */
  constructor({ id, tid, direction, peer, kind, files }) {
    super();
    this.id = id;
    this.tid = tid;
    this.direction = direction;
    this.peer = peer;
    this.kind = kind;
    this.files = files;
    this.size = files.reduce((n, f) => n + f.size, 0);
    this.name = kind === 'folder' ? files[0].name.split('/')[0]
      : kind === 'text' ? 'Text'
        : files.length === 1 ? files[0].name : `${files.length} files`;
    this.bytes = 0;
    // offered (waiting for the receiver's answer) | active | verifying | done | declined | cancelled | failed
    this.state = 'offered';
    this.message = direction === 'out' ? 'Waiting for them to accept…' : 'Accept to receive it, or decline.';
    this.text = null;
    this.where = '';
    this.startedAt = performance.now();
    /** @type {number | null} */
    this.finishedAt = null;
    /** Outgoing: the bytes of each file (kept until the end: a new session may resume them). @type {Blob[] | null} */
    this.blobs = null;
    /** Outgoing: this side cancelled it (a `done` crossing the cancel still wins). */
    this.cancelledHere = false;
    /** Outgoing, resumed in a new session: where sending went on. @type {{index: number, offset: number} | null} */
    this.resumedAt = null;
    /** Incoming, accepted: where the bytes go, until finished. @type {Sink | null} */
    this.sink = null;
    /** Incoming: the file being received. @type {IncomingFile | null} */
    this.file = null;
  }

  get finished() {
    return ['done', 'declined', 'cancelled', 'failed'].includes(this.state);
  }

  /** @param {number} bytes */
  progress(bytes) {
    this.bytes = bytes;
    this.dispatchEvent(new Event('change'));
  }

  /**
   * @param {string} state
   * @param {string} [message]
   */
  set(state, message = this.message) {
    this.state = state;
    this.message = message;
    if (this.finished) this.finishedAt = performance.now();
    this.dispatchEvent(new Event('change'));
  }

  /**
   * @param {string} state
   * @param {string} message
   */
  settle(state, message) {
    if (!this.finished) this.set(state, message);
  }

  /** Set by the owning Transfers, per direction. */
  cancel() {}
  accept() {}
  decline() {}
}

/** @param {WireMessage} offer */
function checkOffer({ id, tid, kind, files }) {
  const ok = Number.isInteger(id) && id >= 0 && id < 2 ** 32
    && typeof tid === 'string' && /^[0-9a-f]{32}$/.test(tid)
    && KINDS.includes(kind) && Array.isArray(files) && files.length >= 1 && files.length <= MAX_FILES_PER_OFFER
    && files.every((f) => f && typeof f.name === 'string' && Number.isSafeInteger(f.size) && f.size >= 0)
    && (kind !== 'text' || (files.length === 1 && files[0].size <= TEXT_MAX_BYTES));
  if (!ok) throw new Error('bad offer');
}

/**
 * @param {WireMessage | undefined} resume as the receiver sent it
 * @param {Transfer} t
 * @returns {Resume | null}
 */
function checkResume(resume, t) {
  if (resume === undefined) return null;
  const ok = resume && Number.isInteger(resume.index) && resume.index >= 0 && resume.index < t.files.length
    && Number.isSafeInteger(resume.offset) && resume.offset >= 0 && resume.offset <= t.files[resume.index].size
    && typeof resume.hash === 'string';
  if (!ok) throw new Error('bad resume');
  return /** @type {Resume} */ (resume);
}

/**
 * @param {Transfer} t
 * @param {FileEntry[]} files
 */
const sameFiles = (t, files) => t.files.length === files.length
  && t.files.every((f, i) => f.size === files[i].size);

/**
 * Both directions of transfers with one peer, for one session. `onTransfer(t)` announces each
 * new one. `interrupted` (tid -> Transfer) outlives the session: transfers cut off when the
 * channel closed wait there for the next session with the same peer, which resumes them.
 */
export class Transfers {
  /**
   * @param {import('./channel.js').SecureChannel} channel
   * @param {() => string} peerName the other person's current name
   * @param {(t: Transfer) => void} onTransfer
   * @param {Map<string, Transfer>} interrupted
   * @param {(t: Transfer) => Promise<Sink>} sinkFor opens where an accepted transfer's bytes go
   *   (sink.js; tests may replace it)
   */
  constructor(channel, peerName, onTransfer, interrupted = new Map(), sinkFor = openSink) {
    this.channel = channel;
    this.peerName = peerName;
    this.onTransfer = onTransfer;
    this.interrupted = interrupted;
    this.sinkFor = sinkFor;
    this.nextId = 1;
    this.outgoing = new Map();
    this.incoming = new Map();
    this.queue = Promise.resolve();
  }

  // ---- sending ----------------------------------------------------------------------------

  /**
   * Offer `items` ({name: relative path, blob}) as one transfer of `kind`.
   * It is sent once accepted, after the transfers accepted before it.
   */
  /**
   * @param {string} kind
   * @param {Item[]} items
   */
  offer(kind, items) {
    const files = items.map(({ name, blob }) => ({ name, size: blob.size }));
    const t = new Transfer({ id: 0, tid: randomTid(), direction: 'out', peer: this.peerName(), kind, files });
    t.blobs = items.map((item) => item.blob);
    this.onTransfer(t);
    this.propose(t);
    return t;
  }

  /** Offer `t` in this session (again, after an interruption: same tid, a new id). */
  /** @param {Transfer} t */
  propose(t) {
    t.id = this.nextId++;
    t.cancel = () => {
      if (t.finished || t.state === 'verifying') return; // everything is sent: the answer decides
      t.cancelledHere = true;
      t.set('cancelled', 'You cancelled it.');
      this.channel.control({ t: 'cancel', id: t.id }).catch(() => {});
    };
    this.outgoing.set(t.id, t);
    this.channel.control({ t: 'offer', id: t.id, tid: t.tid, kind: t.kind, files: t.files })
      .catch((error) => this.stopped(t, error));
  }

  /** A new session with the same peer: offer again what the last one cut off. */
  resumeInterrupted() {
    for (const t of [...this.interrupted.values()]) {
      if (t.direction !== 'out') continue;
      this.interrupted.delete(t.tid);
      if (t.finished) continue; // cancelled while cut off
      t.set('offered', 'Reconnected; offering the rest again…');
      this.propose(t);
    }
  }

  /** @param {WireMessage} message */
  onAccept({ id, resume }) {
    const t = this.outgoing.get(id);
    if (!t || t.state !== 'offered') return;
    const from = checkResume(resume, t);
    t.set('active', 'Waiting for the transfers before it…');
    this.queue = this.queue.then(() => this.stream(t, from)).catch((error) => this.stopped(t, error));
  }

  /**
   * @param {Transfer} t
   * @param {unknown} error
   */
  stopped(t, error) {
    // A closing channel is the session ending: closeAll decides what becomes of `t`.
    if (this.channel.dc.readyState !== 'open') return;
    t.settle('failed', `Sending stopped: ${errorText(error)}. Send it again once the connection is back.`);
  }

  /**
   * Where to start file `index`: the receiver's resume offset if our own chain hash of those
   * bytes matches theirs, else 0. Returns [offset, chain so far].
   * @param {Blob} blob file `index`
   * @param {number} index
   * @param {Resume | null} resume
   * @returns {Promise<[number, ChainHash]>}
   */
  async startOf(blob, index, resume) {
    if (resume?.index !== index || resume.offset === 0) return [0, new ChainHash()];
    const chain = new ChainHash();
    for (let offset = 0; offset < resume.offset; offset += READ_BYTES) {
      const block = new Uint8Array(await blob.slice(offset, Math.min(offset + READ_BYTES, resume.offset)).arrayBuffer());
      for (let i = 0; i < block.length; i += CHUNK_BYTES) chain.update(block.subarray(i, i + CHUNK_BYTES));
    }
    return (await chain.hex()) === resume.hash ? [resume.offset, chain] : [0, new ChainHash()];
  }

  /**
   * @param {Transfer} t
   * @param {Resume | null} resume
   */
  async stream(t, resume) {
    if (t.finished) return;
    t.set('active', '');
    t.startedAt = performance.now();
    const first = resume?.index ?? 0;
    let sent = t.files.slice(0, first).reduce((n, f) => n + f.size, 0);
    const blobs = t.blobs;
    if (!blobs) throw new Error('nothing left to send');
    for (let index = first; index < blobs.length; index++) {
      if (t.finished) return;
      const blob = blobs[index];
      const [start, chain] = await this.startOf(blob, index, resume);
      if (start > 0) t.resumedAt = { index, offset: start };
      sent += start;
      await this.channel.control({ t: 'file', id: t.id, index, offset: start });
      for (let offset = start; offset < blob.size && !t.finished; offset += READ_BYTES) {
        const block = new Uint8Array(await blob.slice(offset, offset + READ_BYTES).arrayBuffer());
        for (let i = 0; i < block.length && !t.finished; i += CHUNK_BYTES) {
          const piece = block.subarray(i, i + CHUNK_BYTES);
          chain.update(piece);
          await this.channel.chunk(t.id, piece);
          sent += piece.length;
          t.progress(sent);
        }
      }
      if (t.finished) return;
      await this.channel.control({ t: 'end', id: t.id, index, size: blob.size, hash: await chain.hex() });
    }
    if (t.finished) return; // cancelled after the last `end` went out: their `done` decides (onDone)
    t.set('verifying', 'Sent; waiting for their check…');
  }

  /** @param {WireMessage} message */
  onDone({ id, index, ok }) {
    const t = this.outgoing.get(id);
    if (!t) return;
    if (!ok) {
      t.set('failed', 'The receiver’s check did not match, so it discarded the file. Send it again.');
      return;
    }
    if (index !== t.files.length - 1) return;
    // A `done` that crossed our cancel wins: they have it, so never say "cancelled".
    if (t.state === 'verifying' || (t.state === 'cancelled' && t.cancelledHere)) {
      t.set('done', t.state === 'cancelled' ? 'Delivered before your cancel reached them.' : 'Delivered; the receiver checked every byte.');
    }
  }

  /** @param {WireMessage} message */
  onDecline({ id, reason }) {
    const t = this.outgoing.get(id);
    if (!t) return;
    t.settle('declined', reason === 'busy'
      ? `${this.peerName()} has too many offers waiting. Send it again once they answered those.`
      : `${this.peerName()} declined it.`);
  }

  // ---- receiving --------------------------------------------------------------------------

  /** @param {WireMessage} message */
  async onOffer(message) {
    checkOffer(message);
    if (this.incoming.has(message.id)) throw new Error('offer id reused');
    // Only the peer of the session that was cut off knows the tid (it went inside that session's
    // encryption), and the person accepted it then: resume without asking again.
    const cut = this.interrupted.get(message.tid);
    if (cut?.direction === 'in' && sameFiles(cut, message.files)) {
      if (!cut.finished) return this.resumeIncoming(cut, message.id);
      this.interrupted.delete(cut.tid); // cancelled while cut off: say so now
      return this.channel.control({ t: 'cancel', id: message.id }).catch(() => {});
    }
    const waiting = [...this.incoming.values()].filter((x) => x.state === 'offered').length;
    if (waiting >= MAX_WAITING_OFFERS) {
      this.channel.control({ t: 'decline', id: message.id, reason: 'busy' }).catch(() => {});
      return;
    }
    /** @type {FileEntry[]} */
    const files = message.files.map((/** @type {WireMessage} */ f) => ({
      name: message.kind === 'files' ? safeSegment(f.name.split('/').at(-1)) : safePath(f.name),
      size: f.size,
    }));
    const t = new Transfer({ id: message.id, tid: message.tid, kind: message.kind, files, direction: 'in', peer: this.peerName() });
    this.bindIncoming(t);
    this.incoming.set(t.id, t);
    this.onTransfer(t);
    return undefined;
  }

  /** The person's buttons on an incoming transfer act in this session. */
  /** @param {Transfer} t */
  bindIncoming(t) {
    t.accept = () => this.accept(t);
    t.decline = () => {
      if (t.state !== 'offered') return;
      t.set('declined', 'You declined it.');
      this.channel.control({ t: 'decline', id: t.id, reason: 'declined' }).catch(() => {});
    };
    t.cancel = () => {
      if (t.finished) return;
      if (t.state === 'offered') return t.decline();
      t.set('cancelled', 'You cancelled it.');
      this.discard(t);
      this.channel.control({ t: 'cancel', id: t.id }).catch(() => {});
      return undefined;
    };
  }

  /** Accept the offer `id` of this session as the rest of `t`, from where its bytes stopped. */
  /**
   * @param {Transfer} t
   * @param {number} id
   */
  async resumeIncoming(t, id) {
    this.interrupted.delete(t.tid);
    t.id = id;
    this.bindIncoming(t);
    this.incoming.set(id, t);
    const file = t.file;
    const resume = file ? { index: file.index, offset: file.bytes, hash: await file.chain.hex() } : undefined;
    t.set('active', 'Reconnected; resuming…');
    this.channel.control({ t: 'accept', id, resume }).catch(() => {});
  }

  /** @param {Transfer} t */
  async accept(t) {
    if (t.state !== 'offered') return;
    try {
      t.sink = await this.sinkFor(t);
    } catch (error) {
      if (error instanceof DOMException && error.name === 'AbortError') return; // the person closed the picker: still offered
      t.set('failed', `Could not save it here: ${errorText(error)}.`);
      this.channel.control({ t: 'decline', id: t.id, reason: 'declined' }).catch(() => {});
      return;
    }
    if (t.state !== 'offered') return this.discard(t); // cancelled while the picker was open
    t.where = t.sink.where ?? '';
    t.startedAt = performance.now();
    t.set('active', '');
    this.channel.control({ t: 'accept', id: t.id }).catch(() => {});
    return undefined;
  }

  /** Drop a stopped transfer's parts at once. */
  /** @param {Transfer} t */
  discard(t) {
    const sink = t.sink;
    t.sink = null;
    t.file = null;
    if (sink) Promise.resolve(sink.abort()).catch(() => {});
  }

  /** @param {number} id */
  receiving(id) {
    const t = this.incoming.get(id);
    if (!t || !['active', 'cancelled', 'failed'].includes(t.state)) throw new Error('data for an offer that was not accepted');
    return t.state === 'active' ? t : null; // after our cancel, what is still in flight is dropped
  }

  /** @param {WireMessage} message */
  async onFile({ id, index, offset }) {
    const t = this.receiving(id);
    if (!t) return;
    if (t.file?.index === index && offset === t.file.bytes) return; // resumed: the same file goes on
    if (t.file?.index === index) {
      // The sender starts this file over, but its first bytes are already written and cannot be taken back.
      t.set('failed', 'The connection came back, but the rest of the file no longer matches what arrived. Ask them to send it again.');
      this.discard(t);
      this.channel.control({ t: 'cancel', id }).catch(() => {});
      return;
    }
    const expected = t.file ? t.file.index + 1 : 0;
    if (index !== expected || offset !== 0 || t.file?.bytes !== t.file?.size) throw new Error('file out of order');
    t.file = { index, size: t.files[index].size, bytes: 0, chain: new ChainHash() };
    await t.sink.begin(t.files[index].name);
  }

  /**
   * @param {number} id
   * @param {Uint8Array<ArrayBuffer>} data
   */
  async onChunk(id, data) {
    const t = this.receiving(id);
    if (!t) return;
    const file = t.file;
    if (!file || file.bytes + data.length > file.size) throw new Error('more data than the offer said');
    file.chain.update(data);
    file.bytes += data.length;
    await t.sink.write(data);
    t.progress(t.bytes + data.length);
  }

  /** @param {WireMessage} message */
  async onEnd({ id, index, size, hash }) {
    const t = this.receiving(id);
    if (!t) return;
    const file = t.file;
    if (!file || file.index !== index) throw new Error('end of a file that was not sent');
    const ok = file.bytes === file.size && size === file.size && (await file.chain.hex()) === hash;
    if (!ok) {
      t.set('failed', 'It arrived damaged (its length or hash does not match), so it was discarded. Ask them to send it again.');
      this.discard(t);
      this.channel.control({ t: 'done', id, index, ok: false }).catch(() => {});
      return;
    }
    await t.sink.endFile();
    if (index === t.files.length - 1) {
      await t.sink.finish();
      t.text = t.sink.text ?? null;
      t.sink = null;
      t.set('done', t.kind === 'text' ? 'Received and checked.' : `Saved to ${t.where}; every byte checked.`);
    }
    this.channel.control({ t: 'done', id, index, ok: true }).catch(() => {});
  }

  /** @param {WireMessage} message */
  onCancel({ id }) {
    const t = this.incoming.get(id) ?? this.outgoing.get(id);
    if (!t || t.finished) return;
    if (t.direction === 'in') this.discard(t);
    t.set('cancelled', `${this.peerName()} cancelled it.`);
  }

  /** Whether bytes should be moving: a transfer in either direction is being sent or checked. */
  running() {
    return [...this.outgoing.values(), ...this.incoming.values()]
      .some((t) => t.state === 'active' || t.state === 'verifying');
  }

  /** A control message for transfers; data handlers may return a promise the channel awaits. */
  /** @param {WireMessage} message */
  onControl(message) {
    /** @type {Record<string, () => unknown>} */
    const handlers = {
      offer: () => this.onOffer(message),
      accept: () => this.onAccept(message),
      decline: () => this.onDecline(message),
      file: () => this.onFile(message),
      end: () => this.onEnd(message),
      done: () => this.onDone(message),
      cancel: () => this.onCancel(message),
    };
    const handler = Object.hasOwn(handlers, message.t) ? handlers[message.t] : undefined;
    if (!handler) throw new Error(`unknown message ${message.t}`);
    return handler();
  }

  /**
   * The session is over. With `resumable` (the channel closed but the peer is still in the room)
   * running transfers wait in `interrupted` for the next session; otherwise everything unfinished
   * stops with `reason`, its parts dropped.
   */
  /**
   * @param {string} reason
   * @param {boolean} [resumable]
   */
  closeAll(reason, resumable = false) {
    for (const t of [...this.outgoing.values(), ...this.incoming.values()]) {
      if (t.finished || this.interrupted.get(t.tid) === t) continue;
      // An outgoing transfer that is `verifying` may still have bytes in the channel's buffers.
      const waiting = t.direction === 'out' && (t.state === 'offered' || t.state === 'verifying');
      if (resumable && (t.state === 'active' || waiting)) {
        this.interrupted.set(t.tid, t);
        t.set(t.state, 'Connection lost; it goes on when you are reconnected and have confirmed the new words.');
        continue;
      }
      if (t.direction === 'in') this.discard(t);
      t.set('failed', reason);
    }
  }
}

/** The peer is gone for good: what waited in `interrupted` fails with `reason`, parts dropped. */
/**
 * @param {Map<string, Transfer>} interrupted
 * @param {string} reason
 */
export function abandonInterrupted(interrupted, reason) {
  for (const t of interrupted.values()) {
    const sink = t.sink;
    t.sink = null;
    if (sink) Promise.resolve(sink.abort()).catch(() => {});
    t.settle('failed', reason);
  }
  interrupted.clear();
}
