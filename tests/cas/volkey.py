#!/usr/bin/env python3
"""tests/cas/volkey.py - the first volume's key of a released configuration (JSON on stdin, as
`scpctl platform attest` prints it on the debug path), written to OUT with mode 0600 from its
creation on (never readable by others, not even for a moment). Prints the volume's chunk_size
(empty when the entry has none).  usage: ... | volkey.py OUT"""
import json
import os
import sys

v = json.load(sys.stdin)["volumes"][0]
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, bytes.fromhex(v["key"]))
os.close(fd)
print(v.get("chunk_size") or "")
