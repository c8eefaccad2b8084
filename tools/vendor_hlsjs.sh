#!/usr/bin/env bash
# Refresh the vendored hls.js (the browser page plays HLS through it; no CDN): the light
# build and its licence, from the npm package. Usage: tools/vendor_hlsjs.sh [VERSION]
set -euo pipefail
version="${1:-1.7.4}"
dest="$(cd "$(dirname "$0")/.." && pwd)/vstore/service/page"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "hls.js@$version" >/dev/null && tar xzf hls.js-*.tgz)
cp "$work/package/dist/hls.light.min.js" "$dest/hls.light.min.js"
cp "$work/package/LICENSE" "$dest/hls.js-LICENSE.txt"
echo "hls.js $version vendored into $dest"
