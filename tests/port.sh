# tests/port.sh - free_port: a loopback TCP port for a test's server (sourced).
#
# Why not bind to port 0 and print what the kernel gave: that port comes from the ephemeral
# range, and between the helper closing its socket and the test's server binding it, any
# client connection of the tests that run beside it (ctest -j) may take it as its local port:
# the server then fails with EADDRINUSE (CI saw redis-server do so). A port below the
# ephemeral range is never handed out to a connecting socket, so only another test that picks
# the same number could collide; a reservation (an atomic mkdir under a shared directory)
# rules that out, and reservations older than an hour are swept so the pool never runs dry.

# free_port: print a TCP port below the kernel's ephemeral range (above it when the range
# starts too low) that no socket of this host uses now and that no other test has reserved.
free_port() {
    local lo hi elo ehi p dir n
    read -r elo ehi < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || { elo=32768; ehi=60999; }
    lo=10000; hi=$((elo - 1))
    if [ $((hi - lo)) -lt 2000 ]; then lo=$((ehi + 1)); hi=65535; fi
    dir=${TMPDIR:-/tmp}/scp-test-ports
    mkdir -p "$dir" 2>/dev/null && chmod 1777 "$dir" 2>/dev/null
    find "$dir" -mindepth 1 -maxdepth 1 -mmin +60 -exec rmdir {} + 2>/dev/null
    for n in $(seq 1 200); do
        p=$(shuf -i "$lo-$hi" -n 1)
        # In use by any TCP socket (listening or connected, v4 or v6)? /proc/net/tcp* column 2
        # is the local address, its port in hex.
        if awk -v hp="$(printf ':%04X' "$p")" 'NR > 1 && substr($2, length($2) - 4) == hp { f = 1 }
                END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
            continue
        fi
        mkdir "$dir/$p" 2>/dev/null || continue
        echo "$p"
        return 0
    done
    echo "free_port: no free port in $lo-$hi after 200 tries" >&2
    return 1
}
