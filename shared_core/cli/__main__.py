"""`python -m shared_core.cli` runs the `ironlayer` command."""

from shared_core.cli.main import main

raise SystemExit(main())
