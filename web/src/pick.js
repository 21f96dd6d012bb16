// Files chosen or dropped by the person, as offer items {name: relative path, blob}.

/** @typedef {import('./transfer.js').Item} Item */

/**
 * From a file input: a folder picker gives each file's path below the chosen folder.
 * @param {Iterable<File>} files
 * @returns {Item[]}
 */
export function fileItems(files) {
  return [...files].map((file) => ({ name: file.webkitRelativePath || file.name, blob: file }));
}

/**
 * @param {FileSystemDirectoryReader} reader
 * @returns {Promise<FileSystemEntry[]>}
 */
function readEntries(reader) {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

/**
 * Every file below a dropped directory entry, with its path from that directory on.
 * @param {FileSystemEntry} entry
 * @param {Item[]} items
 */
async function walk(entry, items) {
  if (entry.isFile) {
    const fileEntry = /** @type {FileSystemFileEntry} */ (entry);
    /** @type {File} */
    const file = await new Promise((resolve, reject) => fileEntry.file(resolve, reject));
    items.push({ name: entry.fullPath.replace(/^\//, ''), blob: file });
    return;
  }
  const reader = /** @type {FileSystemDirectoryEntry} */ (entry).createReader();
  // readEntries returns the listing in batches until an empty one.
  for (let batch = await readEntries(reader); batch.length; batch = await readEntries(reader)) {
    for (const child of batch) await walk(child, items);
  }
}

/**
 * What a drop holds, as [kind, items] offers: each dropped folder is one 'folder' offer (paths
 * kept), the loose files together one 'files' offer.
 * @param {DataTransfer | null} dataTransfer null in a drop made by a script
 * @returns {Promise<[string, Item[]][]>}
 */
export async function droppedItems(dataTransfer) {
  // Entries must be taken before the first await: the drop's data is gone after the event.
  const dropped = [...(dataTransfer?.items ?? [])]
    .filter((item) => item.kind === 'file')
    .map((item) => ({ entry: item.webkitGetAsEntry?.() ?? null, file: item.getAsFile() }));
  /** @type {[string, Item[]][]} */
  const offers = [];
  /** @type {Item[]} */
  const loose = [];
  for (const { entry, file } of dropped) {
    if (entry?.isDirectory) {
      /** @type {Item[]} */
      const items = [];
      await walk(entry, items);
      if (items.length) offers.push(['folder', items]);
    } else if (file) loose.push({ name: file.name, blob: file });
  }
  if (loose.length) offers.unshift(['files', loose]);
  return offers;
}
