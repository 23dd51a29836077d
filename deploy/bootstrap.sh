#!/usr/bin/env bash
# Creates (or reuses) the project's Python environment.
#
# The virtual environment lives outside the clone, keyed by the hash of requirements.lock and
# the interpreter version, so a second clone on the same machine reuses it and a changed lock
# builds a new one. uv's cache (hard-linked installs) keeps a rebuild from downloading again.
# Prints how long each phase took.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_dir=${LAKEHOUSE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lakehouse}
python_bin=${LAKEHOUSE_PYTHON:-python3.11}
uv_version=0.13.8
torch_version=2.13.0

phase_start=$(date +%s.%N)
phase_done() {
  local now
  now=$(date +%s.%N)
  printf '[setup] %-28s %6.1f s\n' "$1" "$(echo "$now - $phase_start" | bc)"
  phase_start=$now
}

command -v "$python_bin" >/dev/null || { echo "error: $python_bin not found (Python 3.11 is required)" >&2; exit 1; }
mkdir -p "$cache_dir"

# uv itself, in a tiny venv of its own (pip is the only installer a fresh machine has).
uv="$cache_dir/bootstrap/bin/uv"
if [ ! -x "$uv" ] || [ "$("$uv" --version | awk '{print $2}')" != "$uv_version" ]; then
  "$python_bin" -m venv "$cache_dir/bootstrap"
  "$cache_dir/bootstrap/bin/pip" install --quiet "uv==$uv_version"
fi
phase_done "uv $uv_version"

lock_hash=$( (cat "$repo_root/requirements.lock"; "$python_bin" -VV) | sha256sum | cut -c1-16)
venv="$cache_dir/venvs/$lock_hash"
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  "$uv" venv --quiet --python "$python_bin" "$venv"
  # torch first and explicitly: PyPI's Linux wheel is the CUDA build (several GB with its
  # nvidia-* wheels); installing it on its own keeps the resolver from picking another one.
  "$uv" pip install --quiet --python "$venv/bin/python" "torch==$torch_version"
  phase_done "pip: torch $torch_version"
  "$uv" pip sync --quiet --python "$venv/bin/python" "$repo_root/requirements.lock"
  touch "$venv/.complete"
  phase_done "pip: requirements.lock"
else
  phase_done "pip: reused venv $lock_hash"
fi

ln -sfn "$venv" "$repo_root/.venv"
