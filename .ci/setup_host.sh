#!/usr/bin/env bash
# Prints (last line) the ComfyUI folder the tests run against, the way the tests find one: COMFYUI_PATH, else
# the ComfyUI whose custom_nodes folder holds this repo, else ~/ComfyUI. When there is none, unpacks the pinned
# ComfyUI source (host/ComfyUI-0.25.0.tar.gz of the shared folder: $CA_SHARED, else ../shared beside this
# repo, else /work/shared) into a writable cache, once, and prints that. Fails when no host can be had.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd -P)"
VERSION="0.25.0"
is_comfyui() { [ -n "$1" ] && [ -f "$1/comfy/model_patcher.py" ] && [ -f "$1/nodes.py" ]; }

ENCLOSING=""
if [ "$(basename "$(dirname "$REPO")")" = "custom_nodes" ]; then ENCLOSING="$(dirname "$(dirname "$REPO")")"; fi
for candidate in "${COMFYUI_PATH:-}" "$ENCLOSING" "$HOME/ComfyUI"; do
  if is_comfyui "$candidate"; then
    (cd "$candidate" && pwd -P)
    exit 0
  fi
done

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/comfyui-ca/ComfyUI-$VERSION"
if ! is_comfyui "$CACHE"; then
  TARBALL=""
  for shared in "${CA_SHARED:-}" "$REPO/../shared" /work/shared; do
    if [ -f "$shared/host/ComfyUI-$VERSION.tar.gz" ]; then
      TARBALL="$shared/host/ComfyUI-$VERSION.tar.gz"
      break
    fi
  done
  if [ -z "$TARBALL" ]; then
    echo "No ComfyUI for the host tests: set COMFYUI_PATH, put ComfyUI in ~/ComfyUI, or provide" \
         "host/ComfyUI-$VERSION.tar.gz in \$CA_SHARED or ../shared." >&2
    exit 1
  fi
  echo "unpacking $TARBALL into $CACHE" >&2
  rm -rf "$CACHE.partial"
  mkdir -p "$CACHE.partial"
  tar xzf "$TARBALL" -C "$CACHE.partial" --strip-components=1  # the tarball's top folder is ComfyUI/
  rm -rf "$CACHE"
  mv "$CACHE.partial" "$CACHE"
fi
echo "$CACHE"
