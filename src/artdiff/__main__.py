"""Run the artdiff command line as `python -m artdiff`."""

from artdiff.cli.main import main

raise SystemExit(main())
