#!/bin/sh
# deploy/swarm/cas-db/entry.sh - start PostgreSQL for CAS; the first start makes the cluster,
# the role cas (password: the Docker secret cas_db_password) and the database cas.
set -eu
BIN=/usr/lib/postgresql/15/bin
D=/var/lib/postgresql/data/cluster
SECRET=${CAS_DB_PASSWORD_FILE:-/run/secrets/cas_db_password}
if [ ! -s "$D/PG_VERSION" ]; then
    [ -r "$SECRET" ] || { echo "scp-cas-db: no password for the role cas ($SECRET: a Docker secret)" >&2; exit 1; }
    "$BIN/initdb" -D "$D" -U postgres --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    echo "host all all all scram-sha-256" >>"$D/pg_hba.conf"
    # the password from the secret file, quoted for SQL; through stdin, never in arguments
    pw=$(sed "s/'/''/g" "$SECRET")
    printf "CREATE ROLE cas LOGIN PASSWORD '%s';\n" "$pw" | "$BIN/postgres" --single -D "$D" postgres >/dev/null
    echo "CREATE DATABASE cas OWNER cas;" | "$BIN/postgres" --single -D "$D" postgres >/dev/null
    echo "scp-cas-db: made the cluster, the role cas and its database" >&2
fi
exec "$BIN/postgres" -D "$D" -c listen_addresses='*' -c unix_socket_directories=/tmp
