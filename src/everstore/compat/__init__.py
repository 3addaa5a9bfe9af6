"""Compatibility layers: programs written for a peer library run on everstore.

``everstore.compat.appendmuch`` is a drop-in for appendmuch (both its 0.0.x and its
0.3.0 API); see docs/migrating-from-appendmuch.md.
"""
