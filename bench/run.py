"""`make bench`: every benchmark, each printing figures as ratios against a baseline measured in
the same run."""

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["startup.py", "registry.py", "verify.py", "rollback.py", "patch.py", "memory.py", "fleet.py", "serve.py",
           "canary.py", "guardsim.py", "signing.py", "nodecache.py", "gitbytes.py", "attest.py"]

if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    for name in sys.argv[1:] or SCRIPTS:
        runpy.run_path(str(HERE / name), run_name="__main__")
