#!/usr/bin/env bash
# Install the system packages cbm_dask needs, only when they are missing:
# PostgreSQL with the PostGIS extension, python3-venv, acl, psql.  Idempotent;
# needs root or sudo only when something has to be installed.  Checks its own
# result: the PostGIS extension must exist for the PostgreSQL major cbm uses.
set -euo pipefail

# Where PostgreSQL lives and which apt-get to run (overridable for the tests).
pg_lib=${CBM_PG_LIB:-/usr/lib/postgresql}
pg_share=${CBM_PG_SHARE:-/usr/share/postgresql}
apt_get=${CBM_APT_GET:-apt-get}

# The PostgreSQL major cbm will run: the newest installed server, else the one
# Debian/Ubuntu's `postgresql` package would install.
server_major() {
  local newest
  newest=$(ls -d "$pg_lib"/*/bin/pg_ctl 2>/dev/null | sed -E 's#.*/([0-9]+)/bin/pg_ctl$#\1#' \
    | sort -n | tail -1)
  if [ -n "$newest" ]; then
    echo "$newest"
    return
  fi
  apt-cache depends postgresql 2>/dev/null | sed -nE 's/.*Depends: postgresql-([0-9]+)$/\1/p' | head -1
}

has_postgis() {  # $1: PostgreSQL major
  [ -n "$1" ] && [ -f "$pg_share/$1/extension/postgis.control" ]
}

need=()
major=$(server_major)
[ -n "$major" ] && [ -x "$pg_lib/$major/bin/pg_ctl" ] || need+=(postgresql)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || need+=(python3-venv)
command -v setfacl >/dev/null 2>&1 || need+=(acl)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)

if [ ${#need[@]} -eq 0 ] && has_postgis "$major"; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  missing=("${need[@]}")
  has_postgis "$major" || missing+=("postgresql-${major:-<major>}-postgis-3")
  echo "cbm setup: missing system packages (${missing[*]}) and no root/sudo to install them." >&2
  echo "Install them with your package manager, then run the command again." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" "$apt_get" update -qq
if [ ${#need[@]} -gt 0 ]; then
  echo "cbm setup: installing ${need[*]} with apt-get"
  "${sudo[@]}" "$apt_get" install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  major=$(server_major)
fi
if ! has_postgis "$major"; then
  # The `postgis` package holds only the command-line tools; the extension is
  # in postgresql-<major>-postgis-3 (Debian and Ubuntu name it the same way).
  package="postgresql-$major-postgis-3"
  echo "cbm setup: installing $package with apt-get"
  "${sudo[@]}" "$apt_get" install -y -qq --no-install-recommends "$package" >/dev/null || true
fi
if ! has_postgis "$major"; then
  echo "cbm setup: PostgreSQL ${major:-?} has no PostGIS extension" \
    "($pg_share/${major:-?}/extension/postgis.control is missing);" \
    "install the package postgresql-${major:-<major>}-postgis-3 and run the command again." >&2
  exit 1
fi
# Debian's package starts a system cluster on 5432; cbm runs its own and does not need it.
