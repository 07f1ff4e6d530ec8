#!/usr/bin/env bash
# Install MathJax 3 locally so the book renders maths without any CDN.
#
# npm's `mathjax@3` package is installed into a cache folder and its `es5/`
# tree (tex-chtml-full.js plus the fonts/components it loads lazily) is copied
# to book/_static/mathjax/ (gitignored). _config.yml points Sphinx at
# `mathjax/tex-chtml-full.js`, which Sphinx resolves relative to the built
# site's `_static/`.
#
# If npm is absent or fails, print a warning and exit 0: the build stays green,
# maths is then shown as raw TeX (the config never points to a CDN).
#
# Usage: scripts/install_mathjax.sh [--force]
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MATHJAX_CACHE:-$ROOT/.cache/mathjax}"
DEST="$ROOT/book/_static/mathjax"
ENTRY="tex-chtml-full.js"

warn() { echo "install_mathjax.sh: WARNING: $*" >&2; }

if [ "${1:-}" != "--force" ] && [ -f "$DEST/$ENTRY" ]; then
    echo "install_mathjax.sh: MathJax already in $DEST (use --force to reinstall)"
    exit 0
fi

SRC="$CACHE/node_modules/mathjax/es5"
if [ ! -f "$SRC/$ENTRY" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        warn "npm not found; maths will not be typeset (no CDN fallback)."
        exit 0
    fi
    mkdir -p "$CACHE"
    if ! npm install --prefix "$CACHE" "mathjax@3" --no-audit --no-fund --no-save \
            --loglevel=error >&2; then
        warn "npm install mathjax@3 failed; maths will not be typeset (no CDN fallback)."
        exit 0
    fi
fi
if [ ! -f "$SRC/$ENTRY" ]; then
    warn "$SRC/$ENTRY missing after npm install; maths will not be typeset."
    exit 0
fi

# Copy the whole es5 tree: tex-chtml-full.js loads output/chtml/fonts/woff-v2/*
# and optional components (a11y, ui/menu, ...) relative to its own URL.
rm -rf "$DEST"
mkdir -p "$DEST"
if ! cp -R "$SRC/." "$DEST/"; then
    warn "copying MathJax to $DEST failed."
    exit 0
fi
# Drop source maps (not needed at run time).
find "$DEST" -name '*.map' -delete 2>/dev/null || true
VERSION="$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$CACHE/node_modules/mathjax/package.json" | head -1)"
echo "${VERSION:-unknown}" > "$DEST/VERSION"
echo "install_mathjax.sh: MathJax ${VERSION:-?} installed in $DEST"
