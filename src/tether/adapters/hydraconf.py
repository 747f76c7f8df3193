"""Hydra adapter: compose `conf/` the way `dvc exp run` does, to compare with params.yaml, and
give confplan.py what it needs to explain a difference as overrides (compositions with
overrides, the groups with their options, the defaults list in merge order)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tether.core import confplan
from tether.core.confplan import Entry, Explanation, Group
from tether.core.confvalues import strict_equal
from tether.errors import UsageError


def compose(conf_dir: Path, config_name: str = "config", overrides: list[str] | None = None) -> dict:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    if not (conf_dir / f"{config_name}.yaml").exists():
        raise UsageError(f"{conf_dir}/{config_name}.yaml does not exist")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
            cfg = hydra_compose(config_name=config_name, overrides=list(overrides or []))
        return _as_dict(OmegaConf.to_container(cfg, resolve=True))
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"cannot compose {conf_dir}: {exc}") from exc
    finally:
        GlobalHydra.instance().clear()


def _as_dict(container: object) -> dict:
    if not isinstance(container, dict):  # a config file whose top level is not a mapping
        raise UsageError(f"conf/ composes to {type(container).__name__}, not a mapping of parameters")
    return container


# -- explaining a difference as overrides (confplan.py does the deciding) -----------------
class Session:
    """One Hydra initialisation over conf/, for the many compositions `confplan.explain` asks for."""

    def __init__(self, conf_dir: Path, config_name: str) -> None:
        self.conf_dir = conf_dir.resolve()
        self.config_name = config_name
        self._composed: dict[tuple, dict] = {}

    def compose(self, overrides) -> dict:
        """Hydra's composition of conf/ with `overrides`: each distinct list composed once per
        session (about half a second each), a fresh copy returned every time."""
        import copy

        key = tuple(overrides)
        if key not in self._composed:
            from hydra import compose as hydra_compose
            from omegaconf import OmegaConf

            cfg = hydra_compose(config_name=self.config_name, overrides=list(key))
            self._composed[key] = _as_dict(OmegaConf.to_container(cfg, resolve=True))
        return copy.deepcopy(self._composed[key])

    def _loader(self):
        from hydra.core.global_hydra import GlobalHydra

        return GlobalHydra.instance().config_loader()

    def entries(self, overrides) -> list[Entry]:
        """Hydra's defaults list for conf/ with `overrides`, in merge order, without Hydra's own."""
        from hydra.types import RunMode
        from omegaconf import OmegaConf

        loader = self._loader()
        listed = loader.compute_defaults_list(self.config_name, list(overrides), RunMode.RUN).defaults
        out = []
        for d in listed:
            if d.config_path is None or d.config_path == "hydra/config" or d.config_path.startswith("hydra/") \
                    or d.package == "hydra" or (d.package or "").startswith("hydra."):
                continue
            loaded = loader.repository.load_config(d.config_path)
            content = OmegaConf.to_container(loaded.config, resolve=False) if loaded is not None else {}
            out.append(Entry(
                config_path=d.config_path, file=self._file(d.config_path), package=d.package or "",
                content=content if isinstance(content, dict) else {},
                override_key=d.override_key if not d.is_self else None,
                parent_file=self._file(d.parent) if d.parent and d.parent != "<root>" else None,
                primary=bool(d.primary)))
        return out

    def groups(self) -> list[Group]:
        loader = self._loader()
        out = []
        for e in self.entries([]):
            if not e.override_key:
                continue
            group, _, current = e.config_path.rpartition("/")
            out.append(Group(e.override_key, current, tuple(loader.get_group_options(group)), e.package))
        return out

    def _file(self, config_path: str) -> str | None:
        path = self.conf_dir / f"{config_path}.yaml"
        return f"{config_path}.yaml" if path.is_file() else None


def explain(conf_dir: Path, params: dict, config_name: str = "config") -> Explanation:
    """The overrides that explain params.yaml as a composition of conf/ (confplan.explain)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if not (conf_dir / f"{config_name}.yaml").exists():
        raise UsageError(f"{conf_dir}/{config_name}.yaml does not exist")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base=None):
            s = Session(conf_dir, config_name)
            try:
                s.compose([])
            except Exception as exc:
                raise UsageError(f"cannot compose {conf_dir}: {exc}") from exc
            return confplan.explain(params, s.compose, s.groups, s.entries, override_text)
    finally:
        GlobalHydra.instance().clear()


# -- Hydra's override grammar (`evaluate.threshold=0.7`, `'a b'`, `[1,2]`): each written value
# is checked by Hydra's own parser, and passed to confplan.explain as `write` ------------- -------------------------------------------------------------
def hydra_value(value: Any) -> str:
    """`value` in Hydra's override grammar, checked by Hydra's own parser."""
    text = _hydra_value(value)
    if not strict_equal(_parse(f"k={text}").value(), value):
        text = _quote(str(value)) if isinstance(value, str) else text
        if not strict_equal(_parse(f"k={text}").value(), value):
            raise ValueError(f"cannot write {value!r} as a Hydra override value")
    return text


def _hydra_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if not (isinstance(value, float) and math.isinf(value)) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return value if value.strip() == value and value else _quote(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot write {value!r} as a Hydra override value")


def _quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parse(text: str) -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([text])[0]


def override_text(prefix: str, key: str, value: Any) -> str:
    text = f"{prefix}{key}={hydra_value(value)}"
    parsed = _parse(text)  # raises on a key Hydra's grammar does not take
    if parsed.key_or_group != key:
        raise ValueError(f"{key!r} is not a key Hydra's override grammar can name")
    return text
