"""The emulated extranet: sites in network namespaces, slices as HTB classes, faults on demand.

`Lab` is the API (see lab/README.md); `xnetmon lab ...` is the command line over it.
"""

from lab.lab import Lab, LabError
from lab.topology import LabTopology, TopologyError, load

__all__ = ["Lab", "LabError", "LabTopology", "TopologyError", "load"]
