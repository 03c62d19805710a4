"""Write MSP-Podcast out as self-contained Parquet, or check a copy against the release.

    python -m dataset_scripts.msp_podcast --data_dir D --out O [--skip_invalid]
    python -m dataset_scripts.msp_podcast --data_dir D --check

One file per split, ``O/train.parquet``, ``O/validation.parquet``, ``O/test1.parquet``, ``O/test2.parquet``, audio
embedded. MSP-Podcast's license does not allow redistribution: keep the files private.
"""

from ..release import release_main
from .msp_podcast import load_msp_podcast, scan_msp_podcast

if __name__ == "__main__":
    release_main(load_msp_podcast, scan_msp_podcast, __doc__)
