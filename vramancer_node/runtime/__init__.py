"""The model runtime: Llama-family checkpoints run as a pipeline of stages.

Theory of operation. ``read_model_config`` turns a Hugging Face ``config.json`` into a
validated ``ModelConfig``. ``load_stage`` builds a ``Stage`` (layers ``[first,
last)``, optionally the embedding and the head) and fills it from the checkpoint's
safetensors files, reading only that stage's tensors. Each session keeps one
``KVCache`` per stage. ``generate`` runs all stages in one process: prefill in chunks,
then decode a token at a time, choosing tokens with a ``Sampler``.

The model code is ours (``torch.nn``); ``transformers`` is only the reference in tests.
Nothing is unpickled: safetensors only, never ``torch.load``.

Modules: ``model_config`` (config.json), ``checkpoint`` (safetensors files),
``rotary``, ``layers``, ``kv_cache``, ``stage`` (module + loader), ``sampler``,
``generate``, ``errors``.
"""

from vramancer_node.runtime.checkpoint import Checkpoint
from vramancer_node.runtime.errors import CheckpointError, KVCacheFullError
from vramancer_node.runtime.generate import generate
from vramancer_node.runtime.kv_cache import KVCache
from vramancer_node.runtime.model_config import ModelConfig, RopeScaling, read_model_config
from vramancer_node.runtime.sampler import Sampler, SamplingParams
from vramancer_node.runtime.stage import Stage, load_stage

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "KVCache",
    "KVCacheFullError",
    "ModelConfig",
    "RopeScaling",
    "Sampler",
    "SamplingParams",
    "Stage",
    "generate",
    "load_stage",
    "read_model_config",
]
