# bench/memsafe/lib.sh - shared by the memsafe benchmarks; sourced after they set WORK and scpcc.

# debian_source PACKAGE GLOB: the unpacked Debian source of PACKAGE under $WORK/src (GLOB names
# its directory there), fetched with apt-get source the first time; prints its path.
debian_source() {
    local src
    src=$(ls -d "$WORK"/src/$2 2>/dev/null | head -1 || true)
    if [ -z "$src" ]; then
        mkdir -p "$WORK/src"
        (cd "$WORK/src" && apt-get source "$1" >/dev/null) || {
            echo "$1: apt-get source $1 failed (no deb-src line in the apt sources?)" >&2
            exit 2
        }
        src=$(ls -d "$WORK"/src/$2 | head -1)
    fi
    (cd "$src" && pwd)
}

# The compiler of a variant. harden-types, full-types: with --trust-types (docs/memsafe.md);
# mainharden, mainfull: the scp-cc of the build directory $AB (another checkout's, for A/B runs).
cc_for() {
    case $1 in
    plain) echo "clang-16" ;;
    hardening) echo "$scpcc" ;;
    harden) echo "$scpcc --memsafe" ;;
    full) echo "$scpcc --memsafe=full" ;;
    harden-types) echo "$scpcc --memsafe --trust-types" ;;
    full-types) echo "$scpcc --memsafe=full --trust-types" ;;
    mainharden) echo "${AB:?AB= names the A/B build directory}/scp-cc --memsafe" ;;
    mainfull) echo "${AB:?AB= names the A/B build directory}/scp-cc --memsafe=full" ;;
    asan) echo "clang-16 -fsanitize=address" ;;
    esac
}
