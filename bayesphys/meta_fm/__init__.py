r"""Meta Flow Matching with GNN population embeddings (component 5).

Learns a vector field :math:`v_\theta(t, x \mid \varphi(p_0), c)` whose flow maps each source
population :math:`p_0` to its response :math:`p_1`, where :math:`\varphi` is a GCN embedding of
the whole source population over its kNN graph — so the model predicts the response of
*unseen* populations. Baselines FM, CGFM, identity, sampling floor, shift and ideal shift
live in the same code; deep ensembles give a :class:`~bayesphys.SamplePosterior` over
predicted populations with spread-vs-error and split-conformal diagnostics.

Reference: L. Atanackovic, X. Zhang, B. Amos, M. Blanchette, L. J. Lee, Y. Bengio, A. Tong,
K. Neklyudov, "Meta Flow Matching: Integrating Vector Fields on the Wasserstein Manifold",
ICLR 2025 (arXiv:2408.14608). Our own implementation; the reference code was read, not copied.
"""

from .baselines import (
    floor_prediction,
    ideal_shift_prediction,
    identity_prediction,
    shift_prediction,
)
from .config import METHODS, MFMConfig
from .coupling import (
    cfm_loss,
    couple,
    full_ot_plans,
    interpolate,
    ot_pairing,
    sample_plan_partners,
)
from .embedding import DenseGCN, PopulationEmbedding, knn_adjacency, normalized_adjacency
from .ensemble import MFMEnsemble, pooled_prediction, w2_inference_data
from .evaluation import (
    MMD_GAMMAS,
    conformal_coverage,
    conformal_radius,
    correlation_of_correlations,
    ensemble_spread,
    gaussian_w2,
    mmd_anchor,
    population_metrics,
    sampling_noise_w2,
    spearman,
)
from .field import FourierFeatures, VectorField, time_embedding
from .model import MetaFlowMatching
from .sampling import SOLVERS, integrate

__all__ = [
    "MetaFlowMatching",
    "MFMEnsemble",
    "MFMConfig",
    "METHODS",
    "PopulationEmbedding",
    "DenseGCN",
    "knn_adjacency",
    "normalized_adjacency",
    "VectorField",
    "FourierFeatures",
    "time_embedding",
    "ot_pairing",
    "full_ot_plans",
    "sample_plan_partners",
    "couple",
    "interpolate",
    "cfm_loss",
    "integrate",
    "SOLVERS",
    "population_metrics",
    "correlation_of_correlations",
    "mmd_anchor",
    "MMD_GAMMAS",
    "gaussian_w2",
    "ensemble_spread",
    "sampling_noise_w2",
    "spearman",
    "conformal_radius",
    "conformal_coverage",
    "pooled_prediction",
    "w2_inference_data",
    "identity_prediction",
    "floor_prediction",
    "shift_prediction",
    "ideal_shift_prediction",
]
