// Where received bytes go, as they arrive, so memory does not grow with the file:
//  - the File System Access API where the browser offers it: a file the person picks
//    (showSaveFilePicker) or, for folders and several files, a folder they pick (showDirectoryPicker);
//  - otherwise a download that the service worker (sw.js) streams to the browser's download
//    manager: one file as itself, a folder or several files as one streamed ZIP;
//  - text stays in memory (at most TEXT_MAX_BYTES).
// Every sink has begin(path), write(bytes), endFile(), finish(), abort(); each may be awaited.
import { concat } from './bytes.js';
import { ZipWriter } from './zip.js';

const WINDOW_BYTES = 4 * 1024 * 1024;
const KEEPALIVE_MS = 10_000;

/** @type {Promise<ServiceWorkerRegistration | null> | null} */
let worker = null;

/** Register the download worker early (once); resolves to its registration or null. */
export function registerDownloads() {
  worker ??= navigator.serviceWorker
    ? navigator.serviceWorker.register('/sw.js', { scope: '/' }).then(() => navigator.serviceWorker.ready, () => null)
    : Promise.resolve(null);
  return worker;
}

/**
 * Ask where to save (needs the click that accepted), then open the sink for transfer `t`.
 * @param {import('./transfer.js').Transfer} t
 * @returns {Promise<import('./transfer.js').Sink>}
 */
export async function openSink(t) {
  if (t.kind === 'text') return new MemorySink();
  if (typeof window.showSaveFilePicker === 'function' && typeof window.showDirectoryPicker === 'function') {
    if (t.files.length === 1 && t.kind === 'files') {
      return new WritableSink(await window.showSaveFilePicker({ suggestedName: t.files[0].name }));
    }
    return new FolderSink(await window.showDirectoryPicker({ mode: 'readwrite' }));
  }
  const stream = await DownloadStream.open(t.files.length === 1 && t.kind === 'files' ? t.files[0].name : `${t.name}.zip`);
  return t.files.length === 1 && t.kind === 'files' ? new StreamSink(stream) : new ZipSink(stream);
}

class MemorySink {
  constructor() {
    /** @type {Uint8Array[]} */
    this.parts = [];
    this.text = '';
  }

  begin() {}

  /** @param {Uint8Array} bytes */
  write(bytes) {
    this.parts.push(bytes.slice());
  }

  endFile() {}

  finish() {
    this.text = new TextDecoder().decode(concat(...this.parts));
    this.parts = [];
  }

  abort() {
    this.parts = [];
  }
}

/** One file the person picked: written through createWritable, which moves it into place on close. */
class WritableSink {
  /** @param {FileSystemFileHandle | null} handle null until begin() (FolderSink) */
  constructor(handle) {
    this.handle = handle;
    this.where = 'the file you chose';
    /** The file being written, from begin() to endFile(). @type {FileSystemWritableFileStream | null} */
    this.writable = null;
  }

  /** @param {string} [_path] */
  async begin(_path) {
    if (!this.handle) throw new Error('no file to write to');
    this.writable = await this.handle.createWritable();
  }

  writing() {
    if (!this.writable) throw new Error('no file begun');
    return this.writable;
  }

  /** @param {Uint8Array<ArrayBuffer>} bytes */
  write(bytes) {
    return this.writing().write(bytes);
  }

  async endFile() {
    await this.writing().close();
    this.writable = null;
  }

  finish() {}

  async abort() {
    await this.writable?.abort().catch(() => {});
  }
}

/** A folder the person picked: each file at its relative path below it. */
class FolderSink extends WritableSink {
  /** @param {FileSystemDirectoryHandle} directory */
  constructor(directory) {
    super(null);
    this.directory = directory;
    this.where = 'the folder you chose';
  }

  /**
   * @override
   * @param {string} path
   */
  async begin(path) {
    const segments = path.split('/');
    let folder = this.directory;
    for (const segment of segments.slice(0, -1)) folder = await folder.getDirectoryHandle(segment, { create: true });
    this.handle = await folder.getFileHandle(String(segments.at(-1)), { create: true });
    await super.begin();
  }
}

/** One file as one streamed download. */
class StreamSink {
  /** @param {DownloadStream} stream */
  constructor(stream) {
    this.stream = stream;
    this.where = 'your downloads';
  }

  begin() {}

  /** @param {Uint8Array} bytes */
  write(bytes) {
    return this.stream.write(bytes);
  }

  endFile() {}

  finish() {
    this.stream.close();
  }

  abort() {
    this.stream.abort();
  }
}

/** Several files or a folder as one streamed ZIP download. */
class ZipSink {
  /** @param {DownloadStream} stream */
  constructor(stream) {
    this.stream = stream;
    this.zip = new ZipWriter((bytes) => stream.write(bytes));
    this.where = 'your downloads (as a ZIP)';
  }

  /** @param {string} path */
  begin(path) {
    return this.zip.begin(path);
  }

  /** @param {Uint8Array} bytes */
  write(bytes) {
    return this.zip.data(bytes);
  }

  endFile() {
    return this.zip.end();
  }

  async finish() {
    await this.zip.finish();
    this.stream.close();
  }

  abort() {
    this.stream.abort();
  }
}

/** The page's end of one service-worker download: bytes in, at most WINDOW_BYTES unread. */
class DownloadStream {
  /** @param {string} name the download's file name */
  static async open(name) {
    const registration = await registerDownloads();
    if (!registration?.active) throw new Error('this browser can neither save files directly nor stream downloads');
    const id = [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('');
    const channel = new MessageChannel();
    const stream = new DownloadStream(channel.port1, registration.active);
    /** @type {Promise<void>} */
    const ready = new Promise((resolve) => { stream.onReady = resolve; });
    registration.active.postMessage({ id, name }, [channel.port2]);
    await ready;
    // A hidden frame navigates to the download; the worker answers with the stream.
    const frame = document.createElement('iframe');
    frame.hidden = true;
    frame.src = `/download/${id}`;
    document.body.append(frame);
    stream.frame = frame;
    return stream;
  }

  /**
   * @param {MessagePort} port
   * @param {ServiceWorker} active
   */
  constructor(port, active) {
    this.port = port;
    /** Called when the worker has the download: until then the frame must not navigate. @type {() => void} */
    this.onReady = () => {};
    /** @type {HTMLIFrameElement | null} the hidden frame that starts the download */
    this.frame = null;
    this.inFlight = 0;
    /** Wakes a write waiting for the window to open. @type {(() => void) | null} */
    this.wake = null;
    this.cancelled = false;
    this.keepalive = setInterval(() => active.postMessage('ping'), KEEPALIVE_MS);
    port.onmessage = ({ data }) => {
      if (data.ready) this.onReady();
      if (data.ack) this.inFlight -= data.ack;
      if (data.cancelled) this.cancelled = true;
      this.wake?.();
    };
  }

  /** @param {Uint8Array} bytes */
  async write(bytes) {
    while (this.inFlight > WINDOW_BYTES && !this.cancelled) await /** @type {Promise<void>} */ (new Promise((resolve) => { this.wake = resolve; }));
    if (this.cancelled) throw new Error('the download was cancelled in the browser');
    const copy = bytes.slice().buffer;
    this.inFlight += copy.byteLength;
    this.port.postMessage(copy, [copy]);
  }

  close() {
    this.port.postMessage('end');
    this.done();
  }

  abort() {
    this.port.postMessage('abort');
    this.done();
  }

  done() {
    clearInterval(this.keepalive);
    // The download keeps its own connection to the worker; the frame is only its starter.
    setTimeout(() => this.frame?.remove(), 60_000);
  }
}
