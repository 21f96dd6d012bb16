// Build the UI into tallow/static/ (or --outdir DIR): one JS bundle and one stylesheet, each
// named after its content hash (app-<12 hex>.js) so the server serves them as immutable, an
// index.html that references them, and the download service worker sw.js. Deterministic: the same sources give byte-identical output.
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const here = new URL('.', import.meta.url).pathname;
const flag = process.argv.indexOf('--outdir');
const outdir = flag > 0 ? process.argv[flag + 1] : join(here, '..', 'tallow', 'static');

async function bundle(entry) {
  const result = await build({
    entryPoints: [join(here, 'src', entry)],
    bundle: true,
    minify: true,
    write: false,
    format: 'esm',
    target: ['chrome120', 'firefox128', 'safari17'],
    legalComments: 'eof',
    charset: 'utf8',
    logLevel: 'warning',
  });
  return result.outputFiles[0].contents;
}

function fingerprint(stem, ext, contents) {
  const hash = createHash('sha256').update(contents).digest('hex').slice(0, 12);
  return { name: `${stem}-${hash}.${ext}`, contents };
}

const assets = {
  js: fingerprint('app', 'js', await bundle('main.js')),
  css: fingerprint('app', 'css', await bundle('app.css')),
  icon: fingerprint('favicon', 'svg', await readFile(join(here, 'src', 'favicon.svg'))),
};
const template = await readFile(join(here, 'src', 'index.html'), 'utf8');
const html = template.replace(/\{\{(\w+)\}\}/g, (_, key) => assets[key].name);
// The download service worker keeps one stable name: its URL is its identity (and its scope).
const worker = { name: 'sw.js', contents: await bundle('sw.js') };
// The output says what it is: generated, not to be edited by hand (and collapsed in diffs).
const notes = {
  'README.md':
    '# tallow/static: generated\n\nThe web UI as built from `web/` by `npm run build` ' +
    '(`web/build.mjs`). Do not edit these files: change `web/src/`, rebuild and commit the ' +
    'result; the browser tests check that it matches the sources.\n',
  '.gitattributes': '* linguist-generated=true\n',
};
const files = [
  ...Object.values(assets),
  worker,
  { name: 'index.html', contents: Buffer.from(html) },
  ...Object.entries(notes).map(([name, text]) => ({ name, contents: Buffer.from(text) })),
];

// The output folder holds only the build: clear what an older build left.
await mkdir(outdir, { recursive: true });
for (const name of await readdir(outdir)) await rm(join(outdir, name), { recursive: true });
const report = [];
let total = 0;
let gzipped = 0;
for (const { name, contents } of files) {
  await writeFile(join(outdir, name), contents);
  const zipped = gzipSync(contents, { level: 9 }).length;
  total += contents.length;
  gzipped += zipped;
  report.push(`${name.padEnd(28)} ${String(contents.length).padStart(8)} B  ${String(zipped).padStart(7)} B gzip`);
}
// Print only once every file is written, so a closed stdout cannot leave a half-written build.
report.push(`${'total'.padEnd(28)} ${String(total).padStart(8)} B  ${String(gzipped).padStart(7)} B gzip`);
console.log(report.join('\n'));
