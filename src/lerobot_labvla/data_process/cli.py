"""Command line of `labvla-data` (also `python -m lerobot_labvla.data_process`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from lerobot_labvla.errors import cli_errors


def _quiet_libraries(command: str) -> None:
    # LeRobot's converter and dataset tools draw a tqdm bar per step and log a torchcodec fallback
    # warning; a CLI that prints a summary should not drown it. tqdm reads TQDM_DISABLE only when
    # it is imported (already done by the plugin's LeRobot imports), hence the default patched here.
    import functools

    import tqdm

    tqdm.tqdm.__init__ = functools.partialmethod(tqdm.tqdm.__init__, disable=True)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("lerobot", "datasets", "root", "torchcodec"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    if command == "scan":
        return  # scan imports neither HF datasets nor lerobot.datasets (its < 1 GiB budget; see reader.py)
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def build_parser() -> argparse.ArgumentParser:
    from lerobot_labvla.data_process.scan import CHECKS, ScanConfig
    from lerobot_labvla.data_process.schemas import SCHEMAS

    d = ScanConfig()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="full tracebacks on errors")
    parser = argparse.ArgumentParser(prog="labvla-data", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    scan = sub.add_parser("scan", parents=[common], help="detect anomalous episodes and action outliers; write report.json")
    scan.add_argument("--root", required=True, type=Path, help="dataset folder (holds meta/info.json)")
    scan.add_argument("--out", type=Path, default=Path("report.json"), help="report path (default report.json)")
    scan.add_argument("--schema", choices=SCHEMAS, default=d.schema, help="robot layout for joint limits")
    scan.add_argument("--decode-video", action="store_true", help="count video frames by decoding (slow)")
    scan.add_argument("--outlier-z", type=float, default=d.outlier_z, help="robust z-score limit for action values")
    scan.add_argument("--stuck-seconds", type=float, default=d.stuck_seconds, help="no action change this long = stuck")
    scan.add_argument("--stuck-eps", type=float, default=d.stuck_eps, help="action change below this = no motion")
    scan.add_argument("--min-seconds", type=float, default=d.min_seconds, help="shorter episodes: too_short")
    scan.add_argument("--max-seconds", type=float, default=d.max_seconds, help="longer episodes: too_long")
    scan.add_argument("--max-length-factor", type=float, default=d.max_length_factor,
                      help="episodes longer than this x the median length: too_long (0: off)")
    scan.add_argument("--timestamp-tolerance", type=float, default=d.timestamp_tolerance_s, dest="timestamp_tolerance_s",
                      help="allowed |step - 1/fps| in seconds (LeRobot's tolerance_s)")
    scan.add_argument("--chatter-window", type=float, default=d.chatter_window_s, dest="chatter_window_s",
                      help="gripper_chatter window in seconds")
    scan.add_argument("--chatter-toggles", type=int, default=d.chatter_toggles,
                      help="this many gripper toggles within the window = chatter")
    scan.add_argument("--limit-margin", type=float, default=d.limit_margin, help="slack on the schema's limits")
    scan.add_argument("--min-annotation-coverage", type=float, default=d.min_annotation_coverage,
                      help="fraction of frames an annotation stream must cover")
    scan.add_argument("--max-frames-listed", type=int, default=d.max_frames_listed,
                      help="frames listed per finding in the report (the count is always exact)")
    scan.add_argument("--quiet", action="store_true", help="no summary table")
    scan.add_argument("--fail-on", choices=("error", "warning"), default=None,
                      help="exit 1 when a finding reaches this severity (a CI gate); default: exit 0 whenever it ran")

    clean = sub.add_parser("clean", parents=[common], help="write a new v3.0 dataset without the faulty episodes")
    clean.add_argument("--src", required=True, type=Path, help="dataset to clean (never modified)")
    clean.add_argument("--dst", required=True, type=Path, help="new dataset folder (must not exist)")
    clean.add_argument("--report", required=True, type=Path, help="report.json from labvla-data scan on --src")
    clean.add_argument("--drop-severity", choices=("error", "warning"), default="error",
                       help="drop episodes with findings at least this severe (default error)")
    clean.add_argument("--drop-checks", default="", help=f"comma list: also drop for these ({', '.join(CHECKS)})")
    clean.add_argument("--keep-checks", default="", help="comma list: never drop for these")
    clean.add_argument("--clip-actions", action="store_true",
                       help="clip action outliers to the report's bounds instead of dropping their episodes")
    clean.add_argument("--repo-id", default=None, help="repo_id of the new dataset (default local/<dst name>)")
    clean.add_argument("--overwrite", action="store_true", help="replace --dst if it exists")
    clean.add_argument("--force", action="store_true",
                       help="apply a report made on another copy or an earlier state of --src (fingerprint mismatch)")
    clean.add_argument("--verbose", action="store_true", help="let LeRobot and the video encoder print their output")

    merge = sub.add_parser("merge", parents=[common], help="merge datasets (of different robots with --pad) into one v3.0 dataset")
    merge.add_argument("--src", required=True, type=Path, nargs="+", help="two or more v3.0 datasets (never modified)")
    merge.add_argument("--dst", required=True, type=Path, help="new dataset folder (must not exist)")
    merge.add_argument("--pad", action="store_true",
                       help="zero-pad state/action (and other vectors) to the widest source, with per-frame "
                            "dim_is_pad.observation.state / dim_is_pad.action masks the labvla policy reads")
    merge.add_argument("--repo-id", default=None, help="repo_id of the new dataset (default local/<dst name>)")
    merge.add_argument("--overwrite", action="store_true", help="replace --dst if it exists")
    merge.add_argument("--verbose", action="store_true", help="let LeRobot print its progress")

    stats = sub.add_parser("stats", parents=[common], help="per-feature stats (LeRobot's compute_stats), per episode and overall")
    stats.add_argument("--dataset", required=True, type=Path, help="dataset folder")
    stats.add_argument("--schema", choices=SCHEMAS, default="lerobot", help="name dims and check ranges")
    stats.add_argument("--out", type=Path, default=None, help="write all stats (per episode too) as JSON")
    stats.add_argument("--plot", type=Path, default=None, help="histograms + action traces (.html or .png)")
    stats.add_argument("--plot-episodes", type=int, default=10, help="episodes drawn as action traces")
    return parser


@contextlib.contextmanager
def _silenced(enabled: bool):
    """Send file descriptors 1 and 2 to /dev/null: the video encoder (SVT-AV1) prints its banner
    from C, past Python's sys.stdout/sys.stderr and logging."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries(args.command)
    if args.command == "scan":
        from lerobot_labvla.data_process.scan import (
            SEVERITY_RANK,
            ScanConfig,
            scan_dataset,
            summary_table,
            worst_severity,
            write_report,
        )

        fields = ScanConfig.__dataclass_fields__
        cfg = ScanConfig(**{k: v for k, v in vars(args).items() if k in fields})
        report = scan_dataset(args.root, cfg)
        write_report(report, args.out)
        if not args.quiet:
            print(summary_table(report))
            print(f"  report: {args.out}")
        worst = worst_severity(report)
        if args.fail_on and worst and SEVERITY_RANK[worst] >= SEVERITY_RANK[args.fail_on]:
            print(f"scan found {worst}s (--fail-on {args.fail_on})", file=sys.stderr)
            return 1
        return 0
    if args.command == "clean":
        from lerobot_labvla.data_process.clean import CleanConfig, clean_dataset

        cfg = CleanConfig(
            drop_severity=args.drop_severity,
            drop_checks=_split(args.drop_checks),
            keep_checks=_split(args.keep_checks),
            clip_actions=args.clip_actions,
            repo_id=args.repo_id,
            overwrite=args.overwrite,
            force=args.force,
        )
        with _silenced(not args.verbose):
            log = clean_dataset(args.src, args.dst, args.report, cfg)
        dropped = ", ".join(f"{d['episode_index']} ({'/'.join(d['checks'])})" for d in log["dropped"][:20])
        print(f"cleaned {args.src} -> {args.dst}: kept {log['episodes_out']}/{log['episodes_in']} episodes "
              f"in {log['elapsed_s']:.1f}s")
        if log["dropped"]:
            print(f"  dropped: {dropped}{' ...' if len(log['dropped']) > 20 else ''}")
        if log["clipped"]:
            print(f"  clipped action values in {len(log['clipped'])} episodes")
        print(f"  log: {args.dst / 'clean_log.json'}")
        return 0
    if args.command == "merge":
        from lerobot_labvla.data_process.merge import merge

        with _silenced(not args.verbose):
            log = merge(args.src, args.dst, pad=args.pad, repo_id=args.repo_id, overwrite=args.overwrite)
        print(f"merged {len(log['sources'])} datasets -> {args.dst} (robot_type {log['robot_type']}) "
              f"in {log['elapsed_s']:.1f}s")
        for src in log["sources"]:
            dims = ", ".join(f"{k.removesuffix('_width')} {v}" for k, v in src.items() if k.endswith("_width"))
            print(f"  episodes {src['episodes'][0]}-{src['episodes'][1]}: {src['robot_type']} ({dims}) {src['root']}")
        for key, pad in log["padded"].items():
            print(f"  {key}: zero-padded to {pad['width']}")
        if log["masks"]:
            print(f"  per-frame masks: {', '.join(log['masks'])}")
        print(f"  log: {args.dst / 'merge_log.json'}")
        return 0
    if args.command == "stats":
        from lerobot_labvla.data_process.stats import compute_stats, stats_table

        result = compute_stats(args.dataset, schema=args.schema)
        print(stats_table(result))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.out.with_name(args.out.name + ".tmp")
            tmp.write_text(json.dumps(result, indent=1, allow_nan=False))  # strict JSON: non-finite values are null
            tmp.replace(args.out)
            print(f"stats: {args.out}")
        if args.plot:
            from lerobot_labvla.data_process.plot import plot_stats

            plot_stats(args.dataset, result, args.plot, n_episodes=args.plot_episodes)
            print(f"plot: {args.plot}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
