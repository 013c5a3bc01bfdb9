"""Training in the bundles, one module per responsibility: the demo cohort (demo), patient splits
(folds), the per-patient data module with its caches (patients, stack_cache), the event-guaranteeing
batch sampler (sampler), the anchor fit (anchor), freezing for fine-tuning (freezing), weights on
disk and resume (checkpoints), per-patient predictions (predictions), deaths per batch
(batch_events), first-use pre-training (pretraining), run settings (run_record), the closing
report (report), the C-index handler of the workflows (concordance) and rank awareness
(distributed). Bundle paths live in voxsurv.core.bundle_paths.

Modules import torch/MONAI lazily where they can, so `voxsurv --help` stays fast.
"""


def __getattr__(name: str):  # only for a missing attribute: the old runner/paths modules name their new home
    from voxsurv.core.renamed import missing_attribute

    raise missing_attribute(__name__, name)
