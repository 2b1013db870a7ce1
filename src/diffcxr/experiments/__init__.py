"""Experiments around the generator: a small CXR classifier (the mAUC yardstick and ``cxr`` feature network)
and the downstream "few real + synthetic" study."""
