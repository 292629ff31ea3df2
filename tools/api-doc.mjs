#!/usr/bin/env node
// Writes docs/api.md, the library's API reference, from the package's type declarations
// (dist/src/**/*.d.ts, so `npm run build` first): every name each subpath of package.json's
// "exports" gives, its declaration and its TSDoc. The reference cannot drift from the code:
// test/docs-api.test.ts runs this with --check, which fails when docs/api.md differs from
// what the declarations give.
//
// Usage: node tools/api-doc.mjs [--check]   (npm run docs:api)
import { readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = join(root, 'docs', 'api.md');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

/** Each subpath with the declaration file it resolves to; subpaths sharing one file are one entry. */
function entries() {
  const byFile = new Map();
  for (const [sub, target] of Object.entries(pkg.exports)) {
    if (typeof target !== 'object' || typeof target.types !== 'string') continue;
    const file = join(root, target.types);
    const name = sub === '.' ? pkg.name : `${pkg.name}${sub.slice(1)}`;
    const seen = byFile.get(file);
    if (seen === undefined) byFile.set(file, { file, names: [name] });
    else seen.names.push(name);
  }
  return [...byFile.values()];
}

const KIND_ORDER = ['class', 'function', 'const', 'interface', 'type', 'enum', 'namespace'];
const KIND_TITLE = { class: 'Classes', function: 'Functions', const: 'Constants', interface: 'Interfaces', type: 'Types', enum: 'Enums', namespace: 'Namespaces' };

/** The kind a symbol is listed under: what it is as a value first (a const with a type of the same name is a const). */
function kindOf(decls) {
  const kinds = decls.map((d) => {
    if (ts.isClassDeclaration(d)) return 'class';
    if (ts.isFunctionDeclaration(d)) return 'function';
    if (ts.isVariableDeclaration(d)) return 'const';
    if (ts.isInterfaceDeclaration(d)) return 'interface';
    if (ts.isTypeAliasDeclaration(d)) return 'type';
    if (ts.isEnumDeclaration(d)) return 'enum';
    return 'namespace';
  });
  return KIND_ORDER.find((k) => kinds.includes(k)) ?? 'namespace';
}

const printer = ts.createPrinter({ removeComments: true, omitTrailingSemicolon: true });

/** A declaration as one line of TypeScript, without comments or body. */
function signature(node, sf) {
  let text = printer.printNode(ts.EmitHint.Unspecified, node, sf);
  text = text.replace(/\s+/g, ' ').replace(/;$/, '').replace(/^export /, '').replace(/^declare /, '');
  return text;
}

/** Inline code that survives backticks inside it. */
function code(text) {
  if (!text.includes('`')) return `\`${text}\``;
  return `\`\` ${text} \`\``;
}

/** The TSDoc of a declaration: its text and its tags, as markdown lines. */
function tsdoc(node) {
  const lines = [];
  const target = ts.isVariableDeclaration(node) ? node.parent.parent : node;
  for (const doc of ts.getJSDocCommentsAndTags(target)) {
    if (!ts.isJSDoc(doc)) continue;
    const text = ts.getTextOfJSDocComment(doc.comment);
    if (text) lines.push(text.trim());
    for (const tag of doc.tags ?? []) {
      const name = tag.tagName.text;
      const param = ts.isJSDocParameterTag(tag) ? ` \`${tag.name.getText()}\`` : '';
      const body = ts.getTextOfJSDocComment(tag.comment)?.trim() ?? '';
      lines.push(`*@${name}*${param}${body === '' ? '' : ` ${body}`}`);
    }
  }
  return lines.join('\n\n');
}

/** Whether a member belongs to the documented surface (private, #private and `@internal` members do not). */
function isPublicMember(m) {
  if (m.name !== undefined && ts.isPrivateIdentifier(m.name)) return false;
  if (ts.getJSDocTags(m).some((t) => t.tagName.text === 'internal')) return false;
  const mods = ts.canHaveModifiers(m) ? (ts.getModifiers(m) ?? []) : [];
  return !mods.some((x) => x.kind === ts.SyntaxKind.PrivateKeyword || x.kind === ts.SyntaxKind.ProtectedKeyword);
}

/** The object type literal a const or a type alias is declared with, if that is what it is. */
function objectType(d) {
  const type = ts.isVariableDeclaration(d) || ts.isTypeAliasDeclaration(d) ? d.type : undefined;
  return type !== undefined && ts.isTypeLiteralNode(type) ? type : undefined;
}

/** `const X` or `type X<T> =` of a declaration whose members are listed below it. */
function literalHead(d, sf) {
  if (ts.isVariableDeclaration(d)) return `const ${d.name.getText(sf)}`;
  const params = d.typeParameters === undefined ? '' : `<${d.typeParameters.map((p) => printer.printNode(ts.EmitHint.Unspecified, p, sf)).join(', ')}>`;
  return `type ${d.name.text}${params} =`;
}

/** One member of a class, interface or object type: its signature, then its TSDoc under it. */
function memberLine(m, sf, prelude) {
  const doc = tsdoc(m);
  return `- ${code(signature(m, sf))}${doc === '' ? '' : `\n${indent(withPrelude(doc, prelude))}`}`;
}

/** Indents a block of markdown under a list item. */
function indent(text) {
  return text.split('\n').map((l) => (l === '' ? '' : `  ${l}`)).join('\n');
}

/** TSDoc may hold fenced examples; they are type-checked like every block of the docs, with the subpath's names in scope. */
function withPrelude(text, prelude) {
  return text.replace(/^([ \t]*)```(ts|js)\n/gm, (_, pad, lang) => `${pad}<!-- doc-test: prelude\n${prelude}\n-->\n${pad}\`\`\`${lang}\n`);
}

function render() {
  const list = entries();
  const program = ts.createProgram(list.map((e) => e.file), { noEmit: true, skipLibCheck: true, types: ['node'] });
  const checker = program.getTypeChecker();
  const anchors = new Map();
  const anchor = (title) => {
    const base = title.toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-');
    const n = anchors.get(base) ?? 0;
    anchors.set(base, n + 1);
    return n === 0 ? base : `${base}-${n}`;
  };
  const documented = new Map();
  const parts = [
    '# API reference',
    '',
    `Every name the package \`${pkg.name}\` exports, by import path, with its declaration and its TSDoc.`,
    'Generated from the type declarations by `npm run docs:api` (`node tools/api-doc.mjs`); a test',
    'fails when this file differs from what they give, so edit the TSDoc in `src/`, not this file.',
    'Guides that use these names: [the README](../README.md#the-library), [errors](errors.md), [the cluster](cluster.md), [the bus](bus.md).',
    '',
  ];
  const sections = [];
  for (const entry of list) {
    const sf = program.getSourceFile(entry.file);
    if (sf === undefined) throw new Error(`${relative(root, entry.file)} not found: run npm run build first`);
    const moduleSymbol = checker.getSymbolAtLocation(sf);
    const exports = moduleSymbol === undefined ? [] : checker.getExportsOfModule(moduleSymbol);
    const items = exports.map((s) => {
      const target = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
      const decls = target.getDeclarations() ?? [];
      return { name: s.getName(), target, decls, kind: kindOf(decls) };
    });
    items.sort((a, b) => KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const title = entry.names.map((n) => `\`${n}\``).join(', ');
    const sectionAnchor = anchor(entry.names.join(' '));
    sections.push({ title, sectionAnchor, entry, items, sf });
  }
  // The index first: every import path and its names, each linking to its entry.
  const bodies = [];
  for (const s of sections) {
    const valueNames = [];
    const typeNames = [];
    for (const it of s.items) (it.target.flags & ts.SymbolFlags.Value ? valueNames : typeNames).push(it.name);
    const from = `'${s.entry.names[0]}'`;
    const prelude = [valueNames.length > 0 ? `import { ${valueNames.join(', ')} } from ${from};` : '', typeNames.length > 0 ? `import type { ${typeNames.join(', ')} } from ${from};` : ''].filter((l) => l !== '').join('\n');
    const body = [`## ${s.title}`, ''];
    const index = [];
    let kind;
    for (const it of s.items) {
      if (it.kind !== kind) {
        kind = it.kind;
        index.push(`${index.length === 0 ? '' : '\n'}${KIND_TITLE[kind]}: `);
      } else index[index.length - 1] += ', ';
      const earlier = documented.get(it.target);
      if (earlier !== undefined) {
        index[index.length - 1] += `[\`${it.name}\`](#${earlier})`;
        continue;
      }
      const a = anchor(it.name);
      documented.set(it.target, a);
      index[index.length - 1] += `[\`${it.name}\`](#${a})`;
      const decl = it.decls[0];
      const file = decl === undefined ? '' : relative(root, decl.getSourceFile().fileName).replace(/^dist\//, '').replace(/\.d\.ts$/, '.ts');
      const entryLines = [`### ${it.name}`, '', `${it.kind} in [${file}](../${file})`, ''];
      for (const d of it.decls) {
        const dsf = d.getSourceFile();
        if (ts.isClassDeclaration(d) || ts.isInterfaceDeclaration(d)) {
          const head = signature(ts.isClassDeclaration(d)
            ? ts.factory.updateClassDeclaration(d, d.modifiers, d.name, d.typeParameters, d.heritageClauses, [])
            : ts.factory.updateInterfaceDeclaration(d, d.modifiers, d.name, d.typeParameters, d.heritageClauses, []), dsf).replace(/ \{\s*\}$/, '');
          entryLines.push(code(head), '');
          const doc = tsdoc(d);
          if (doc !== '') entryLines.push(withPrelude(doc, prelude), '');
          const members = d.members.filter(isPublicMember);
          entryLines.push(...members.map((m) => memberLine(m, dsf, prelude)));
          if (members.length > 0) entryLines.push('');
        } else {
          const node = ts.isVariableDeclaration(d) ? d.parent.parent : d;
          const literal = objectType(d);
          // An object type reads better member by member than as one long line.
          entryLines.push(code(literal === undefined ? signature(node, dsf) : literalHead(d, dsf)), '');
          const doc = tsdoc(d);
          if (doc !== '') entryLines.push(withPrelude(doc, prelude), '');
          if (literal !== undefined && literal.members.length > 0) entryLines.push(...literal.members.map((m) => memberLine(m, dsf, prelude)), '');
        }
      }
      body.push('', ...entryLines);
    }
    bodies.push({ s, index, body });
  }
  parts.push('| import | names |', '|---|---|');
  for (const { s, index } of bodies) parts.push(`| [${s.title}](#${s.sectionAnchor}) | ${s.items.length} |`);
  parts.push('');
  for (const { index, body } of bodies) {
    parts.push(body[0], '', ...index, '', ...body.slice(2));
    parts.push('');
  }
  return `${parts.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd()}\n`;
}

const text = render();
if (process.argv.includes('--check')) {
  const current = readFileSync(out, 'utf8');
  if (current !== text) {
    const a = current.split('\n');
    const b = text.split('\n');
    const i = a.findIndex((l, n) => l !== b[n]);
    console.error(`docs/api.md differs from the declarations from line ${i + 1}:\n- ${a[i]}\n+ ${b[i]}\nRun npm run docs:api after npm run build.`);
    process.exit(1);
  }
  console.log('docs/api.md matches the declarations');
} else {
  writeFileSync(out, text);
  console.log(`wrote ${relative(root, out)}`);
}
