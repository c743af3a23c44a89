"""`python -m newsletter_pipeline.doctor`, the command the README documents; the code lives in operations/doctor.py."""

import sys

from newsletter_pipeline.operations.doctor import main

if __name__ == "__main__":
    sys.exit(main())
