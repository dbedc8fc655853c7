"""Every setting the project reads from the environment, declared once: its variable, default and meaning.

This is the one module that reads the environment (a test fails on any other that does). `project_settings()` gives the
effective values; `community-ml settings` prints them with where each came from, secrets masked, and
`community-ml settings --markdown` prints the README's table. A value is read when it is asked for, not at
import, so a test or a long-running process sees the environment as it is now.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.common.errors import DataError

PREFIX = "COMMUNITY_ML_"
MASK = "****"
# A URL's password (redis://user:PASSWORD@host): masked wherever a URL is shown.
_URL_PASSWORD = re.compile(r"(?<=://)([^:/@]*):([^@]+)@")


class Settings(BaseSettings):
    """The settings, by field; each field's variable is `COMMUNITY_ML_<FIELD>` unless it names another."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_ignore_empty=True, extra="ignore", frozen=True)

    # Where state lives
    home: Path = Field(
        Path(".community-ml"),
        description="the state folder: datasets, features, MLflow, logs, reports (relative: to the working folder)",
    )
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI"),
        description="an MLflow server to track and register with; unset: a local sqlite registry in the home",
        json_schema_extra={"secret": True},  # a URL may carry a user's password
    )
    # Feature engines
    engine: str = Field("duckdb", description="what builds feature snapshots: duckdb or spark (--engine overrides it)")
    duckdb_memory: str | None = Field(
        None, description="DuckDB's memory limit, e.g. 8GB; unset: a share of the machine's memory"
    )
    duckdb_threads: int | None = Field(None, ge=1, description="DuckDB's threads; unset: the machine's cores")
    spark_master: str = Field(
        "local[*]", description="the Spark master URL: local[*], spark://HOST:7077, yarn, k8s://..."
    )
    spark_conf: str = Field("", description="extra Spark settings, key=value separated by commas or new lines")
    lake: str | None = Field(
        None,
        description="a folder or URI (s3://, gs://, abfs://) where `features publish` puts each dataset's tables and "
        "latest snapshot, replicas copy what they serve from, and Spark reads tables from; unset: the home alone",
    )
    spark_tables: str | None = Field(
        None, description="a URI Spark reads each dataset's tables from (<uri>/<dataset>/<table>.parquet)"
    )
    java_home: str | None = Field(
        None,
        validation_alias=AliasChoices("JAVA_HOME"),
        description="the Java Spark runs on (17 or 21); unset or another version: one under /usr/lib/jvm",
    )
    # Privacy
    pseudonym_key: str | None = Field(
        None,
        description="the secret key of member pseudonyms in logs and reports (set it from a secret store); "
        "unset: a random key kept in the home",
        json_schema_extra={"secret": True},
    )
    # Serving
    dataset: str = Field("demo", description="the dataset the service serves (set by community-ml serve)")
    api_key: str | None = Field(
        None,
        description="when set, every API call but the health and docs routes needs it in x-api-key",
        json_schema_extra={"secret": True},
    )
    workers: int | None = Field(
        None, ge=0, description="service worker processes (set by serve --workers); unset or 0: one per core"
    )
    max_body_bytes: int = Field(
        32 * 2**20, ge=1024, description="the largest request body the API reads (larger: 413); 32 MiB by default"
    )
    redis_url: str | None = Field(
        None,
        description="a Redis the service's workers and replicas share: the event log is a stream per dataset in it, "
        "and fresh records and items are shared through it; unset: a journal file in the home",
        json_schema_extra={"secret": True},
    )
    redis_fsync: str = Field(
        "always",
        pattern="^(always|everysec)$",
        description="the Redis durability events need: always (appendfsync always: nothing acknowledged is lost) or "
        "everysec (accepts a Redis that may lose the last second of acknowledged events)",
    )
    model_source: str | None = Field(
        None,
        description="where the service loads champions from: registry or bento; unset: bento when running from a "
        "Bento that packs them, else the MLflow registry",
    )
    champion_poll_seconds: float = Field(
        30.0,
        ge=0,
        description="how often each service worker asks the registry whether a champion was promoted, and reloads "
        "when one was (every replica and worker on its own); 0: only on POST /reload",
    )
    challenger: str | None = Field(
        None, description="KIND:VERSION served to a share of members beside the champion (set by serve --challenger)"
    )
    challenger_share: float = Field(0.1, description="the share of members the challenger answers")
    # The member profile
    segments_config: Path | None = Field(
        None, description="the profile's segments and how it reads history; unset: configs/segments.yaml"
    )
    tags_config: Path | None = Field(None, description="the operators' tags; unset: configs/tags.yaml")
    # Sample caps: what grows with the community is bounded by these (each a fixed, seeded sample)
    training_members: int = Field(
        25_000, ge=1_000, description="members a member model learns from and is judged on at most"
    )
    gate_members: int = Field(50_000, ge=100, description="members the gate's bootstrap draws from at most")
    fit_members: int = Field(
        50_000, ge=100, description="members BG/NBD and Gamma-Gamma population fits learn from at most"
    )
    recommender_members: int = Field(
        100_000, ge=1_000, description="members recommenders are tuned and judged on at most"
    )
    judged_members: int = Field(25_000, ge=100, description="test members a recommender is judged on at most")

    @field_validator("*", mode="before")
    @classmethod
    def _stripped(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable of a field."""
        alias = cls.model_fields[field].validation_alias
        return alias.choices[0] if isinstance(alias, AliasChoices) else f"{PREFIX}{field.upper()}"  # type: ignore[return-value]

    @classmethod
    def is_secret(cls, field: str) -> bool:
        extra = cls.model_fields[field].json_schema_extra
        return isinstance(extra, dict) and bool(extra.get("secret"))

    def shown(self, field: str) -> str:
        """A field's value as it may be printed: secrets masked (a URL keeps all but its password)."""
        value = getattr(self, field)
        if value is None:
            return ""
        if self.is_secret(field):
            return _URL_PASSWORD.sub(rf"\1:{MASK}@", str(value)) if "://" in str(value) else MASK
        return str(value)


VARIABLES = tuple(Settings.variable(f) for f in Settings.model_fields)
# The variables as os.environ's own mapping keys them (bytes on POSIX).
_ENCODED = tuple(os.environ.encodekey(v) for v in VARIABLES) if hasattr(os.environ, "encodekey") else VARIABLES
_cache: dict[tuple[Any, ...], Settings] = {}


def _fingerprint() -> tuple[Any, ...]:
    """The variables' raw values: what says whether the settings must be parsed again. Read from the mapping
    os.environ keeps of the process environment (a lookup per variable, no decoding): the service asks for its
    settings on every request, and decoding each variable took 38 µs a call."""
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        return tuple(map(data.get, _ENCODED))
    return tuple(map(os.environ.get, VARIABLES))


def project_settings() -> Settings:
    """The settings as the environment holds them now (parsed again only when a variable changed)."""
    key = _fingerprint()
    found = _cache.get(key)
    if found is None:
        try:
            found = Settings()
        except ValidationError as exc:
            problems = "; ".join(
                f"{Settings.variable(str(e['loc'][0]))}={os.environ.get(Settings.variable(str(e['loc'][0])))!r}: "
                f"{e['msg']}"
                for e in exc.errors()
            )
            raise DataError(f"invalid setting in the environment: {problems}") from exc
        _cache.clear()
        _cache[key] = found
    return found


def unknown() -> dict[str, str | None]:
    """Variables of the project's prefix that are no setting (a misspelling is otherwise ignored in silence), each
    with the setting it most looks like, where one is close."""
    given = [name for name in os.environ if name.startswith(PREFIX) and name not in VARIABLES]
    return {name: next(iter(difflib.get_close_matches(name, VARIABLES, n=1)), None) for name in sorted(given)}


def sources() -> dict[str, str]:
    """Where each field's value came from: "environment" where its variable is set (not empty), else "default"."""
    return {
        f: "environment" if os.environ.get(Settings.variable(f), "").strip() else "default"
        for f in Settings.model_fields
    }
