"""Per task: the scripted expert succeeds on fixed seeds (both splits), doing nothing fails."""

import pytest

from lerobot_labvla.envs.labutopia import GYM_IDS
from lerobot_labvla.envs.labutopia.expert import rollout

TASKS = list(GYM_IDS)


@pytest.fixture
def make_env():
    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv

    made = []

    def make(task, split="id", **kw):
        env = LabUtopiaEnv(task, split, obs_type="agent_pos", render_mode=None, **kw)
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("split,seed", [("id", 0), ("ood", 1)])
def test_expert_succeeds(make_env, task, split, seed):
    r = rollout(make_env(task, split), seed)
    assert r.success and r.max_progress == 1.0, f"{task}/{split} seed {seed}: expert failed ({r})"


@pytest.mark.parametrize("task", TASKS)
def test_doing_nothing_fails(make_env, task):
    r = rollout(make_env(task), seed=0, policy="zero")
    assert not r.success and r.max_progress < 1.0
