"""The item–attribute graph: shared attribute values as paths, personalized PageRank."""

from whyrec.graph.attributes import AttributeGraph, AttributePath

__all__ = ["AttributeGraph", "AttributePath"]
