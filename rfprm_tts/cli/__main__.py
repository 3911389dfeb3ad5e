"""`python -m rfprm_tts.cli`: the `rfprm` command."""

import sys

from rfprm_tts.cli.program import main

sys.exit(main())
