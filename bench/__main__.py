"""``python -m bench``: the benchmarks' one run (``bench.run_all``)."""

import sys

from bench.run_all import main

sys.exit(main())
