"""A 2-process gloo DDP run of the tiny pretrain config on CPU completes, both ranks see every
validation patient exactly once (C-index buffers gathered, no DistributedSampler padding), and only
rank 0 runs the handlers marked `_disabled_: '@is_not_rank0'` (predictions, weights, logs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundles" / "pretrain" / "configs"

PROBE = '''
import json
import torch.distributed as dist
from ignite.engine import Events


class DumpPatients:
    """Per rank: the patients the gathered C-index saw, and the patients this rank scored itself."""

    def __init__(self, metric, folder):
        self.metric, self.folder, self.local = metric, folder, 0

    def attach(self, engine):
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.count)
        engine.add_event_handler(Events.COMPLETED, self)

    def reset(self, engine):
        self.local = 0

    def count(self, engine):
        self.local += len(engine.state.output)

    def __call__(self, engine):
        t = self.metric.patient_table
        rank = dist.get_rank()
        with open(f"{self.folder}/rank{rank}.json", "w") as f:
            json.dump({"world": dist.get_world_size(), "patients": [int(p) for p in t["patient_number"]],
                       "gathered": int(len(t["patient_number"])), "local": self.local}, f)
'''


def test_two_process_gloo_ddp_sees_every_validation_patient_once(tmp_path):
    from voxsurv.training.demo import generate_demo_cohort

    generate_demo_cohort(tmp_path / "data", n_source=12, n_target=4, seed=7)
    (tmp_path / "ddp_probe.py").write_text(PROBE)
    (tmp_path / "probe.yaml").write_text(textwrap.dedent(f"""
        probe:
          _target_: ddp_probe.DumpPatients
          metric: "@validate#key_metric#val_c_index"
          folder: "{tmp_path}"
        validate#evaluator#val_handlers: "$@validate#handlers + [@probe]"
    """))
    configs = [str(CONFIGS / "train.yaml"), str(CONFIGS / "multi_gpu_train.yaml"), str(tmp_path / "probe.yaml")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29561",
           "-m", "monai.bundle", "run", "--config_file", json.dumps(configs),
           "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"),
           "--dataset_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / "out"),
           "--cache_dir", str(tmp_path / "cache"), "--max_epochs", "1", "--preprocess_workers", "0",
           "--features", '["firstorder_Mean"]', "--embed_dim", "32", "--depth", "2", "--img_size", "32",
           "--batch_size", "4"]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    manifest = pd.read_csv(tmp_path / "data" / "manifest.csv")
    from voxsurv.training.folds import split_fold

    source = manifest[manifest.cohort == "source"].assign(patient_number=lambda d: np.arange(len(d)))
    _, val = split_fold(source.reset_index(drop=True), 0)
    for r in ranks:
        assert r["world"] == 2
        assert sorted(r["patients"]) == sorted(val.patient_number)  # all validation patients, once each
    assert ranks[0]["local"] + ranks[1]["local"] == ranks[0]["gathered"] == len(val)  # no padding
    assert ranks[0]["local"] > 0 and ranks[1]["local"] > 0
    out_dir = tmp_path / "out"
    assert (out_dir / "models" / "model.pt").exists() and (out_dir / "models" / "model_epoch1.pt").exists()  # rank 0 saved
    pred = pd.read_csv(out_dir / "predictions_val_epoch1.csv")
    assert len(pred) == len(val) and set(pred.patient_id) == set(val.patient_id)  # one writer, all patients
    events = pd.read_csv(out_dir / "batch_events.csv")
    assert set(events["rank"]) == {0}  # rank 1's logger was _disabled_
    assert out.stdout.count("pre-training done") == 2  # both ranks finished
