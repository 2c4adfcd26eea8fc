"""Cluster environments: who started this process, and where it sits in the job.

One small interface (:class:`ClusterEnvironment`) and one class per launch environment; the
detection order lives in ``fulmen.runtime.cluster.detect_environment``.
"""

from fulmen.runtime.environments.base import ClusterEnvironment
from fulmen.runtime.environments.single import SingleProcessEnvironment
from fulmen.runtime.environments.slurm import SLURMEnvironment
from fulmen.runtime.environments.torchelastic import TorchElasticEnvironment

__all__ = ["ClusterEnvironment", "SLURMEnvironment", "SingleProcessEnvironment", "TorchElasticEnvironment"]
