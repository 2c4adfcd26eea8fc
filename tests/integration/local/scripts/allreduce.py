"""Plain torch.distributed: all-reduce the ranks and write what this rank saw to the folder in argv[1].

With argv[2] == "crash-rank-1-once", rank 1 exits with 3 on the first attempt after the
all-reduce; the barrier that follows makes the other ranks fail too, as in real training.
"""

import json
import os
import sys

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
value = torch.tensor([float(dist.get_rank())])
dist.all_reduce(value)
seen = {key: os.environ.get(key) for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                                             "FULMEN_RUN_DIR", "FULMEN_RESTART_COUNT")}
seen["sum"] = value.item()
if sys.argv[2:] == ["crash-rank-1-once"] and dist.get_rank() == 1 and seen["FULMEN_RESTART_COUNT"] == "0":
    sys.exit(3)
dist.barrier()
with open(os.path.join(sys.argv[1], f"rank{dist.get_rank()}.json"), "w") as f:
    json.dump(seen, f)
dist.destroy_process_group()
