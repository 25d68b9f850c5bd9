"""Language representations of items and queries (a frozen sentence encoder)."""

from whyrec.text.encoder import encode_items, encode_texts, encoder_directory, load_encoder

__all__ = ["encode_items", "encode_texts", "encoder_directory", "load_encoder"]
