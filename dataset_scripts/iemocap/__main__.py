"""Write IEMOCAP out as self-contained Parquet.

    python -m dataset_scripts.iemocap --data_dir D --config 4class --out O [--improvised_only] [--skip_invalid]

One file per split, ``O/session1.parquet`` ... ``O/session5.parquet``, with the wav bytes embedded in the ``audio``
column and the features (ClassLabel names included) in the schema, so the files work without the corpus:
``datasets.load_dataset("parquet", data_files={"session1": "O/session1.parquet", ...})``. IEMOCAP's license does
not allow redistribution: keep the files private.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pyarrow.parquet as pq
from datasets.table import embed_table_storage

from .iemocap import CONFIG_LABELS, load_iemocap

__all__ = ["export_parquet", "main"]

logger = logging.getLogger(__name__)


def export_parquet(
    data_dir: str | Path,
    out_dir: str | Path,
    config_name: str = "4class",
    improvised_only: bool = False,
    skip_invalid: bool = False,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
) -> dict[str, Path]:
    """Build the dataset (see `load_iemocap`) and write each split to ``out_dir/<split>.parquet``.

    Audio is embedded batch by batch, so memory holds `batch_size` wavs at a time, not a session.

    Returns:
        split name -> Parquet path written.
    """
    dataset = load_iemocap(data_dir, config_name, improvised_only, skip_invalid, cache_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, ds in dataset.items():
        path = out / f"{split}.parquet"
        # the schema carries the `datasets` features as metadata: Audio and ClassLabel survive the round trip
        with pq.ParquetWriter(path, ds.features.arrow_schema) as writer:
            for batch in ds.with_format("arrow").iter(batch_size=batch_size):
                writer.write_table(embed_table_storage(batch))
        logger.info("wrote %d utterances to %s", len(ds), path)
        written[split] = path
    return written


def main(argv: list[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", required=True, type=Path, help="the IEMOCAP_full_release directory")
    parser.add_argument("--config", default="4class", choices=sorted(CONFIG_LABELS), help="label set")
    parser.add_argument("--out", required=True, type=Path, help="directory for <split>.parquet")
    parser.add_argument("--improvised_only", action="store_true", help="keep improvised dialogs only")
    parser.add_argument("--skip_invalid", action="store_true", help="skip (and log) utterances with problems")
    parser.add_argument("--cache_dir", type=Path, default=None, help="datasets cache (default: HF_DATASETS_CACHE)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return export_parquet(
        args.data_dir, args.out, args.config, args.improvised_only, args.skip_invalid, args.cache_dir
    )


if __name__ == "__main__":
    main()
