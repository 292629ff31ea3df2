#!/usr/bin/env node
import { parseFlags, flagHelp, UsageError } from './args.js';
import type { FlagSpec, FlagValues } from './args.js';
import { echoFlags, runEcho } from './echo.js';

interface Command {
  describe: string;
  flags: Record<string, FlagSpec>;
  run(flags: FlagValues): Promise<void>;
}

const commands: Record<string, Command> = {
  echo: { describe: 'run an echo server (conformance and benchmarks)', flags: echoFlags, run: runEcho },
};

function usage(): string {
  const lines = Object.entries(commands).map(([n, c]) => `  ${n.padEnd(10)}${c.describe}`);
  return `usage: murmur <command> [flags]\n\ncommands:\n${lines.join('\n')}\n\nmurmur <command> --help for its flags`;
}

async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === 'help') {
    console.log(usage());
    return;
  }
  const cmd = Object.prototype.hasOwnProperty.call(commands, name) ? commands[name] : undefined;
  if (cmd === undefined) throw new UsageError(`unknown command '${name}'\n\n${usage()}`);
  const flags = parseFlags(rest, cmd.flags);
  if (flags.help === true) {
    console.log(`usage: murmur ${name} [flags]\n\n${flagHelp(cmd.flags)}`);
    return;
  }
  await cmd.run(flags);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError) {
    console.error(`murmur: ${err.message}`);
    process.exit(2);
  }
  console.error(err);
  process.exit(1);
});
