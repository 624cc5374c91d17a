"""Where models come from: hub ids, the embedded SmolLM2 model, the opt-in embedded Gemma-3
270M and Qwen2.5-Coder-0.5B-Instruct models, tiny synthetic models.

Importing this package is cheap: torch and transformers are imported only when a model is
actually provisioned.
"""

from __future__ import annotations

from lenscheck.models.cache import atomic_build_dir, cache_root
from lenscheck.models.embedded import (
    EMBEDDED_ALIAS,
    EMBEDDED_MODEL_ID,
    EMBEDDED_NAME,
    EMBEDDED_SHA256,
    EmbeddedModelUnavailable,
    ensure_embedded_checkpoint,
)
from lenscheck.models.gemma3 import (
    GEMMA3_ALIAS,
    GEMMA3_INSTALL_COMMAND,
    GEMMA3_MODEL_ID,
    GEMMA3_NAME,
    GEMMA3_SHA256,
    Gemma3ModelUnavailable,
    ensure_gemma3_checkpoint,
)
from lenscheck.models.qwen2 import (
    QWEN2_ALIAS,
    QWEN2_INSTALL_COMMAND,
    QWEN2_MODEL_ID,
    QWEN2_NAME,
    QWEN2_SHA256,
    Qwen2ModelUnavailable,
    ensure_qwen2_checkpoint,
)
from lenscheck.models.resolve import (
    EMBEDDED_MODEL_IDS,
    ModelNotAvailable,
    ModelSource,
    ResolvedModel,
    expand_model_list,
    resolve_model,
    safe_name,
)
from lenscheck.models.synthetic import (
    SYNTHETIC_ALIASES,
    TL_BRIDGE_UNSUPPORTED,
    ensure_synthetic_checkpoint,
)

__all__ = [
    "EMBEDDED_ALIAS",
    "EMBEDDED_MODEL_ID",
    "EMBEDDED_MODEL_IDS",
    "EMBEDDED_NAME",
    "EMBEDDED_SHA256",
    "GEMMA3_ALIAS",
    "GEMMA3_INSTALL_COMMAND",
    "GEMMA3_MODEL_ID",
    "GEMMA3_NAME",
    "GEMMA3_SHA256",
    "QWEN2_ALIAS",
    "QWEN2_INSTALL_COMMAND",
    "QWEN2_MODEL_ID",
    "QWEN2_NAME",
    "QWEN2_SHA256",
    "SYNTHETIC_ALIASES",
    "TL_BRIDGE_UNSUPPORTED",
    "EmbeddedModelUnavailable",
    "Gemma3ModelUnavailable",
    "ModelNotAvailable",
    "ModelSource",
    "Qwen2ModelUnavailable",
    "ResolvedModel",
    "atomic_build_dir",
    "cache_root",
    "ensure_embedded_checkpoint",
    "ensure_gemma3_checkpoint",
    "ensure_qwen2_checkpoint",
    "ensure_synthetic_checkpoint",
    "expand_model_list",
    "resolve_model",
    "safe_name",
]
