// The layers of src/ (README.md), checked by `npm run lint`: a page imports panels and lib,
// never another page; a panel imports panels and lib, never a page; lib imports only lib.
// main.ts, the entry point, may import anything.

import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const src = resolve(dirname(fileURLToPath(import.meta.url)), "..", "src");

/** Every .ts file under `dir`. */
function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

/** ["pages", "worklist"] for src/pages/worklist.ts, ["lib", "api"], ["main"]… */
function place(path) {
  const parts = relative(src, path).split(sep);
  return [parts[0].replace(/\.ts$/, ""), (parts[1] ?? "").replace(/\.ts$/, "")];
}

const allowed = {
  lib: ["lib"],
  panels: ["lib", "panels"],
  pages: ["lib", "panels", "pages"], // its own module or folder only: see below
};

const problems = [];
for (const file of sources(src)) {
  const [layer, name] = place(file);
  if (!(layer in allowed)) continue;
  const text = readFileSync(file, "utf8");
  // `from "./x"`, `import "./x"`, `import("./x")`: relative imports (packages are not layers).
  for (const [, specifier] of text.matchAll(/\b(?:from|import)\s*\(?\s*["'](\.\.?\/[^"']+)["']/g)) {
    const [target, targetName] = place(resolve(dirname(file), specifier));
    const otherPage = layer === "pages" && target === "pages" && targetName !== name;
    if (!allowed[layer].includes(target) || otherPage) {
      const why = otherPage ? "a page may not import another page" : `${layer}/ may not import ${target}/`;
      problems.push(`${relative(src, file)} imports ${specifier}: ${why}`);
    }
  }
}
if (problems.length > 0) {
  console.error(`src/ layers (README.md):\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
