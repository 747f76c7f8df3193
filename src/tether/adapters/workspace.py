"""The workspace a command works on: repository root, git adapter, dvc.yaml and settings.

Passed in explicitly; there is no module-level state. Settings live with the model in
dvc.yaml (`artifacts.<model>.meta.tether`), so a repository needs no extra config file.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from tether.errors import NotFound, UsageError
from tether.adapters.gitrepo import Git
from tether.core.refs import check_env
from tether.core.settings import Settings, load_yaml

if TYPE_CHECKING:
    from tether.core import dvcgraph
    from tether.adapters.refindex import RefIndex

# yaml and dvcgraph are imported where they are used: a read command answered from
# tether.adapters.refindex needs neither, and they are a third of its start-up.


class Workspace:
    def __init__(self, root: str | Path, git: Git | None = None) -> None:
        self.root = Path(root).resolve()
        self.git = git or Git(self.root)
        self.refindex: RefIndex | None = None  # set by a read command's Registry(cached=True)
        # memos, one per question
        self._settings: dict[str, Settings] = {}
        self._envs: dict[str, tuple[str, ...]] = {}
        self._tag_names: list[str] | None = None
        self._owners: dict[str, str | None] = {}

    @classmethod
    def discover(cls, path: str | Path = ".") -> "Workspace":
        git = Git.discover(path)
        return cls(git.root, git)

    @cached_property
    def dvc_yaml_text(self) -> str:
        path = self.root / "dvc.yaml"
        try:
            return path.read_text()
        except FileNotFoundError:
            raise UsageError(
                f"{self.root} has no dvc.yaml",
                hint="tether works on a DVC pipeline: run `dvc init` and declare your stages and model artifact",
            ) from None

    @cached_property
    def dvc_yaml(self) -> dict:
        """dvc.yaml parsed afresh: a kept parse would be a file under .git/ that steers what a
        promote or a deploy does, and nothing there may (docs/security.md)."""
        return load_yaml(self.dvc_yaml_text)

    def dvc_lock(self) -> dict:
        path = self.root / "dvc.lock"
        return load_yaml(path.read_text()) if path.exists() else {}

    @cached_property
    def models(self) -> dict[str, dvcgraph.Artifact]:
        from tether.core import dvcgraph

        return dvcgraph.models(self.dvc_yaml)

    def model(self, name: str | None) -> str:
        if name:
            if name not in self.models:
                from tether.core.suggest import closest

                known = ", ".join(sorted(self.models)) or "none"
                near = closest(name, self.models)
                raise NotFound(f"unknown model '{name}' (models: {known})",
                               hint=f"did you mean {near}?" if near else
                               "declare it under `artifacts:` in dvc.yaml with type: model (`tether init`)")
            return name
        if len(self.models) == 1:
            return next(iter(self.models))
        if not self.models:
            raise NotFound("dvc.yaml declares no model artifact",
                           hint="run `tether init` to declare it (or add `artifacts: {my-model: {path: models/my-model, "
                                "type: model}}` to dvc.yaml)")
        raise UsageError("this repository has several models; name one",
                         hint="models: " + ", ".join(sorted(self.models)))

    def settings(self, model: str) -> Settings:
        if model not in self._settings:
            self._settings[model] = Settings.from_meta(self.models[model].meta)
        return self._settings[model]

    def settings_at(self, commit: str, model: str) -> Settings:
        """`artifacts.<model>.meta.tether` of dvc.yaml at `commit` (one git process)."""
        text = self.git.show_or_none(commit, "dvc.yaml")
        doc = load_yaml(text) if text else {}
        art = ((doc.get("artifacts") or {}).get(model) or {}) if isinstance(doc, dict) else {}
        return Settings.from_meta((art.get("meta") or {}) if isinstance(art, dict) else {})

    def environments(self, model: str) -> tuple[str, ...]:
        """The configured environments, then any stage GTO's assignment tags name for this
        model (a repository with GTO history has `prod`, `dev`, … whatever tether's settings say)."""
        if model not in self._envs:
            from tether.core import gto

            found = list(self.settings(model).environments)
            index = self.refindex
            for name in self.tag_names():
                t = gto.parse_gto_tag(name) if index is None else index.parsed(
                    "gto", name, gto.parse_gto_tag, gto.encode_tag, gto.decode_tag)
                if t and t.model == model and t.stage and t.stage not in found and _valid_env(t.stage):
                    found.append(t.stage)
            self._envs[model] = tuple(found)
            if index is not None:
                index.save()
        return self._envs[model]

    def use_index(self, index: RefIndex, tag_names: list[str]) -> None:
        """A read command's registry read the refs through `index`: parse GTO tag names through
        it too, and take the tag names from the same listing (`git tag --list` gives the same)."""
        self.refindex = index
        self._tag_names = tag_names

    def tag_names(self) -> list[str]:
        if self._tag_names is None:
            self._tag_names = self.git.tag_names()
        return self._tag_names

    def branch(self, model: str, env: str) -> str:
        """Environment branch name. One model: the environment's own name, so plain
        `git checkout production` works. Several: an existing `<env>` branch keeps belonging to
        the model whose releases it has carried (adding a model never renames anyone's history);
        every other model uses `<model>/<env>`."""
        s = self.settings(model)
        check_env(env)
        # a configured environment needs no look at GTO's tags (environments() starts with them)
        if env not in s.environments and env not in self.environments(model):
            from tether.core.suggest import hint

            envs = self.environments(model)
            known = "environments: " + ", ".join(envs)
            if env in self.models:
                known = f"{env} is a model: `tether show {env}` shows its latest release; " + known
            raise NotFound(f"unknown environment '{env}' for {model}", hint=hint(env, envs, known))
        if s.branch_template:
            return s.branch_template.format(model=model, env=env)
        if len(self.models) == 1 or self.branch_owner(env) == model:
            return env
        return f"{model}/{env}"

    def branch_owner(self, branch: str) -> str | None:
        """The model whose release the newest tether move on `branch` (local, else origin's)
        names; None for a branch tether never moved or that does not exist."""
        if branch not in self._owners:
            from tether.core.moves import RELEASE
            from tether.core.refs import parse_tag

            owner = None
            for ref in (f"refs/heads/{branch}", f"refs/remotes/origin/{branch}"):
                if not self.git.ref(ref):
                    continue
                for trailers in self.git.trailers_first_parent(ref):
                    tag = trailers.get(RELEASE)
                    if tag and (name := parse_tag(tag)):
                        owner = name.model
                        break
                if owner:
                    break
            self._owners[branch] = owner
        return self._owners[branch]


def _valid_env(name: str) -> bool:
    try:
        check_env(name)
    except UsageError:
        return False
    return True
