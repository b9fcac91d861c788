"""load() rebuilds a saved model without repeating its settings warnings (beta, solver_options)
through a context variable: the process-wide warnings filter it set before (catch_warnings) also
hid the same warnings of a model built in another thread while the load ran."""

from __future__ import annotations

import threading
import warnings

import pytest
import torch

from bayesphys.gp_pde import GPPDESolver

F64 = torch.float64


class _BuildsElsewhereWhileLoading(GPPDESolver):
    """Builds, in another thread and while its own load runs, a model that must warn."""

    seen: list[str] = []

    def __init__(self, *args, **kwargs):
        if args and args[0] is None:  # the rebuild of load(), not the user's construction

            def other():
                # the filters as they stand (no "always" of its own, which would go before
                # whatever the loading thread added): a user's thread under default filters
                with warnings.catch_warnings(record=True) as rec:
                    GPPDESolver(
                        x=torch.linspace(0, 1, 8, dtype=F64),
                        source=1.0,
                        boundary=0.0,
                        num_mixtures=2,
                        beta=3.0,
                        solver_options={"max_iter": 2},
                    )
                type(self).seen.extend(str(w.message) for w in rec)

            t = threading.Thread(target=other)
            t.start()
            t.join()
        super().__init__(*args, **kwargs)


# the other thread records its warnings under the filters as they stand, which must show the
# package's warnings as a user's default filters do (the suite's own filter raises them)
@pytest.mark.filterwarnings("default::bayesphys.BayesphysWarning")
def test_a_load_neither_repeats_its_warnings_nor_hides_another_threads(tmp_path):
    x = torch.linspace(0, 1, 8, dtype=F64)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        m = GPPDESolver(x=x, source=1.0, boundary=0.0, num_mixtures=2, beta=2.0)
    assert sum("beta: only equation='advection' reads it" in str(w.message) for w in rec) == 1
    m.save(tmp_path / "m.pt")
    _BuildsElsewhereWhileLoading.seen = []
    with warnings.catch_warnings(record=True) as own:  # the filters as they stand
        back = _BuildsElsewhereWhileLoading.load(tmp_path / "m.pt")
    assert not [str(w.message) for w in own], "the load repeated its warnings"
    assert torch.equal(back.f, m.f)
    seen = _BuildsElsewhereWhileLoading.seen
    assert any("beta: only equation='advection' reads it" in s for s in seen), seen
    assert any("solver_options ['max_iter'] will be ignored" in s for s in seen), seen
