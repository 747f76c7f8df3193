"""Hydra adapter: compose `conf/` the way `dvc exp run` does, to compare with params.yaml."""

from __future__ import annotations

from pathlib import Path

from tether.errors import UsageError
from tether.manifest import flatten


def compose(conf_dir: Path, config_name: str = "config") -> dict:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    if not (conf_dir / f"{config_name}.yaml").exists():
        raise UsageError(f"{conf_dir}/{config_name}.yaml does not exist")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
            cfg = hydra_compose(config_name=config_name)
        return OmegaConf.to_container(cfg, resolve=True)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"cannot compose {conf_dir}: {exc}") from exc
    finally:
        GlobalHydra.instance().clear()


def disagreements(composed: dict, params: dict) -> list[str]:
    """Keys where params.yaml and the composition of conf/ differ, as 'key: params → conf'."""
    a, b = flatten(params), flatten(composed)
    return [
        f"{k}: params.yaml has {a.get(k, '(missing)')!r}, conf/ composes {b.get(k, '(missing)')!r}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]
