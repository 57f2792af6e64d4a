#!/usr/bin/env bash
# Installs what the build, the tests and the demo need, or says what is missing.
#   Debian packages (installed with apt-get when run as root), the test
#   provider's npm packages (from t/op/package-lock.json), and the browser
#   test's (puppeteer-core, from t/browser/package-lock.json, driving
#   Debian's chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(libclang-dev libpcre2-dev zlib1g-dev libssl-dev libtest-base-perl curl openssl chromium python3-prometheus-client redis-server redis-tools)
[ "${WITH_BENCH:-0}" = 1 ] && pkgs+=(wrk apache2 libapache2-mod-oauth2 libapache2-mod-auth-openidc linux-perf)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v prove >/dev/null || missing+=(perl)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo ">> installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "missing packages: ${missing[*]}" >&2
        echo "install them with: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install a Rust toolchain (https://rustup.rs), 1.85 or newer" >&2
    exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    echo "node $(node --version) is too old for the test provider: install Node.js 20.19 or newer" >&2
    exit 1
fi
if [ ! -f t/op/node_modules/.package-lock.json ] || [ t/op/package-lock.json -nt t/op/node_modules/.package-lock.json ]; then
    echo ">> installing the test provider (npm ci in t/op)"
    (cd t/op && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -f t/browser/node_modules/.package-lock.json ] || [ t/browser/package-lock.json -nt t/browser/node_modules/.package-lock.json ]; then
    echo ">> installing the browser test's driver (npm ci in t/browser)"
    (cd t/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
