/**
 * A small, strict settings parser for the CLI: flags (`--name value`, `--name=value`, boolean
 * `--flag`, repeatable list flags), environment variables (MURMUR_<NAME>), and an optional
 * JSON config file whose keys are the flag names. Precedence: flag > environment > config
 * file > default. Unknown flags and config keys are errors with a "did you mean ...?"; an
 * unknown MURMUR_* variable close to a known one is a warning with the same suggestion.
 */
import { readFileSync } from 'node:fs';

export interface FlagSpec {
  /** 'list': comma-separated and/or repeated (`--sub a --sub b,c`); a JSON array in a config file. */
  type: 'string' | 'number' | 'boolean' | 'list';
  describe: string;
  default?: string | number | boolean | readonly string[];
  /** Never shown in help or echoed (secrets). */
  secret?: boolean;
  /** Not read from the environment or a config file (help, config). */
  cliOnly?: boolean;
}

export type FlagValue = string | number | boolean | string[] | undefined;
export type FlagValues = Record<string, FlagValue>;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

// ---- did you mean ---------------------------------------------------------------------------

let distanceImpl: (a: string, b: string) => number = editDistance;

/**
 * Uses fastest-levenshtein when it is installed (an optional dependency: `npm install
 * --omit=optional` leaves it out), else the built-in edit distance. Safe to call repeatedly.
 */
export async function loadSuggester(): Promise<'fastest-levenshtein' | 'built-in'> {
  const name = 'fastest-levenshtein'; // a variable: the build must not require the package
  try {
    const mod = (await import(name)) as { distance?: (a: string, b: string) => number; default?: { distance?: (a: string, b: string) => number } };
    const fn = mod.distance ?? mod.default?.distance;
    if (typeof fn === 'function') {
      distanceImpl = fn;
      return 'fastest-levenshtein';
    }
  } catch {
    // not installed: keep the built-in one
  }
  distanceImpl = editDistance;
  return 'built-in';
}

/** Levenshtein distance, two rows: the fallback when fastest-levenshtein is missing. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  if (a.length === 0) return b.length;
  if (b.length === 0) return a.length;
  let prev = new Array<number>(b.length + 1);
  let cur = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1;
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[b.length]!;
}

const normalise = (s: string): string => s.toLowerCase().replace(/[^a-z0-9]/g, '');

/**
 * The candidate `word` most likely meant, or undefined when none is close: same letters in
 * another spelling (maxPayload for max-payload), a unique prefix, or a small edit distance
 * (1 for words of up to 3 characters, 2 up to 8, else 3: a swapped pair costs 2).
 */
