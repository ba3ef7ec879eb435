"""Model view (M): nodes grouped by model digest; file-level differences when the agents serve /v1/model."""

from __future__ import annotations

from typing import Mapping

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from asrtop.fleet import TARGET_FROM_CONFIG, FleetSnapshot, ModelGroup
from asrtop.modelfiles import diff_files
from asrtop.tui.format import DIM, GROUP_STYLES
from asrtop.tui.widgets.keybar import KeyBar

def render_models(snap: FleetSnapshot, files: Mapping[str, list[dict] | str], loading: bool) -> Text:
    """`files`: representative node name -> its file list (or a one-line error)."""
    t = Text()
    groups = snap.model_groups()
    known = [g for g in groups if g.digest is not None]
    pinned = snap.target_source == TARGET_FROM_CONFIG
    label_target = "target (cluster.model_sha256)" if pinned else "majority"
    differing = snap.nodes_differing_from_target()
    if pinned:
        t.append(f"Target model (cluster.model_sha256): {snap.target_digest}\n", "bold")
    if not differing and not any(g.digest is None for g in groups) and known:
        t.append("All nodes run the same model.\n\n", "bold green")
    elif differing:
        t.append(f"{len(known)} different model(s); {len(differing)} node(s) differ from the {label_target}.\n\n",
                 "bold red")
    else:
        t.append("\n")
    majority = next((g for g in known if g.target), None)
    rep_major = _representative(snap, majority) if majority else None
    for i, g in enumerate(groups):
        style = GROUP_STYLES[known.index(g) % len(GROUP_STYLES)] if g.digest is not None else DIM
        label = (g.digest[:16] if g.digest else "unknown (no agent / hashing / missing / error)")
        tag = ("target" if pinned else "majority") if g.target else (
            "DIFFERS" if g.digest is not None and snap.target_digest else "")
        t.append(f"{label}", "bold " + style)
        t.append(f"  {len(g.nodes)} node(s)  {tag}\n", "bold red" if tag == "DIFFERS" else "")
        names = ", ".join(g.nodes[:40]) + (f" … (+{len(g.nodes) - 40})" if len(g.nodes) > 40 else "")
        t.append(f"  {names}\n", style if g.digest else DIM)
        if g.digest is None:
            for name in g.nodes[:10]:
                st = snap.node(name).status
                why = (f"{st.model.state}{': ' + st.model.error if st.model.error else ''}" if st
                       else "no agent status")
                t.append(f"    {name}: {why}\n", DIM)
        elif not g.target and majority is not None:
            rep = _representative(snap, g)
            if rep is None or rep_major is None:
                t.append("    file list needs an agent on both sides\n", DIM)
            elif rep in files and rep_major in files:
                mine, theirs = files[rep], files[rep_major]
                if isinstance(mine, str) or isinstance(theirs, str):
                    t.append(f"    file list unavailable: {mine if isinstance(mine, str) else theirs}\n", "red")
                else:
                    diffs = diff_files(theirs, mine)
                    t.append(f"    vs {rep_major} ({label_target}), {rep}: {len(diffs)} file(s) differ\n", "bold")
                    for name, what in diffs[:30]:
                        t.append(f"      {name}: {what}\n")
            elif loading:
                t.append("    loading file lists…\n", DIM)
        t.append("\n")
    return t


def _representative(snap: FleetSnapshot, group: ModelGroup) -> str | None:
    """A node of the group whose agent is configured and fresh (its file list can be fetched)."""
    for name in group.nodes:
        n = snap.node(name)
        if n.config.agent and not n.stale:
            return name
    return None


def representatives(snap: FleetSnapshot) -> dict[str, str]:
    """node name -> agent URL for the target's group and every other group (one node each)."""
    groups = [g for g in snap.model_groups() if g.digest is not None]
    if len(groups) <= 1:
        return {}
    out = {}
    for g in groups:
        rep = _representative(snap, g)
        if rep is not None:
            out[rep] = snap.node(rep).config.agent
    return out


class ModelScreen(Screen):
    BINDINGS = [Binding("escape,q,M", "close", "Back"), Binding("question_mark", "app.help", "Keys", key_display="?")]

    def __init__(self):
        super().__init__()
        self.files: dict[str, list[dict] | str] = {}
        self.files_loading = False

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("waiting for data…", id="models")
        yield KeyBar()

    def on_mount(self) -> None:
        self.show_fleet(self.app.snapshot)
        self.app.load_model_files(self)

    def show_fleet(self, snap: FleetSnapshot | None, error: str | None = None) -> None:
        if snap is not None:
            self.query_one("#models", Static).update(render_models(snap, self.files, self.files_loading))

    def set_files(self, files: dict[str, list[dict] | str]) -> None:
        self.files, self.files_loading = files, False
        self.show_fleet(self.app.snapshot)

    def action_close(self) -> None:
        self.dismiss()
