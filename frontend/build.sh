#!/usr/bin/env bash
# Build the dashboard's bundled files from the lockfile's exact versions (npm ci) with esbuild:
#   - vendor/codemirror-<version>/: CodeMirror 6 for the workflow editor, one minified ES module
#     (no source map) and LICENSE (the bundled packages' licences);
#   - dist/<page>.js and dist/<page>.css: each page's own ES modules (static/js, the source of
#     truth) and styles (static/css) in one file each, so a page loads a handful of files, not
#     twenty (frontend/pages/ lists what each page takes). CodeMirror stays a file of its own.
# The output is committed; .ci/bundle-check rebuilds it and fails when a committed file differs.
# Users never need Node.
#   frontend/build.sh [STATIC_DIR]   (default: the package's src/conveyor/web/static)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(node -p 'require(process.argv[1]).dependencies.codemirror' "$here/package.json")"
static="${1:-$here/../src/conveyor/web/static}"
out="$static/vendor/codemirror-$version"
cd "$here"
npm ci --no-audit --no-fund --loglevel=error >/dev/null
mkdir -p "$out" "$static/dist"
./node_modules/.bin/esbuild codemirror-entry.js \
  --bundle --format=esm --minify --target=es2020 --legal-comments=none \
  --log-level=warning --outfile="$out/codemirror.bundle.js"
node licenses.js >"$out/LICENSE"
rm -f "$static"/dist/*.js "$static"/dist/*.css
./node_modules/.bin/esbuild pages/*.js pages/*.css \
  --bundle --format=esm --minify --target=es2022 --legal-comments=none \
  --external:'../vendor/*' --log-level=warning --outdir="$static/dist"
echo "built $(cd "$out" && pwd)/codemirror.bundle.js and $(cd "$static/dist" && pwd)/"
