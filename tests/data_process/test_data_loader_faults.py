"""labvla-data against what breaks LeRobot's loader: one test per row of issue 14's table, plus
the official LabVLA toolkit's video/metadata checks, report identity and the CLI's edges."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dp_corrupt import edit_column, v30_rows

from lerobot_labvla.data_process import synthetic
from lerobot_labvla.data_process.clean import CleanConfig, clean_dataset
from lerobot_labvla.data_process.cli import main
from lerobot_labvla.data_process.reader import iter_episodes, open_dataset
from lerobot_labvla.data_process.scan import scan_dataset, write_report
from lerobot_labvla.data_process.stats import compute_stats
from lerobot_labvla.errors import LabVLAError

N, T = 6, 30  # episodes x frames of the datasets below


def _write(root: Path, **kw) -> Path:
    rng = np.random.default_rng(7)
    eps = [{**synthetic.smooth_episode(rng, T), "task": "pick up the beaker"} for _ in range(N)]
    synthetic.write_episodes(root, eps, state_names=[f"s{i}" for i in range(8)],
                             action_names=[f"a{i}" for i in range(7)], **kw)
    return root


@pytest.fixture(scope="session")
def one_file(tmp_path_factory) -> Path:
    """6 x 30 frames, no cameras, every episode in one data file."""
    return _write(tmp_path_factory.mktemp("one") / "ds")


@pytest.fixture(scope="session")
def file_each(tmp_path_factory) -> Path:
    """6 x 30 frames, no cameras, one data file per episode (LeRobot's size limit set tiny)."""
    root = _write(tmp_path_factory.mktemp("each") / "ds", data_files_size_in_mb=0.002)
    assert len(list((root / "data").glob("*/*.parquet"))) == N
    return root


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(src, dst)
    return dst


def _rewrite(path: Path, fn) -> None:
    pq.write_table(fn(pq.read_table(path)), path)


def _checks(report: dict) -> dict[int, dict[str, dict]]:
    return {e["episode_index"]: {f["check"]: f for f in e["findings"]} for e in report["episodes"]}


def _load(root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(f"local/{root.name}", root=root, video_backend="pyav")
    assert len(ds) == ds.meta.total_frames == len(ds.hf_dataset)
    for i in (0, len(ds) - 1):  # reading the ends touches every file's schema and the last index
        assert ds[i]["action"].shape == (7,)
    return ds


def _actions(root: Path) -> list[np.ndarray]:
    return [ep.columns["action"] for ep in iter_episodes(open_dataset(root), ["action"])]


def _set_column(table: pa.Table, name: str, values) -> pa.Table:
    field = table.schema.field(name)
    return table.set_column(table.column_names.index(name), field, pa.array(values, type=field.type))


# ---- schema: what LeRobot's Dataset.from_parquet(features=...) refuses ---------------------------


def _extra_column(t):
    return t.append_column("gripper_force", pa.array(np.zeros(t.num_rows)))


def _action_of_6(t):
    values = t.column("action").combine_chunks().values.to_numpy().reshape(-1, 7)[:, :6]
    i = t.column_names.index("action")
    return t.set_column(i, "action", pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), 6))


SCHEMA_FAULTS = {
    "extra column": (_extra_column, "'gripper_force' is not in info.json"),
    "timestamp missing": (lambda t: t.drop_columns(["timestamp"]), "'timestamp' is missing"),
    "action missing": (lambda t: t.drop_columns(["action"]), "'action' is missing"),
    "action of 6": (_action_of_6, "vectors of 6, info.json says 7"),
}


@pytest.mark.parametrize("fault", list(SCHEMA_FAULTS))
def test_schema_faults_name_the_file_and_clean_drops_it(file_each, tmp_path, fault):
    corrupt, message = SCHEMA_FAULTS[fault]
    src = _copy(file_each, tmp_path)
    path, _ = v30_rows(src, 2)
    _rewrite(path, corrupt)
    report = scan_dataset(src)  # completes: a broken file is a finding, not an aborted scan
    assert report["summary"]["faulty_episodes"] == [2]
    finding = _checks(report)[2]["schema_mismatch"]
    assert message in finding["message"] and finding["details"]["file"] == str(path.relative_to(src))
    stats = compute_stats(src)  # the broken file's episode is skipped, the others aggregate
    assert [s["episode_index"] for s in stats["skipped_episodes"]] == [2]
    assert stats["features"]["action"]["overall"]["count"] == [(N - 1) * T]
    log = clean_dataset(src, tmp_path / "clean", report)
    assert [d["episode_index"] for d in log["dropped"]] == [2]
    ds = _load(tmp_path / "clean")
    assert ds.meta.total_episodes == N - 1 and len(ds) == (N - 1) * T
    kept = _actions(file_each)
    for new, old in log["index_map"].items():
        np.testing.assert_array_equal(_actions(tmp_path / "clean")[int(new)], kept[old])


