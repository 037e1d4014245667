// Prints the licence of every package bundled (the lockfile's non-dev packages, in path
// order), for the LICENSE file next to the bundle: all are MIT, which asks for the notice.
const fs = require("fs");
const path = require("path");

const lock = JSON.parse(fs.readFileSync(path.join(__dirname, "package-lock.json"), "utf8"));
const parts = [];
for (const [where, meta] of Object.entries(lock.packages).sort(([a], [b]) => (a < b ? -1 : 1))) {
  if (!where || meta.dev) continue;
  const dir = path.join(__dirname, where);
  const file = fs.readdirSync(dir).find((name) => /^licen[cs]e/i.test(name));
  if (!file) throw new Error(`${where} has no licence file`);
  const name = where.replace(/^.*node_modules\//, "");
  const text = fs.readFileSync(path.join(dir, file), "utf8").trim();
  parts.push(`${name} ${meta.version} (${meta.license})\n\n${text}\n`);
}
process.stdout.write(parts.join(`\n${"-".repeat(72)}\n\n`));
