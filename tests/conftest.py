"""pytest configuration for the paskdnn test suite.

Hypothesis profiles:
  ci        (default) ~25 examples per property test, no deadline
  thorough  ~500 examples per property test
Select one with hypothesis' own flag, e.g.
    python3 -m pytest tests --hypothesis-profile=thorough
or with the HYPOTHESIS_PROFILE environment variable.
"""

import os
import sys

from hypothesis import HealthCheck, settings

# make `import reference` work no matter where pytest is started from
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_COMMON = dict(
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("ci", max_examples=25, **_COMMON)
settings.register_profile("thorough", max_examples=500, **_COMMON)

# Default; hypothesis' pytest plugin loads --hypothesis-profile=NAME in its
# pytest_configure, which runs after this initial conftest is imported.
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    # In case this conftest is imported after hypothesis' plugin configured
    # (e.g. not an initial conftest), re-apply an explicitly requested profile.
    try:
        name = config.getoption("--hypothesis-profile")
    except ValueError:
        name = None
    if name:
        settings.load_profile(name)


def pytest_report_header(config):
    return f"paskdnn tests: hypothesis profile {settings.get_current_profile_name()!r}"


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def kernel_cache_dir(tmp_path_factory):
    """A private kernel cache folder, so tests don't touch ~/.cache."""
    return str(tmp_path_factory.mktemp("paskdnn-cache"))


@pytest.fixture(scope="session")
def make_context(kernel_cache_dir):
    """make_context(solver=None, **kwargs) -> a cached paskdnn.Context.

    solver: a solver name to force (Context(solvers=[solver])), or None for
    all solvers. Session scoped so hypothesis tests may use it.
    """
    import paskdnn

    cache = {}

    def get(solver=None, **kwargs):
        key = (solver, tuple(sorted(kwargs.items())))
        if key not in cache:
            if solver is not None:
                kwargs["solvers"] = [solver]
            cache[key] = paskdnn.Context(cache_dir=kernel_cache_dir, **kwargs)
        return cache[key]

    return get


@pytest.fixture(scope="module")
def ctx_for(kernel_cache_dir):
    """ctx_for(solver, isa) -> a paskdnn.Context pinned to one CPU solver and
    kernel variant (cpu_isa), made once per test module and closed after it."""
    import paskdnn

    cache = {}

    def get(solver, isa):
        if (solver, isa) not in cache:
            cache[solver, isa] = paskdnn.Context(cache_dir=kernel_cache_dir, solvers=[solver], cpu_isa=isa,
                                                 num_threads=2)
        return cache[solver, isa]

    yield get
    for c in cache.values():
        c.close()
