"""The identity of a dataset on disk, recorded in `report.json` so `clean` applies a report only
to the dataset it was made from (same root, same info.json, same files, same sizes and times)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# Everything LeRobot reads: metadata, frame data, image folders and videos.
_FOLDERS = ("meta", "data", "videos", "images")


def fingerprint(root: str | Path) -> dict:
    """{root, info_sha256, files: {relative path: [size, mtime_ns]}, digest}."""
    root = Path(root).resolve()
    files = {}
    for name in _FOLDERS:
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                st = path.stat()
                files[path.relative_to(root).as_posix()] = [st.st_size, st.st_mtime_ns]
    info = root / "meta" / "info.json"
    info_sha = hashlib.sha256(info.read_bytes()).hexdigest() if info.is_file() else None
    body = {"root": str(root), "info_sha256": info_sha, "files": files}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return {**body, "digest": digest}


def differences(recorded: dict, current: dict, limit: int = 5) -> list[str]:
    """What changed between two fingerprints, in words (empty when they match)."""
    if recorded.get("digest") == current["digest"]:
        return []
    out = []
    if recorded.get("root") != current["root"]:
        out.append(f"the report was made for {recorded.get('root')}")
    if recorded.get("info_sha256") != current["info_sha256"]:
        out.append("meta/info.json differs")
    if out:  # another dataset: a file-by-file list would say nothing more
        return out
    old, new = recorded.get("files") or {}, current["files"]
    changed = sorted(k for k in old.keys() & new.keys() if list(old[k]) != list(new[k]))
    for what, names in (("changed", changed), ("missing", sorted(old.keys() - new.keys())),
                        ("new", sorted(new.keys() - old.keys()))):
        if names:
            out.append(f"{len(names)} file(s) {what} ({', '.join(names[:limit])}{' ...' if len(names) > limit else ''})")
    return out or ["the fingerprint differs"]
