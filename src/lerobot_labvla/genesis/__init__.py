"""RoboGenesis: written lab protocols -> validated workflows -> successful, safe, annotated LeRobot datasets.

workflow.py (YAML schema), validate.py (offline checks), protocol.py (text -> workflow),
randomize.py (scenes from a workflow), skills.py (workflow steps -> sim skills + checkers),
safety.py (safety monitor), annotate.py (annotation streams), runner.py (rollouts in workers),
export.py (LeRobot v3 writer), cli.py (`labvla-genesis`). Light imports only here.
"""
