"""``python -m dogbreed.export``: the export process (see :mod:`dogbreed.export.command`)."""

import sys

from dogbreed.export.command import main

sys.exit(main())
