"""Copy the project's data assets from a local folder and check their checksums.

    python scripts/data/get_data.py DATA_DIR assets

DATA_DIR holds conll2003/ and ud_english_ewt/ as in project.yml's asset paths
(below assets/). Each file is checked against the asset checksum in project.yml,
so an offline run uses exactly the data an online `spacy project assets` fetches.
"""
import shutil
import sys
from pathlib import Path

import srsly
from weasel.util import get_checksum

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md
from common import PROJECT


def main(data_dir: Path, assets_dir: Path) -> None:
    project = srsly.read_yaml(PROJECT / "project.yml")
    missing = []
    for asset in project["assets"]:
        dest = PROJECT / asset["dest"]
        relative = Path(asset["dest"]).relative_to("assets")
        src = data_dir / relative
        if dest.exists() and get_checksum(dest) == asset["checksum"]:
            print(f"ok (already there): {dest.relative_to(PROJECT)}")
            continue
        if not src.exists():
            missing.append(str(src))
            continue
        if get_checksum(src) != asset["checksum"]:
            sys.exit(
                f"{src} does not match the checksum in project.yml ({asset['checksum']}): "
                f"it is not the expected file. Replace it with the file from {asset['url']}."
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        print(f"copied: {src} -> {dest.relative_to(PROJECT)}")
    if missing:
        sys.exit(
            "Missing data files:\n  " + "\n  ".join(missing) + "\nSet the folder with "
            "`spacy project run all --vars.data_dir DIR`, or download the assets with "
            "`spacy project assets` (needs network access)."
        )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]))
