"""What the corrupted fixtures break, and what scan must say about it (shared by the tests)."""

# The v2.1 corruptions, one per episode: episode -> (check scan must report, frames it concerns).
V21_CORRUPTIONS = {
    1: ("unreadable_file", None),  # truncated parquet
    2: ("nan_inf", [5, 6, 7]),  # NaN rows in action
    3: ("missing_file", None),  # deleted video
    4: ("timestamp_gap", [20]),  # timestamps jump by 1 s at frame 20
    5: ("episode_index_mismatch", list(range(40))),  # rows claim another episode
    6: ("action_outlier", [15]),  # one spike in one action dim
}
# The v3.0 corruptions (the single data file stays readable).
V30_CORRUPTIONS = {
    1: ("nan_inf", [3, 4]),
    2: ("timestamp_gap", [10]),
    4: ("episode_index_mismatch", list(range(30))),
    5: ("action_outlier", [12]),
}
