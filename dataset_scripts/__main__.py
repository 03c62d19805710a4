"""Check a copy of a corpus against its release, or write the corpus out as self-contained Parquet.

    python -m dataset_scripts ravdess --data_dir /data/RAVDESS --check
    python -m dataset_scripts ravdess --data_dir /data/RAVDESS --out ravdess-parquet [--skip_invalid]
    python -m dataset_scripts iemocap --data_dir /data/IEMOCAP_full_release --config 4class --out iemocap-4class

The corpora: iemocap, ravdess, cremad, tess, emodb, meld, msp_podcast. `--out` writes one file per fold or official
split (``fold1.parquet`` ...), the audio embedded and the features (ClassLabel names included) in the schema, so the
files work without the corpus and `train.py --dataset O` reads their folds. Mind each corpus's licence (its
README): IEMOCAP and MSP-Podcast may not be redistributed. `--check` prints the copy against the release, one line
per kind of difference (missing, extra, unreadable, empty, present twice), and exits 1 when they differ.
"""

from .release import corpus_command

if __name__ == "__main__":
    corpus_command()
