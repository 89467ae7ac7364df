"""The segment model: transform, K-Means, names from centroids."""

from rfmseg.model.segment_model import FORMAT_VERSION, SegmentModel

__all__ = ["FORMAT_VERSION", "SegmentModel"]
