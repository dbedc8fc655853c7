"""The profile's declared rules: configs/segments.yaml (how history is read, learned types, the segments) and
configs/tags.yaml (operator tags), each checked when read: a bad one stops with its file and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from features.common.config import load_config
from features.common.errors import DataError
from features.common.settings import project_settings
from features.profiles.fields import rule_fields
from features.profiles.history import ProfileSettings
from features.profiles.rules import Env, Rule, load_rules

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class LearnedSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clusters: int | Literal["auto"] = Field("auto", description="types learned where members carry no persona")


class SegmentsFile(BaseModel):
    """segments.yaml's settings (its `segments:` are rules, read by load_rules)."""

    model_config = ConfigDict(extra="forbid")

    profile: ProfileSettings = ProfileSettings()
    learned: LearnedSettings = LearnedSettings()
    segments: dict[str, object] = {}


@dataclass(frozen=True)
class ProfileRules:
    settings: ProfileSettings
    clusters: int | None  # None: chosen by silhouette
    segments: list[Rule]
    tags: list[Rule]
    files: dict[str, str]  # segments, tags -> the file each came from

    def evaluate(
        self, env: Env, available: set[str]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, str]]:
        """(segments, tags): each rule's truth for env's members, for the rules whose fields `available` holds;
        and the rules left out, with why. A tag reading a segment left out is left out too."""
        left_out: dict[str, str] = {}
        segments: dict[str, np.ndarray] = {}
        for rule in self.segments:
            if missing := sorted(rule.reads - available):
                left_out[f"segment:{rule.name}"] = f"needs {', '.join(missing)}, which this dataset cannot tell"
            else:
                segments[rule.name] = rule.evaluate(env)
        env = Env(env.size, env.columns, env.quantiles, segments)
        tags: dict[str, np.ndarray] = {}
        for rule in self.tags:
            missing = sorted(rule.reads - available) + sorted(f"segment {s}" for s in rule.segments - set(segments))
            if missing:
                left_out[f"tag:{rule.name}"] = f"needs {', '.join(missing)}, which this dataset cannot tell"
            else:
                tags[rule.name] = rule.evaluate(env)
        return segments, tags, left_out


def load_profile_rules(
    outputs: dict[str, str], segments_path: Path | None = None, tags_path: Path | None = None
) -> ProfileRules:
    """The rules of segments_path and tags_path (default: $COMMUNITY_ML_SEGMENTS_CONFIG and
    $COMMUNITY_ML_TAGS_CONFIG, else configs/segments.yaml and configs/tags.yaml). `outputs`: the models' outputs
    a rule may read, with their types."""
    settings = project_settings()
    segments_path = segments_path or settings.segments_config or CONFIGS / "segments.yaml"
    tags_path = tags_path or settings.tags_config or CONFIGS / "tags.yaml"
    declared = load_config(SegmentsFile, segments_path, {})
    fields = rule_fields(outputs)
    segments = load_rules(segments_path, "segments", fields)
    tags = load_rules(tags_path, "tags", fields, frozenset(r.name for r in segments))
    for entry in yaml.safe_load(tags_path.read_text()) or {}:
        if entry != "tags":
            raise DataError(f"{tags_path}: unknown key {entry!r}: the file holds `tags:` only")
    clusters = None if declared.learned.clusters == "auto" else int(declared.learned.clusters)
    return ProfileRules(
        declared.profile, clusters, segments, tags, {"segments": str(segments_path), "tags": str(tags_path)}
    )
