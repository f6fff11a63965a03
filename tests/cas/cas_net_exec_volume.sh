#!/bin/bash
# A shielded program with a protected volume and a network section execs another program (sh
# running cat, as the curated MariaDB's sh runs mariadb-install-db). The new image inherits the
# network filter, which traps fcntl(F_DUPFD*); its shield opens the volumes before its SIGSYS
# handler exists, so a trapped call there (the library's fcntl F_DUPFD and, when an open finds
# deleted files' objects to collect, its dup) killed every child with "Bad system call". Now:
# rm deletes a file, then cat reads the one its parent wrote, and so does a child of the child.
source "$(dirname "$0")/lib.sh" "$@"
start_cas_p1
PF=$(freeport)
TR=(--trusted "$(readlink -f /usr/bin/cat)" --trusted "$(readlink -f /usr/bin/rm)" --trusted "$(readlink -f /bin/dash)")
expect_rc 0 "$SCPCTL" platform measure "${TR[@]}" -- /bin/dash
MP=$(cat "$T/last.out")
MARK=SCPEXECVOL$RANDOM$RANDOM
cat >"$T/s.yaml" <<YAML
name: netexecvol
services:
  - name: sh
    measurements: [$MP]
    command: [/bin/dash, -c, 'echo $MARK >/data/f && echo x >/data/g && rm /data/g && cat /data/f && /bin/dash -c "cat /data/f" && echo done']
    volumes: [data]
    network:
      certificate: tls
      listen: [{port: $PF}]
      default: refuse
secrets:
  - {name: tls, kind: x509, common_name: x, dns: [localhost], ip: [127.0.0.1]}
volumes:
  - {name: data, path: /data}
YAML
expect_rc 0 "$SCPCTL" session create "$T/s.yaml"
"$SCPCTL" run --session netexecvol --service sh --platform-key "$T/p1.key" --volume-dir "$T/vols" "${TR[@]}" \
    -- /bin/dash >"$T/out" 2>"$T/err"
rc=$?
[ $rc = 0 ] || fail "exit $rc: $(cat "$T/out" "$T/err")"
[ "$(cat "$T/out")" = "$(printf '%s\n%s\ndone' "$MARK" "$MARK")" ] || fail "output: $(cat "$T/out" "$T/err")"
grep -rqa "$MARK" "$T/vols" && fail "the marker is in plaintext in the volume"
echo PASS
