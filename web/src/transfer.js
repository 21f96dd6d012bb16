// File transfer over a SecureChannel: offers, chunks, SHA-256 check, cancel from either side.
//
// Control messages (inside encrypted frames):
//   offer  {id, name, size}        sender: a file follows as chunks tagged with `id`
//   end    {id, sha256}            sender: all chunks sent; hex SHA-256 of the whole file
//   done   {id, ok}                receiver: checksum verified (ok) or not
//   abort  {id}                    sender: stop, I cancelled
//   reject {id, reason}            receiver: stop sending ("cancelled" or "too-large")
import { sha256 } from '@noble/hashes/sha2.js';
import { toHex } from './bytes.js';
import { CHUNK_BYTES } from './channel.js';
import { formatBytes } from './format.js';

/** Received files are held in memory until saved; refuse what a browser tab cannot hold. */
export const MAX_RECEIVE_BYTES = 2 * 1024 ** 3;
const READ_BYTES = 1024 * 1024;

/** One file going one way; the UI renders it and listens for 'change'. */
export class Transfer extends EventTarget {
  constructor({ id, direction, peer, name, size }) {
    super();
    Object.assign(this, { id, direction, peer, name, size });
    this.bytes = 0;
    this.state = 'active'; // active | verifying | done | cancelled | failed
    this.message = '';
    this.url = null;
    this.startedAt = performance.now();
    this.finishedAt = null;
  }

  get finished() {
    return ['done', 'cancelled', 'failed'].includes(this.state);
  }

  progress(bytes) {
    this.bytes = bytes;
    this.dispatchEvent(new Event('change'));
  }

  settle(state, message = '') {
    if (this.finished) return;
    this.state = state;
    this.message = message;
    this.finishedAt = performance.now();
    this.dispatchEvent(new Event('change'));
  }

  /** Asks the transfer's owner (a Transfers) to cancel; set by it. */
  cancel() {}
}

function safeName(name) {
  const clean = String(name ?? '').replace(/[\u0000-\u001f\u007f/\\]/g, '_').slice(0, 200).trim();
  return clean || 'file';
}

/** Both directions of file traffic with one peer. `onTransfer(t)` announces each new transfer. */
export class Transfers {
  constructor(channel, peerName, onTransfer, maxReceiveBytes = MAX_RECEIVE_BYTES) {
    this.channel = channel;
    this.maxReceiveBytes = maxReceiveBytes;
    this.peerName = peerName;
    this.onTransfer = onTransfer;
    this.nextId = 1;
    this.outgoing = new Map();
    this.incoming = new Map();
    this.queue = Promise.resolve();
  }

  /** Queue files; they go one after another, each as soon as the previous one is sent. */
  send(file) {
    const t = new Transfer({ id: this.nextId++, direction: 'out', peer: this.peerName(), name: file.name, size: file.size });
    t.cancel = () => {
      if (t.finished) return;
      t.settle('cancelled', 'You cancelled it.');
      this.channel.control({ t: 'abort', id: t.id }).catch(() => {});
    };
    this.outgoing.set(t.id, t);
    this.onTransfer(t);
    this.queue = this.queue.then(() => this.stream(t, file)).catch((error) => {
      t.settle('failed', `Sending stopped: ${error.message}. Send it again once the connection is back.`);
    });
    return t;
  }

  async stream(t, file) {
    if (t.finished) return;
    t.startedAt = performance.now();
    await this.channel.control({ t: 'offer', id: t.id, name: file.name, size: file.size });
    const hash = sha256.create();
    let sent = 0;
    while (sent < file.size && !t.finished) {
      const block = new Uint8Array(await file.slice(sent, sent + READ_BYTES).arrayBuffer());
      for (let i = 0; i < block.length && !t.finished; i += CHUNK_BYTES) {
        const piece = block.subarray(i, i + CHUNK_BYTES);
        hash.update(piece);
        await this.channel.chunk(t.id, piece);
        sent += piece.length;
        t.progress(sent);
      }
    }
    if (t.finished) return;
    await this.channel.control({ t: 'end', id: t.id, sha256: toHex(hash.digest()) });
    t.state = 'verifying';
    t.progress(sent);
  }

  onControl(message) {
    const handler = {
      offer: () => this.onOffer(message),
      end: () => this.onEnd(message),
      done: () => this.onDone(message),
      abort: () => this.incoming.get(message.id)?.settle('cancelled', `${this.peerName()} cancelled it.`),
      reject: () => this.onReject(message),
    }[message.t];
    if (!handler) throw new Error(`unknown message ${message.t}`);
    handler();
  }

  onOffer({ id, name, size }) {
    if (!Number.isSafeInteger(size) || size < 0 || this.incoming.has(id)) throw new Error('bad file offer');
    const t = new Transfer({ id, direction: 'in', peer: this.peerName(), name: safeName(name), size });
    t.parts = [];
    t.hash = sha256.create();
    t.cancel = () => {
      if (t.finished) return;
      t.parts = null;
      t.settle('cancelled', 'You cancelled it.');
      this.channel.control({ t: 'reject', id, reason: 'cancelled' }).catch(() => {});
    };
    this.incoming.set(id, t);
    this.onTransfer(t);
    if (size > this.maxReceiveBytes) {
      t.settle('failed', `Too large for this browser: it holds received files in memory, up to ${formatBytes(this.maxReceiveBytes)}. Ask the sender to split it.`);
      this.channel.control({ t: 'reject', id, reason: 'too-large' }).catch(() => {});
    }
  }

  onChunk(id, data) {
    const t = this.incoming.get(id);
    if (!t) throw new Error('data for an unknown file');
    if (t.finished) return; // in flight when we cancelled
    if (t.bytes + data.length > t.size) throw new Error('more data than the file offer said');
    t.parts.push(data);
    t.hash.update(data);
    t.progress(t.bytes + data.length);
  }

  onEnd({ id, sha256: expected }) {
    const t = this.incoming.get(id);
    if (!t || t.finished) return;
    const ok = t.bytes === t.size && toHex(t.hash.digest()) === expected;
    if (ok) {
      // application/octet-stream: the file is offered as a download, never rendered by this origin.
      t.url = URL.createObjectURL(new Blob(t.parts, { type: 'application/octet-stream' }));
      t.settle('done', 'Received and verified (SHA-256 matches).');
    } else {
      t.settle('failed', 'The file arrived damaged (its SHA-256 does not match), so it was discarded. Ask the sender to send it again.');
    }
    t.parts = null;
    this.channel.control({ t: 'done', id, ok }).catch(() => {});
  }

  onDone({ id, ok }) {
    const t = this.outgoing.get(id);
    if (!t) return;
    if (ok) t.settle('done', 'Delivered; the receiver verified its SHA-256.');
    else t.settle('failed', 'The receiver’s checksum did not match, so it discarded the file. Send it again.');
  }

  onReject({ id, reason }) {
    const t = this.outgoing.get(id);
    if (!t) return;
    const why = reason === 'too-large'
      ? `${this.peerName()}’s browser cannot hold a file this large in memory. Split it and send the parts.`
      : `${this.peerName()} cancelled it.`;
    t.settle(reason === 'too-large' ? 'failed' : 'cancelled', why);
  }

  /** The connection is gone: everything unfinished stops with `reason`. */
  closeAll(reason) {
    for (const t of [...this.outgoing.values(), ...this.incoming.values()]) {
      if (!t.finished) t.settle('failed', reason);
      t.parts = null;
    }
  }
}
