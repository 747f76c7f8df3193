"""`tether guard`'s adapter: scrape a server's /metrics (tether.canary.scrape), feed tether.guard's
decision core, and perform what it decides through the ordinary moves (tether.canary for a
weight, tether.commands.move for a promotion or a rollback), each a compare-and-swap against the
head the decision was made on, so a human who moved first wins and the guard's move is refused.

The step a canary is at begins when the guard first sees the environment's head: the counters
then are the baseline, and `min_samples` counts from there. That state (baseline counters,
failed samples in a row and the error-ratio test's evidence from earlier steps, keyed by the
head commit) lives in the git directory, so `--once` runs
from cron continue where the last one stopped; a head the guard did not record starts afresh.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tether.core import moves
from tether.core import guard
from tether.canary.scrape import BadSample, arm_of, check_url, eval_of, lone_arm, parse, scrape, served
from tether.canary.weight import execute_weight, plan_weight
from tether.core.metricnames import CANARY, STABLE
from tether.core.moves import weight_of
from tether.errors import Conflict, NotFound
from tether.core.guard import Arm, Decision, Sample, State
from tether.core.refs import release_dir_name
from tether.registry.registry import Registry
from tether.adapters.workspace import Workspace

APPROVER = "tether-guard"
Expect = tuple[str | None, str | None, int | None]  # (arm, release id, weight) a move made live; None: any
CONFIRM_S = 60.0  # how long a move waits for the server to serve it: a new worker imports and smoke-tests first


@dataclass
class Outcome:
    decision: Decision
    env: str
    release: str
    commit: str | None = None  # the move the guard made, if any
    moved: str = ""  # what it did, for people
    deployed: list = field(default_factory=list)
    live: bool | None = None  # after a deploy: did the server confirm the move (None: nothing deployed)
    live_note: str = ""  # what the server serves, for people


def _rid(tag: str) -> str:
    return release_dir_name(tag)


class Guard:
    def __init__(self, ws: Workspace, model: str | None, env: str, url: str, *, deploy_to: Path | None = None,
                 deploy_stable: Path | None = None, approver: str = APPROVER) -> None:
        self.ws, self.model, self.env, self.url = ws, ws.model(model), env, check_url(url)
        self.settings = ws.settings(self.model)
        self.policy = self.settings.guard
        self.stable = self.settings.canaries.get(env)  # None: guarding one environment alone
        ws.branch(self.model, env)  # validates the name
        self.deploy_to, self.deploy_stable, self.approver = deploy_to, deploy_stable, approver
        gitdir = Path(ws.git.out("rev-parse", "--absolute-git-dir"))
        self.state_path = gitdir / "tether" / f"guard-{self.model.replace('/', '--')}-{env}.json"

    # -- state ------------------------------------------------------------------------------
    def _load(self, head: str) -> State | None:
        try:
            raw = json.loads(self.state_path.read_text())
            if raw.get("head") != head:
                return None
            arm = lambda d: Arm(d["release"], int(d["requests"]), int(d["errors"]),  # noqa: E731
                                tuple((float(b), int(c)) for b, c in d["latency"]), tuple(int(x) for x in d["scores"]))
            llr = float(raw.get("llr", 0.0))  # the error-ratio test's evidence from the rollout's finished steps
            if not math.isfinite(llr):
                return None
            return State(int(raw["weight"]), arm(raw["baseline"]), arm(raw["stable_baseline"]), int(raw["failures"]), llr)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _save(self, head: str, st: State) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        data = {"head": head, "weight": st.weight, "failures": st.failures, "llr": st.llr,
                "baseline": asdict(st.baseline), "stable_baseline": asdict(st.stable_baseline)}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))  # +Inf bounds as Infinity, which json.loads reads back
        tmp.replace(self.state_path)

    # -- one step ---------------------------------------------------------------------------
    def observe(self) -> tuple[Sample | None, str, str, int, str]:
        """(sample or None, head, release tag, recorded weight, why not) from git and the server."""
        reg = Registry(self.ws, messages=False)
        events = reg.history(self.model, self.env)
        head = reg.env_head(self.model, self.env)
        if not events or head is None or not events[0].release:
            raise NotFound(f"{self.env} of {self.model} holds no release", hint="promote one first")
        tag = events[0].release
        weight = weight_of(events) if self.stable else 100
        rows = parse(scrape(self.url))
        try:
            return self._sample(reg, rows, head, tag, weight)
        except BadSample as exc:
            raise BadSample(exc.args[0], head, tag, weight) from None

    def _sample(self, reg: Registry, rows, head: str, tag: str,
                weight: int) -> tuple[Sample | None, str, str, int, str]:
        arm = CANARY if self.stable else lone_arm(rows)
        rel, w = served(rows, arm)
        if rel != _rid(tag) or (self.stable and w != weight):
            return None, head, tag, weight, (f"the server's {arm or 'only'} arm serves {rel or 'nothing'}"
                                             + (f" at {w}%" if self.stable else "")
                                             + f", {self.env} records {tag}" + (f" at {weight}%" if self.stable else "")
                                             + ": waiting for the deploy")
        stable = None
        if self.stable:
            stable_tag = reg.live_release(self.model, self.stable) or ""
            stable = arm_of(rows, _rid(stable_tag), STABLE)
        return Sample(arm_of(rows, _rid(tag), arm), stable, eval_of(rows, _rid(tag), arm)), head, tag, weight, ""

    def step(self) -> Outcome:
        try:
            sample, head, tag, weight, why = self.observe()
        except BadSample as exc:
            return self._failed(exc)
        if sample is None:
            st = State(weight)
            return Outcome(Decision(guard.HOLD, weight, (), why, st), self.env, tag)
        loaded = self._load(head)
        if loaded is None or loaded.weight != weight:
            st = State(weight, sample.canary, sample.stable or Arm())
            self._save(head, st)
            return Outcome(Decision(guard.HOLD, weight, (), f"step at weight {weight} begins at {head[:12]} "
                                    f"({sample.canary.requests} canary requests so far)", st), self.env, tag)
        st = loaded
        d = (guard.decide if self.stable else guard.watch_alone)(self.policy, st, sample)
        out = Outcome(d, self.env, tag)
        if d.action in (guard.HOLD, guard.WAIT):
            self._save(head, d.state)
            return out
        return self.act(out, head)

    def _failed(self, exc: BadSample) -> Outcome:
        """A sample the server could not give truthfully: counted as a failed observation at the
        step the recorded head is at (so the policy's failed_checks, then a rollback, apply)."""
        head, tag, weight = exc.args[1:4]
        loaded = self._load(head)
        st = loaded if loaded is not None and loaded.weight == weight else State(weight)
        d = guard.failed_sample(self.policy, st, exc.args[0])
        out = Outcome(d, self.env, tag)
        if d.action in (guard.HOLD, guard.WAIT):
            self._save(head, d.state)
            return out
        return self.act(out, head)

    def act(self, out: Outcome, head: str) -> Outcome:
        d, pol = out.decision, self.policy
        notes = {moves.POLICY: guard.policy_line(pol)}
        if d.breached:
            notes[moves.GUARD_BREACH] = ",".join(c.name for c in d.breached)
        if d.action in (guard.ADVANCE, guard.ROLLBACK) and self.stable:
            plan = plan_weight(self.ws, self.model, self.env, d.weight, approver=self.approver,
                               reason=f"guard: {d.evidence}", action="weight" if d.action == guard.ADVANCE else "rollback",
                               expect_head=head, notes=notes)
            out.commit = execute_weight(self.ws, plan)
            out.moved = f"{self.env}: {out.release} {plan.previous_weight}% → {d.weight}% ({plan.action})"
            self._save(out.commit, d.state)
            if self._deploy(out, self.env, self.deploy_to):
                self._confirm(out, [(CANARY, _rid(out.release), d.weight)])
            return out
        from tether.commands.move import execute_move, plan_move

        target_env = self.stable if d.action == guard.PROMOTE else self.env
        assert target_env is not None
        mplan = plan_move(self.ws, action="promote" if d.action == guard.PROMOTE else "rollback", model=self.model,
                         env=target_env, release_ref=out.release if d.action == guard.PROMOTE else None,
                         approver=self.approver,
                         reason=(f"guard: {out.release} passed every step of {self.env}; " if d.action == guard.PROMOTE
                                 else "guard: ") + d.evidence)
        if (target_env == self.env and mplan.old_head != head) or self._head() != head:
            raise Conflict(f"{self.env} moved while the guard decided (expected {head[:12]})",
                           hint=f"someone else moved it first; see `tether history --env {self.env}`")
        mplan = mplan.with_notes(notes | ({moves.CANARY: f"{self.env}@{head[:12]}"} if self.stable else {}))
        out.commit = execute_move(self.ws, mplan).commit
        out.moved = f"{target_env}: {mplan.current.release if mplan.current else 'nothing'} → {mplan.release.tag} ({mplan.action})"
        if d.action == guard.PROMOTE:
            expect: list[Expect] = [(STABLE, _rid(out.release), None)] if self._deploy(out, target_env, self.deploy_stable) else []
            done = plan_weight(self.ws, self.model, self.env, 0, approver=self.approver, expect_head=head,
                               reason=f"guard: {out.release} promoted to {target_env} (commit {out.commit[:12]})",
                               notes={moves.POLICY: guard.policy_line(pol)})
            execute_weight(self.ws, done)
            if self._deploy(out, self.env, self.deploy_to):
                expect.append((CANARY, None, 0))
            if expect:
                self._confirm(out, expect)
        elif self._deploy(out, target_env, self.deploy_to):
            self._confirm(out, [(self._lone_arm(), _rid(mplan.release.tag), None)])
        return out

    def _head(self) -> str | None:
        return Registry(self.ws, messages=False).env_head(self.model, self.env)

    def _lone_arm(self) -> str | None:
        try:
            return lone_arm(parse(scrape(self.url)))
        except NotFound:
            return None

    def _confirm(self, out: Outcome, expect: list[Expect],
                 timeout: float | None = None) -> None:
        """Wait until the server serves what the move made live: per arm, (release id, weight),
        None for either meaning any. The move stands either way (git is the truth and the server
        follows it); `out.live` says whether the server was seen to follow within the timeout."""
        limit = CONFIRM_S if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            try:
                rows = parse(scrape(self.url, timeout=2.0))
                seen = [(arm, *served(rows, arm)) for arm, _r, _w in expect]
            except (NotFound, BadSample) as exc:
                seen, why = [], str(exc.args[0])
            else:
                why = "; ".join(f"{arm or 'the'} arm serves {rel or 'nothing'}" + (f" at {w}%" if w is not None else "")
                                for arm, rel, w in seen)
                if all((r is None or s[1] == r) and (w is None or s[2] == w) for (_a, r, w), s in zip(expect, seen)):
                    out.live, out.live_note = True, f"server: {why}"
                    return
            if time.monotonic() >= deadline:
                out.live, out.live_note = False, f"server not yet following after {limit:g} s: {why}"
                return
            time.sleep(0.1)

    def _deploy(self, out: Outcome, env: str, target: Path | None) -> bool:
        if target is None:
            return False
        from tether.deploy.command import deploy

        # --smoke: the worker reproduces its eval scores, the reference the guard compares with
        res = deploy(target, env, model=self.model, smoke=True, cwd=self.ws.root)
        out.deployed.append(f"{env}: {res.outcome} {res.release} in {target}"
                            + (f" at {res.weight}%" if res.weight is not None else ""))
        return True

    def run(self, interval: float | None = None, max_steps: int | None = None, report=None) -> Outcome:
        """Step until the guard acts for good (rollback, promotion) or waits for a human."""
        n = 0
        while True:
            out = self.step()
            n += 1
            if report:
                report(out)
            final = out.decision.action in (guard.ROLLBACK, guard.PROMOTE, guard.WAIT)
            if final or (max_steps is not None and n >= max_steps):
                return out
            time.sleep(self.policy.interval if interval is None else interval)
