"""Write TESS out as self-contained Parquet, or check a copy against the release.

    python -m dataset_scripts.tess --data_dir D --out O [--skip_invalid]
    python -m dataset_scripts.tess --data_dir D --check

One file per fold, ``O/fold1.parquet`` (OAF) and ``O/fold2.parquet`` (YAF), audio embedded. TESS is CC BY-NC-ND 4.0:
share the export only as the licence allows (attribution, non-commercial, no derivatives).
"""

from ..release import release_main
from .tess import load_tess, scan_tess

if __name__ == "__main__":
    release_main(load_tess, scan_tess, __doc__)
