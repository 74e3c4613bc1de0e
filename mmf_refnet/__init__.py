"""mmf-refnet: ReFNet (Multimodal Fusion Refiner Networks) for MMF.

Importing the package makes PyPI ``mmf==1.0.0rc10`` usable on a modern stack
(``mmf_refnet.compat``) and registers the models ``refnet``, ``refnet_ms``,
``visual_bert_refnet`` and ``mmbt_refnet``, their losses, metrics and the embedded
demo dataset with MMF's registry.
"""

from mmf_refnet._bootstrap import load as _load

__version__ = "0.1.0"

_load()
