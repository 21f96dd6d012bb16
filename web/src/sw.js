// Service worker: turns bytes that the page posts into a download that the browser's download
// manager writes to disk, so a received file never has to fit in memory. It handles only
// /download/<id> navigations it was told about; everything else goes to the network untouched.
//
// Per download the page sends {id, name} and a MessagePort, then posts ArrayBuffers, 'end' or
// 'abort' on that port. The worker hands bytes to the browser only as fast as it reads them and
// answers each with {ack: bytes}, so the page never has more than its window in flight.

/** `self` is this service worker's global scope (the WebWorker library types it as any worker's). */
const worker = /** @type {ServiceWorkerGlobalScope} */ (/** @type {unknown} */ (self));
/** @type {Map<string, {stream: ReadableStream<Uint8Array>, name: string}>} */
const downloads = new Map();

worker.addEventListener('install', () => worker.skipWaiting());
worker.addEventListener('activate', (event) => event.waitUntil(worker.clients.claim()));

worker.addEventListener('message', (event) => {
  if (event.data === 'ping') return; // keeps this worker alive while a download is open
  const { id, name } = event.data;
  const [port] = event.ports;
  /** @type {(ArrayBuffer | 'end' | 'abort')[]} */
  const queue = [];
  /** @type {(() => void) | null} */
  let waiting = null;
  let closed = false;
  const stream = new ReadableStream({
    async pull(controller) {
      while (queue.length === 0) await /** @type {Promise<void>} */ (new Promise((resolve) => { waiting = resolve; }));
      const next = /** @type {ArrayBuffer | 'end' | 'abort'} */ (queue.shift()); // the loop waited for one
      if (next === 'end') controller.close();
      else if (next === 'abort') controller.error(new Error('cancelled'));
      else {
        controller.enqueue(new Uint8Array(next));
        port.postMessage({ ack: next.byteLength });
      }
    },
    cancel() {
      closed = true;
      port.postMessage({ cancelled: true });
    },
  }, { highWaterMark: 0 });
  port.onmessage = ({ data }) => {
    if (closed) return;
    queue.push(data);
    waiting?.();
    waiting = null;
  };
  downloads.set(id, { stream, name });
  port.postMessage({ ready: true });
});

worker.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== location.origin || !url.pathname.startsWith('/download/')) return;
  const id = url.pathname.slice('/download/'.length);
  const download = downloads.get(id);
  downloads.delete(id);
  if (!download) {
    event.respondWith(new Response('This download is no longer available.', { status: 404 }));
    return;
  }
  event.respondWith(new Response(download.stream, {
    headers: {
      'Content-Type': 'application/octet-stream',
      'Content-Disposition': `attachment; filename*=UTF-8''${encodeURIComponent(download.name)}`,
      'X-Content-Type-Options': 'nosniff',
    },
  }));
});
