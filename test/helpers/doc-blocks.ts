// The fenced code blocks of a Markdown file, with the marker comment that may precede each:
//   <!-- doc-test: run -->                 a whole program: compiled, then run, must exit 0
//   <!-- doc-test: skip <reason> -->       not checked (the reason is required)
//   <!-- doc-test: prelude
//   declare const conn: Connection<unknown>;
//   -->                                    TypeScript put before the block (what a fragment assumes)
// A marker belongs to the fence on the line right after the comment's last line.

export interface DocBlock {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  code: string;
  run: boolean;
  skip: string | undefined;
  prelude: string;
}

const MARKER = /^<!-- doc-test: (run|skip|prelude)\b([\s\S]*?)-->$/;

export function docBlocks(file: string, text: string): DocBlock[] {
  const lines = text.split('\n');
  const out: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(\S*)\s*$/.exec(lines[i]!);
    if (open === null) continue;
    const indent = open[1]!.length;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]!); i++) body.push(lines[i]!.slice(indent));
    const block: DocBlock = { file, line: start + 1, lang: open[2]!, code: body.join('\n'), run: false, skip: undefined, prelude: '' };
    // The marker: a comment that ends on the line above the fence.
    if (start > 0 && lines[start - 1]!.trimEnd().endsWith('-->')) {
      let from = start - 1;
      while (from > 0 && !lines[from]!.trimStart().startsWith('<!--')) from--;
      const m = MARKER.exec(lines.slice(from, start).join('\n').trim());
      if (m !== null) {
        if (m[1] === 'run') block.run = true;
        else if (m[1] === 'skip') {
          block.skip = m[2]!.trim();
          if (block.skip === '') throw new Error(`${file}:${start}: a doc-test skip marker needs a reason`);
        } else block.prelude = m[2]!.replace(/^\s*\n/, '');
      }
    }
    out.push(block);
  }
  return out;
}

/** Shell words of one command line: quotes kept together, `#` comments dropped; `&&`, `;`, `|` and `&` split commands. */
export function shellCommands(line: string): string[][] {
  const commands: string[][] = [];
  let words: string[] = [];
  let word = '';
  let inWord = false;
  let quote = '';
  const endWord = (): void => {
    if (inWord) words.push(word);
    word = '';
    inWord = false;
  };
  const endCommand = (): void => {
    endWord();
    if (words.length > 0) commands.push(words);
    words = [];
  };
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote !== '') {
      if (c === quote) quote = '';
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      inWord = true;
    } else if (c === '#' && !inWord) break;
    else if (c === ' ' || c === '\t') endWord();
    else if (c === ';' || c === '|' || c === '&') endCommand();
    else {
      word += c;
      inWord = true;
    }
  }
  endCommand();
  return commands;
}