def test_numeric_width_is_a_warning_only(file_each, tmp_path):
    """float64 where info.json says float32 loads (LeRobot casts): a warning, the episode is kept."""
    src = _copy(file_each, tmp_path)
    path, _ = v30_rows(src, 1)

    def widen(t):
        i = t.column_names.index("action")
        col = t.column("action").combine_chunks()
        return t.set_column(i, "action", pa.FixedSizeListArray.from_arrays(col.values.cast(pa.float64()), 7))

    _rewrite(path, widen)
    report = scan_dataset(src)
    assert report["summary"]["faulty_episodes"] == []
    assert "float64" in _checks(report)[1]["dtype_cast"]["message"]
    assert list(_checks(report)[1]) == ["dtype_cast"]


# ---- rows in shared v3.0 files: blamed on their own episode -------------------------------------


def _extra_row(t):  # episode 2 (rows 60..89) gains a copy of its last row, `index` included
    return pa.concat_tables([t.slice(0, 90), t.slice(89, 1), t.slice(90)])


def _missing_row(t):  # episode 2 loses frame 15; `index` renumbered to follow the rows
    t = pa.concat_tables([t.slice(0, 75), t.slice(76)])
    return _set_column(t, "index", np.arange(t.num_rows))


@pytest.mark.parametrize("change", [_extra_row, _missing_row], ids=["extra row", "missing row"])
def test_a_row_more_or_less_blames_only_its_episode(one_file, tmp_path, change):
    src = _copy(one_file, tmp_path)
    _rewrite(src / "data/chunk-000/file-000.parquet", change)
    report = scan_dataset(src)
    checks = _checks(report)
    assert report["summary"]["faulty_episodes"] == [2]
    rows = checks[2]["length_mismatch"]["details"]["rows"]
    assert rows == (31 if change is _extra_row else 29)
    assert all(not checks[e] for e in range(N) if e != 2)
    log = clean_dataset(src, tmp_path / "clean", report)
    assert [d["episode_index"] for d in log["dropped"]] == [2]
    _load(tmp_path / "clean")
    before = _actions(one_file)
    after = _actions(tmp_path / "clean")
    for new, old in log["index_map"].items():
        np.testing.assert_array_equal(after[int(new)], before[old])


def test_rows_relabelled_to_the_next_episode_blame_only_their_own(one_file, tmp_path):
    """Episode 2's last 20 rows say episode_index 3 (their `index` is intact): by labels alone
    episode 3 would have 50 rows; the index column gives them back to episode 2."""
    src = _copy(one_file, tmp_path)
    path, rows = v30_rows(src, 2)
    edit_column(path, "episode_index", lambda e: e.__setitem__(slice(rows.start + 10, rows.stop), 3))
    report = scan_dataset(src)
    checks = _checks(report)
    assert report["summary"]["faulty_episodes"] == [2]
    assert list(checks[2]) == ["episode_index_mismatch"] and checks[2]["episode_index_mismatch"]["frames"] == list(range(10, T))
    log = clean_dataset(src, tmp_path / "clean", report)
    assert [d["episode_index"] for d in log["dropped"]] == [2]
    before, after = _actions(one_file), _actions(tmp_path / "clean")
    for new, old in log["index_map"].items():
        np.testing.assert_array_equal(after[int(new)], before[old])


