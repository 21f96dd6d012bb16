// Browser APIs the app uses where they exist, which TypeScript's DOM library does not declare
// (yet): the File System Access pickers (Chromium), the Network Information API, and the test
// harness's hook. The app checks each for presence before it uses it.

interface Window {
  /** Chromium's File System Access API: where a received file goes. */
  showSaveFilePicker?: (options?: { suggestedName?: string }) => Promise<FileSystemFileHandle>;
  /** Chromium's File System Access API: where a received folder or several files go. */
  showDirectoryPicker?: (options?: { mode?: 'read' | 'readwrite' }) => Promise<FileSystemDirectoryHandle>;
  /** Installed only by a test harness, before the app runs (docs/webapp.md, "Test hook"). */
  __tallowTestHook?: import('../src/peer.js').TestHook;
}

interface Navigator {
  /** The Network Information API (Chromium): its `change` event says the network changed. */
  readonly connection?: EventTarget;
}
