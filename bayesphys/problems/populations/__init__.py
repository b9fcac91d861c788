r"""Population-pair benchmark generators for Meta Flow Matching (component 5, ``meta_fm``).

Each generator returns a :class:`PopulationPairs`: a list of source populations
:math:`p_0^{(i)}` (tensors ``[n_i, d]``), a list of target populations :math:`p_1^{(i)}`
(``[m_i, d]``), an optional treatment index per pair, a source id per pair (pairs sharing a
source population share the id) and named splits. Everything is seeded and synthetic; no
download. The recipes follow the MFM anchor (Atanackovic et al., ICLR 2025, section 8):

* **B1 letters** (:func:`letters`): glyphs rendered with matplotlib's bundled DejaVu Sans,
  target = glyph + :math:`\mathcal N(0, 0.05^2)` then a random rotation, source = target +
  :math:`\mathcal N(0, 0.5^2)`, index-paired. Train: 24 letters (A-Z without X, Y) x 10
  rotations; val "X" x 10; test "Y" x 10.
* **B2 linear map** (:func:`linear_map`): :math:`p_0 = \mathcal N(\mu_i, \Sigma_i)`, target map
  :math:`T_i(x) = \mu_i + 0.5 R(\mu_i)(x-\mu_i) + 0.5\tanh(\mu_i)`; the exact target law is
  :math:`\mathcal N(\mu_i + s_i, 0.25 R \Sigma_i R^\top)` (returned in ``extra``).
* **B3 interacting particles** (:func:`interacting_particles`): Gaussian-mixture populations
  pushed to :math:`T=1` by mean attraction plus kernel repulsion (RK4, 50 steps by default).
* **B4 patient x treatment screen** (:func:`patient_screen`): 8 patients, 2 cell types in
  :math:`d = 10`, 5 treatments whose effect depends on the patient's tumour fraction.

Modules: ``pairs`` (the :class:`PopulationPairs` container), one per benchmark family
(``b1_letters``, ``b2_linear_map``, ``b3_particles``, ``b4_screen``) and ``registry`` (a
benchmark by id, and fresh draws of a data set's targets); every public name is re-exported
here.
"""

from .b1_letters import letter_points, letters
from .b2_linear_map import linear_map, linear_map_exact_field
from .b3_particles import interacting_particles, particle_velocity
from .b4_screen import patient_screen
from .pairs import PopulationPairs
from .registry import make_population_problem, redraw_targets

__all__ = [
    "PopulationPairs",
    "letters",
    "letter_points",
    "linear_map",
    "linear_map_exact_field",
    "interacting_particles",
    "particle_velocity",
    "patient_screen",
    "make_population_problem",
    "redraw_targets",
]
