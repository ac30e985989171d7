#!/usr/bin/env bash
# Set-up shared by the README's two commands. Idempotent; safe on a fresh machine with only Python 3.9+.
#  1. headless OpenGL system libraries (Debian/Ubuntu: apt-get; elsewhere: prints what to install);
#  2. a virtual environment in $FURL_VENV (default .venv in the repository);
#  3. torch ($FURL_TORCH_SPEC, default torch==2.13.0) and this project with the given extras.
# Usage: source scripts/bootstrap.sh [EXTRAS]   (EXTRAS like "dev" or "dev,plots")
set -euo pipefail
FURL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FURL_VENV="${FURL_VENV:-$FURL_ROOT/.venv}"
FURL_EXTRAS="${1:-}"
PYTHON="${PYTHON:-python3}"

have_gl_libs() {
  ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1' || return 1
  # Mesa's software rasteriser (or a GPU driver) must provide an EGL vendor library.
  ldconfig -p 2>/dev/null | grep -qE 'libEGL_mesa.so.0|libEGL_nvidia.so.0' || return 1
}

if [ "$(uname -s)" = "Linux" ] && ! have_gl_libs; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "[furl] installing headless OpenGL libraries: libegl1 libgl1-mesa-dri libegl-mesa0"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libegl1 libgl1-mesa-dri libegl-mesa0 >/dev/null
  else
    echo "[furl] WARNING: no libEGL found and no apt-get. Install EGL + Mesa yourself, e.g." >&2
    echo "[furl]   Fedora/RHEL: dnf install mesa-libEGL mesa-dri-drivers;  Arch: pacman -S mesa;" >&2
    echo "[furl]   conda: conda install -c conda-forge mesalib (and set MUJOCO_GL=osmesa)." >&2
  fi
fi

if [ ! -x "$FURL_VENV/bin/python" ]; then
  echo "[furl] creating virtual environment $FURL_VENV"
  "$PYTHON" -m venv "$FURL_VENV"
fi
VPY="$FURL_VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  echo "[furl] installing ${FURL_TORCH_SPEC:-torch==2.13.0}"
  "$VPY" -m pip install -q "${FURL_TORCH_SPEC:-torch==2.13.0}"
fi
SPEC="$FURL_ROOT"; [ -n "$FURL_EXTRAS" ] && SPEC="$FURL_ROOT[$FURL_EXTRAS]"
echo "[furl] installing furl_wrappers${FURL_EXTRAS:+[$FURL_EXTRAS]} into $FURL_VENV"
"$VPY" -m pip install -q -e "$SPEC"
"$VPY" -c "import furl_wrappers" || { echo "[furl] installation failed" >&2; exit 1; }
export PATH="$FURL_VENV/bin:$PATH"
