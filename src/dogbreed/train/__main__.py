"""``python -m dogbreed.train ARGS``: one rank of the training job (see :mod:`dogbreed.train.job`)."""

import sys

from dogbreed.train.job import main

sys.exit(main())
