"""Scale-out: many inverse problems on local processes, Ray or Dask; DDP training.

* :func:`fit_many` fits ``build(problem)`` for many problems on an executor and stacks the
  posteriors into one InferenceData with a problem dimension, plus a per-problem table
  (faults recorded, results written as they finish, reruns resume).
* :mod:`bayesphys.distributed.ddp` holds small ``torch.distributed`` helpers for data-parallel
  training launched by ``torchrun`` (gloo on CPU, nccl on CUDA);
  :class:`~bayesphys.distributed.GradientSync` (defined in the shared core) brings the same gradient
  averaging into the neural components' own ``fit`` loops (``RandomGridNP``, ``ProbConserv``,
  ``MetaFlowMatching``).

Ray and Dask are optional (``pip install "bayesphys[distributed]"``) and imported only when
asked for. The layering (vectorise first, then processes, then DDP, then a cluster engine)
follows the ecosystem survey in ``docs/scale_out.md``; bayesphys builds no scheduler of its own.

References: P. Moritz et al., "Ray: A Distributed Framework for Emerging AI Applications",
OSDI 2018; M. Rocklin, "Dask: Parallel Computation with Blocked algorithms and Task
Scheduling", SciPy 2015; S. Li et al., "PyTorch Distributed: Experiences on Accelerating Data
Parallel Training", VLDB 2020.
"""

from .._data_parallel import GradientSync, rank_generator_seed
from ._pool_runners import DaskRunner
from ._ray_runner import RayRunner
from ._runner import Runner, SequentialRunner
from .executors import TaskError, ThreadLimit, limit_threads, resolve_runner
from .fit_many import CombineError, FitManyResult, fit_many, problem_seed, run_problem

__all__ = [
    "fit_many",
    "GradientSync",
    "rank_generator_seed",
    "FitManyResult",
    "CombineError",
    "TaskError",
    "problem_seed",
    "run_problem",
    "limit_threads",
    "ThreadLimit",
    "resolve_runner",
    "Runner",
    "SequentialRunner",
    "DaskRunner",
    "RayRunner",
]
