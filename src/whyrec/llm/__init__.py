"""The optional LLM layer: any OpenAI-compatible server as the conversational brain.

The recommender stays the source of truth: the LLM reads messages into dialogue acts,
plans with the recommender's tools and phrases replies from their evidence, and every
one of its outputs is validated, with the embedded engine answering whenever the LLM is
slow, wrong or down. Without configuration nothing here is loaded.
"""

from whyrec.llm.config import LLMConfig, LLMError, load_llm_config
from whyrec.llm.session import LLMConversation, LLMSession, open_conversation

__all__ = [
    "LLMConfig",
    "LLMConversation",
    "LLMError",
    "LLMSession",
    "load_llm_config",
    "open_conversation",
]
