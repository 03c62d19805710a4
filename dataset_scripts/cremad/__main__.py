"""Write CREMA-D out as self-contained Parquet, or check a copy against the release.

    python -m dataset_scripts.cremad --data_dir D --out O [--skip_invalid]
    python -m dataset_scripts.cremad --data_dir D --check

One file per actor fold, ``O/fold1.parquet`` ... ``O/fold5.parquet``, audio embedded. CREMA-D is ODbL 1.0 (database)
and DbCL 1.0 (contents).
"""

from ..release import release_main
from .cremad import load_cremad, scan_cremad

if __name__ == "__main__":
    release_main(load_cremad, scan_cremad, __doc__)
