#!/usr/bin/env bash
# The Python tools that check what scalelab writes for other programs: `tensorboard` reads its
# event files, `mlflow` serves the tracking API it logs to, `transformers` (with PyTorch) loads
# its GPT-2 exports. Installed from PyPI into one virtual environment, kept between runs.
#
#   scripts/verify-venv.sh        # prints the environment's python on its last line
#
# VENV overrides where it lives (default: ~/.cache/scalelab-verify-venv). Exits non-zero,
# saying why, when Python or PyPI is not at hand; callers then skip loudly.
set -euo pipefail
VENV="${VENV:-$HOME/.cache/scalelab-verify-venv}"
PACKAGES=(tensorboard mlflow transformers torch safetensors)

if [[ ! -x "$VENV/bin/python" ]]; then
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        # Debian splits venv out of python3.
        if [[ $(id -u) == 0 ]]; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >/dev/null 2>&1 \
                || { apt-get update >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv >/dev/null 2>&1; } \
                || true
        fi
        rm -rf "$VENV"
        python3 -m venv "$VENV" || { echo "verify-venv: python3 -m venv failed (install python3-venv)" >&2; exit 1; }
    fi
fi
if ! "$VENV/bin/python" -c "import tensorboard, mlflow, transformers, torch, safetensors" >/dev/null 2>&1; then
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2 \
        || { echo "verify-venv: pip install ${PACKAGES[*]} failed" >&2; exit 1; }
fi
echo "$VENV/bin/python"
