// Checks that every ```mermaid block in the Markdown files given (default:
// ../*.md) parses with the mermaid package, the renderer code hosts use.
// mermaid.parse needs a DOM (DOMPurify runs on import): jsdom provides one.
import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { JSDOM } from 'jsdom';

const { window } = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = window;
globalThis.document = window.document;
for (const name of ['DOMParser', 'Element', 'HTMLElement', 'Node', 'navigator']) {
  if (!(name in globalThis)) {
    Object.defineProperty(globalThis, name, { value: window[name], configurable: true });
  }
}
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });

const here = dirname(fileURLToPath(import.meta.url));
const docs = join(here, '..');
let files = process.argv.slice(2);
if (files.length === 0) {
  files = readdirSync(docs).filter((f) => f.endsWith('.md')).sort().map((f) => join(docs, f));
}

// blocks returns the mermaid blocks of a Markdown text with the line of
// their opening fence.
function blocks(text) {
  const out = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== '```mermaid') continue;
    const start = i + 1;
    const body = [];
    for (i++; i < lines.length && lines[i].trim() !== '```'; i++) body.push(lines[i]);
    if (i === lines.length) throw new Error(`line ${start}: mermaid block is not closed`);
    out.push({ line: start, text: body.join('\n') });
  }
  return out;
}

let failed = 0;
let count = 0;
for (const file of files) {
  const name = relative(process.cwd(), file);
  let found;
  try {
    found = blocks(readFileSync(file, 'utf8'));
  } catch (err) {
    console.error(`${name}: ${err.message}`);
    failed++;
    continue;
  }
  for (const b of found) {
    count++;
    try {
      await mermaid.parse(b.text);
    } catch (err) {
      failed++;
      const msg = String(err?.message ?? err).split('\n').join('\n    ');
      console.error(`${name}:${b.line}: mermaid block does not parse:\n    ${msg}`);
    }
  }
}
if (failed > 0) {
  console.error(`${failed} of ${count} mermaid blocks failed`);
  process.exit(1);
}
console.log(`${count} mermaid blocks in ${files.length} files parse`);