def test_metadata_length_disagreeing_with_rows_is_never_cut(one_file, tmp_path):
    """meta/episodes says 29 for a 30-row episode: flagged; clean drops it, and refuses to keep it."""
    src = _copy(one_file, tmp_path)
    (path,) = (src / "meta/episodes").glob("*/*.parquet")
    _rewrite(path, lambda t: _set_column(t, "length", [T, T, T, T - 1, T, T]))
    report = scan_dataset(src)
    assert report["summary"]["faulty_episodes"] == [3]
    assert _checks(report)[3]["length_mismatch"]["details"] == {"rows": T, "length": T - 1}
    with pytest.raises(LabVLAError, match="episode 3 has length_mismatch and cannot be kept"):
        clean_dataset(src, tmp_path / "kept", report, CleanConfig(keep_checks=["length_mismatch"]))
    assert not (tmp_path / "kept").exists()
    clean_dataset(src, tmp_path / "clean", report)
    ds = _load(tmp_path / "clean")
    assert ds.meta.total_episodes == N - 1 and len(ds) == (N - 1) * T


def test_wrong_totals_and_stray_files(one_file, tmp_path):
    """info.json total_frames 999 (len(ds) would be 999) and a data file no episode points to."""
    src = _copy(one_file, tmp_path)
    info = json.loads((src / "meta/info.json").read_text())
    (src / "meta/info.json").write_text(json.dumps({**info, "total_frames": 999}))
    shutil.copy(src / "data/chunk-000/file-000.parquet", src / "data/chunk-000/file-007.parquet")
    report = scan_dataset(src)
    found = {f["check"]: f for f in report["dataset_findings"]}
    assert "total_frames is 999, the dataset has 180" in found["metadata_mismatch"]["message"]
    assert found["metadata_mismatch"]["severity"] == "error"
    assert "file-007.parquet" in found["orphan_file"]["message"]
    write_report(report, tmp_path / "r.json")
    args = ["scan", "--root", str(src), "--out", str(tmp_path / "r.json"), "--quiet"]
    assert main(args) == 0 and main([*args, "--fail-on", "error"]) == 1
    clean_dataset(src, tmp_path / "clean", report)  # nothing to drop: copied, totals rewritten
    ds = _load(tmp_path / "clean")
    assert len(ds) == N * T and not (tmp_path / "clean/data/chunk-000/file-007.parquet").exists()


def test_one_frozen_action_dim_is_a_warning(one_file, tmp_path):
    src = _copy(one_file, tmp_path)
    path, rows = v30_rows(src, 4)
    edit_column(path, "action", lambda a: a.__setitem__((rows, 2), 0.25))
    report = scan_dataset(src)
    checks = _checks(report)
    assert checks[4]["stuck_dim"]["details"] == {"feature": "action", "dims": ["a2"]}
    assert checks[4]["stuck_dim"]["severity"] == "warning" and "stuck_action" not in checks[4]
    # The untouched episodes (and state dim s7, zero in every episode: a layout, not a fault) pass.
    assert all(not checks[e] for e in range(N) if e != 4)
    args = ["scan", "--root", str(src), "--out", str(tmp_path / "r.json"), "--quiet"]
    assert main([*args, "--fail-on", "error"]) == 0 and main([*args, "--fail-on", "warning"]) == 1


# ---- report identity ------------------------------------------------------------------------


def test_clean_refuses_a_report_of_another_dataset(one_file, tmp_path, capsys):
    a = _copy(one_file, tmp_path)
    b = tmp_path / "other"
    shutil.copytree(one_file, b)
    edit_column(b / "data/chunk-000/file-000.parquet", "action", lambda x: x.__setitem__((70, 0), 99.0))
    report = tmp_path / "a.json"
    write_report(scan_dataset(a), report)  # same episode count, no findings
    clean = ["clean", "--src", str(b), "--dst", str(tmp_path / "clean"), "--report", str(report)]
    with pytest.raises(SystemExit) as exc:
        main(clean)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert f"the report was made for {a.resolve()}" in err and "--force" in err
    assert main([*clean, "--force"]) == 0
    assert json.loads((tmp_path / "clean/clean_log.json").read_text())["report"]["fingerprint_matches"] is False

    # The same dataset, changed after the scan: the file is named.
    edit_column(a / "data/chunk-000/file-000.parquet", "action", lambda x: x.__setitem__((5, 0), 9.0))
    with pytest.raises(LabVLAError, match=r"1 file\(s\) changed \(data/chunk-000/file-000.parquet\)"):
        clean_dataset(a, tmp_path / "clean2", report)


