"""videoloader.data: samplers, datasets, DataLoader / StatefulDataLoader / torchdata.nodes runs.

Every run goes over the loopback HTTP server (``http_server``) with small
corpus files; spawn runs are slow (each worker imports torch), so only one test uses spawn.
"""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from videoloader import FileNotFoundError as _unused  # noqa: F401  (see test_public_names)
