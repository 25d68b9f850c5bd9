"""Look inside a model (RecSAE): sparse-autoencoder concepts, their confidence, steering.

- `probe`: where a model's user/sequence vector is read and written back.
- `sae`: the TopK sparse autoencoder trained on those vectors.
- `concepts`: labels from enriched attributes and items, verified on held-out users.
- `steer`: ablate or boost a latent inside the model (`SteeredModel`).
- `pipeline`: the whole run on a bundle; `report`: its HTML page.
"""

from whyrec.interpret.concepts import Concept, ConceptConfig, ConceptDictionary
from whyrec.interpret.pipeline import Interpretation, InterpretConfig, interpret_bundle, summary
from whyrec.interpret.probe import PROBED_MODELS, NoProbePointError, ProbePoint, probe_for
from whyrec.interpret.sae import SAEConfig, SparseAutoencoder
from whyrec.interpret.steer import SteeredModel

__all__ = [
    "PROBED_MODELS",
    "Concept",
    "ConceptConfig",
    "ConceptDictionary",
    "InterpretConfig",
    "Interpretation",
    "NoProbePointError",
    "ProbePoint",
    "SAEConfig",
    "SparseAutoencoder",
    "SteeredModel",
    "interpret_bundle",
    "probe_for",
    "summary",
]
