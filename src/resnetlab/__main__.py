import os
import sys
from contextlib import redirect_stdout

from resnetlab.cli import main


def _env_int(name: str) -> int:
    try:
        return int(os.environ.get(name, "0") or "0")
    except ValueError:  # the command refuses it in one line (errors.env_int)
        return 0


if _env_int("WORLD_SIZE") > 1 and _env_int("RANK") > 0:
    # Under torchrun only rank 0 speaks: the other ranks' output would repeat its lines.
    # Their errors still reach stderr.
    with open(os.devnull, "w") as null, redirect_stdout(null):
        code = main()
    sys.exit(code)
raise SystemExit(main())
