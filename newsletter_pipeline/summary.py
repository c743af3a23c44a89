"""`python -m newsletter_pipeline.summary`, the command the README documents; the code lives in
operations/summary.py."""

import sys

from newsletter_pipeline.operations.summary import main

if __name__ == "__main__":
    sys.exit(main())
