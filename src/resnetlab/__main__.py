import os
import sys
from contextlib import redirect_stdout

from resnetlab.cli import main

if int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) > 0:
    # Under torchrun only rank 0 speaks: the other ranks' output would repeat its lines.
    # Their errors still reach stderr.
    with open(os.devnull, "w") as null, redirect_stdout(null):
        code = main()
    sys.exit(code)
raise SystemExit(main())