def test_stale_staging_is_removed_and_live_is_kept(one_file, tmp_path):
    report = scan_dataset(one_file)
    stale = tmp_path / ".clean.labvla-tmp-999999999"  # no such process
    live = tmp_path / f".clean.labvla-tmp-{os.getppid()}"  # pytest's parent: alive
    for d in (stale, live):
        (d / "out").mkdir(parents=True)
    clean_dataset(one_file, tmp_path / "clean", report)
    assert not stale.exists() and live.exists()


# ---- the official toolkit's video checks ------------------------------------------------------


def _encode(path: Path, frames: np.ndarray, fps: int, **options: str) -> None:
    import av

    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=fps, options=options)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for img in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


def test_video_stub_concat_hazard_fps_and_decode(v21_root, tmp_path):
    from dp_v21 import FRONT

    src = _copy(v21_root, tmp_path)
    video = src / "videos/chunk-000" / FRONT
    frames = np.random.default_rng(0).integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
    _encode(video / "episode_000001.mp4", frames[:2], 10)  # 2 packets, first DTS 0
    _encode(video / "episode_000002.mp4", frames, 20, tune="zerolatency")  # 20 fps, first DTS 0
    # One B-frame of pre-roll where the others have two: the only file starting at DTS -1024.
    _encode(video / "episode_000003.mp4", frames, 10, **{"x264-params": "bframes=1"})
    data = bytearray((video / "episode_000004.mp4").read_bytes())
    start = data.find(b"mdat") + 4
    data[start:] = bytes(len(data) - start)  # container intact, frames zeroed: demuxes, does not decode
    (video / "episode_000004.mp4").write_bytes(bytes(data))
    checks = _checks(scan_dataset(src))
    assert checks[1]["video_stub"]["details"]["packets"] == 2
    assert "video_fps_mismatch" in checks[2] and checks[2]["video_fps_mismatch"]["details"]["video_fps"] == 20
    assert checks[3]["video_concat_hazard"]["details"] == {
        "file": f"videos/chunk-000/{FRONT}/episode_000003.mp4", "feature": FRONT, "first_dts": -1024,
        "modal_first_dts": -2048}
    assert list(checks[3]) == ["video_concat_hazard"]
    assert "video_concat_hazard" not in checks[1]  # two files start at 0: not a lone outlier
    assert "unreadable_file" in checks[4]
    assert all(not checks[e] for e in (0, 5, 6, 7, 8, 9))


def test_v21_dataset_level_checks(v21_root, tmp_path):
    src = _copy(v21_root, tmp_path)
    with open(src / "meta/episodes_stats.jsonl", "a") as f:
        f.write(json.dumps({"episode_index": 42, "stats": {}}) + "\n")
    info = json.loads((src / "meta/info.json").read_text())
    info["total_chunks"] = 3
    info["features"]["action"]["shape"] = [40]  # > 32, and no longer what the files hold
    del info["features"]["timestamp"]
    (src / "meta/info.json").write_text(json.dumps(info))
    report = scan_dataset(src)
    found = {f["check"]: f["message"] for f in report["dataset_findings"]}
    assert "42" in found["stats_orphan"]
    assert "total_chunks is 3" in found["metadata_mismatch"]
    assert "action has 40 dims > 32" in found["dim_over_cap"]
    assert "timestamp_column" in found
    assert all("schema_mismatch" in c for c in _checks(report).values())


# ---- CLI: malformed input is one line and exit 2, never a traceback ------------------------------


def _scan_exit(root: Path, out: Path, capsys) -> tuple[int, str]:
    try:
        code = main(["scan", "--root", str(root), "--out", str(out), "--quiet"])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


BAD_VALUES = (None, "x", -1, 0, 1.5, True, [], {})


