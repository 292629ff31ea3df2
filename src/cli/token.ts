/**
 * `murmur token`: mints a token for `murmur serve` (for tests and small set-ups; a real
 * deployment mints them in its own backend with the same format, docs/serve-protocol.md), or checks
 * one with --verify.
 */
import { mintToken, verifyToken } from '../app/token.js';
import { UsageError } from './args.js';
import type { FlagSpec, FlagValues } from './args.js';

export const tokenFlags: Record<string, FlagSpec> = {
  secret: { type: 'string', describe: 'HMAC secret, the same as the server\'s (or MURMUR_SECRET)', secret: true },
  user: { type: 'string', describe: 'user id the token names' },
  sub: { type: 'list', describe: 'topic patterns it may subscribe to (and read history of)', default: [] },
  pub: { type: 'list', describe: 'topic patterns it may publish to', default: [] },
  presence: { type: 'list', describe: 'topic patterns whose presence it may see', default: [] },
  ttl: { type: 'number', describe: 'lifetime in seconds', default: 3600 },
  verify: { type: 'string', describe: 'check this token instead of minting one; prints its claims', cliOnly: true },
  help: { type: 'boolean', describe: 'show this help', cliOnly: true },
};

export const tokenHelp = `Mints a signed token (printed on stdout), or checks one with --verify.
Example: murmur token --secret S --user ada --sub 'room:*' --pub 'room:*' --presence 'room:*' --ttl 3600
Connect with ws://host:8080/ws?token=<token> or the header Authorization: Bearer <token>.`;

export async function runToken(flags: FlagValues): Promise<void> {
  const secret = flags.secret;
  if (typeof secret !== 'string' || secret === '') throw new UsageError('murmur token: --secret (or MURMUR_SECRET) is required');
  if (typeof flags.verify === 'string') {
    const r = verifyToken(flags.verify, secret);
    if (!r.ok) {
      process.stderr.write(`invalid token: ${r.code}: ${r.message}\n`);
      process.exitCode = 1;
      return;
    }
    const c = r.claims;
    process.stdout.write(`${JSON.stringify({ user: c.user, exp: c.exp, iat: c.iat, expires: new Date(c.exp * 1000).toISOString(), ...c.permissions })}\n`);
    return;
  }
  if (typeof flags.user !== 'string' || flags.user === '') throw new UsageError('murmur token: --user is required');
  try {
    const token = mintToken(secret, {
      user: flags.user,
      subscribe: flags.sub as string[],
      publish: flags.pub as string[],
      presence: flags.presence as string[],
      ttlSeconds: flags.ttl as number,
    });
    process.stdout.write(`${token}\n`);
  } catch (err) {
    if (err instanceof TypeError) throw new UsageError(`murmur token: ${err.message}`);
    throw err;
  }
}
