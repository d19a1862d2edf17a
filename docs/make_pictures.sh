#!/usr/bin/env bash
# The README's pictures, made by the project's own commands on the demo's sample video:
# an overlay frame (masks and ids over the source) and the area-over-time plot.
#   docs/make_pictures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work="${TMPDIR:-/tmp}/sam_batch_pictures"
sam-batch demo --output "$work" --progress off
sam-batch export "$work/dataset" --format overlay --out "$work/overlay" -o 'stills=[24]'
sam-batch export "$work/dataset" --format stats --out "$work/stats.csv"
cp "$work/overlay/sample-frame00024.png" docs/overlay.png
cp "$work/stats_plots/sample.png" docs/area.png
echo "docs/overlay.png docs/area.png"
