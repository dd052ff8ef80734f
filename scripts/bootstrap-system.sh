#!/usr/bin/env bash
# Install the system packages cbm_dask needs, only when they are missing:
# PostgreSQL with PostGIS, python3-venv, acl.  Idempotent; needs root or sudo
# only when something has to be installed.
set -euo pipefail

need=()
ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1 || need+=(postgresql postgis)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
command -v setfacl >/dev/null 2>&1 || need+=(acl)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "cbm setup: missing system packages (${need[*]}) and no root/sudo to install them." >&2
  echo "Install them with your package manager, then run the command again." >&2
  exit 1
fi

echo "cbm setup: installing ${need[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian's package starts a system cluster on 5432; cbm runs its own and does not need it.
