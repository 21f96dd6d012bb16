"""Folders and several files in one offer: paths kept, saved as one streamed ZIP or in a folder."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.app import accept, connected_pair, start_receiving

# What a test page's File System Access pickers return: folders and files in the page's origin
# private file system (real files on disk, written through the same createWritable API).
OPFS_PICKERS = """
window.showDirectoryPicker = async () => {
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle('picked', { create: true });
};
window.showSaveFilePicker = async ({ suggestedName }) => {
  const root = await navigator.storage.getDirectory();
  const picked = await root.getDirectoryHandle('picked', { create: true });
  return picked.getFileHandle(suggestedName, { create: true });
};
"""

READ_OPFS = """async (paths) => {
  const out = {};
  for (const path of paths) {
    let folder = await (await navigator.storage.getDirectory()).getDirectoryHandle('picked');
    const segments = path.split('/');
    for (const s of segments.slice(0, -1)) folder = await folder.getDirectoryHandle(s);
    const file = await (await folder.getFileHandle(segments.at(-1))).getFile();
    const digest = await crypto.subtle.digest('SHA-256', await file.arrayBuffer());
    out[path] = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
  }
  return out;
}"""


def make_tree(root: Path) -> dict[str, str]:
    """A nested folder `album` under `root`; relative path -> SHA-256 of each file."""
    files = {
        "album/cover.bin": os.urandom(200_000),
        "album/2024/summer/beach.bin": os.urandom(150_000),
        "album/2024/notes.txt": "ünïcode name's content\n".encode(),
        "album/empty.txt": b"",
    }
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {relative: hashlib.sha256(data).hexdigest() for relative, data in files.items()}


def test_nested_folder_arrives_as_one_streamed_zip_with_its_paths(
    tallow_server, new_page, tmp_path: Path
) -> None:
    alice, bob = new_page(), new_page()
    connected_pair(alice, bob, tallow_server.url)
    expected = make_tree(tmp_path)
    alice.get_by_test_id("folder-input").set_input_files(tmp_path / "album")
    download = start_receiving(bob, "album")
    row = bob.locator("li.transfer.in").first
    expect(row).to_have_attribute("data-state", "done")
    expect(row.get_by_test_id("received-file")).to_have_count(len(expected))
    assert download.suggested_filename == "album.zip"
    with zipfile.ZipFile(download.path()) as archive:
        assert archive.testzip() is None  # every entry's CRC-32 matches
        got = {name: hashlib.sha256(archive.read(name)).hexdigest() for name in archive.namelist()}
    assert got == expected


def test_several_files_into_a_chosen_folder_and_one_into_a_chosen_file(
    tallow_server, new_page, tmp_path: Path
) -> None:
    alice, bob = new_page(), new_page(pickers=True)
    bob.context.add_init_script(OPFS_PICKERS)
    connected_pair(alice, bob, tallow_server.url)
    expected = {}
    paths = []
    for name, size in (("one.bin", 70_000), ("two.bin", 1), ("three.bin", 300_000)):
        data = os.urandom(size)
        (tmp_path / name).write_bytes(data)
        expected[name] = hashlib.sha256(data).hexdigest()
        paths.append(tmp_path / name)
    alice.get_by_test_id("file-input").set_input_files(paths)
    row = accept(bob, "3 files")
    expect(row).to_have_attribute("data-state", "done")
    expect(row).to_contain_text("Saved to the folder you chose")
    assert bob.evaluate(READ_OPFS, list(expected)) == expected
    expect(alice.locator("li.transfer.out")).to_have_attribute("data-state", "done")

    solo = os.urandom(100_000)
    (tmp_path / "solo.bin").write_bytes(solo)
    alice.get_by_test_id("file-input").set_input_files(tmp_path / "solo.bin")
    row = accept(bob, "solo.bin")
    expect(row).to_have_attribute("data-state", "done")
    expect(row).to_contain_text("Saved to the file you chose")
    assert bob.evaluate(READ_OPFS, ["solo.bin"]) == {"solo.bin": hashlib.sha256(solo).hexdigest()}
