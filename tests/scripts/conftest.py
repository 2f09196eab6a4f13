"""The tests of scripts/. The scripts import each other as top-level modules
(`python scripts/x.py` puts scripts/ first on sys.path), so their tests put
scripts/ on sys.path too, once, here."""
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
