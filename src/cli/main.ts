#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { resolveSettings, parseFlags, flagHelp, UsageError, loadSuggester, didYouMean, listenErrorLine } from './args.js';
import type { FlagSpec, FlagValues } from './args.js';
import { echoFlags, runEcho } from './echo.js';
import { serveFlags, serveHelp, runServe } from './serve.js';
import { tokenFlags, tokenHelp, runToken } from './token.js';
import { tuneFlags, runTune } from './tune.js';
import { survivePipes } from '../server/supervised.js';

interface Command {
  describe: string;
  flags: Record<string, FlagSpec>;
  /** Extra help text shown above the flags. */
  help?: string;
  /** Settings also come from MURMUR_* variables (and a config file when the command has --config). */
  env?: boolean;
  run(flags: FlagValues): Promise<void>;
}

const commands: Record<string, Command> = {
  serve: { describe: 'run the real-time server (pub/sub, presence, history, HTTP API, demo chat)', flags: serveFlags, help: serveHelp, env: true, run: runServe },
  token: { describe: 'mint (or --verify) a signed access token for murmur serve', flags: tokenFlags, help: tokenHelp, env: true, run: runToken },
  echo: { describe: 'run an echo server (conformance and benchmarks)', flags: echoFlags, run: runEcho },
  tune: { describe: 'check rlimits, /proc/sys and memory for N connections (changes nothing)', flags: tuneFlags, run: runTune },
};

function usage(): string {
  const lines = Object.entries(commands).map(([n, c]) => `  ${n.padEnd(10)}${c.describe}`);
  return `usage: murmur <command> [flags]\n\ncommands:\n${lines.join('\n')}\n\nmurmur <command> --help for its flags; murmur --version`;
}

function commandHelp(name: string, cmd: Command): string {
  const intro = cmd.help !== undefined ? `${cmd.help}\n\n` : '';
  return `usage: murmur ${name} [flags]\n\n${intro}flags:\n${flagHelp(cmd.flags, { env: cmd.env === true })}`;
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

async function main(argv: string[]): Promise<void> {
  await loadSuggester();
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    const cmd = topic !== undefined && Object.prototype.hasOwnProperty.call(commands, topic) ? commands[topic] : undefined;
    console.log(cmd !== undefined && topic !== undefined ? commandHelp(topic, cmd) : usage());
    return;
  }
  if (name === '--version' || name === 'version') {
    console.log(version());
    return;
  }
  const cmd = Object.prototype.hasOwnProperty.call(commands, name) ? commands[name] : undefined;
  if (cmd === undefined) throw new UsageError(`unknown command '${name}'${didYouMean(name, Object.keys(commands))}\n\n${usage()}`);
  // --help wins over everything else on the line (even a missing required flag).
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(commandHelp(name, cmd));
    return;
  }
  let flags: FlagValues;
  if (cmd.env === true) {
    const settings = resolveSettings(rest, cmd.flags, { configFlag: 'config' in cmd.flags ? 'config' : undefined });
    for (const w of settings.warnings) process.stderr.write(`murmur: warning: ${w}\n`);
    flags = settings.values;
  } else flags = parseFlags(rest, cmd.flags);
  await cmd.run(flags);
}

survivePipes();
main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError) {
    console.error(`murmur: ${err.message}`);
    process.exit(2);
  }
  const line = listenErrorLine(err);
  if (line !== undefined) {
    console.error(`murmur: ${line}`);
    process.exit(1);
  }
  console.error(err);
  process.exit(1);
});
