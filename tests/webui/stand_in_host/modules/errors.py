"""Stand-in for modules/errors.py: the host prints a script's error and goes on."""

import sys
import traceback

reported = []


def report(message, *, exc_info=False):
    reported.append(message)
    print(message, file=sys.stderr)
    if exc_info:
        traceback.print_exc()
