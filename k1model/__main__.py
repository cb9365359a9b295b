"""`python -m k1model ...` is the same as the `k1` command."""
from k1model.cli import main

raise SystemExit(main())
