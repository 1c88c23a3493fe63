"""``surgeon features``: a base's outputs over a dataset, as one file or a resumable directory of shards.

``extract_features`` runs the base (in this process or on Ray workers); ``open_features`` reads
what it wrote, in sample order, memory-mapped. Importing this package does not import TensorFlow.
"""

from surgeon.features.extract import ENGINES, FeaturesResult, extract_features
from surgeon.features.store import Features, ShardedArray, open_features

__all__ = ["ENGINES", "Features", "FeaturesResult", "ShardedArray", "extract_features", "open_features"]
