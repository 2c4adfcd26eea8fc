"""Write this rank's environment (argv[1]/rank<N>.json), then wait until argv[1]/go exists; then
print argv[2] lines to stdout (so a closed console meets output after it closed)."""

import json
import os
import sys
import time

out = sys.argv[1]
rank = os.environ.get("RANK", "0")
seen = {key: os.environ.get(key) for key in ("MASTER_ADDR", "MASTER_PORT", "HF_TOKEN", "RANK")}
path = os.path.join(out, f"rank{rank}.json")
with open(path + ".tmp", "w") as f:  # renamed into place: a reader never sees half a file
    json.dump(seen, f)
os.replace(path + ".tmp", path)
deadline = time.monotonic() + 30
while not os.path.exists(os.path.join(out, "go")) and time.monotonic() < deadline:
    time.sleep(0.05)
for i in range(int(sys.argv[2]) if len(sys.argv) > 2 else 0):
    print(f"line {i}", flush=True)