def test_fuzzed_info_json_and_meta_files(one_file, v21_root, tmp_path, capsys):
    cases = []
    for version_root in (one_file, v21_root):
        info = json.loads((version_root / "meta/info.json").read_text())
        for whole in ([], "x", None, 3):
            cases.append((version_root, "meta/info.json", json.dumps(whole).encode()))
        for key in ("codebase_version", "fps", "features", "total_episodes", "total_frames", "total_tasks",
                    "chunks_size", "data_path", "video_path"):
            for value in BAD_VALUES:
                cases.append((version_root, "meta/info.json", json.dumps({**info, key: value}).encode()))
        for feature in ([], {"dtype": 3, "shape": [7]}, {"dtype": "float32", "shape": "7"},
                        {"dtype": "float32", "shape": [-1]}, {"dtype": "float33", "shape": [7]}, {"shape": [7]}):
            features = {**info["features"], "action": feature}
            cases.append((version_root, "meta/info.json", json.dumps({**info, "features": features}).encode()))
        for path in sorted((version_root / "meta").rglob("*")):
            if path.is_file() and path.name != "info.json":
                data = path.read_bytes()
                rel = str(path.relative_to(version_root))
                cases += [(version_root, rel, b""), (version_root, rel, data[: len(data) // 2]),
                          (version_root, rel, b"\x00garbage{" * 10)]
    # meta/episodes with values of the wrong type (null lengths, text indices)
    (ep_path,) = (one_file / "meta/episodes").glob("*/*.parquet")
    table = pq.read_table(ep_path)
    for column, values in (("length", [None] * N), ("dataset_from_index", ["a"] * N), ("tasks", [None] * N)):
        t = table.set_column(table.column_names.index(column), column, pa.array(values))
        sink = pa.BufferOutputStream()
        pq.write_table(t, sink)
        cases.append((one_file, str(ep_path.relative_to(one_file)), sink.getvalue().to_pybytes()))
    v21_lines = (v21_root / "meta/episodes.jsonl").read_text().splitlines()
    for bad in ('{"episode_index": "a", "length": 40, "tasks": ["x"]}', '{"episode_index": 0, "length": null}', "[1]"):
        cases.append((v21_root, "meta/episodes.jsonl", ("\n".join([bad, *v21_lines[1:]]) + "\n").encode()))

    copies = {}
    for base in (one_file, v21_root):
        copies[base] = tmp_path / base.parent.name
        shutil.copytree(base, copies[base])
    outcomes = {0: 0, 2: 0}
    for base, rel, data in cases:
        root = copies[base]
        original = (root / rel).read_bytes()
        (root / rel).write_bytes(data)
        try:
            code, err = _scan_exit(root, tmp_path / "r.json", capsys)
        finally:
            (root / rel).write_bytes(original)
        assert code in (0, 2), (rel, data[:80], code, err)
        if code == 2:
            assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), (rel, data[:80], err)
        outcomes[code] += 1
    assert outcomes[2] > len(cases) // 2  # most of these are fatal, and said so in one line


def test_root_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "info.json"
    f.write_text("{}")
    code, err = _scan_exit(f, tmp_path / "r.json", capsys)
    assert code == 2 and "is a file, not a dataset folder" in err


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # LeRobot's stats arithmetic on the Inf rows
def test_stats_out_is_strict_json_with_a_finding(v30_corrupted, tmp_path, capsys):
    out = tmp_path / "stats.json"
    assert main(["stats", "--dataset", str(v30_corrupted), "--out", str(out)]) == 0
    assert "non_finite_stats (error)" in capsys.readouterr().out

    def no_constants(name):
        raise AssertionError(f"non-strict JSON constant {name}")

    result = json.loads(out.read_text(), parse_constant=no_constants)
    (finding,) = result["findings"]
    assert finding["check"] == "non_finite_stats"
    assert "features.observation.state.overall.max[1]" in finding["paths"]
    assert result["features"]["observation.state"]["overall"]["max"][1] is None


def test_encoder_output_is_silenced_unless_verbose(capfd):
    """SVT-AV1 prints its banner from C (past sys.stderr): clean silences file descriptors 1 and 2."""
    from lerobot_labvla.data_process.cli import _silenced

    for silenced in (True, False):
        with _silenced(silenced):
            os.write(2, b"Svt[info]: SVT [version]: SVT-AV1 Encoder Lib\n")
            os.write(1, b"[mp4 @ 0x0] Starting second pass\n")
        out, err = capfd.readouterr()
        assert ("Svt[info]" in err) is not silenced and ("second pass" in out) is not silenced


def test_damaged_report_is_one_line(one_file, tmp_path, capsys):
    report = scan_dataset(one_file)
    for damage in ({"episodes": "x"}, {"episodes": [{"episode_index": 0}]}, {"dataset": []}):
        path = tmp_path / "r.json"
        path.write_text(json.dumps({**report, **damage}))
        with pytest.raises(SystemExit) as exc:
            main(["clean", "--src", str(one_file), "--dst", str(tmp_path / "c"), "--report", str(path)])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and "is damaged" in err
