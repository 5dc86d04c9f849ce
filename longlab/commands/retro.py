"""`longlab retro build`: encode every .py file of the standard library into a RETRO chunk database.

The database (1,969,499 chunks of 16 bytes for CPython 3.11, ~1.1 GB) goes to a cache folder, by default
./data/retro/db_m16 (ignored by git).
The build shows a progress bar and is resumable: shards already written are skipped.
`longlab retro search` prints the neighbours of a text snippet.

    longlab retro build --chunk 16 --threads 1
    longlab retro search --text "def __init__(self, maxsize=0):" --k 4
"""
from __future__ import annotations

NAME = "retro"
HELP = "RETRO chunk database: build it (resumable) or search it"


def register(parser) -> None:
    parser.add_argument("action", choices=["build", "search"])
    parser.add_argument("--text", default=None, help="search: the text whose first chunk is looked up")
    parser.add_argument("--out", default=None, help="database folder (default ./data/retro/db_m<chunk>)")
    parser.add_argument("--chunk", type=int, default=16, help="chunk size m in bytes")
    parser.add_argument("--checkpoint", default=None, help="frozen TinyLM for the keys (default: the committed one)")
    parser.add_argument("--layers", type=int, default=0,
                        help="TinyLM blocks run before mean pooling (0 = embedding output, fast; 1 = ~25 min)")
    parser.add_argument("--shard-chunks", type=int, default=1 << 16)
    parser.add_argument("--root", default=None, help="corpus folder (default: the standard library)")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)


def default_folder(chunk: int):
    from pathlib import Path

    return Path("data") / "retro" / f"db_m{chunk}"


def main(args) -> int:
    import torch

    from ..memory.retro.build import build_database
    from ..memory.retro.db import RetroDatabase
    from ..memory.retro.encoder import ChunkEncoder

    torch.set_num_threads(args.threads)
    folder = args.out or default_folder(args.chunk)
    encoder = ChunkEncoder.from_checkpoint(args.checkpoint, layers=args.layers)
    if args.action == "build":
        manifest = build_database(folder, encoder, args.chunk, root=args.root, shard_chunks=args.shard_chunks)
        rate = manifest["chunks_per_s"]
        print(f"{folder}: {manifest['entries']:,} chunks from {len(manifest['documents'])} files, "
              f"{len(manifest['shards'])} shards; this run encoded {manifest['chunks_encoded']:,} chunks in "
              f"{manifest['build_s']:.0f} s" + (f" ({rate:.0f} chunks/s)" if rate else ""))
        return 0
    if not args.text:
        raise SystemExit("retro search needs --text, e.g. longlab retro search --text 'def __init__(self):'")
    db = RetroDatabase.load(folder, identity=encoder.identity, progress=True)
    data = args.text.encode()[: args.chunk].ljust(args.chunk, b" ")
    found = db.search(encoder.encode(torch.tensor([list(data)], dtype=torch.uint8)), args.k)
    for rank in range(args.k):
        i = found.indices[0, rank].item()
        text = bytes(found.tokens[0, rank, : found.lengths[0, rank]].tolist()).decode("utf-8", "replace")
        print(f"{rank}  score {found.scores[0, rank].item():.3f}  {db.documents[found.doc_ids[0, rank].item()]}"
              f"@{found.offsets[0, rank].item()}  entry {i}  {text!r}")
    return 0
