"""`hipart-data`: build, inspect and render the hierarchical 2D/3D pose dataset.

  hipart-data build --bvh-dir ../shared/data/cmu_bvh --out out/cmu [--cameras lab|wild|both] [--seed 0]
  hipart-data info out/cmu
  hipart-data show out/cmu --out out/show [--n 4]
  hipart-data clusters            (recompute the committed cluster asset + its picture)
  hipart-data video --bvh-dir ../shared/data/cmu_bvh --clip 05_01 --out edge/assets/sample
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hipart.cli.arg_types import positive_float, positive_int
from hipart.cli.guard import exit_codes, interruptible


def _split_arg(s: str | None) -> dict[str, str] | None:
    """--split: a JSON file {subject: split} or 'train=01,03;val=02;test=05'; ValueError when malformed."""
    from hipart.data.dataset_build import SPLITS

    if s is None:
        return None
    p = Path(s)
    if p.exists():
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"--split {s}: not a readable JSON file ({e})") from None
        if not isinstance(d, dict):
            raise ValueError(f"--split {s}: expected a JSON object {{subject: split}}")
        out = {str(k): str(v) for k, v in d.items()}
    else:
        out = {}
        for part in s.split(";"):
            name, eq, subs = part.partition("=")
            if not eq or not subs.strip():
                raise ValueError(f"--split {s!r}: expected 'train=01,03;val=02;test=05' or a JSON file")
            for sub in filter(None, subs.split(",")):
                out[sub.strip()] = name.strip()
    bad = sorted({v for v in out.values() if v not in SPLITS})
    if bad:
        raise ValueError(f"--split: unknown split name(s) {bad}; use {', '.join(SPLITS)}")
    return out


def cmd_build(a: argparse.Namespace) -> int:
    """Build a dataset from a BVH folder."""
    from hipart.data.dataset_build import build_dataset

    r = build_dataset(a.bvh_dir, a.out, cameras=a.cameras, seed=a.seed, workers=a.workers,
                      split=_split_arg(a.split), limit=a.limit, progress=not a.quiet, body=a.body)  # fmt: skip
    print(f"built {r.clips} clips -> {r.out_dir} in {r.seconds:.1f} s")
    print("samples per split: " + ", ".join(f"{k} {v}" for k, v in r.counts.items()))
    if r.skipped:
        print(f"skipped {len(r.skipped)} file(s):")
        for s in r.skipped:
            print(f"  {s['file']}: {s['error']}")
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    """Print counts and a sanity summary."""
    from hipart.data.dataset import dataset_summary

    print(dataset_summary(a.dir, verify=a.verify))
    return 0


def cmd_show(a: argparse.Namespace) -> int:
    """Render a few samples to PNG."""
    from hipart.data.render import show_samples

    paths = show_samples(a.dir, a.out, n=a.n, split=a.split, seed=a.seed)
    for p in paths:
        print(p)
    return 0


def cmd_clusters(a: argparse.Namespace) -> int:
    """Recompute the cluster asset (and picture / mean body)."""
    from hipart.data.body_mesh import build_cluster_asset
    from hipart.data.coarsening import ASSET_PATH
    from hipart.data.render import render_cluster_picture

    cl = build_cluster_asset(a.asset or ASSET_PATH)
    print(f"wrote {a.asset or ASSET_PATH} ({cl.num_vertices} vertices -> 96 fine / 48 dense)")
    if a.mean_body:
        from hipart.data.body_mesh import save_mean_body

        print(f"wrote {save_mean_body()}")
    if a.picture:
        render_cluster_picture(a.picture)
        print(f"wrote {a.picture}")
    return 0


def cmd_video(a: argparse.Namespace) -> int:
    """Render the sample video + ground truth."""
    from hipart.data.render import render_sample_video

    clips = [c.strip() for c in a.clip.split(",") if c.strip()]
    if len(clips) > 1:
        from hipart.data.render import render_multi_person_video

        info = render_multi_person_video(a.bvh_dir, clips, a.out, seconds=a.seconds, seed=a.seed, spacing=a.spacing,
                                         solo=a.solo)  # fmt: skip
    else:
        info = render_sample_video(a.bvh_dir, clips[0], a.out, seconds=a.seconds, seed=a.seed)
    print(json.dumps(info, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of hipart-data."""
    p = argparse.ArgumentParser(
        prog="hipart-data",
        description=__doc__,
        epilog=exit_codes({0: "ok", 2: "bad flag, input folder or file (one-line reason)"}),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the dataset from a BVH folder")
    b.add_argument("--bvh-dir", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--cameras", choices=("lab", "wild", "both"), default="lab")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--workers", type=positive_int, default=2)
    b.add_argument("--split", help="JSON file {subject: split} or 'train=01,03;val=02;test=05'")
    b.add_argument("--limit", type=positive_int, help="only the first N files (smoke tests)")
    b.add_argument("--body", choices=("anny", "mean"), default="anny",
                   help="anny: a sampled body shape per clip (needs the anny package); mean: the committed "
                        "mean-body asset, no anny needed")  # fmt: skip
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(fn=cmd_build)
    i = sub.add_parser("info", help="counts and a sanity summary of a built dataset")
    i.add_argument("dir")
    i.add_argument("--verify", action="store_true", help="re-hash every array against the manifest")
    i.set_defaults(fn=cmd_info)
    s = sub.add_parser("show", help="render a few samples (2D levels + 3D view) to PNG")
    s.add_argument("dir")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=positive_int, default=4)
    s.add_argument("--split", default="test")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_show)
    c = sub.add_parser("clusters", help="recompute the 96/48 mesh cluster asset (needs anny)")
    c.add_argument("--asset")
    c.add_argument("--picture", help="also write the cluster picture PNG here")
    c.add_argument("--mean-body", action="store_true", help="also rewrite the mean-body asset")
    c.set_defaults(fn=cmd_clusters)
    v = sub.add_parser("video", help="render the Anny mesh performing a clip (or 2-6 bodies, one per clip) to MP4 + "
                       "ground truth")
    v.add_argument("--bvh-dir", required=True)
    v.add_argument("--clip", default="05_01", help="clip id, or several comma-separated for a multi-person video "
                   "(e.g. 05_01,08_02,13_03: bodies side by side, each moving as its clip, per-person ground truth)")
    v.add_argument("--solo", type=int, metavar="I", help="multi-person: draw only person I (0-based; same camera and "
                   "ground truth): the single-person baseline on the same body")
    v.add_argument("--spacing", type=positive_float, default=1.1, help="multi-person: metres between the bodies at "
                   "the start (default 1.1)")
    v.add_argument("--out", required=True, help="output stem: <out>.mp4 and <out>_gt.npz")
    v.add_argument("--seconds", type=positive_float, default=8.0)
    v.add_argument("--seed", type=int, default=0)
    v.set_defaults(fn=cmd_video)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of hipart-data (exit codes in the parser's epilog)."""
    return interruptible("hipart-data", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    a = build_parser().parse_args(argv)
    try:
        return a.fn(a)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"hipart-data {a.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
