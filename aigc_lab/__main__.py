"""``python -m aigc_lab``: see :mod:`aigc_lab.cli`."""

from aigc_lab.cli import main

raise SystemExit(main())
