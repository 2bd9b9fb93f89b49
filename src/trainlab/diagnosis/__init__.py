"""The training doctor (lecture 002's step-by-step recipe, lecture 004's "recipe for training
NNs", lecture 000's activation statistics), as pure checks returning :class:`Finding` objects.

The package is ``diagnosis`` rather than ``doctor`` so that importing a submodule never replaces
the public function ``trainlab.doctor`` (a package attribute of the same name would).
"""

from trainlab.diagnosis.findings import Finding, Status

__all__ = ["Finding", "Status"]
