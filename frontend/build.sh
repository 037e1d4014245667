#!/usr/bin/env bash
# Build the CodeMirror bundle the workflow editor loads: exact versions from package-lock.json
# (npm ci), one minified ES module, no source map, and LICENSE (the bundled packages' licences). The output is committed; .ci/bundle-check
# rebuilds it and fails when the committed file differs. Users never need Node.
#   frontend/build.sh [OUTPUT_DIR]   (default: the package's vendor directory)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(node -p 'require(process.argv[1]).dependencies.codemirror' "$here/package.json")"
out="${1:-$here/../src/conveyor/web/static/vendor/codemirror-$version}"
cd "$here"
npm ci --no-audit --no-fund --loglevel=error >/dev/null
mkdir -p "$out"
./node_modules/.bin/esbuild codemirror-entry.js \
  --bundle --format=esm --minify --target=es2020 --legal-comments=none \
  --log-level=warning --outfile="$out/codemirror.bundle.js"
node licenses.js >"$out/LICENSE"
echo "built $(cd "$out" && pwd)/codemirror.bundle.js"
