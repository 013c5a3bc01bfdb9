"""The study's protocol as data: which bundle config files each kind of run merges, and the
candidate pre-training configurations (bundles/pretrain/configs/study/candidates.yaml).

Why a file and not code: the candidates are decided after a pilot (by the lead, on the source
only), and every run's exact config files must be recorded in results.json; a YAML list of
override files is both the decision and the record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from voxsurv.core.errors import InputError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PROTOCOL = "bundles/pretrain/configs/study/candidates.yaml"

#: Config keys that define the network and its inputs: a fine-tune or scoring run of a candidate
#: must see the same values (read from the candidate's merged config, recorded per row).
NETWORK_KEYS = ("pooling", "num_slices", "anchored", "embed_dim", "depth", "img_size", "dropout")


@dataclass(frozen=True)
class Candidate:
    """One pre-training configuration: its override file (repo-relative) and extra overrides."""
    name: str
    config: str
    about: str = ""
    overrides: dict = field(default_factory=dict)


@dataclass
class Protocol:
    """Config files of every run kind (repo-relative paths) and the candidates."""
    pretrain: str
    evaluate: str
    finetune: str
    study: str
    scratch: str
    finetune_modes: dict[str, str]
    smoke: str
    candidates: list[Candidate]
    source_file: str = DEFAULT_PROTOCOL

    def candidate(self, name: str) -> Candidate:
        for c in self.candidates:
            if c.name == name:
                return c
        raise InputError(f"no candidate {name!r} in {self.source_file}",
                         fix=f"one of {[c.name for c in self.candidates]}")


def load_protocol(path: str | Path = DEFAULT_PROTOCOL, repo: str | Path = REPO) -> Protocol:
    """Read and check the protocol file: every referenced config exists, names are unique."""
    import yaml

    repo = Path(repo)
    p = Path(path)
    full = p if p.is_absolute() else repo / p
    if not full.is_file():
        raise InputError("study protocol file not found", path=str(full),
                         fix=f"pass --candidates or restore {DEFAULT_PROTOCOL}")
    d = yaml.safe_load(full.read_text()) or {}
    need = ("pretrain", "evaluate", "finetune", "study", "scratch", "finetune_modes", "smoke", "candidates")
    missing = [k for k in need if k not in d]
    if missing:
        raise InputError(f"study protocol lacks {missing}", path=str(full))
    cands = [Candidate(name=str(c["name"]), config=str(c["config"]), about=str(c.get("about", "")),
                       overrides=dict(c.get("overrides") or {})) for c in d["candidates"]]
    if not cands:
        raise InputError("study protocol lists no candidate", path=str(full))
    names = [c.name for c in cands]
    if len(set(names)) != len(names):
        raise InputError(f"candidate names repeat: {names}", path=str(full))
    proto = Protocol(pretrain=d["pretrain"], evaluate=d["evaluate"], finetune=d["finetune"], study=d["study"],
                     scratch=d["scratch"], finetune_modes=dict(d["finetune_modes"]), smoke=d["smoke"],
                     candidates=cands, source_file=str(p))
    files = [proto.pretrain, proto.evaluate, proto.finetune, proto.study, proto.scratch, proto.smoke,
             *proto.finetune_modes.values(), *(c.config for c in cands)]
    absent = [f for f in files if not (repo / f).is_file()]
    if absent:
        raise InputError(f"study protocol names config files that do not exist: {absent}", path=str(full))
    return proto


def resolved_values(config_files: list[str], overrides: dict, keys=NETWORK_KEYS, repo: str | Path = REPO) -> dict:
    """The values `keys` take in the merged config (files in order, then overrides), as MONAI's
    ConfigParser resolves them; a key the config does not define is left out."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(Path(repo) / f) for f in config_files])
    parser.update(dict(overrides))
    out = {}
    for k in keys:
        if k in parser:
            v = parser.get_parsed_content(k)
            out[k] = v.item() if hasattr(v, "item") else v
    return out
