"""Tests the installed flashsci package when there is one, else this source tree's."""
import os
import sys

try:
    import flashsci  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
