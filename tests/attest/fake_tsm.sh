#!/usr/bin/env bash
# tests/attest/fake_tsm.sh FORGE PKI_DIR ENTRY snp|tdx CTL - a fake configfs-tsm report entry
# for tests on machines without TDX or SEV-SNP: ENTRY/{provider, generation, inblob, auxblob}
# are files and ENTRY/outblob is a FIFO, so that, as in the kernel, the report is made when
# outblob is read, from the report data the reader wrote to inblob before. Each report: the
# generation goes up by one (by two if the file CTL.race exists: another writer, as the
# runtime must notice), auxblob (SNP) gets the certificate table, outblob the report or quote
# that FORGE (hw_forge) signs under the test PKI with the options in the file CTL (read per
# report). Runs until killed. The runtime uses it through SCP_TSM_REPORT=ENTRY.
set -u
forge=$1 pki=$2 d=$3 backend=$4 ctl=$5
mkdir -p "$d"
if [ "$backend" = snp ]; then echo sev_guest >"$d/provider"; else echo tdx_guest >"$d/provider"; fi
echo 0 >"$d/generation"
: >"$d/inblob"
: >"$d/auxblob"
mkfifo "$d/outblob"
while :; do
    exec 3>"$d/outblob" # blocks until a reader opens outblob (after writing inblob)
    read -r -a opts <"$ctl" 2>/dev/null || opts=()
    g=$(cat "$d/generation")
    step=1
    [ -e "$ctl.race" ] && step=2
    if [ "$backend" = snp ]; then
        "$forge" snp "$pki" "$d/inblob" "$d/auxblob" "${opts[@]}" >&3
    else
        "$forge" tdx "$pki" "$d/inblob" "${opts[@]}" >&3
    fi
    echo $((g + step)) >"$d/generation"
    # a fresh FIFO for the next reader: this reader keeps the old one and sees its end of file
    # when we close it, even if we open outblob again before it closed its side
    mkfifo "$d/outblob.next" && mv -f "$d/outblob.next" "$d/outblob"
    exec 3>&-
done
