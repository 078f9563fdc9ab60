# SPDX-License-Identifier: GPL-3.0-or-later
# Source this file: `. tests/pg-cluster.sh start` starts a throwaway
# PostgreSQL cluster listening on a Unix socket only, in a temp dir, and
# exports OD_TEST_PGHOST (the socket directory); `pg_cluster_stop` ends it.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)

pg_as_owner () {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_cluster_start () {
  OD_PG_DIR=$(mktemp -d /tmp/orderdesk-pg.XXXXXX)
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$OD_PG_DIR"
  fi
  pg_as_owner "$pg_bin/initdb" -D "$OD_PG_DIR/data" -U postgres -A trust -E UTF8 --no-sync >"$OD_PG_DIR/initdb.log" 2>&1 || {
    cat "$OD_PG_DIR/initdb.log"; return 1; }
  pg_as_owner "$pg_bin/pg_ctl" -D "$OD_PG_DIR/data" -l "$OD_PG_DIR/log" -w \
    -o "-k $OD_PG_DIR -c listen_addresses='' -c max_connections=300 -c fsync=on" start >/dev/null || {
    cat "$OD_PG_DIR/log"; return 1; }
  export OD_TEST_PGHOST="$OD_PG_DIR"
  export OD_PG_DIR
}

pg_cluster_stop () {
  if [ -n "${OD_PG_DIR:-}" ] && [ -d "$OD_PG_DIR" ]; then
    pg_as_owner "$pg_bin/pg_ctl" -D "$OD_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$OD_PG_DIR"
  fi
}

if [ "${1:-}" = start ]; then
  pg_cluster_start
fi
