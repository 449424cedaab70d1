"""``python -m bench``: run every benchmark and print its ratios."""

import sys

from bench import pages

if __name__ == "__main__":
    sys.exit(pages.main())