export function suggest(word: string, candidates: Iterable<string>): string | undefined {
  const list = [...candidates];
  const n = normalise(word);
  const same = list.find((c) => normalise(c) === n);
  if (same !== undefined) return same;
  if (n.length >= 3) {
    const prefixed = list.filter((c) => normalise(c).startsWith(n));
    if (prefixed.length === 1) return prefixed[0];
  }
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of list) {
    const d = distanceImpl(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  const limit = word.length <= 3 ? 1 : word.length <= 8 ? 2 : 3;
  return bestD <= limit ? best : undefined;
}

/** " (did you mean 'x'?)" or ''. */
export function didYouMean(word: string, candidates: Iterable<string>, format: (s: string) => string = (s) => `'${s}'`): string {
  const s = suggest(word, candidates);
  return s === undefined ? '' : ` (did you mean ${format(s)}?)`;
}

// ---- errors -------------------------------------------------------------------------------

/**
 * A library message in the CLI's terms: each camelCase option name that is a flag of `spec`
 * in kebab case becomes that flag (requireToken -> --require-token).
 */
export function inFlagTerms(message: string, spec: Record<string, FlagSpec>): string {
  return message.replace(/\b[a-z]+(?:[A-Z][a-z0-9]*)+\b/g, (word) => {
    const flag = word.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    return Object.prototype.hasOwnProperty.call(spec, flag) ? `--${flag}` : word;
  });
}

/**
 * One line for the errors a user causes by where a command is told to listen (the port is
 * taken, a privileged port, an address or host name that does not exist here); undefined for
 * anything else, which is a bug and keeps its stack.
 */
export function listenErrorLine(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as { code?: unknown; syscall?: unknown; address?: unknown; port?: unknown; hostname?: unknown };
  const where = typeof e.address === 'string' ? `${e.address.includes(':') ? `[${e.address}]` : e.address}${typeof e.port === 'number' ? `:${e.port}` : ''}` : 'the address';
  switch (e.code) {
    case 'EADDRINUSE':
      return `cannot listen on ${where}: the address is already in use (another process holds the port)`;
    case 'EACCES':
      return `cannot listen on ${where}: permission denied (ports below 1024 need privileges)`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${where}: no such address on this machine`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
      return `cannot resolve the host name '${typeof e.hostname === 'string' ? e.hostname : '?'}' (${e.code === 'ENOTFOUND' ? 'no such host' : 'name resolution failed'})`;
    default:
      return undefined;
  }
}

// ---- flags --------------------------------------------------------------------------------

/** Parses flags into the values given explicitly (no defaults). */
export function parseArgs(argv: string[], spec: Record<string, FlagSpec>): FlagValues {
  const out: FlagValues = Object.create(null) as FlagValues;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--') || arg === '--') throw new UsageError(`unexpected argument '${arg}'`);
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const s = Object.prototype.hasOwnProperty.call(spec, name) ? spec[name] : undefined;
    if (s === undefined) throw new UsageError(`unknown flag '--${name}'${didYouMean(name, Object.keys(spec), (c) => `'--${c}'`)}`);
    if (s.type === 'boolean') {
      out[name] = eq === -1 ? true : parseBoolean(arg.slice(eq + 1), `--${name}`);
      continue;
    }
    let value: string | undefined;
    if (eq !== -1) value = arg.slice(eq + 1);
    else {
      value = argv[++i];
      if (value === undefined) throw new UsageError(`flag '--${name}' needs a value`);
    }
    if (s.type === 'list') {
      const prev = out[name];
      out[name] = [...(Array.isArray(prev) ? prev : []), ...splitList(value)];
    } else out[name] = coerce(value, s, `--${name}`);
  }
  return out;
}

/** Flags with defaults filled in (what `murmur echo` uses). */
export function parseFlags(argv: string[], spec: Record<string, FlagSpec>): FlagValues {
  return { ...defaults(spec), ...parseArgs(argv, spec) };
}

function defaults(spec: Record<string, FlagSpec>): FlagValues {
  const out: FlagValues = Object.create(null) as FlagValues;
  for (const [name, s] of Object.entries(spec)) if (s.default !== undefined) out[name] = Array.isArray(s.default) ? [...(s.default as string[])] : (s.default as FlagValue);
  return out;
}

/** A decimal number: digits with an optional sign, fraction and exponent (1000, -1.5, 1e6). */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

function coerce(value: string, s: FlagSpec, where: string): FlagValue {
  switch (s.type) {
    case 'number': {
      // Decimal only: Number() would also take 0x10, 0b11 and 0o7, which no one means in a flag.
      const n = DECIMAL.test(value.trim()) ? Number(value) : NaN;
      if (!Number.isFinite(n)) throw new UsageError(`${where} needs a number, got '${value}'`);
      return n;
    }
    case 'boolean':
      return parseBoolean(value, where);
    case 'list':
      return splitList(value);
    default:
      return value;
  }
}

function parseBoolean(v: string, where: string): boolean {
  const l = v.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(l)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(l)) return false;
  throw new UsageError(`${where} needs true or false, got '${v}'`);
}

function splitList(v: string): string[] {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** MURMUR_HISTORY_MAX_BYTES for history-max-bytes. */
export function envName(flag: string, prefix = 'MURMUR_'): string {
  return prefix + flag.toUpperCase().replace(/-/g, '_');
}

export type Source = 'default' | 'config' | 'env' | 'flag';

export interface Settings {
  values: FlagValues;
  /** Where each value came from. */
  sources: Record<string, Source>;
  /** Non-fatal problems (an unknown MURMUR_* variable close to a known one). */
  warnings: string[];
  /** The config file read, if any. */
  configPath: string | undefined;
}

export interface ResolveOptions {
  env?: NodeJS.ProcessEnv;
  /** The flag naming a config file ('config'); its variable is MURMUR_CONFIG. */
  configFlag?: string;
  readFile?: (path: string) => string;
  envPrefix?: string;
}

/**
 * Resolves settings: defaults, then the config file (`--config` or MURMUR_CONFIG), then
 * MURMUR_* variables, then flags.
 * @throws UsageError for an unknown flag or config key (with a suggestion), a value of the
 *   wrong type, or a config file that cannot be read or is not a JSON object.
 */
export function resolveSettings(argv: string[], spec: Record<string, FlagSpec>, o: ResolveOptions = {}): Settings {
  const env = o.env ?? process.env;
  const prefix = o.envPrefix ?? 'MURMUR_';
  const explicit = parseArgs(argv, spec);
  const values = defaults(spec);
  const sources: Record<string, Source> = Object.create(null) as Record<string, Source>;
  for (const k of Object.keys(values)) sources[k] = 'default';
  const warnings: string[] = [];
  const settable = Object.entries(spec).filter(([, s]) => s.cliOnly !== true);
  const settableNames = settable.map(([n]) => n);

  let configPath: string | undefined;
  if (o.configFlag !== undefined) {
    const fromFlag = explicit[o.configFlag];
    const fromEnv = env[envName(o.configFlag, prefix)];
    configPath = typeof fromFlag === 'string' ? fromFlag : fromEnv !== undefined && fromEnv !== '' ? fromEnv : undefined;
  }
  if (configPath !== undefined) {
    let text: string;
    try {
      text = (o.readFile ?? ((p) => readFileSync(p, 'utf8')))(configPath);
    } catch (err) {
      throw new UsageError(`cannot read config file ${configPath}: ${(err as Error).message}`);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new UsageError(`config file ${configPath} is not JSON: ${(err as Error).message}`);
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new UsageError(`config file ${configPath} must hold a JSON object of settings`);
    for (const [key, v] of Object.entries(raw as Record<string, unknown>)) {
      if (!settableNames.includes(key)) throw new UsageError(`unknown config key '${key}' in ${configPath}${didYouMean(key, settableNames)}`);
      values[key] = fromJson(v, spec[key]!, `config key '${key}' in ${configPath}`);
      sources[key] = 'config';
    }
  }

  for (const [name, s] of settable) {
    const v = env[envName(name, prefix)];
    if (v === undefined) continue;
    values[name] = coerce(v, s, envName(name, prefix));
    sources[name] = 'env';
  }
  const known = new Set(settable.map(([n]) => envName(n, prefix)));
  if (o.configFlag !== undefined) known.add(envName(o.configFlag, prefix));
  for (const key of Object.keys(env)) {
    if (!key.startsWith(prefix) || known.has(key)) continue;
    const hint = suggest(key, known);
    // Only near misses: other MURMUR_* variables belong to other tools (the test runner's).
    if (hint !== undefined) warnings.push(`unknown environment variable ${key} (did you mean ${hint}?)`);
  }

  for (const [k, v] of Object.entries(explicit)) {
    values[k] = v;
    sources[k] = 'flag';
  }
  return { values, sources, warnings, configPath };
}

function fromJson(v: unknown, s: FlagSpec, where: string): FlagValue {
  switch (s.type) {
    case 'number':
      if (typeof v === 'number' && Number.isFinite(v)) return v;
      if (typeof v === 'string') return coerce(v, s, where);
      break;
    case 'boolean':
      if (typeof v === 'boolean') return v;
      if (typeof v === 'string') return coerce(v, s, where);
      break;
    case 'list':
      if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return [...(v as string[])];
      if (typeof v === 'string') return splitList(v);
      break;
    default:
      if (typeof v === 'string') return v;
      if (typeof v === 'number') return String(v);
  }
  throw new UsageError(`${where} must be ${s.type === 'list' ? 'an array of strings' : `a ${s.type}`}, got ${JSON.stringify(v)}`);
}

/** Width of `--help` output: descriptions wrap to it. */
export const HELP_WIDTH = 100;
/** The flag column never grows past this; a longer flag puts its description on the next line. */
const HELP_FLAG_COLUMN_MAX = 36;

/**
 * The flags of a command in two columns (flag, then its description with its default and
 * variable), descriptions wrapped at HELP_WIDTH and aligned; a flag too long for the column
 * gets its description on the lines below it.
 */
export function flagHelp(spec: Record<string, FlagSpec>, o: { env?: boolean; envPrefix?: string } = {}): string {
  const rows = Object.entries(spec).map(([name, s]) => {
    const left = `  --${name}${s.type === 'boolean' ? '' : s.type === 'list' ? ' <a,b,...>' : ` <${s.type}>`}`;
    let def = '';
    if (s.default !== undefined && s.secret !== true) {
      const d = Array.isArray(s.default) ? (s.default as string[]).join(',') || "''" : String(s.default);
      def = ` (default ${d})`;
    }
    const env = o.env === true && s.cliOnly !== true ? ` [${envName(name, o.envPrefix)}]` : '';
    return { left, text: `${s.describe}${def}${env}` };
  });
  const fitting = rows.map((r) => r.left.length).filter((n) => n + 2 <= HELP_FLAG_COLUMN_MAX);
  const column = Math.max(0, ...fitting) + 2;
  const indent = ' '.repeat(column);
  return rows
    .map(({ left, text }) => {
      const lines = wrap(text, HELP_WIDTH - column);
      const first = left.length + 2 <= column ? `${left.padEnd(column)}${lines.shift() ?? ''}` : left;
      return [first, ...lines.map((l) => indent + l)].join('\n');
    })
    .join('\n');
}

/** Words of `text` in lines of at most `width` characters (a longer word gets a line of its own). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}
