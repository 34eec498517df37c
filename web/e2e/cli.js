// Command-line options for the Node scripts (web/e2e/*, scripts/ab/*.mjs):
// node:util parseArgs with their shared conventions.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/**
 * Parse process.argv with parseArgs `options` (strict: an unknown option or a
 * missing value prints "NAME: message" and exits 2).  -h/--help prints the
 * script's leading // comment (its usage) and exits 0.  `script` is the
 * caller's import.meta.url.  Returns { values, positionals }.
 */
export function cli(script, options, { allowPositionals = false } = {}) {
  const file = fileURLToPath(script);
  const name = file.split('/').pop().replace(/\.m?js$/, '');
  let parsed;
  try {
    parsed = parseArgs({ options: { help: { type: 'boolean', short: 'h' }, ...options }, allowPositionals, strict: true });
  } catch (e) {
    console.error(`${name}: ${e.message}`);
    process.exit(2);
  }
  if (parsed.values.help) {
    const lines = readFileSync(file, 'utf8').split('\n').filter((l) => !l.startsWith('#!'));
    const end = lines.findIndex((l) => !l.startsWith('//'));
    console.log(lines.slice(0, end < 0 ? lines.length : end).map((l) => l.slice(3)).join('\n'));
    process.exit(0);
  }
  return parsed;
}
