"""`labvla-data`: scan, clean and stats for local LeRobot datasets (v2.1 and v3.0).

    labvla-data scan  --root DATASET --out report.json
    labvla-data clean --src DATASET --dst CLEAN --report report.json
    labvla-data stats --dataset CLEAN [--schema lerobot|robointer_droid] [--plot stats.html]
"""
