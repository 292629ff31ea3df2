/**
 * A small, strict flag parser: `--name value`, `--name=value`, boolean `--flag`.
 * Unknown flags are errors (the caller turns them into a message with suggestions).
 */
export interface FlagSpec {
  type: 'string' | 'number' | 'boolean';
  describe: string;
  default?: string | number | boolean;
}

export type FlagValues = Record<string, string | number | boolean | undefined>;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export function parseFlags(argv: string[], spec: Record<string, FlagSpec>): FlagValues {
  const out: FlagValues = Object.create(null) as FlagValues;
  for (const [name, s] of Object.entries(spec)) if (s.default !== undefined) out[name] = s.default;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new UsageError(`unexpected argument '${arg}'`);
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const s = Object.prototype.hasOwnProperty.call(spec, name) ? spec[name] : undefined;
    if (s === undefined) throw new UsageError(`unknown flag '--${name}'`);
    if (s.type === 'boolean') {
      out[name] = eq === -1 ? true : arg.slice(eq + 1) !== 'false';
      continue;
    }
    let value: string | undefined;
    if (eq !== -1) value = arg.slice(eq + 1);
    else {
      value = argv[++i];
      if (value === undefined) throw new UsageError(`flag '--${name}' needs a value`);
    }
    if (s.type === 'number') {
      const n = Number(value);
      if (value.trim() === '' || !Number.isFinite(n)) throw new UsageError(`flag '--${name}' needs a number, got '${value}'`);
      out[name] = n;
    } else out[name] = value;
  }
  return out;
}

export function flagHelp(spec: Record<string, FlagSpec>): string {
  return Object.entries(spec)
    .map(([name, s]) => {
      const left = `  --${name}${s.type === 'boolean' ? '' : ` <${s.type}>`}`;
      const def = s.default !== undefined ? ` (default ${String(s.default)})` : '';
      return `${left.padEnd(28)}${s.describe}${def}`;
    })
    .join('\n');
}
