"""The conversational recommender: understanding, state, policy, replies and sessions."""

from whyrec.conversation.conversation import Conversation, Session, Turn
from whyrec.conversation.policy import PolicyConfig
from whyrec.conversation.store import SessionStore

__all__ = ["Conversation", "PolicyConfig", "Session", "SessionStore", "Turn"]
