#!/usr/bin/env bash
# Installs everything the demo and the tests need: Debian packages (mosquitto, PostgreSQL
# server binaries, the 32-bit C runtime and compiler for the MicroPython unix port, Chromium for
# the dashboard's browser test), the Python environment in .venv, and npm packages (MicroPython
# WebAssembly; Swagger UI, which the node serves at /schema).
# Idempotent: a second run only checks; concurrent runs take turns (flock on .setup.lock).
set -euo pipefail
cd "$(dirname "$0")/.."
# One setup at a time per checkout: a second waits for the first, then finds everything done.
exec 9>.setup.lock
flock 9

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
{ command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; } || need_apt+=(postgresql)
# the 32-bit MicroPython unix port (the ESP32's word size) runs on libc6-i386; freezing the
# firmware into it (a custom image, as on the device) compiles with gcc-multilib
[ -e /usr/lib32/libc.so.6 ] || [ -e /lib32/libc.so.6 ] || need_apt+=(libc6-i386)
[ -d /usr/lib/gcc/x86_64-linux-gnu/12/32 ] || need_apt+=(gcc-multilib)
# the dashboard's browser test drives Debian's headless Chromium with playwright
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# ...and screenshots the phone page in Chinese, which needs a CJK font
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need_apt+=(fonts-wqy-microhei)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need_apt[*]} (run as root, or: sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
  echo "installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[dev]'
  rm -f .venv/.installed-*; touch "$stamp"
fi

if [ "${1:-}" = "--full" ] || [ "${1:-}" = "--node" ]; then
  lockstamp=node_modules/.installed-$(sha256sum package.json | cut -c1-16)
  if [ ! -f "$lockstamp" ]; then
    npm install --silent --no-audit --no-fund >/dev/null
    touch "$lockstamp"
  fi
fi
