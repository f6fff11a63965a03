# tests/tamper.sh - flip_byte: change one byte of a file for a tamper test (sourced; sh and bash).
#
# Why every bit is inverted rather than a fixed value written: a fixed value is a no-op whenever
# the byte already holds it (1 in 256 for a random byte of a header's salt, a nonce or a tag),
# and the tamper test then fails at random (CI saw opencheck run its program on a "tampered"
# header that was unchanged).

# flip_byte FILE OFFSET: invert every bit of the byte at OFFSET of FILE, in place.
flip_byte() {
    _fb=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    [ -n "$_fb" ] || { echo "flip_byte: $1 has no byte at offset $2" >&2; return 1; }
    printf "$(printf '\\%03o' $((_fb ^ 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
