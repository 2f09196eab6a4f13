"""The tests of scripts/. The scripts import the shared modules by their plain
names (`common`) and the groups' modules by their group (`bench.tables`),
with scripts/ first on sys.path (each grouped script puts it there, see
scripts/README.md), so their tests put scripts/ on sys.path too, once, here."""
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
