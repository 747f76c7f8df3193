"""Stage `compose`: conf/ -> params.yaml, so a plain `dvc repro` never ignores a config edit.

DVC composes Hydra configs only in `dvc exp run` (dvc issue 10750). This stage depends on conf/
and writes params.yaml, so editing conf/ re-runs it and every stage whose params changed.
Inside `dvc exp run`, DVC has already composed conf/ together with the `-S` overrides into
params.yaml; recomposing would drop the overrides, so the stage leaves the file as it is.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

# DVC sets these in the environment of every stage it runs for an experiment.
EXPERIMENT_ENV = ("DVC_EXP_BASELINE_REV", "DVC_EXP_NAME")


def compose_params(conf_dir: str | os.PathLike = "conf", config_name: str = "config") -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base=None):
        cfg = compose(config_name=config_name)
    GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg, resolve=True)


def dump(params: dict) -> str:
    return yaml.safe_dump(params, sort_keys=True, default_flow_style=False)


def main() -> int:
    if any(os.environ.get(k) for k in EXPERIMENT_ENV):
        print("compose: inside `dvc exp run`; params.yaml already holds conf/ plus the -S overrides")
        return 0
    text = dump(compose_params())
    path = Path("params.yaml")
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
        print("compose: params.yaml rewritten from conf/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
